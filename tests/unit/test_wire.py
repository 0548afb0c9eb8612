"""Every consensus message the engine can emit crosses the node's wire decoder intact."""

from __future__ import annotations

from chainnode.core import crypto, types
from chainnode.node import wire
from consensus.messages import NewView, PreparedCertificate, sign_pre_prepare, sign_view_change, sign_vote

CHAIN = "pilot-net"
KEYS = [crypto.SigningKey(bytes([i + 40]) * 32) for i in range(4)]


def make_block() -> types.Block:
    header = types.BlockHeader(
        CHAIN,
        3,
        1,
        1,
        1000,
        types.ZERO_HASH,
        types.compute_tx_root([]),
        types.ZERO_HASH,
        types.ZERO_HASH,
        types.ZERO_HASH,
        0,
    )
    return types.Block.create(header, [])


def test_all_consensus_messages_round_trip_through_decode_frame() -> None:
    block = make_block()
    pre_prepare = sign_pre_prepare(KEYS[1], CHAIN, 1, 1, block)
    prepare = sign_vote(KEYS[2], CHAIN, types.VoteKind.PREPARE, 1, 3, block.hash, 2)
    checkpoint = sign_vote(KEYS[2], CHAIN, types.VoteKind.CHECKPOINT, 0, 100, block.hash, 2)
    prepared = PreparedCertificate(1, block, ((0, b"\x01" * 64), (2, b"\x02" * 64), (3, b"\x03" * 64)))
    view_changes = tuple(sign_view_change(KEYS[i], CHAIN, 2, 3, i, prepared if i else None) for i in range(3))
    new_view = NewView(2, 3, view_changes, sign_pre_prepare(KEYS[2], CHAIN, 2, 2, block))
    empty_new_view = NewView(2, 3, view_changes, None)
    for message in (pre_prepare, prepare, checkpoint, *view_changes, new_view, empty_new_view):
        decoded = wire.decode_frame(message.encode(), frame_bytes_max=1 << 20)
        assert decoded == message, type(message).__name__
