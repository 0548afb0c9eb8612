"""A validator's disk fills up under load: it must say so and stop, not linger as a zombie.

Theory of operation.  Four validators run as OS processes (real TLS, real LevelDB).  One of
them (not the primary) is stopped, its data directory moved onto a small tmpfs mounted in
its place, its `[storage] disk_free_bytes_min` raised above what that tmpfs will have free
after a first filler, and started again; a `SteadyLoad` keeps the other three committing,
so blocks reach the target through consensus all along.  Then, checked through the API and
the process's exit only:

1. Low disk: a filler leaves less than the minimum free (but far from full).  Within a few
   disk checks `/readyz` is 503 naming `disk_space_low`, `/metrics` shows the free bytes
   below the minimum, `/v1/health` stays 200, the node keeps committing, and its log holds
   one WARNING for the crossing, not one per check.
2. Full disk: the filler grows until the filesystem refuses a write.  A prober thread polls
   `/v1/health` and `/readyz` and submits single transactions to the target the whole time.
   Within a few seconds the node must fail its health check (or be gone), then exit non-zero
   after one CRITICAL line naming its data directory and the OS error and a last one-line
   message, without a traceback and without re-executing proposals on a stale state; once
   the prober first sees it failing (a 503 or no answer), it never again sees a 202, a
   healthy or a ready answer.
3. Restarted on the still-full disk, it exits non-zero at once with a message naming the
   disk, not "locked by another process".
4. The filler removed, it restarts, catches up and votes again; all four reach the same head,
   every block verifies on every node, every transaction told committed is in the chain, and
   `chainnode audit` replays the target's repaired ledger from genesis without a failure.

The tmpfs is always unmounted (after the target is stopped), whatever happened.  Every wait is
a deadline loop over the API; measured times are printed (run with `-s` to see them).
"""

from __future__ import annotations

import http.client
import json
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from chainnode.node import config
from tests.cluster.conftest import (
    CertifiedChain,
    Cluster,
    build_puts,
    find_uncommitted,
    get_primary_id,
    get_valid_until,
    get_view,
    running_cluster,
    wait_for_same_head,
    wait_until,
)
from tests.cluster.load import SteadyLoad, get_max_height
from tests.disk import fill, get_free_bytes, mounted_tmpfs

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
TMPFS_BYTES = 96 * 1024 * 1024
DISK_FREE_BYTES_MIN = 48 * 1024 * 1024  # the target's [storage] disk_free_bytes_min
LOW_FREE_BYTES = 32 * 1024 * 1024  # what the first filler leaves: below the minimum, far from full
HTTP_TIMEOUT_S = 5.0
READY_TIMEOUT_S = 30.0
LOW_DISK_BOUND_S = 15.0  # a disk check runs every 5 s
FAILING_BOUND_S = 6.0  # disk full -> the first failing answer (a failed write, or a disk check)
STOP_BOUND_S = 15.0  # disk full under load -> the process has exited (shared CPUs are slow)
EXIT_ON_FULL_BOUND_S = 30.0  # restarted on the full disk -> exited (interpreter start included)
CATCH_UP_TIMEOUT_S = 60.0
SAME_HEAD_TIMEOUT_S = 60.0
TOLD_PER_PHASE = 30
BLOCKS_WHILE_LOW = 5
PROBE_PAUSE_S = 0.02
PROBE_ROUNDS_MAX = 3_000
PROBE_DURATION_S_MAX = 120.0
AUDIT_TIMEOUT_S = 300.0


@pytest.fixture
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    module = request.node.getparent(pytest.Module)
    assert module is not None
    with running_cluster(tmp_path, module.nodeid) as started:
        yield started


# ---------------------------------------------------------------- raw HTTP


