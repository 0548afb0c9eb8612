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

from chainnode.core import codec, crypto, quorum, types
from chainnode.core.codec import expect_bytes, expect_int
from chainnode.core.errors import DecodeError, InvariantError
from chainnode.core.tags import (
    TAG_EVIDENCE,
    TAG_NEW_VIEW,
    TAG_PRE_PREPARE,
    TAG_PREPARED,
    TAG_VIEW_CHANGE,
    TAG_VOTE,
)

VERSION = 1
MESSAGE_TAGS = frozenset({TAG_PRE_PREPARE, TAG_VOTE, TAG_VIEW_CHANGE, TAG_NEW_VIEW})


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


@dataclass(frozen=True, slots=True)
class PreparedCertificate:
    """Proof that `block` was prepared at (view, height): a quorum of PREPARE signatures."""

    view: int
    block: types.Block
    signatures: tuple[tuple[int, bytes], ...]  # (validator index, signature), ascending index

    @property
    def height(self) -> int:
        return self.block.height

    def to_fields(self) -> tuple[Any, ...]:
        return (TAG_PREPARED, VERSION, self.view, self.block.encoded, self.signatures)

    def encode(self) -> bytes:
        return codec.encode(self.to_fields())

    def find_problem(self, chain_id: str, validators: quorum.ValidatorSet) -> str | None:
        payload = types.compute_vote_payload(
            types.VoteKind.PREPARE, chain_id, self.view, self.block.height, self.block.hash
        )
        problem = quorum.find_quorum_problem(payload, self.signatures, validators)
        return None if problem is None else f"prepared certificate: {problem}"


def compute_view_change_digest(prepared: PreparedCertificate | None) -> bytes:
    """What a VIEW-CHANGE signature binds about the sender's prepared block."""
    if prepared is None:
        return types.ZERO_HASH
    return crypto.hash_tagged("vote", codec.encode((prepared.view, prepared.block.hash)))


@dataclass(frozen=True, slots=True)
class ViewChange:
    """A validator's request to move to `new_view` at `height`, with its highest prepared block."""

    new_view: int
    height: int
    validator: int
    prepared: PreparedCertificate | None
    signature: bytes

    def to_fields(self) -> tuple[Any, ...]:
        prepared = None if self.prepared is None else self.prepared.to_fields()
        return (
            TAG_VIEW_CHANGE,
            VERSION,
            self.new_view,
            self.height,
            self.validator,
            prepared,
            self.signature,
        )

    def encode(self) -> bytes:
        return codec.encode(self.to_fields())

    @property
    def view(self) -> int:
        return self.new_view

    def compute_payload(self, chain_id: str) -> bytes:
        return types.compute_vote_payload(
            types.VoteKind.VIEW_CHANGE,
            chain_id,
            self.new_view,
            self.height,
            compute_view_change_digest(self.prepared),
        )


@dataclass(frozen=True, slots=True)
class NewView:
    """The new primary's proof (a quorum of VIEW-CHANGEs) and, if needed, its re-proposal."""

    new_view: int
    height: int
    view_changes: tuple[ViewChange, ...]
    pre_prepare: PrePrepare | None

    def encode(self) -> bytes:
        pre_prepare = None if self.pre_prepare is None else codec.decode(self.pre_prepare.encode())
        return codec.encode(
            (
                TAG_NEW_VIEW,
                VERSION,
                self.new_view,
                self.height,
                tuple(vc.to_fields() for vc in self.view_changes),
                pre_prepare,
            )
        )

    @property
    def view(self) -> int:
        return self.new_view


Message = PrePrepare | Vote | ViewChange | NewView


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


def sign_view_change(
    key: crypto.SigningKey,
    chain_id: str,
    new_view: int,
    height: int,
    validator: int,
    prepared: PreparedCertificate | None,
) -> ViewChange:
    unsigned = ViewChange(new_view, height, validator, prepared, b"")
    return ViewChange(new_view, height, validator, prepared, key.sign(unsigned.compute_payload(chain_id)))


def _decode_prepared(value: Any) -> PreparedCertificate | None:
    if value is None:
        return None
    fields = codec.expect_struct(value, TAG_PREPARED, VERSION, 5, "prepared certificate")
    return PreparedCertificate(
        expect_int(fields[2], "prepared view"),
        types.decode_block(expect_bytes(fields[3], "prepared block")),
        quorum.decode_index_signatures(fields[4], "prepared signatures"),
    )


