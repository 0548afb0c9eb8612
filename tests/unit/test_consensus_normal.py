"""The PBFT normal case and catch-up, on real engines wired in memory."""

from __future__ import annotations

import dataclasses

import pytest

from chainnode.core import crypto, types
from consensus.events import MessageReceived
from consensus.messages import Vote, sign_vote
from tests.sim.harness import CHAIN_ID, Replica, SimNetwork

CLIENT = crypto.SigningKey(b"\x07" * 32)


@pytest.mark.parametrize("seed", range(20))
def test_four_validators_commit_identical_chains(seed: int) -> None:
    network = SimNetwork(4, seed)
    network.submit(35, CLIENT)
    network.tick(rounds=20)
    network.check_safety()
    heights = {replica.engine.head.height for replica in network.replicas}
    assert heights == {4}, heights  # 35 transactions, 10 per block
    assert all(not replica.app.pending for replica in network.replicas)


def test_commit_certificates_hold_a_quorum_of_distinct_signers() -> None:
    network = SimNetwork(4, 1)
    network.submit(5, CLIENT)
    network.tick(rounds=5)
    for replica in network.replicas:
        ((_, certificate),) = replica.chain
        indexes = [index for index, _ in certificate.signatures]
        assert len(set(indexes)) >= network.validators.quorum


def test_one_silent_replica_does_not_stop_commits() -> None:
    network = SimNetwork(4, 2)
    network.replicas[3].alive = False
    network.submit(20, CLIENT)
    network.tick(rounds=10)
    network.check_safety()
    assert [r.engine.head.height for r in network.replicas[:3]] == [2, 2, 2]


def test_two_silent_replicas_of_four_stop_commits() -> None:
    network = SimNetwork(4, 3)
    network.replicas[2].alive = False
    network.replicas[3].alive = False
    network.submit(20, CLIENT)
    network.tick(rounds=10)
    assert all(r.engine.head.height == 0 for r in network.replicas)
    assert all(not r.chain for r in network.replicas)


def test_a_wrong_state_root_is_refused() -> None:
    network = SimNetwork(4, 4)
    network.replicas[0].app.corrupt_roots = True  # the primary of view 0
    network.submit(5, CLIENT)
    network.tick(rounds=10)
    assert all(not r.chain for r in network.replicas)
    assert any("state root mismatch" in d for r in network.replicas[1:] for d in r.diagnostics)


def test_forged_and_conflicting_votes_are_ignored() -> None:
    network = SimNetwork(4, 5)
    replica = network.replicas[1]
    block_hash = crypto.sha256(b"some block")
    forged = Vote(types.VoteKind.PREPARE, 0, 1, block_hash, 2, b"\x01" * 64)
    network.step(1, MessageReceived("v2", forged))
    assert any("invalid vote signature" in d for d in replica.diagnostics)
    real = sign_vote(network.keys[2], CHAIN_ID, types.VoteKind.PREPARE, 0, 1, block_hash, 2)
    other = sign_vote(network.keys[2], CHAIN_ID, types.VoteKind.PREPARE, 0, 1, crypto.sha256(b"x"), 2)
    network.step(1, MessageReceived("v2", real))
    network.step(1, MessageReceived("v2", other))
    assert any("voted twice" in d for d in replica.diagnostics)
    wrong_chain = sign_vote(network.keys[3], "other-chain", types.VoteKind.PREPARE, 0, 1, block_hash, 3)
    network.step(1, MessageReceived("v3", wrong_chain))
    assert sum("invalid vote signature" in d for d in replica.diagnostics) == 2


def test_a_restarted_validator_never_signs_a_different_block() -> None:
    network = SimNetwork(4, 6)
    network.submit(5, CLIENT)
    network.tick(rounds=3)
    # Forget the commit, keep the vote log: after the restart the replica is at
    # height 0 again with its prepare/commit for height 1 restored.
    replica = network.replicas[1]
    block, _ = replica.chain[0]
    replica.chain.clear()
    network.crash_and_restart(1)
    restarted = network.replicas[1]
    assert restarted.engine.head.height == 0
    # A different block for (height 1, view 0) must not get our prepare.
    other_header = dataclasses.replace(block.header, timestamp_ms=block.header.timestamp_ms + 1)
    other = types.Block.create(other_header, block.transactions)
    from consensus.messages import sign_pre_prepare

    forged_proposal = sign_pre_prepare(network.keys[0], CHAIN_ID, 0, 0, other)
    log_before = len(restarted.log)
    network.step(1, MessageReceived("v0", forged_proposal))
    assert len(restarted.log) == log_before, "signed a second block for the same (view, height)"


def test_a_primary_never_signs_two_blocks_for_one_view_and_height_also_after_a_restart() -> None:
    """The guard in `Engine._sign_proposal`: once a PRE-PREPARE for (height, view) is signed
    and persisted, a request to sign another block there gets nothing, before a crash and after
    it (the guard reads the restored vote log).  The proposing paths check the slot before they
    get there, so this asks the guard directly: it is what stands between a head rewound by a
    rebuild or a restore and a second proposal for a slot already signed."""
    network = SimNetwork(4, 8)
    for index in (1, 2, 3):
        network.crash(index)  # nobody votes: the primary's proposal for height 1 stays open
    network.submit(5, CLIENT)
    network.tick(rounds=3)
    primary = network.replicas[0]
    signed = [
        record
        for record in primary.log
        if isinstance(record, Vote) and record.kind == types.VoteKind.PRE_PREPARE and record.height == 1
    ]
    assert len(signed) == 1 and signed[0].view == 0, signed
    block_hash = signed[0].block_hash
    proposal = primary.engine._round(0).proposal
    assert proposal is not None and proposal.block.hash == block_hash
    block = proposal.block
    other = types.Block.create(
        dataclasses.replace(block.header, timestamp_ms=block.header.timestamp_ms + 1), block.transactions
    )
    assert other.hash != block_hash
    for engine in (primary.engine, _restarted(network, 0).engine):
        assert engine._sign_proposal(0, other, []) is None, "signed a second block for (height 1, view 0)"
        again = engine._sign_proposal(0, block, [])
        assert again is not None and again.block.hash == block_hash  # the same block: the same signature
        assert again.signature == signed[0].signature
    log = network.replicas[0].log
    assert sum(isinstance(r, Vote) and r.kind == types.VoteKind.PRE_PREPARE for r in log) == 1


def _restarted(network: SimNetwork, index: int) -> Replica:
    network.crash_and_restart(index)
    return network.replicas[index]


def test_a_lagging_replica_catches_up_with_certified_blocks() -> None:
    network = SimNetwork(4, 7)
    network.replicas[3].alive = False
    network.submit(50, CLIENT)
    network.tick(rounds=20)
    assert network.replicas[0].engine.head.height == 5
    network.replicas[3].alive = True
    network.tell_heights()
    network.tick(rounds=5)
    network.check_safety()
    assert network.replicas[3].engine.head.height == 5