def request_api(
    cluster: Cluster, node_id: str, method: str, path: str, body: Any = None
) -> tuple[int | None, Any]:
    """(status, decoded JSON or text) of one request; (None, reason) when nothing answers."""
    host_port = cluster.network.get_node(node_id).api_url.removeprefix("http://")
    host, port = host_port.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=HTTP_TIMEOUT_S)
    try:
        payload = None if body is None else json.dumps(body).encode()
        connection.request(method, path, body=payload, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        raw = response.read()
    except (OSError, http.client.HTTPException) as error:
        return None, repr(error)
    finally:
        connection.close()
    try:
        return response.status, json.loads(raw)
    except ValueError:
        return response.status, raw.decode(errors="replace")


def get_free_bytes_metric(cluster: Cluster, node_id: str) -> int | None:
    status, text = request_api(cluster, node_id, "GET", "/metrics")
    if status != 200 or not isinstance(text, str):
        return None
    match = re.search(r"^chainnode_disk_free_bytes\{[^}]*\} (\S+)$", text, re.MULTILINE)
    return None if match is None else int(float(match.group(1)))


def get_height(cluster: Cluster, node_id: str) -> int:
    status, body = request_api(cluster, node_id, "GET", "/v1/status")
    return int(body["height"]) if status == 200 else -1


# ---------------------------------------------------------------- the prober


@dataclass(frozen=True, slots=True)
class Observation:
    at_s: float  # time.monotonic()
    what: str  # "health", "ready" or "submit"
    status: int | None  # None: no answer (the process is gone)
    body: Any

    @property
    def is_ok(self) -> bool:
        """An answer that claims the node works: healthy, ready, or a transaction taken."""
        return self.status in (200, 202)


class Prober:
    """A thread that asks one node, round after round, whether it is healthy and ready and
    submits one transaction per round; every answer is kept with its time."""

    def __init__(self, cluster: Cluster, node_id: str) -> None:
        self.cluster = cluster
        self.node_id = node_id
        identities = cluster.load_submitters(4)
        self._txs = build_puts(
            cluster,
            identities,
            PROBE_ROUNDS_MAX,
            label="probe",
            valid_until=get_valid_until(cluster, cluster.node_ids[0]),
        )
        self.observations: list[Observation] = []
        self._stopping = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"probe-{node_id}", daemon=True)

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> list[Observation]:
        self._stopping.set()
        self._thread.join(timeout=HTTP_TIMEOUT_S * 4)
        assert not self._thread.is_alive(), "the prober did not stop"
        if self._error is not None:
            raise AssertionError(f"the prober failed: {self._error!r}") from self._error
        return self.observations

    def _run(self) -> None:
        try:
            deadline_s = time.monotonic() + PROBE_DURATION_S_MAX
            for tx in self._txs:
                if self._stopping.is_set() or time.monotonic() > deadline_s:
                    return
                for what, method, path, body in (
                    ("health", "GET", "/v1/health", None),
                    ("ready", "GET", "/readyz", None),
                    ("submit", "POST", "/v1/transactions", {"tx": tx.encoded.hex()}),
                ):
                    status, answer = request_api(self.cluster, self.node_id, method, path, body)
                    self.observations.append(Observation(time.monotonic(), what, status, answer))
                self._stopping.wait(PROBE_PAUSE_S)
        except BaseException as error:
            self._error = error


# ---------------------------------------------------------------- steps


def read_log_from(log_path: Path, offset: int) -> str:
    with log_path.open("rb") as file:
        file.seek(offset)
        return file.read().decode(errors="replace")


def wait_for_exit(cluster: Cluster, node_id: str, timeout_s: float) -> int:
    """The exit code of `node_id`'s process, which must end within `timeout_s`."""
    process = cluster.network.processes[node_id]
    try:
        return process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{node_id} still runs {timeout_s:.0f} s later") from None


def move_onto_tmpfs(cluster: Cluster, node_id: str, saved: Path, data_dir: Path) -> None:
    """Copy what `saved` holds (the node's data, moved aside) onto the tmpfs now at `data_dir`,
    and raise the node's disk_free_bytes_min so that the first filler makes the disk low."""
    shutil.copytree(saved, data_dir, dirs_exist_ok=True)
    config_path = cluster.network.get_node(node_id).config_path
    text = config_path.read_text()
    line = f"disk_free_bytes_min = {config.DISK_FREE_BYTES_MIN_DEFAULT}"
    assert line in text, "network init writes the [storage] table"
    config_path.write_text(text.replace(line, f"disk_free_bytes_min = {DISK_FREE_BYTES_MIN}"))


