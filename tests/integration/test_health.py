"""Health and readiness: the named-check registry, the disk-space watch on real filesystems
(a small tmpfs where a full disk is needed), the `[storage]` setting, and what the HTTP API
answers on /v1/health, /healthz, /readyz and POST /v1/transactions while a check fails."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import plyvel
import pytest
from aiohttp.test_utils import TestClient, TestServer

from chainnode.api.server import create_app
from chainnode.core.errors import ConfigError, DiskFullError, StorageError
from chainnode.node import config, health
from tests.disk import fill, mounted_tmpfs
from tests.factories import build_put, load_entity
from tests.integration.api_harness import CHAIN_ID, SUBMITTER, LocalService

TMPFS_BYTES = 16 * 1024 * 1024
UNREACHABLE_BYTES = 1 << 50  # more free space than any test machine has


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with mounted_tmpfs(tmp_path / "disk", TMPFS_BYTES) as directory:
        yield directory


# ---------------------------------------------------------------- the registry


def test_readiness_reports_each_failing_check_by_name_in_registration_order() -> None:
    state = {"low": "12 bytes free", "skew": None}
    readiness = health.Readiness()
    readiness.add_check("disk_space_low", lambda: state["low"])
    readiness.add_check("clock_skew", lambda: state["skew"])
    readiness.add_check("storage_failed", lambda: None, blocks_writes=True)
    assert readiness.find_problems() == [health.ReadinessProblem("disk_space_low", "12 bytes free", False)]
    state["skew"] = "3 s ahead of the median"
    assert [problem.name for problem in readiness.find_problems()] == ["disk_space_low", "clock_skew"]
    state["low"] = state["skew"] = None
    assert readiness.find_problems() == []
    with pytest.raises(AssertionError, match="twice"):
        readiness.add_check("clock_skew", lambda: None)


# ---------------------------------------------------------------- the disk watch


def test_disk_watch_warns_once_per_crossing_and_exports_the_free_space(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    watch = health.DiskSpaceWatch(tmp_path, free_bytes_min=0)
    caplog.set_level(logging.INFO, logger="chainnode.node.health")
    watch.check()
    assert watch.state is health.DiskState.OK and watch.find_low_problem() is None
    assert watch.free_bytes is not None and watch.free_bytes > 0
    watch.free_bytes_min = UNREACHABLE_BYTES
    for _ in range(3):
        watch.check()
    problem = watch.find_low_problem()
    assert problem is not None and str(tmp_path) in problem
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1, [record.getMessage() for record in caplog.records]
    assert "disk_free_bytes_min" in warnings[0].getMessage()
    watch.free_bytes_min = 0
    watch.check()
    assert watch.find_low_problem() is None
    assert caplog.records[-1].levelno == logging.INFO
    names = {sample.name: sample.value for sample in watch.samples()}
    assert names["chainnode_disk_free_bytes"] == watch.free_bytes
    assert names["chainnode_disk_free_bytes_min"] == 0


def test_disk_watch_says_when_it_cannot_measure(tmp_path: Path) -> None:
    watch = health.DiskSpaceWatch(tmp_path / "gone", free_bytes_min=0)
    watch.check()
    problem = watch.find_unknown_problem()
    assert problem is not None and "gone" in problem
    assert "chainnode_disk_free_bytes" not in {sample.name for sample in watch.samples()}


def test_a_full_disk_is_reported_and_refused_at_start_naming_the_directory(small_disk: Path) -> None:
    watch = health.DiskSpaceWatch(small_disk, free_bytes_min=0)
    health.check_disk_writable(small_disk)
    fill(small_disk / "filler")
    watch.check()
    problem = watch.find_full_problem()
    assert problem is not None and str(small_disk) in problem
    with pytest.raises(DiskFullError, match=str(small_disk)):
        health.check_disk_writable(small_disk)
    (small_disk / "filler").unlink()
    health.check_disk_writable(small_disk)
    watch.check()
    assert watch.find_full_problem() is None


def test_a_failed_leveldb_write_is_described_with_the_directory_and_the_os_words(small_disk: Path) -> None:
    database = plyvel.DB(str(small_disk / "db"), create_if_missing=True)
    try:
        fill(small_disk / "filler")
        with pytest.raises(OSError) as raised:
            for index in range(100):
                database.put(b"%d" % index, b"x" * 65536, sync=True)
    finally:
        database.close()
    failure = health.describe_storage_failure(raised.value, small_disk)
    assert isinstance(failure, StorageError)
    assert str(small_disk) in failure.message and "No space left on device" in failure.message
    assert "b'" not in failure.message  # LevelDB's bytes are decoded, not shown as a repr
    typed = DiskFullError("the disk under /data is full")
    typed.__cause__ = raised.value
    worded = health.describe_storage_failure(typed, small_disk)
    assert worded.code == "disk_full" and "No space left on device" in worded.message
    assert str(small_disk) in worded.message


# ---------------------------------------------------------------- configuration


def test_storage_disk_free_bytes_min_is_read_defaulted_and_checked(tmp_path: Path) -> None:
    text = config.render_node_config(
        node_id="validator-01",
        p2p_address="127.0.0.1:26600",
        api_address="127.0.0.1:26601",
        peers=[("validator-02", "127.0.0.1:26602")],
    )
    path = tmp_path / "node.toml"
    path.write_text(text)
    assert config.load_node_config(path).disk_free_bytes_min == config.DISK_FREE_BYTES_MIN_DEFAULT
    path.write_text(text[: text.index("\n[storage]\n")])  # a node.toml without the table
    assert config.load_node_config(path).disk_free_bytes_min == config.DISK_FREE_BYTES_MIN_DEFAULT
    line = f"disk_free_bytes_min = {config.DISK_FREE_BYTES_MIN_DEFAULT}"
    assert line in text
    path.write_text(text.replace(line, "disk_free_bytes_min = 1048576"))
    assert config.load_node_config(path).disk_free_bytes_min == 1024 * 1024
    for bad in ("-1", '"256 MiB"'):
        path.write_text(text.replace(line, f"disk_free_bytes_min = {bad}"))
        with pytest.raises(ConfigError, match=r"storage\.disk_free_bytes_min"):
            config.load_node_config(path)


# ---------------------------------------------------------------- the API


@pytest.fixture
async def http(service: LocalService) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(create_app(service), host="127.0.0.1")) as client:
        yield client


def _build_put(service: LocalService, key: str) -> str:
    signer = load_entity(service.directory, SUBMITTER)
    return build_put(signer, key, b"value", chain_id=CHAIN_ID, valid_until=1000).encoded.hex()


def _add_disk_checks(service: LocalService, watch: health.DiskSpaceWatch) -> None:
    """The node's disk checks, registered as `chainnode.node.runtime` registers them."""
    service.readiness.add_check(health.DISK_FULL, watch.find_full_problem, blocks_writes=True)
    service.readiness.add_check(health.DISK_SPACE_LOW, watch.find_low_problem)


