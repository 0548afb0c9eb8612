"""Fault tests over real validator processes: SIGKILL, restarts and a wiped data directory.

Theory of operation.  Four validators run as OS processes (real TLS, real LevelDB); each
test starts its own network (a few seconds), so that a fault one test does not survive
cannot hide what the next one shows.  During every fault a `SteadyLoad` thread acts as a
client: it submits small batches of `records.put` transactions round-robin through the
nodes it is pointed at and polls `GET /v1/transactions/<hash>`; a transaction that a node
reports committed with an OK receipt is *told committed* and goes into the module's
`told` list.  Small batches at a steady pace make many small blocks.

After each fault (`check_after_fault`) the load is stopped, all four validators must reach
the same head, every height that was not yet checked is compared on every validator (same
block hash, well formed, chained, a certificate that verifies against the genesis
validators: `CertifiedChain`), every told-committed transaction must be in that chain,
and the transaction index of every validator must report it committed with an OK receipt
(all of them on the validators whose disk was in question, the new ones on the others).

A validator that rejoined is shown to vote, not merely to follow by catch-up: a second
validator (not the primary) is killed, and with n = 4 the quorum of 3 can then only be
met with the rejoined validator's COMMIT, so blocks keep coming and their certificates
carry its signature.

Every wait is a deadline loop over the public API; measured times are printed (run with
`-s` to see them).
"""

from __future__ import annotations

import concurrent.futures
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from chainnode.core import quorum
from tests.cluster.conftest import (
    CertifiedChain,
    Cluster,
    find_uncommitted,
    get_heads,
    get_primary_id,
    get_view,
    running_cluster,
    wait_for_same_head,
    wait_until,
)
from tests.cluster.load import (
    COMMITS_TIMEOUT_S,
    SteadyLoad,
    get_max_height,
    get_min_height,
)

pytestmark = pytest.mark.cluster

RECOVERY_BOUND_S = 15.0  # SIGKILL of the primary -> the first block committed in a later view
CATCH_UP_TIMEOUT_S = 60.0
SAME_HEAD_TIMEOUT_S = 60.0
READY_TIMEOUT_S = 30.0
BLOCKS_WHILE_DOWN = 200
TOLD_PER_PHASE = 30
BLOCKS_WITHOUT_SECOND = 10
HISTORY_BLOCKS = 300  # what the wiped validator has to fetch, at least
KILL_ALL_HISTORY_BLOCKS = 100


# ---------------------------------------------------------------- checks


@dataclass
class Checked:
    """What a test has verified so far: the certified chain and how many told were checked."""

    chain: CertifiedChain
    told_checked: int = 0


@pytest.fixture
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    """A fresh network per test, so that one fault that is not survived does not hide the next."""
    module = request.node.getparent(pytest.Module)
    assert module is not None
    with running_cluster(tmp_path, module.nodeid) as started:
        yield started


@pytest.fixture
def told() -> list[str]:
    return []


@pytest.fixture
def checked(cluster: Cluster) -> Checked:
    return Checked(CertifiedChain(cluster))


def find_uncommitted_on(cluster: Cluster, tx_hashes_by_node: dict[str, Sequence[str]]) -> list[str]:
    """`find_uncommitted` (OK receipts required) for each node's list, one thread per node."""
    with concurrent.futures.ThreadPoolExecutor(max(1, len(tx_hashes_by_node))) as pool:
        futures = [
            pool.submit(find_uncommitted, cluster, tx_hashes, [node_id], require_ok=True)
            for node_id, tx_hashes in tx_hashes_by_node.items()
        ]
        return [problem for future in futures for problem in future.result()]


