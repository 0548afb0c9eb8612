"""What a Byzantine primary or peer could hand a replica in place of a proof, refused at every size.

Honest validators only ever send a NEW-VIEW once they hold a quorum of VIEW-CHANGEs, and only
ever serve blocks with their real commit certificates, so no run of the simulator reaches these
refusals: each is asked here directly, with a proof one signature short of a quorum (and, for the
certificate, one with a forged signature), at validator counts that are and are not 3f + 1.
"""

from __future__ import annotations

import dataclasses

import pytest

from chainnode.core import crypto
from consensus.events import BlocksReceived
from consensus.messages import NewView, ViewChange, sign_view_change
from consensus.view_change import find_new_view_problem
from tests.sim.harness import CHAIN_ID, GENESIS_HASH, SimNetwork

CLIENT = crypto.SigningKey(b"\x09" * 32)
SIZES = (4, 5, 6, 7, 10)


@pytest.mark.parametrize("size", SIZES)
def test_a_new_view_one_view_change_short_of_a_quorum_is_refused(size: int) -> None:
    network = SimNetwork(size, 60 + size)
    validators = network.validators
    new_view, height = 1, 1
    view_changes = tuple(
        sign_view_change(network.keys[index], CHAIN_ID, new_view, height, index, None)
        for index in range(validators.quorum)
    )

    def check(proofs: tuple[ViewChange, ...]) -> str | None:
        message = NewView(new_view, height, proofs, None)
        return find_new_view_problem(
            message, chain_id=CHAIN_ID, validators=validators, head_hash=GENESIS_HASH
        )

    assert check(view_changes) is None  # a quorum proves the view
    problem = check(view_changes[:-1])
    assert problem == f"new view proves {validators.quorum - 1} view changes, quorum is {validators.quorum}"
    # The same count reached by repeating a sender is no quorum either.
    assert check((*view_changes[:-1], view_changes[0])) == "new view counts validator 0 twice"


@pytest.mark.parametrize("size", SIZES)
def test_catch_up_refuses_a_block_whose_certificate_is_short_of_a_quorum_or_forged(size: int) -> None:
    network = SimNetwork(size, 80 + size)
    lagging = size - 1
    network.crash(lagging)
    network.submit(10, CLIENT)
    network.tick(rounds=20)
    source = network.replicas[0]
    assert source.chain, "the others commit without the lagging validator"
    block, certificate = source.chain[0]
    quorum_size = network.validators.quorum
    assert len(certificate.signatures) >= quorum_size
    network.restart(lagging)  # an empty chain: it needs height 1 from a peer
    replica = network.replicas[lagging]
    assert replica.engine.head.height == 0
    short = dataclasses.replace(certificate, signatures=certificate.signatures[: quorum_size - 1])
    signers = certificate.signatures[:quorum_size]
    forged = dataclasses.replace(certificate, signatures=(*signers[:-1], (signers[-1][0], bytes(64))))
    for bad in (short, forged):
        refused = len(replica.diagnostics)
        network.step(lagging, BlocksReceived("v0", ((block, bad),)))
        assert replica.engine.head.height == 0 and not replica.chain, "committed a block on a bad certificate"
        assert any(
            message.startswith("refused block 1 from v0: ") for message in replica.diagnostics[refused:]
        ), replica.diagnostics[refused:]
    network.step(lagging, BlocksReceived("v0", ((block, certificate),)))
    assert replica.engine.head.height == 1 and replica.chain[0][0].hash == block.hash
