"""What an operator relies on, on a real network of validator processes on 127.0.0.1.

One four-validator network for the module (`tests/cluster/conftest.py`).  Each test that
takes a validator down brings it back before it ends, so the next test finds four running
nodes on one chain.

- Logs: a validator restarted with `--log-format json --log-level debug` writes only JSON lines,
  each with its level, logger, message and the chain's context (height, view, and the peer
  whose frame was being handled); it exits 0 on SIGTERM.
- The data directory: a second `node run` on a running node's data directory is refused in one
  line naming it (LevelDB's lock), and the running node is unharmed; SIGTERM under a steady
  client load ends a validator with exit code 0, and `chainnode audit` of every ledger is clean
  afterwards (the three running ones audited from copies, as the audit does).
- Operator commands: `chainnode status` of a node under load (once, `--watch --json` lines,
  the live view), of a node that is not there; `chainnode backup` of a running validator under
  load audits clean, matches the chain, refuses a non-empty target, and the validator restarted
  on it catches up and commits new blocks.
- Readiness: a validator started late against a chain that moved on is not ready while it is
  cut off from its peers (no quorum, no peer height heard), and once it reaches them, not before
  it is within `CATCHING_UP_BLOCKS_MIN` blocks of them.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chainnode.node.config import load_node_config
from chainnode.node.peer_reports import CATCHING_UP_BLOCKS_MIN
from tests.cluster.conftest import (
    Cluster,
    build_puts,
    get_valid_until,
    running_cluster,
    submit_batches,
    wait_for_same_head,
    wait_until,
)
from tests.cluster.load import SteadyLoad
from tests.factories import get_free_port

pytestmark = pytest.mark.cluster

WAIT_S = 30.0
STOP_TIMEOUT_S = 20.0
AUDIT = (sys.executable, "-m", "cli", "audit", "--workers", "0", "--json")
CUT_OFF_WATCH_S = 1.5  # a cut-off node is watched this long: /readyz must say 503 throughout


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("operate"), request.node.nodeid) as started:
        yield started


def start_node(
    cluster: Cluster, node_id: str, log_path: Path, *options: str, environment: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """`chainnode node run` of `node_id` with `options` (and `environment` added), its output (the
    log) into `log_path`; the cluster's teardown stops it like the others."""
    config_path = cluster.network.get_node(node_id).config_path
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli", "node", "run", "--config", str(config_path), *options],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(environment or {})},
        )
    cluster.network.processes[node_id] = process
    return process


def stop_node(cluster: Cluster, node_id: str) -> int:
    """SIGTERM, and the exit code."""
    process = cluster.network.processes.pop(node_id)
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=STOP_TIMEOUT_S)


def commit_puts(cluster: Cluster, node_id: str, count: int, label: str) -> None:
    """`count` records committed through `node_id`, seen by every running validator."""
    txs = build_puts(
        cluster, cluster.load_submitters(4), count, label=label, valid_until=get_valid_until(cluster, node_id)
    )
    submit_batches(cluster, txs, [node_id], batch_txs=count)
    client = cluster.client(node_id)
    wait_until(
        lambda: client.get_transaction(txs[-1].hash.hex())["status"] == "committed",
        f"{label} committed",
        WAIT_S,
    )


# ---------------------------------------------------------------- logs