def check_low_disk(cluster: Cluster, node_id: str, data_dir: Path, log_path: Path, log_offset: int) -> None:
    """Phase 1: unready but alive and committing, one WARNING for the crossing."""
    free_bytes = fill(data_dir / "filler", leave_bytes=LOW_FREE_BYTES)
    assert 8 * 1024 * 1024 < free_bytes < DISK_FREE_BYTES_MIN, free_bytes
    started_s = time.monotonic()

    def is_low_reported() -> bool:
        status, body = request_api(cluster, node_id, "GET", "/readyz")
        return status == 503 and "disk_space_low" in body["problems"]

    wait_until(is_low_reported, f"{node_id}'s /readyz reports disk_space_low", LOW_DISK_BOUND_S)
    print(f"\n  low disk ({free_bytes} bytes free) reported after {time.monotonic() - started_s:.1f} s")
    assert request_api(cluster, node_id, "GET", "/v1/health") == (200, {"status": "ok"})
    metric = get_free_bytes_metric(cluster, node_id)
    assert metric is not None and metric < DISK_FREE_BYTES_MIN, metric
    height = get_height(cluster, node_id)
    wait_until(
        lambda: get_height(cluster, node_id) >= height + BLOCKS_WHILE_LOW,
        f"{node_id} commits {BLOCKS_WHILE_LOW} blocks on a low disk",
        CATCH_UP_TIMEOUT_S,
    )
    warnings = [line for line in read_log_from(log_path, log_offset).splitlines() if "low disk space" in line]
    assert len(warnings) == 1 and " WARNING " in warnings[0], warnings


def check_stops_on_full_disk(
    cluster: Cluster, node_id: str, data_dir: Path, log_path: Path, log_offset: int
) -> None:
    """Phase 2: the disk fills under load; the node stops loudly and never answers as if it worked."""
    with Prober(cluster, node_id) as prober:
        wait_until(lambda: len(prober.observations) >= 30, "the prober has a baseline", READY_TIMEOUT_S)
        filled_s = time.monotonic()
        free_bytes = fill(data_dir / "filler")
        code = wait_for_exit(cluster, node_id, STOP_BOUND_S)
        stopped_s = time.monotonic() - filled_s
        observations = prober.stop()
    before = [item for item in observations if item.at_s < filled_s]
    after = [item for item in observations if item.at_s >= filled_s]
    assert any(item.what == "health" and item.is_ok for item in before), "healthy before the fill"
    # /readyz was 503 already (disk_space_low): it must stay so.  Health and submissions
    # worked until the fill; the first of them that fails marks the moment the node knew.
    assert [item for item in after if item.what == "ready" and item.is_ok] == []
    failing = [index for index, item in enumerate(after) if item.what != "ready" and not item.is_ok]
    assert failing, "the prober never saw the node failing"
    first = after[failing[0]]
    assert first.at_s - filled_s <= FAILING_BOUND_S, first
    later_ok = [item for item in after[failing[0] :] if item.is_ok]
    assert later_ok == [], f"answered as if it worked after {first}: {later_ok[:3]}"
    refusals = {
        item.body["error"]["code"]
        for item in after
        if item.what == "submit" and item.status is not None and not item.is_ok
    }
    assert refusals <= {"storage_unavailable"}, refusals
    print(
        f"  disk filled ({free_bytes} bytes free): first failing answer after {first.at_s - filled_s:.2f} s"
        f" ({first.what} {first.status}), process exited with {code} after {stopped_s:.2f} s"
    )
    assert code != 0
    text = read_log_from(log_path, log_offset)
    assert "Traceback" not in text, text[-3000:]
    assert "state root differs" not in text
    critical = [line for line in text.splitlines() if " CRITICAL " in line]
    assert len(critical) == 1, critical
    assert str(data_dir) in critical[0] and "No space left on device" in critical[0], critical[0]
    last = text.strip().splitlines()[-1]
    assert last.startswith("error: ") and str(data_dir) in last, last


