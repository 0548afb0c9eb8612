"""Four real validator processes agree on one chain under a load from many pilot entities.

Black box: everything is submitted and checked through the public HTTP API of the
nodes; the only trusted inputs are `genesis.json` (for the validator set) and the
entities' own key files.
"""

from __future__ import annotations

import pytest

from chainnode.core import quorum, types
from chainnode.tools.audit import audit_chain
from tests.cluster.conftest import (
    Cluster,
    build_puts,
    find_uncommitted,
    get_valid_until,
    submit_batches,
    wait_for_same_head,
    wait_until,
)
from tests.cluster.load import SteadyLoad
from tests.factories import build_put

pytestmark = pytest.mark.cluster

ENTITIES = 24
TRANSACTIONS = 320
BATCH_TXS = 20
COMMIT_TIMEOUT_S = 60.0


def test_many_entities_through_every_node_give_identical_certified_chains(cluster: Cluster) -> None:
    identities = cluster.load_submitters(ENTITIES)
    assert len({identity.entity_id for identity in identities}) == ENTITIES
    baseline = {
        node_id: int(status["committed_txs_since_start"])
        for node_id, status in cluster.network.get_statuses().items()
    }
    assert sorted(baseline) == cluster.node_ids
    transactions = build_puts(
        cluster,
        identities,
        TRANSACTIONS,
        label="load",
        valid_until=get_valid_until(cluster, "validator-01"),
    )
    # Batches go round-robin to all four nodes, and a few single submits on top.
    submit_batches(cluster, transactions[: TRANSACTIONS - 4], cluster.node_ids, BATCH_TXS)
    for node_id, tx in zip(cluster.node_ids, transactions[TRANSACTIONS - 4 :], strict=True):
        assert cluster.client(node_id).submit(tx) == tx.hash.hex()

    def is_all_committed() -> bool:
        statuses = cluster.network.get_statuses()
        return len(statuses) == len(baseline) and all(
            int(statuses[node_id]["committed_txs_since_start"]) >= baseline[node_id] + TRANSACTIONS
            for node_id in baseline
        )

    wait_until(is_all_committed, f"every node committed {TRANSACTIONS} transactions", COMMIT_TIMEOUT_S)
    height, _, _ = wait_for_same_head(cluster, cluster.node_ids, COMMIT_TIMEOUT_S)
    assert height >= 1

    committed_hashes = _check_identical_certified_chains(cluster, height)
    expected_hashes = {tx.hash.hex() for tx in transactions}
    assert expected_hashes <= committed_hashes
    problems = find_uncommitted(cluster, sorted(expected_hashes), cluster.node_ids, require_ok=True)
    assert problems == [], f"{len(problems)} problems, e.g. {problems[:3]}"


def _check_identical_certified_chains(cluster: Cluster, height: int) -> set[str]:
    """Every node serves the same block at each height, chained and with a valid certificate."""
    validators = cluster.genesis.validators
    clients = {node_id: cluster.client(node_id) for node_id in cluster.node_ids}
    parent_hash = clients["validator-01"].get_block(0)["hash"]
    tx_hashes: set[str] = set()
    for block_height in range(1, height + 1):
        answers = {node_id: client.get_block(block_height) for node_id, client in clients.items()}
        hashes = {node_id: answer["hash"] for node_id, answer in answers.items()}
        assert len(set(hashes.values())) == 1, f"height {block_height}: {hashes}"
        for node_id, answer in answers.items():
            block = types.decode_block(bytes.fromhex(answer["block_encoded"]))
            certificate = quorum.decode_commit_certificate(bytes.fromhex(answer["certificate_encoded"]))
            where = f"block {block_height} on {node_id}"
            assert block.hash.hex() == answer["hash"], where
            assert block.height == block_height, where
            assert block.header.chain_id == cluster.chain_id, where
            assert block.header.parent_hash.hex() == parent_hash, where
            assert certificate.height == block_height, where
            assert certificate.block_hash == block.hash, where
            assert certificate.find_problem(cluster.chain_id, validators) is None, where
        parent_hash = hashes["validator-01"]
        tx_hashes.update(tx["hash"] for tx in answers["validator-01"]["transactions"])
    return tx_hashes


def test_record_is_readable_everywhere_and_a_second_put_makes_version_two(cluster: Cluster) -> None:
    (identity,) = cluster.load_submitters(1)
    valid_until = get_valid_until(cluster, "validator-01")
    key = "contract-terms"
    first, second = (
        build_put(identity, key, value, chain_id=cluster.chain_id, valid_until=valid_until, nonce=nonce)
        for nonce, value in ((1, b"first version"), (2, b"second version"))
    )
    first_hash = cluster.client("validator-02").submit(first)
    committed = cluster.client("validator-02").wait_for_commit(first_hash, timeout_s=COMMIT_TIMEOUT_S)
    assert committed["receipt"]["code"] == types.ErrorCode.OK
    wait_for_same_head(cluster, cluster.node_ids, COMMIT_TIMEOUT_S)
    for node_id in cluster.node_ids:
        record = cluster.client(node_id).get_record(identity.entity_id, key)
        assert record is not None, node_id
        assert (record["version"], record["value"], record["tx_hash"]) == (1, "first version", first_hash)

    second_hash = cluster.client("validator-03").submit(second)
    committed = cluster.client("validator-03").wait_for_commit(second_hash, timeout_s=COMMIT_TIMEOUT_S)
    assert committed["receipt"]["code"] == types.ErrorCode.OK
    wait_for_same_head(cluster, cluster.node_ids, COMMIT_TIMEOUT_S)
    for node_id in cluster.node_ids:
        client = cluster.client(node_id)
        latest = client.get_record(identity.entity_id, key)
        assert latest is not None, node_id
        assert (latest["version"], latest["value"], latest["tx_hash"]) == (2, "second version", second_hash)
        older = client.get_record(identity.entity_id, key, version=1)
        assert older is not None, node_id
        assert (older["version"], older["value"]) == (1, "first version")
        assert client.get_record(identity.entity_id, key, version=3) is None


def test_an_auditor_copies_a_running_validators_data_directory_consistently(cluster: Cluster) -> None:
    """A node keeps blocks and receipts in a block store beside its main LevelDB and moves its
    head in the main one last; a copy taken while it commits (main database first) must hold
    every block up to the copied head and pass a full audit, stored state included."""
    told: list[str] = []
    data_dir = cluster.directory / "nodes" / "validator-03" / "data"
    audited: list[int] = []
    with SteadyLoad(cluster, told, label="snapshot", targets=cluster.node_ids) as load:
        load.wait_for_told(100, "transactions before the first copy")
        for _ in range(3):
            report, _ = audit_chain(cluster.genesis, data_dir=data_dir, workers=0)
            assert report.ok, report.failure
            audited.append(report.blocks)
            load.wait_for_told(load.get_told_count() + 50, "transactions between copies")
    assert audited == sorted(audited) and audited[-1] > audited[0], audited
