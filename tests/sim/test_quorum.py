"""The quorum rule at validator counts that are not 3f + 1, with and without its teeth.

`quorum.compute_quorum` makes any two quorums share at least f + 1 validators.  These tests
replay the attacks that the textbook 2f + 1 lets through at n = 5 and n = 6, first with the
old rule plugged in (the simulator must find the fork) and then with the real rule (safe, and
live once the fault is gone).
"""

from __future__ import annotations

import pytest

from chainnode.core import crypto, quorum, types
from consensus.events import EngineConfig
from tests.sim.harness import CHAIN_ID, SimNetwork, SplitBrainPrimary, SplitBrainVoter

CLIENT = crypto.SigningKey(b"\x0d" * 32)
TICKS_MAX = 3_000  # 30 s of logical time


def textbook_quorum(self: quorum.ValidatorSet) -> int:
    return 2 * self.faults_max + 1


def fast_config() -> EngineConfig:
    return EngineConfig(CHAIN_ID, proposal_delay_ms=0, view_timeout_ms=300, rebroadcast_ms=250)


def run(network: SimNetwork, ticks: int) -> str | None:
    """Tick until `ticks` pass; the first safety violation, or None."""
    for _ in range(ticks):
        network.tick()
        try:
            network.check_safety()
        except AssertionError as violation:
            return str(violation)
    return None


def run_until_all_committed(network: SimNetwork, txs: list[types.Transaction]) -> None:
    wanted = {tx.hash for tx in txs}
    for _ in range(TICKS_MAX):
        network.tick()
        network.check_safety()
        committed = [{tx.hash for block, _ in r.chain for tx in block.transactions} for r in network.honest()]
        if all(wanted <= c for c in committed):
            return
    pytest.fail(f"not committed: heights {[r.engine.head.height for r in network.replicas]}")


def split_brain_network(size: int, byzantine_voters: int = 0) -> SimNetwork:
    network = SimNetwork(size, 21, config=fast_config())
    network.replicas[0].behavior = SplitBrainPrimary()  # the primary of view 0
    for index in range(1, 1 + byzantine_voters):
        network.replicas[index].behavior = SplitBrainVoter()
    return network


@pytest.mark.parametrize("size", [5, 6])
def test_textbook_quorum_forks_under_a_split_brain_primary(
    monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    monkeypatch.setattr(quorum.ValidatorSet, "quorum", property(textbook_quorum))
    network = split_brain_network(size)
    network.submit(5, CLIENT)
    violation = run(network, 200)
    assert violation == "fork at height 1", violation


@pytest.mark.parametrize("size", [5, 6])
def test_the_quorum_rule_is_safe_under_a_split_brain_primary(size: int) -> None:
    network = split_brain_network(size)
    run_until_all_committed(network, network.submit(25, CLIENT))
    # At n = 5 neither side (3 and 2 honest, plus the liar) reaches 4, so a view change moved
    # the network past the liar; at n = 6 the side of three plus the liar's votes is a quorum
    # for its block, and the other side (three, short of four) follows it: one block either way.
    first_views = {replica.chain[0][0].header.view for replica in network.honest()}
    assert len(first_views) == 1
    if size == 5:
        assert first_views.pop() >= 1


def test_textbook_quorum_forks_under_a_split_brain_primary_and_voter_at_seven(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # n = 7 = 3f + 1: both rules give 5; with a quorum of 4 (2f) two colluders fork it.
    monkeypatch.setattr(quorum.ValidatorSet, "quorum", property(lambda self: 2 * self.faults_max))
    network = split_brain_network(7, byzantine_voters=1)
    network.submit(5, CLIENT)
    assert run(network, 200) == "fork at height 1"


@pytest.mark.parametrize("size", [7, 8, 9, 10, 13])
def test_the_quorum_rule_is_safe_under_f_split_brain_colluders(size: int) -> None:
    faults_max = quorum.compute_faults_max(size)
    network = split_brain_network(size, byzantine_voters=faults_max - 1)
    run_until_all_committed(network, network.submit(25, CLIENT))


def partition_across_a_view_change(network: SimNetwork) -> None:
    # Sides {0, 1, 2} and {3, 4, 5}: the first holds the primary of view 0, the second must
    # change views (1 and 2 have primaries on the other side) until view 3, whose primary is 3.
    network.partition({0, 1, 2})


def test_textbook_quorum_forks_a_six_validator_network_split_three_and_three(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(quorum.ValidatorSet, "quorum", property(textbook_quorum))
    network = SimNetwork(6, 22, config=fast_config())
    partition_across_a_view_change(network)
    network.submit(5, CLIENT)
    assert run(network, TICKS_MAX) == "fork at height 1"


def test_a_six_validator_network_split_three_and_three_commits_nothing_then_heals() -> None:
    network = SimNetwork(6, 22, config=fast_config())
    partition_across_a_view_change(network)
    txs = network.submit(25, CLIENT)
    assert run(network, TICKS_MAX) is None
    assert all(not replica.chain for replica in network.replicas), "a side of three committed"
    assert all(replica.engine.view_changes_started >= 1 for replica in network.replicas[3:])  # it tried
    network.heal()
    run_until_all_committed(network, txs)


@pytest.mark.parametrize(
    ("size", "faults_max", "quorum_size"),
    [(4, 1, 3), (5, 1, 4), (6, 1, 4), (7, 2, 5), (8, 2, 6), (9, 2, 6), (10, 3, 7), (13, 4, 9), (16, 5, 11)],
)
def test_quorum_table(size: int, faults_max: int, quorum_size: int) -> None:
    assert (quorum.compute_faults_max(size), quorum.compute_quorum(size)) == (faults_max, quorum_size)


@pytest.mark.parametrize("size", range(4, 101))
def test_any_two_quorums_share_f_plus_one_and_the_honest_alone_are_a_quorum(size: int) -> None:
    faults_max, quorum_size = quorum.compute_faults_max(size), quorum.compute_quorum(size)
    assert 2 * quorum_size - size >= faults_max + 1
    assert quorum_size <= size - faults_max
    # And it is the smallest such quorum: one vote fewer breaks the intersection.
    assert 2 * (quorum_size - 1) - size < faults_max + 1


def certificate(keys: list[crypto.SigningKey], signers: range) -> quorum.CommitCertificate:
    block_hash = crypto.sha256(b"block")
    payload = types.compute_vote_payload(types.VoteKind.COMMIT, CHAIN_ID, 0, 1, block_hash)
    return quorum.CommitCertificate(1, 0, block_hash, tuple((i, keys[i].sign(payload)) for i in signers))


def test_a_certificate_of_three_from_an_earlier_release_is_refused_at_five_validators() -> None:
    # What catch-up, proofs and the audit do with a ledger a 5-validator network wrote under the
    # textbook rule: three signatures are no longer a quorum, and the reason names the rule.
    keys = [crypto.SigningKey(bytes([i + 1]) * 32) for i in range(5)]
    five = quorum.ValidatorSet(tuple(quorum.Validator(f"v{i}", key.public_key) for i, key in enumerate(keys)))
    assert certificate(keys, range(3)).find_problem(CHAIN_ID, five) == "3 signatures, quorum is 4"
    assert certificate(keys, range(4)).find_problem(CHAIN_ID, five) is None