def check_after_fault(
    cluster: Cluster, told: list[str], checked: Checked, disk_in_question: Sequence[str]
) -> None:
    """All four agree on one certified chain that holds every told-committed transaction."""
    height, _, _ = wait_for_same_head(cluster, cluster.node_ids, SAME_HEAD_TIMEOUT_S)
    started_s = time.monotonic()
    checked.chain.extend(cluster.node_ids, height)
    missing = [tx_hash for tx_hash in told if tx_hash not in checked.chain.tx_heights]
    assert missing == [], f"{len(missing)} told-committed transactions are not in the chain: {missing[:3]}"
    new = told[checked.told_checked :]
    problems = find_uncommitted_on(
        cluster,
        {node_id: told if node_id in disk_in_question else new for node_id in cluster.node_ids},
    )
    assert problems == [], f"{len(problems)} problems, e.g. {problems[:3]}"
    checked.told_checked = len(told)
    print(
        f"  checked: height {height}, {len(told)} told committed, chain verified to {checked.chain.height} "
        f"({time.monotonic() - started_s:.1f} s)"
    )


def get_height(cluster: Cluster, node_id: str) -> int:
    return int(cluster.client(node_id).get_status()["height"])


def get_signers(cluster: Cluster, node_id: str, height: int) -> set[int]:
    answer = cluster.client(node_id).get_block(height)
    certificate = quorum.decode_commit_certificate(bytes.fromhex(answer["certificate_encoded"]))
    return {index for index, _ in certificate.signatures}


def restart(cluster: Cluster, node_id: str) -> None:
    cluster.network.start(node_id)
    cluster.network.wait_ready([node_id], timeout_s=READY_TIMEOUT_S)


def restart_and_catch_up(cluster: Cluster, node_id: str, others: Sequence[str]) -> tuple[float, int]:
    """Start `node_id` and wait until it reaches the height the others had when it was started;
    returns the seconds from its start and that height."""
    target = get_max_height(cluster, others)
    started_s = time.monotonic()
    restart(cluster, node_id)
    wait_until(
        lambda: get_height(cluster, node_id) >= target,
        f"{node_id} catches up to height {target}",
        CATCH_UP_TIMEOUT_S,
    )
    return time.monotonic() - started_s, target


def wait_for_peers(cluster: Cluster, node_id: str) -> None:
    """Wait until `node_id` is connected to every other validator (so what it admits is gossiped)."""
    others = len(cluster.node_ids) - 1
    wait_until(
        lambda: len(cluster.client(node_id).get_status()["peers"]) == others,
        f"{node_id} is connected to its {others} peers",
        READY_TIMEOUT_S,
    )


def prove_votes(cluster: Cluster, load: SteadyLoad, voter: str) -> str:
    """Kill a validator that is neither `voter` nor the primary; commits must go on, and their
    certificates (quorum 3 of the remaining 3) carry `voter`'s COMMIT.  Returns the killed one."""
    view = get_view(cluster, cluster.node_ids)
    primary = get_primary_id(cluster, view)
    second = next(node_id for node_id in cluster.node_ids if node_id not in (voter, primary))
    remaining = [node_id for node_id in cluster.node_ids if node_id != second]
    load.set_targets(remaining)
    cluster.network.kill(second)
    height_at_kill = get_max_height(cluster, remaining)
    load.wait_for_told(TOLD_PER_PHASE, f"with {second} down (they need {voter}'s votes)")
    wait_until(
        lambda: get_min_height(cluster, remaining) >= height_at_kill + BLOCKS_WITHOUT_SECOND,
        f"{BLOCKS_WITHOUT_SECOND} blocks commit with {second} down",
        COMMITS_TIMEOUT_S,
    )
    voter_index = cluster.node_ids.index(voter)
    second_index = cluster.node_ids.index(second)
    # A block decided just before the kill may still carry the killed one's COMMIT.
    heights = range(height_at_kill + 2, height_at_kill + BLOCKS_WITHOUT_SECOND + 1)
    for height in heights:
        signers = get_signers(cluster, primary, height)
        assert second_index not in signers, f"block {height}: {second} was killed before"
        assert voter_index in signers, f"block {height} is certified without {voter}: {signers}"
    return second


def restart_second_and_stop(cluster: Cluster, load: SteadyLoad, second: str) -> None:
    restart(cluster, second)
    wait_for_peers(cluster, second)
    load.set_targets(cluster.node_ids)
    load.wait_for_told(TOLD_PER_PHASE, f"after {second} restarted")
    load.stop()


# ---------------------------------------------------------------- the faults


