"""What an operator relies on, on a real network of validator processes on 127.0.0.1.

One four-validator network for the module (`tests/cluster/conftest.py`).  Each test that
takes a validator down brings it back before it ends, so the next test finds four running
nodes on one chain.

- Logs: a validator restarted with `--log-format json --log-level debug` writes only JSON lines,
  each with its level, logger, message and the chain's context (height, view, and the peer
  whose frame was being handled); it exits 0 on SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.conftest import (
    Cluster,
    build_puts,
    get_valid_until,
    running_cluster,
    submit_batches,
    wait_for_same_head,
    wait_until,
)

pytestmark = pytest.mark.cluster

WAIT_S = 30.0
STOP_TIMEOUT_S = 20.0


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("operate"), request.node.nodeid) as started:
        yield started


def start_node(cluster: Cluster, node_id: str, log_path: Path, *options: str) -> subprocess.Popen[bytes]:
    """`chainnode node run` of `node_id` with `options`, its stderr (the log) into `log_path`;
    the cluster's teardown stops it like the others."""
    config_path = cluster.network.get_node(node_id).config_path
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli", "node", "run", "--config", str(config_path), *options],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
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
