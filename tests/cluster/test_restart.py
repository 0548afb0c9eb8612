"""Validators stopped (SIGTERM) or crashed (SIGKILL) and restarted on their data directories.

Each test leaves all four validators running and in agreement, so the tests of this
module share one network and run in file order.  `told_committed` collects every
transaction a client was told is committed; after each test every one of them must be
committed on every validator.

validator-01 is never stopped alone: it is the primary of view 0 and view change does
not exist yet.  To show that a restarted validator takes part in consensus again (and
is not merely following), a second validator is stopped after the catch-up: with
n = 4 the quorum is 3, so the network can only commit if the restarted one votes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from chainnode.core import types
from tests.cluster.conftest import (
    Cluster,
    build_puts,
    find_uncommitted,
    get_heads,
    get_valid_until,
    submit_batches,
    wait_for_same_head,
)

pytestmark = pytest.mark.cluster

COMMIT_TIMEOUT_S = 30.0
CATCH_UP_TIMEOUT_S = 30.0
READY_TIMEOUT_S = 30.0
BATCH_TXS = 10


@pytest.fixture(scope="module")
def told_committed() -> list[str]:
    return []


def submit_and_confirm(
    cluster: Cluster, node_ids: Sequence[str], count: int, label: str, told_committed: list[str]
) -> list[str]:
    """Submit `count` puts through `node_ids`, wait until each submitting node reports all committed."""
    identities = cluster.load_submitters(8)
    transactions = build_puts(
        cluster, identities, count, label=label, valid_until=get_valid_until(cluster, node_ids[0])
    )
    submit_batches(cluster, transactions, node_ids, BATCH_TXS)
    for position, tx in enumerate(transactions):
        # Ask the node the batch went to: that is the client's view of "committed".
        node_id = node_ids[(position // BATCH_TXS) % len(node_ids)]
        answer = cluster.client(node_id).wait_for_commit(tx.hash.hex(), timeout_s=COMMIT_TIMEOUT_S)
        assert answer["receipt"]["code"] == types.ErrorCode.OK, answer
        told_committed.append(tx.hash.hex())
    return [tx.hash.hex() for tx in transactions]


def check_told_committed_everywhere(cluster: Cluster, told_committed: list[str]) -> None:
    wait_for_same_head(cluster, cluster.node_ids, CATCH_UP_TIMEOUT_S)
    problems = find_uncommitted(cluster, told_committed, cluster.node_ids, require_ok=True)
    assert problems == [], f"{len(problems)} problems, e.g. {problems[:3]}"


def get_committed_since_start(cluster: Cluster, node_id: str) -> int:
    return int(cluster.client(node_id).get_status()["committed_txs_since_start"])


def restart_and_check_participation(
    cluster: Cluster,
    target: str,
    second: str,
    halt: Callable[[str], object],
    label: str,
    told_committed: list[str],
) -> None:
    """Halt `target`, commit without it, restart it, check catch-up, then prove it votes."""
    others = [node_id for node_id in cluster.node_ids if node_id != target]
    height_before, _, _ = wait_for_same_head(cluster, cluster.node_ids, CATCH_UP_TIMEOUT_S)
    halt(target)
    assert not cluster.network.is_running(target)

    submit_and_confirm(cluster, others, 40, f"{label}-while-down", told_committed)
    head_without = wait_for_same_head(cluster, others, CATCH_UP_TIMEOUT_S)
    assert head_without[0] > height_before

    cluster.network.start(target)
    cluster.network.wait_ready([target], timeout_s=READY_TIMEOUT_S)
    head_after = wait_for_same_head(cluster, cluster.node_ids, CATCH_UP_TIMEOUT_S)
    assert head_after[0] >= head_without[0]
    assert get_heads(cluster, [target])[target] == head_after

    committed_before = get_committed_since_start(cluster, target)
    submit_and_confirm(cluster, [target, *others], 30, f"{label}-after-restart", told_committed)
    head_new = wait_for_same_head(cluster, cluster.node_ids, CATCH_UP_TIMEOUT_S)
    assert head_new[0] > head_after[0]
    assert get_committed_since_start(cluster, target) >= committed_before + 30

    # With `second` down, only `target`'s votes can complete a quorum of three.
    cluster.network.stop(second)
    remaining = [node_id for node_id in cluster.node_ids if node_id != second]
    submit_and_confirm(cluster, remaining, 20, f"{label}-needs-target", told_committed)
    cluster.network.start(second)
    cluster.network.wait_ready([second], timeout_s=READY_TIMEOUT_S)
    check_told_committed_everywhere(cluster, told_committed)


def test_sigterm_validator_catches_up_and_takes_part_again(
    cluster: Cluster, told_committed: list[str]
) -> None:
    exit_codes: list[int | None] = []

    def terminate(node_id: str) -> None:
        exit_codes.append(cluster.network.stop(node_id))

    restart_and_check_participation(
        cluster, "validator-03", "validator-04", terminate, "term", told_committed
    )
    assert exit_codes == [0], "a validator stopped with SIGTERM exits cleanly"


def test_sigkill_validator_catches_up_and_takes_part_again(
    cluster: Cluster, told_committed: list[str]
) -> None:
    restart_and_check_participation(
        cluster, "validator-04", "validator-02", cluster.network.kill, "kill", told_committed
    )


def test_whole_network_restarts_from_disk(cluster: Cluster, told_committed: list[str]) -> None:
    submit_and_confirm(cluster, cluster.node_ids, 20, "before-full-stop", told_committed)
    head_before = wait_for_same_head(cluster, cluster.node_ids, CATCH_UP_TIMEOUT_S)
    for node_id in cluster.node_ids:
        assert cluster.network.stop(node_id) == 0, node_id
    cluster.network.start_all()
    cluster.network.wait_ready(timeout_s=READY_TIMEOUT_S)
    # Nothing was pending (the pool is not persisted and no empty blocks are proposed), so
    # every node resumes exactly where it stopped.
    assert get_heads(cluster, cluster.node_ids) == dict.fromkeys(cluster.node_ids, head_before)
    for node_id in cluster.node_ids:
        assert get_committed_since_start(cluster, node_id) == 0, node_id

    submit_and_confirm(cluster, cluster.node_ids, 30, "after-full-restart", told_committed)
    head_after = wait_for_same_head(cluster, cluster.node_ids, CATCH_UP_TIMEOUT_S)
    assert head_after[0] > head_before[0]
    check_told_committed_everywhere(cluster, told_committed)