def check_refuses_to_start_on_full_disk(
    cluster: Cluster, node_id: str, data_dir: Path, log_path: Path
) -> None:
    """Phase 3: restarted on the still-full disk, it exits at once naming the disk."""
    offset = log_path.stat().st_size
    cluster.network.start(node_id)
    code = wait_for_exit(cluster, node_id, EXIT_ON_FULL_BOUND_S)
    text = read_log_from(log_path, offset).strip()
    assert code != 0, text
    assert "locked by another process" not in text, text
    assert "Traceback" not in text, text
    last = text.splitlines()[-1]
    assert last.startswith("error: disk_full:") and str(data_dir) in last, last


def audit_ledger(cluster: Cluster, data_dir: Path, height_min: int) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli",
            "audit",
            "--data-dir",
            str(data_dir),
            "--genesis",
            str(cluster.directory / "genesis.json"),
            "--workers",
            "0",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=AUDIT_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["result"] == "ok" and report["height_to"] >= height_min, report


# ---------------------------------------------------------------- the test


def test_full_disk_stops_the_validator_and_it_recovers_once_space_is_freed(
    cluster: Cluster, tmp_path: Path
) -> None:
    view = get_view(cluster, cluster.node_ids)
    primary = get_primary_id(cluster, view)
    target = cluster.node_ids[(cluster.node_ids.index(primary) + 2) % len(cluster.node_ids)]
    others = [node_id for node_id in cluster.node_ids if node_id != target]
    data_dir = cluster.directory / "nodes" / target / "data"
    log_path = cluster.network.get_node(target).config_path.parent / "node.log"
    told: list[str] = []
    assert cluster.network.stop(target) == 0
    saved = tmp_path / "saved-data"
    shutil.move(data_dir, saved)
    with (
        mounted_tmpfs(data_dir, TMPFS_BYTES),
        SteadyLoad(cluster, told, label="disk", targets=others) as load,
    ):
        try:
            move_onto_tmpfs(cluster, target, saved, data_dir)
            log_offset = log_path.stat().st_size
            cluster.network.start(target)
            cluster.network.wait_ready([target], timeout_s=READY_TIMEOUT_S)
            load.wait_for_told(TOLD_PER_PHASE, "before the disk fills")
            wait_until(
                lambda: request_api(cluster, target, "GET", "/readyz")[0] == 200,
                f"{target} is ready on its tmpfs",
                CATCH_UP_TIMEOUT_S,
            )
            check_low_disk(cluster, target, data_dir, log_path, log_offset)
            check_stops_on_full_disk(cluster, target, data_dir, log_path, log_offset)
            check_refuses_to_start_on_full_disk(cluster, target, data_dir, log_path)

            (data_dir / "filler").unlink()
            assert get_free_bytes(data_dir) > DISK_FREE_BYTES_MIN
            target_height = get_max_height(cluster, others)
            restarted_s = time.monotonic()
            cluster.network.start(target)
            cluster.network.wait_ready([target], timeout_s=READY_TIMEOUT_S)
            wait_until(
                lambda: get_height(cluster, target) >= target_height,
                f"{target} catches up to height {target_height}",
                CATCH_UP_TIMEOUT_S,
            )
            wait_until(
                lambda: request_api(cluster, target, "GET", "/readyz")[0] == 200,
                f"{target} is ready again",
                CATCH_UP_TIMEOUT_S,
            )
            print(
                f"  restarted with space: at height {target_height}"
                f" {time.monotonic() - restarted_s:.2f} s later"
            )
            load.set_targets(cluster.node_ids)
            load.wait_for_told(TOLD_PER_PHASE, f"with {target} back")
            load.stop()
            height, _, _ = wait_for_same_head(cluster, cluster.node_ids, SAME_HEAD_TIMEOUT_S)
            chain = CertifiedChain(cluster)
            chain.extend(cluster.node_ids, height)
            missing = [tx_hash for tx_hash in told if tx_hash not in chain.tx_heights]
            assert missing == [], f"{len(missing)} told-committed transactions are lost: {missing[:3]}"
            problems = find_uncommitted(cluster, told, [target], require_ok=True)
            assert problems == [], problems[:3]
            audit_ledger(cluster, data_dir, height)
        finally:
            cluster.network.stop(target)
