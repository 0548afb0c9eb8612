"""A validator whose ledger a bad disk damaged: refused at start, then rebuilt from its peers.

Real validator processes on 127.0.0.1 (see `conftest.py`).  validator-04 is stopped, one
byte in the middle of its main database's write-ahead log is flipped (a stopped node keeps
its last batches there), and it is started again: it must refuse to serve the ledger and
exit with one line.  Started with `--rebuild`, it sets the damaged data directory aside,
starts on an empty ledger, catches up from its peers (every block with a commit
certificate it verifies) and then takes part in consensus: with another validator stopped,
the network commits only with its votes.  Checked only through the API and the files.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from chainnode.core import types
from chainnode.node.config import load_node_config
from tests.cluster.conftest import (
    Cluster,
    build_puts,
    find_uncommitted,
    get_valid_until,
    submit_batches,
    wait_for_same_head,
    wait_until,
)

pytestmark = pytest.mark.cluster

TARGET = "validator-04"
SECOND = "validator-03"  # stopped at the end, so that commits need the rebuilt validator
TIMEOUT_S = 60.0


def _submit_and_confirm(cluster: Cluster, node_ids: list[str], count: int, label: str) -> list[str]:
    transactions = build_puts(
        cluster,
        cluster.load_submitters(4),
        count,
        label=label,
        valid_until=get_valid_until(cluster, node_ids[0]),
    )
    submit_batches(cluster, transactions, node_ids, 10)
    for tx in transactions:
        answer = cluster.client(node_ids[0]).wait_for_commit(tx.hash.hex(), timeout_s=TIMEOUT_S)
        assert answer["receipt"]["code"] == types.ErrorCode.OK, answer
    return [tx.hash.hex() for tx in transactions]


def _start(cluster: Cluster, node_id: str, *extra: str) -> subprocess.Popen[bytes]:
    """Start a validator as `LocalNetwork.start` does, with extra arguments; the cluster stops it."""
    config_path = cluster.network.get_node(node_id).config_path
    with (config_path.parent / "node.log").open("ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli", "node", "run", "--config", str(config_path), *extra],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=Path(__file__).resolve().parents[2],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    cluster.network.processes[node_id] = process
    return process


def test_a_damaged_ledger_is_refused_then_rebuilt_from_the_peers(cluster: Cluster) -> None:
    others = [node_id for node_id in cluster.node_ids if node_id != TARGET]
    committed = _submit_and_confirm(cluster, cluster.node_ids, 60, "before-damage")
    wait_for_same_head(cluster, cluster.node_ids, TIMEOUT_S)
    assert cluster.network.stop(TARGET) == 0
    committed += _submit_and_confirm(cluster, others, 20, "while-down")

    config_path = cluster.network.get_node(TARGET).config_path
    data_dir = load_node_config(config_path).data_dir
    (log,) = (data_dir / "ledger").glob("*.log")
    assert log.stat().st_size > 4096, log.stat().st_size
    damaged = bytearray(log.read_bytes())
    damaged[len(damaged) // 2] ^= 0x01
    log.write_bytes(bytes(damaged))

    log_path = config_path.parent / "node.log"
    log_bytes_before = log_path.stat().st_size
    refused = _start(cluster, TARGET)
    refused.wait(timeout=TIMEOUT_S)
    cluster.network.processes.pop(TARGET)
    assert refused.returncode == 1
    output = log_path.read_bytes()[log_bytes_before:].decode().strip().splitlines()
    assert output[-1].startswith("error: storage_corrupt: ") and "Traceback" not in "\n".join(output), output

    _start(cluster, TARGET, "--rebuild")
    cluster.network.wait_ready([TARGET], timeout_s=TIMEOUT_S)
    set_aside = [
        path for path in data_dir.parent.iterdir() if path.name.startswith(f"{data_dir.name}.corrupt-")
    ]
    assert len(set_aside) == 1 and (set_aside[0] / "ledger" / "blocks").is_dir()
    wait_for_same_head(cluster, cluster.node_ids, TIMEOUT_S)
    assert find_uncommitted(cluster, committed, [TARGET], require_ok=True) == []

    # It votes again: with SECOND down, no quorum of 3 without it.
    assert cluster.network.stop(SECOND) == 0
    remaining = [node_id for node_id in cluster.node_ids if node_id != SECOND]
    needs_target = _submit_and_confirm(cluster, remaining, 10, "needs-rebuilt")
    assert find_uncommitted(cluster, needs_target, [TARGET], require_ok=True) == []
    cluster.network.start(SECOND)
    cluster.network.wait_ready([SECOND], timeout_s=TIMEOUT_S)
    wait_until(
        lambda: find_uncommitted(cluster, needs_target, [SECOND], require_ok=True) == [],
        "the restarted validator catches up",
        TIMEOUT_S,
    )