def test_json_logs_carry_level_logger_message_and_the_chain_context(cluster: Cluster, tmp_path: Path) -> None:
    node_id = "validator-04"
    assert stop_node(cluster, node_id) == 0
    log_path = tmp_path / "json.log"
    start_node(cluster, node_id, log_path, "--log-format", "json", "--log-level", "debug")
    cluster.network.wait_ready([node_id], timeout_s=WAIT_S)
    commit_puts(cluster, "validator-01", 8, "json-logs")
    wait_for_same_head(cluster, cluster.node_ids, WAIT_S)
    assert stop_node(cluster, node_id) == 0

    lines = log_path.read_text().splitlines()
    assert len(lines) > 10
    records = []
    for line in lines:
        record = json.loads(line)  # every line, not only most: a stray text line fails here
        assert {"time", "level", "logger", "message", "height", "view", "peer"} <= record.keys(), record
        assert record["level"] in {"debug", "info", "warning", "error", "critical"}, record
        records.append(record)
    started = [r for r in records if r["message"].startswith(f"node {node_id} started")]
    assert len(started) == 1 and isinstance(started[0]["height"], int), started
    assert started[0]["logger"] == "chainnode.node.runtime" and started[0]["level"] == "info"
    committed = [r for r in records if r["message"].startswith("committed block")]
    assert committed, "no commit was logged at debug"
    assert all(isinstance(r["height"], int) and isinstance(r["view"], int) for r in committed)
    # A block commits while a peer's vote is handled: that peer is in the record's context.
    assert all(r["peer"] in set(cluster.node_ids) - {node_id} for r in committed), committed
    assert records[-1]["message"] == f"node {node_id} stopped"

    cluster.network.start(node_id)  # back to plain text for the tests after this one
    cluster.network.wait_ready([node_id], timeout_s=WAIT_S)


def test_text_logs_show_the_context_in_brackets(cluster: Cluster) -> None:
    log_path = cluster.network.get_node("validator-02").config_path.parent / "node.log"
    deadline = time.monotonic() + WAIT_S
    while "[height=" not in log_path.read_text():
        assert time.monotonic() < deadline, "no line with the context in brackets"
        time.sleep(0.05)
    started = [line for line in log_path.read_text().splitlines() if "node validator-02 started" in line]
    assert (
        started and " INFO chainnode.node.runtime [height=0 view=0]: node validator-02 started" in started[0]
    )


# ---------------------------------------------------------------- the data directory


def get_api(cluster: Cluster, node_id: str, path: str) -> tuple[int | None, Any]:
    """(status, decoded JSON) of a GET; (None, reason) when nothing answers."""
    url = cluster.network.get_node(node_id).api_url + path
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")
    except OSError as error:
        return None, repr(error)


def free_ports_environment() -> dict[str, str]:
    return {
        "CHAINNODE_API_LISTEN": f"127.0.0.1:{get_free_port()}",
        "CHAINNODE_P2P_LISTEN": f"127.0.0.1:{get_free_port()}",
    }