async def test_a_ready_node_answers_ok_everywhere(http: TestClient[Any, Any]) -> None:
    for path in ("/v1/health", "/healthz"):
        response = await http.get(path)
        assert response.status == 200 and await response.json() == {"status": "ok"}
    response = await http.get("/readyz")
    assert response.status == 200 and await response.json() == {"status": "ok", "problems": {}}


async def test_low_disk_makes_the_node_unready_but_alive_and_still_taking_transactions(
    http: TestClient[Any, Any], service: LocalService
) -> None:
    watch = health.DiskSpaceWatch(service.directory, free_bytes_min=UNREACHABLE_BYTES)
    _add_disk_checks(service, watch)
    watch.check()
    response = await http.get("/readyz")
    assert response.status == 503
    body = await response.json()
    assert body["status"] == "not_ready" and set(body["problems"]) == {health.DISK_SPACE_LOW}
    assert (await http.get("/healthz")).status == 200
    response = await http.post("/v1/transactions", json={"tx": _build_put(service, "low-disk")})
    assert response.status == 202, await response.text()


async def test_a_node_that_cannot_write_is_not_alive_and_refuses_transactions(
    small_disk: Path, http: TestClient[Any, Any], service: LocalService
) -> None:
    watch = health.DiskSpaceWatch(small_disk, free_bytes_min=0)
    _add_disk_checks(service, watch)
    fill(small_disk / "filler")
    watch.check()
    for path in ("/v1/health", "/healthz", "/readyz"):
        response = await http.get(path)
        assert response.status == 503, path
        problems = (await response.json())["problems"]
        assert set(problems) == {health.DISK_FULL} and str(small_disk) in problems[health.DISK_FULL]
    single = await http.post("/v1/transactions", json={"tx": _build_put(service, "full-1")})
    batch = await http.post("/v1/transactions", json={"txs": [_build_put(service, "full-2")]})
    for response in (single, batch):
        assert response.status == 503
        assert (await response.json())["error"]["code"] == "storage_unavailable"
    assert len(service.mempool) == 0
    (small_disk / "filler").unlink()
    watch.check()
    assert (await http.get("/readyz")).status == 200
    response = await http.post("/v1/transactions", json={"tx": _build_put(service, "full-3")})
    assert response.status == 202