def kill_primary_and_restart(cluster: Cluster, load: SteadyLoad) -> tuple[int, str]:
    """SIGKILL the primary of the current view; a later view must commit within the bound; then
    restart the killed validator and let it catch up.  Returns the view and the killed primary."""
    view = get_view(cluster, cluster.node_ids)
    primary = get_primary_id(cluster, view)
    survivors = [node_id for node_id in cluster.node_ids if node_id != primary]
    load.set_targets(survivors)
    started = {
        node_id: int(status["view_changes_started"])
        for node_id, status in cluster.network.get_statuses(survivors).items()
    }
    killed_s = time.monotonic()
    cluster.network.kill(primary)
    height_at_kill = get_max_height(cluster, survivors)
    first_height_s: list[float] = []

    def is_committing_in_later_view() -> bool:
        if not first_height_s and get_max_height(cluster, survivors) > height_at_kill:
            first_height_s.append(time.monotonic() - killed_s)
        latest = cluster.client(survivors[0]).get_block("latest")
        return int(latest.get("certificate", {}).get("view", 0)) > view

    wait_until(is_committing_in_later_view, f"a block commits in a view after {view}", RECOVERY_BOUND_S)
    recovery_s = time.monotonic() - killed_s
    next_height_s = first_height_s[0] if first_height_s else recovery_s
    statuses = cluster.network.get_statuses(survivors)
    assert all(int(status["view"]) > view for status in statuses.values()), statuses
    assert all(
        int(status["view_changes_started"]) > started[node_id] for node_id, status in statuses.items()
    ), statuses
    told_after_s = load.wait_for_told(TOLD_PER_PHASE, "after the view change")
    print(
        f"\n  primary {primary} killed in view {view} at height {height_at_kill}: next height after "
        f"{next_height_s:.2f} s, first commit in view {get_view(cluster, survivors)} after "
        f"{recovery_s:.2f} s, {TOLD_PER_PHASE} more told committed {told_after_s:.2f} s later"
    )
    catch_up_s, target_height = restart_and_catch_up(cluster, primary, survivors)
    wait_for_peers(cluster, primary)
    load.set_targets(cluster.node_ids)
    load.wait_for_told(TOLD_PER_PHASE, f"with {primary} back")
    print(f"  {primary} restarted: at height {target_height} {catch_up_s:.2f} s after its start")
    return view, primary


def test_sigkill_primary_view_change_resumes_commits(
    cluster: Cluster, told: list[str], checked: Checked
) -> None:
    with SteadyLoad(cluster, told, label="primary-kill", targets=cluster.node_ids) as load:
        load.wait_for_told(TOLD_PER_PHASE, "before the kill")
        first_view, first_primary = kill_primary_and_restart(cluster, load)
        # Again from the view that change led to, with the validator that rejoined among the
        # three that must agree on the next view.
        second_view, second_primary = kill_primary_and_restart(cluster, load)
        assert second_view > first_view
        load.stop()
    check_after_fault(cluster, told, checked, [first_primary, second_primary])
    for node_id, status in cluster.network.get_statuses().items():
        assert int(status["view"]) > second_view, f"{node_id} is still in view {status['view']}"


def test_sigkill_replica_catches_up_after_hundreds_of_blocks_and_votes_again(
    cluster: Cluster, told: list[str], checked: Checked
) -> None:
    view = get_view(cluster, cluster.node_ids)
    primary = get_primary_id(cluster, view)
    target = cluster.node_ids[(cluster.node_ids.index(primary) + 2) % len(cluster.node_ids)]
    others = [node_id for node_id in cluster.node_ids if node_id != target]
    with SteadyLoad(cluster, told, label="replica-kill", targets=others) as load:
        load.wait_for_told(TOLD_PER_PHASE, "before the kill")
        cluster.network.kill(target)
        killed_s = time.monotonic()
        height_at_kill = get_max_height(cluster, others)
        wait_until(
            lambda: get_min_height(cluster, others) >= height_at_kill + BLOCKS_WHILE_DOWN,
            f"{BLOCKS_WHILE_DOWN} blocks commit without {target}",
            CATCH_UP_TIMEOUT_S,
        )
        down_s = time.monotonic() - killed_s

        catch_up_s, target_height = restart_and_catch_up(cluster, target, others)
        wait_for_peers(cluster, target)
        print(
            f"\n  {target} killed at height {height_at_kill}; {BLOCKS_WHILE_DOWN} blocks took {down_s:.1f} s;"
            f" restarted under load, at height {target_height} {catch_up_s:.2f} s after its start"
        )
        second = prove_votes(cluster, load, target)
        restart_second_and_stop(cluster, load, second)
    check_after_fault(cluster, told, checked, [target, second])


