"""Consensus messages and their canonical encodings.

A PRE-PREPARE carries the whole proposed block and the primary's signature;
PREPARE and COMMIT votes carry only the block hash.  Every signature covers
`types.compute_vote_payload(kind, chain id, view, height, block hash)`, which
binds the chain id without repeating it on the wire: a message replayed from
another chain, kind or height fails verification.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chainnode import codec, crypto, types
from chainnode.codec import expect_bytes, expect_int
from chainnode.errors import DecodeError

TAG_PRE_PREPARE = 30
TAG_VOTE = 31
VERSION = 1


@dataclass(frozen=True, slots=True)
class PrePrepare:
    """The primary's signed proposal of `block` for (view, height)."""

    view: int
    height: int
    proposer: int  # validator index of the primary of `view`
    block: types.Block
    signature: bytes

    def encode(self) -> bytes:
        return codec.encode(
            (
                TAG_PRE_PREPARE,
                VERSION,
                self.view,
                self.height,
                self.proposer,
                self.block.encoded,
                self.signature,
            )
        )

    def is_signed_by(self, chain_id: str, public_key: bytes) -> bool:
        payload = types.compute_vote_payload(
            types.VoteKind.PRE_PREPARE, chain_id, self.view, self.height, self.block.hash
        )
        return crypto.verify(public_key, payload, self.signature)


@dataclass(frozen=True, slots=True)
class Vote:
    """A PREPARE or COMMIT vote of one validator for a block at (view, height)."""

    kind: types.VoteKind
    view: int
    height: int
    block_hash: bytes
    validator: int  # validator index
    signature: bytes

    def encode(self) -> bytes:
        return codec.encode(
            (
                TAG_VOTE,
                VERSION,
                int(self.kind),
                self.view,
                self.height,
                self.block_hash,
                self.validator,
                self.signature,
            )
        )

    def is_signed_by(self, chain_id: str, public_key: bytes) -> bool:
        payload = types.compute_vote_payload(self.kind, chain_id, self.view, self.height, self.block_hash)
        return crypto.verify(public_key, payload, self.signature)


Message = PrePrepare | Vote


def sign_pre_prepare(
    key: crypto.SigningKey, chain_id: str, view: int, proposer: int, block: types.Block
) -> PrePrepare:
    payload = types.compute_vote_payload(types.VoteKind.PRE_PREPARE, chain_id, view, block.height, block.hash)
    return PrePrepare(view, block.height, proposer, block, key.sign(payload))


def sign_vote(
    key: crypto.SigningKey,
    chain_id: str,
    kind: types.VoteKind,
    view: int,
    height: int,
    block_hash: bytes,
    validator: int,
) -> Vote:
    payload = types.compute_vote_payload(kind, chain_id, view, height, block_hash)
    return Vote(kind, view, height, block_hash, validator, key.sign(payload))


def decode_message_fields(fields: tuple[Any, ...]) -> Message:
    """Build a message from an already decoded array (the node's envelope decoder calls this)."""
    if not fields or isinstance(fields[0], bool):
        raise DecodeError("consensus message: missing type tag")
    tag = fields[0]
    if tag == TAG_PRE_PREPARE:
        codec.expect_struct(fields, TAG_PRE_PREPARE, VERSION, 7, "pre-prepare")
        block = types.decode_block(expect_bytes(fields[5], "pre-prepare block"))
        return PrePrepare(
            expect_int(fields[2], "pre-prepare view"),
            expect_int(fields[3], "pre-prepare height"),
            expect_int(fields[4], "pre-prepare proposer", 0, 1023),
            block,
            expect_bytes(fields[6], "pre-prepare signature", crypto.SIGNATURE_BYTES),
        )
    if tag == TAG_VOTE:
        codec.expect_struct(fields, TAG_VOTE, VERSION, 8, "vote")
        # PRE_PREPARE is a valid kind here because the vote log records our own
        # pre-prepares as compact votes; the engine ignores such votes from peers.
        kind = expect_int(fields[2], "vote kind", types.VoteKind.PRE_PREPARE, types.VoteKind.COMMIT)
        return Vote(
            types.VoteKind(kind),
            expect_int(fields[3], "vote view"),
            expect_int(fields[4], "vote height"),
            expect_bytes(fields[5], "vote block hash", 32),
            expect_int(fields[6], "vote validator", 0, 1023),
            expect_bytes(fields[7], "vote signature", crypto.SIGNATURE_BYTES),
        )
    raise DecodeError(f"unknown consensus message tag {tag!r}")


def decode_message(data: bytes) -> Message:
    value = codec.decode(data)
    if not isinstance(value, tuple):
        raise DecodeError("consensus message: expected an array")
    return decode_message_fields(value)