def _decode_view_change(value: Any) -> ViewChange:
    fields = codec.expect_struct(value, TAG_VIEW_CHANGE, VERSION, 7, "view change")
    return ViewChange(
        expect_int(fields[2], "view change view"),
        expect_int(fields[3], "view change height"),
        expect_int(fields[4], "view change validator", 0, 1023),
        _decode_prepared(fields[5]),
        expect_bytes(fields[6], "view change signature", crypto.SIGNATURE_BYTES),
    )


def decode_message_fields(fields: tuple[Any, ...]) -> Message:
    """Build a message from an already decoded array (the node's envelope decoder calls this)."""
    if not fields or isinstance(fields[0], bool):
        raise DecodeError("consensus message: missing type tag")
    tag = fields[0]
    if tag == TAG_VIEW_CHANGE:
        return _decode_view_change(fields)
    if tag == TAG_NEW_VIEW:
        codec.expect_struct(fields, TAG_NEW_VIEW, VERSION, 6, "new view")
        view_changes = tuple(
            _decode_view_change(item) for item in codec.expect_tuple(fields[4], "new view proofs", 1024)
        )
        pre_prepare = None
        if fields[5] is not None:
            decoded = decode_message_fields(codec.expect_tuple(fields[5], "new view proposal"))
            if not isinstance(decoded, PrePrepare):
                raise DecodeError("new view: the proposal is not a pre-prepare")
            pre_prepare = decoded
        return NewView(
            expect_int(fields[2], "new view view"),
            expect_int(fields[3], "new view height"),
            view_changes,
            pre_prepare,
        )
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
        # pre-prepares as compact votes (and evidence quotes them); the engine
        # ignores such votes from peers.  CHECKPOINT votes sign a checkpoint.
        kind = expect_int(fields[2], "vote kind", types.VoteKind.PRE_PREPARE, types.VoteKind.CHECKPOINT)
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


LogRecord = Vote | ViewChange | PreparedCertificate

# Kinds of vote-log records that are not votes.
LOG_KIND_PREPARED = 16


def compute_log_key(record: LogRecord) -> tuple[int, int, int]:
    """(height, view, kind) under which the node's vote log keeps `record`."""
    if isinstance(record, Vote):
        return record.height, record.view, int(record.kind)
    if isinstance(record, ViewChange):
        return record.height, record.new_view, int(types.VoteKind.VIEW_CHANGE)
    return record.height, record.view, LOG_KIND_PREPARED


def decode_log_record(data: bytes) -> LogRecord:
    value = codec.decode(data)
    if isinstance(value, tuple) and value and value[0] == TAG_PREPARED:
        prepared = _decode_prepared(value)
        if not (prepared is not None):
            raise InvariantError("prepared is not None")
        return prepared
    message = decode_message_fields(value) if isinstance(value, tuple) else None
    if not isinstance(message, (Vote, ViewChange)):
        raise DecodeError("vote log: not a vote, view change or prepared certificate")
    return message


@dataclass(frozen=True, slots=True)
class Evidence:
    """Two conflicting messages signed by one validator for the same (kind, view, height)."""

    validator: int
    kind: types.VoteKind
    view: int
    height: int
    first: Vote  # as compact votes: a pre-prepare is quoted as a PRE_PREPARE vote
    second: Vote

    def encode(self) -> bytes:
        return codec.encode(
            (
                TAG_EVIDENCE,
                VERSION,
                self.validator,
                int(self.kind),
                self.view,
                self.height,
                self.first.encode(),
                self.second.encode(),
            )
        )


def decode_evidence(data: bytes) -> Evidence:
    fields = codec.decode_struct(data, TAG_EVIDENCE, VERSION, 8, "evidence")
    first = decode_message(expect_bytes(fields[6], "evidence first message"))
    second = decode_message(expect_bytes(fields[7], "evidence second message"))
    if not isinstance(first, Vote) or not isinstance(second, Vote):
        raise DecodeError("evidence: expected two votes")
    kind = expect_int(fields[3], "evidence kind", types.VoteKind.PRE_PREPARE, types.VoteKind.CHECKPOINT)
    return Evidence(
        expect_int(fields[2], "evidence validator", 0, 1023),
        types.VoteKind(kind),
        expect_int(fields[4], "evidence view"),
        expect_int(fields[5], "evidence height"),
        first,
        second,
    )