def audit(cluster: Cluster, data_dir: Path) -> dict[str, Any]:
    """`chainnode audit --data-dir` (a copy is audited: the node may be running); its report."""
    result = subprocess.run(
        [*AUDIT, "--data-dir", str(data_dir), "--genesis", str(cluster.directory / "genesis.json")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def get_data_dir(cluster: Cluster, node_id: str) -> Path:
    return load_node_config(cluster.network.get_node(node_id).config_path, environment={}).data_dir


def test_a_second_process_on_a_running_nodes_data_dir_is_refused(cluster: Cluster) -> None:
    node_id = "validator-01"
    config_path = cluster.network.get_node(node_id).config_path
    result = subprocess.run(
        [sys.executable, "-m", "cli", "node", "run", "--config", str(config_path)],
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        check=False,
        env={**os.environ, **free_ports_environment()},  # its own ports: the ledger is what clashes
    )
    output = (result.stdout + result.stderr).strip().splitlines()
    assert result.returncode == 1, output
    assert "Traceback" not in "\n".join(output), output
    assert output[-1].startswith("error: storage_locked: "), output
    assert str(get_data_dir(cluster, node_id)) in output[-1] and "locked by another process" in output[-1]
    commit_puts(cluster, node_id, 2, "after-lock")  # the running node is unharmed


def test_sigterm_under_load_exits_0_and_every_ledger_audits_clean(cluster: Cluster) -> None:
    told: list[str] = []
    with SteadyLoad(cluster, told, label="sigterm", targets=["validator-01", "validator-02"]) as load:
        load.wait_for_told(8, "before validator-03 is stopped")
        assert stop_node(cluster, "validator-03") == 0
        load.wait_for_told(4, "while validator-03 is stopped")
        cluster.network.start("validator-03")
        cluster.network.wait_ready(["validator-03"], timeout_s=WAIT_S)
        load.wait_for_told(4, "with every validator back")
        assert load.stop() == 0
    height = wait_for_same_head(cluster, cluster.node_ids, WAIT_S)[0]
    with concurrent.futures.ThreadPoolExecutor(len(cluster.node_ids)) as pool:
        reports = dict(
            zip(
                cluster.node_ids,
                pool.map(lambda node_id: audit(cluster, get_data_dir(cluster, node_id)), cluster.node_ids),
                strict=True,
            )
        )
    for node_id, report in reports.items():
        assert report["result"] == "ok" and report["height_to"] >= height, (node_id, report)


# ---------------------------------------------------------------- readiness


def test_readyz_turns_ready_only_after_catch_up(cluster: Cluster, tmp_path: Path) -> None:
    node_id = "validator-04"
    assert stop_node(cluster, node_id) == 0
    stopped_height = int(cluster.client("validator-01").get_status()["height"])
    for block in range(CATCHING_UP_BLOCKS_MIN + 2):  # one transaction, one block, each
        commit_puts(cluster, "validator-01", 1, f"late-{block}")
    chain_height = int(cluster.client("validator-01").get_status()["height"])
    assert chain_height >= stopped_height + CATCHING_UP_BLOCKS_MIN + 2

    # Cut off (listening where nobody dials, dialing nobody): alive, never ready.
    cut_off = {**free_ports_environment(), "CHAINNODE_P2P_PEERS": "[]"}
    cut_off["CHAINNODE_API_LISTEN"] = cluster.network.get_node(node_id).api_url.removeprefix("http://")
    start_node(cluster, node_id, tmp_path / "cut-off.log", environment=cut_off)
    cluster.network.wait_ready([node_id], timeout_s=WAIT_S)
    deadline = time.monotonic() + CUT_OFF_WATCH_S
    while time.monotonic() < deadline:
        status, body = get_api(cluster, node_id, "/readyz")
        assert status == 503, body
        assert {"no_quorum", "catching_up"} <= set(body["problems"]), body
        time.sleep(0.05)
    assert stop_node(cluster, node_id) == 0

    # With its peers: each /readyz 200 comes with a height within the catch-up margin.
    cluster.network.start(node_id)
    cluster.network.wait_ready([node_id], timeout_s=WAIT_S)
    answers: list[tuple[int | None, int]] = []
    deadline = time.monotonic() + WAIT_S
    while not answers or answers[-1][0] != 200:
        assert time.monotonic() < deadline, f"never ready: {answers[-3:]}"
        status, _ = get_api(cluster, node_id, "/readyz")
        answers.append((status, int(cluster.client(node_id).get_status()["height"])))
    assert answers[-1][1] > chain_height - CATCHING_UP_BLOCKS_MIN, answers
    # It started behind by more than the margin, so its first 200 had to wait for catch-up
    # (the catch-up can be over before the first /readyz: the log, not the answers, says so).
    log_path = cluster.network.get_node(node_id).config_path.parent / "node.log"
    started = [line for line in log_path.read_text().splitlines() if f"node {node_id} started" in line]
    started_height = int(started[-1].split(" height ")[1].split(",")[0])
    assert started_height <= chain_height - CATCHING_UP_BLOCKS_MIN, started[-1]
    wait_for_same_head(cluster, cluster.node_ids, WAIT_S)


# ---------------------------------------------------------------- operator commands


def run_cli(*argv: str, timeout_s: float = WAIT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *argv], capture_output=True, text=True, timeout=timeout_s, check=False
    )


def test_status_shows_a_node_under_load_once_and_watching(cluster: Cluster) -> None:
    url = cluster.network.get_node("validator-01").api_url
    # An earlier test restarted a validator: validator-01 may still be in its redial back-off.
    wait_until(
        lambda: sorted(cluster.client("validator-01").get_status()["peers"]) == cluster.node_ids[1:],
        "validator-01 is connected to the three others again",
        30.0,
    )
    told: list[str] = []
    with SteadyLoad(cluster, told, label="status", targets=["validator-01", "validator-02"]) as load:
        load.wait_for_told(4, "before the status is read")
        once = run_cli("status", "--node", url, "--json", "--interval", "0.5")
        watched = run_cli("status", "--node", url, "--watch", "--count", "3", "--interval", "0.3", "--json")
        live = run_cli("status", "--node", url, "--watch", "--count", "2", "--interval", "0.2", "--text")
        assert load.stop() == 0
    assert once.returncode == 0, once.stderr
    view = json.loads(once.stdout)
    assert (view["node_id"], view["chain_id"], view["ready"]) == ("validator-01", cluster.chain_id, True)
    assert view["peers_connected"] == 3 and sorted(view["peers"]) == cluster.node_ids[1:]
    assert view["height"] >= 1 and isinstance(view["mempool_txs"], int) and view["view"] >= 0
    assert view["tx_per_s"] > 0, view  # the load commits transactions all along
    assert view["expiring_certificates"] == [] and view["certificate_warning_days"] == 30
    assert watched.returncode == 0, watched.stderr
    readings = [json.loads(line) for line in watched.stdout.splitlines()]
    assert len(readings) == 3 and readings[0]["tx_per_s"] is None  # no rate from one reading
    assert all(isinstance(reading["tx_per_s"], float) for reading in readings[1:]), readings
    assert [r["height"] for r in readings] == sorted(r["height"] for r in readings)
    assert live.returncode == 0, live.stderr
    assert "height" in live.stdout and "tx_per_s" in live.stdout and "validator-01" in live.stdout


def test_status_of_a_node_that_does_not_answer_is_one_error_line() -> None:
    result = run_cli("status", "--node", f"http://127.0.0.1:{get_free_port()}", "--json")
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: unreachable: cannot reach"), result.stderr


def test_backup_of_a_running_node_audits_clean_and_a_node_starts_from_it(
    cluster: Cluster, tmp_path: Path
) -> None:
    node_id = "validator-03"
    out = tmp_path / "backup"
    told: list[str] = []
    with SteadyLoad(cluster, told, label="backup", targets=["validator-01", "validator-02"]) as load:
        load.wait_for_told(6, "before the backup")
        result = run_cli(
            "backup", "--data-dir", str(get_data_dir(cluster, node_id)), "--out", str(out), "--json"
        )
        load.wait_for_told(4, "after the backup")  # the node went on committing
        assert load.stop() == 0
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["height"] >= 1 and report["keys"] > 0 and report["out_dir"] == str(out.resolve())
    assert cluster.client(node_id).get_block(report["height"])["hash"] == report["block_hash"]
    audited = audit(cluster, out)
    assert audited["result"] == "ok" and audited["height_to"] == report["height"], audited
    again = run_cli("backup", "--data-dir", str(get_data_dir(cluster, node_id)), "--out", str(out))
    assert again.returncode == 1 and "is not an empty directory" in again.stderr, again.stderr

    # The validator restarts on the backup: it catches up and votes on new blocks.
    assert stop_node(cluster, node_id) == 0
    start_node(cluster, node_id, tmp_path / "restored.log", environment={"CHAINNODE_NODE_DATA_DIR": str(out)})
    cluster.network.wait_ready([node_id], timeout_s=WAIT_S)
    commit_puts(cluster, "validator-01", 3, "after-restore")
    height = wait_for_same_head(cluster, cluster.node_ids, WAIT_S)[0]
    assert height > report["height"]
    status = cluster.client(node_id).get_status()
    assert status["height"] == height and status["committed_txs_since_start"] >= 3