def test_sigkill_all_four_resume_from_disk(cluster: Cluster, told: list[str], checked: Checked) -> None:
    with SteadyLoad(cluster, told, label="kill-all", targets=cluster.node_ids) as load:
        wait_until(
            lambda: get_min_height(cluster, cluster.node_ids) >= KILL_ALL_HISTORY_BLOCKS,
            f"the chain grows to {KILL_ALL_HISTORY_BLOCKS} blocks",
            CATCH_UP_TIMEOUT_S,
        )
        load.set_targets([])
        heads_before = get_heads(cluster, cluster.node_ids)
        for node_id in cluster.node_ids:
            cluster.network.kill(node_id)
        restarted_s = time.monotonic()
        cluster.network.start_all()
        cluster.network.wait_ready(timeout_s=READY_TIMEOUT_S)
        heads_after = get_heads(cluster, cluster.node_ids)
        for node_id, (height, _, _) in heads_before.items():
            assert heads_after[node_id][0] >= height, (
                f"{node_id}: {heads_before[node_id]} -> {heads_after[node_id]}"
            )
        for node_id in cluster.node_ids:
            wait_for_peers(cluster, node_id)
        load.set_targets(cluster.node_ids)
        told_s = load.wait_for_told(TOLD_PER_PHASE, "after all four restarted")
        print(
            f"\n  all four killed at heights {sorted(head[0] for head in heads_before.values())}; "
            f"{TOLD_PER_PHASE} new transactions told committed {time.monotonic() - restarted_s:.2f} s "
            f"after the restart ({told_s:.2f} s after every node was connected)"
        )
        load.stop()
    check_after_fault(cluster, told, checked, cluster.node_ids)
    assert checked.chain.height > max(head[0] for head in heads_before.values())
    for node_id, (height, head_hash, _) in heads_before.items():
        # What each node had committed before the crash is still there, unchanged.
        assert checked.chain.block_hashes[height - 1] == head_hash, node_id


def test_validator_on_empty_data_dir_catches_up_from_genesis_and_votes(
    cluster: Cluster, told: list[str], checked: Checked
) -> None:
    view = get_view(cluster, cluster.node_ids)
    primary = get_primary_id(cluster, view)
    target = cluster.node_ids[(cluster.node_ids.index(primary) + 2) % len(cluster.node_ids)]
    others = [node_id for node_id in cluster.node_ids if node_id != target]
    data_dir = cluster.directory / "nodes" / target / "data"
    with SteadyLoad(cluster, told, label="empty-dir", targets=others) as load:
        wait_until(
            lambda: get_min_height(cluster, cluster.node_ids) >= HISTORY_BLOCKS,
            f"the chain grows to {HISTORY_BLOCKS} blocks",
            CATCH_UP_TIMEOUT_S,
        )
        assert cluster.network.stop(target) == 0
        assert (data_dir / "ledger").is_dir()
        shutil.rmtree(data_dir)
        catch_up_s, target_height = restart_and_catch_up(cluster, target, others)
        wait_for_peers(cluster, target)
        print(
            f"\n  {target} started on an empty data dir: at height {target_height} {catch_up_s:.2f} s after"
            f" its start ({target_height / max(catch_up_s, 1e-3):.0f} blocks/s, process start included)"
        )
        second = prove_votes(cluster, load, target)
        restart_second_and_stop(cluster, load, second)
    check_after_fault(cluster, told, checked, [target, second])
    # Every block it holds, it committed since its start: it rebuilt the chain from genesis.
    status = cluster.client(target).get_status()
    assert status["committed_txs_since_start"] == len(checked.chain.tx_heights), status
