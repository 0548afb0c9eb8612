"""An observer node among four validators: it follows, serves and forwards, and never votes.

Black box over the public API of real processes on 127.0.0.1: transactions submitted only to
the observer are forwarded to the validators and commit; the observer serves them with
proofs that verify against `genesis.json` alone, and its chain is the validators' chain,
every block of it carrying a certificate of validators only.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chainnode.app.proof import verify_proof
from tests.cluster.conftest import (
    CertifiedChain,
    Cluster,
    build_puts,
    find_uncommitted,
    get_valid_until,
    running_cluster,
    submit_batches,
    wait_for_same_head,
    wait_until,
)

pytestmark = pytest.mark.cluster

OBSERVER = "observer-01"
TRANSACTIONS = 60
BATCH_TXS = 20
SINGLE_SUBMITS = 4
COMMIT_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def observed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("observed"), request.node.nodeid, observers=1) as started:
        yield started


def test_transactions_submitted_to_the_observer_commit_and_are_proved_there(observed: Cluster) -> None:
    validators = [node_id for node_id in observed.node_ids if node_id != OBSERVER]
    assert validators == ["validator-01", "validator-02", "validator-03", "validator-04"]
    status = observed.client(OBSERVER).get_status()
    assert status["validator_index"] is None
    wait_until(
        lambda: set(validators) <= set(observed.client(OBSERVER).get_status()["peers"]),
        "the observer is connected to every validator",
        30.0,
    )
    transactions = build_puts(
        observed,
        observed.load_submitters(8),
        TRANSACTIONS,
        label="observed",
        valid_until=get_valid_until(observed, OBSERVER),
    )
    # Only the observer is told: the validators learn of them through its gossip.
    submit_batches(observed, transactions[:-SINGLE_SUBMITS], [OBSERVER], BATCH_TXS)
    for tx in transactions[-SINGLE_SUBMITS:]:
        assert observed.client(OBSERVER).submit(tx) == tx.hash.hex()
    tx_hashes = [tx.hash.hex() for tx in transactions]
    everyone = [*validators, OBSERVER]
    problems: list[str] = []

    def is_committed_everywhere() -> bool:
        nonlocal problems
        problems = find_uncommitted(observed, tx_hashes, everyone, require_ok=True)
        return not problems

    try:
        wait_until(is_committed_everywhere, "every node committed what the observer took", COMMIT_TIMEOUT_S)
    except AssertionError as error:
        raise AssertionError(f"{error}; first problems: {problems[:3]}") from None
    height, _, _ = wait_for_same_head(observed, everyone, 30.0)
    chain = CertifiedChain(observed)
    chain.extend(everyone, height)  # one chain, each certificate of the genesis validators
    assert set(tx_hashes) <= set(chain.tx_heights)
    client = observed.client(OBSERVER)
    for tx_hash in [*tx_hashes[:3], tx_hashes[-1]]:
        result = verify_proof(client.get_proof(tx_hash), observed.genesis)
        assert result.transaction.hash.hex() == tx_hash
        assert result.height == chain.tx_heights[tx_hash]
        assert result.block_hash.hex() == chain.block_hashes[result.height - 1]
    # It never voted: no validator saw a vote from it (none could verify one), and it kept none.
    observer_status = client.get_status()
    assert observer_status["validator_index"] is None and observer_status["evidence"] == 0
    assert observer_status["mempool_txs"] == 0
