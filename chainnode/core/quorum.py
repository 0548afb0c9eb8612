"""Validator sets, the quorum rule, and the certificates a quorum signs (commit, checkpoint).

The one quorum rule (`compute_quorum`) is here, beside the sets it counts and the certificates
that must carry it; every count of votes or signatures in the node, the engine, the audit, the
proofs and the light client uses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chainnode.core import codec, crypto
from chainnode.core.codec import expect_bytes, expect_int, expect_str, expect_tuple
from chainnode.core.errors import DecodeError
from chainnode.core.tags import (
    TAG_CHECKPOINT_CERTIFICATE,
    TAG_COMMIT_CERTIFICATE,
    TAG_VALIDATOR_SET,
)
from chainnode.core.types import VERSION, VoteKind, compute_vote_payload

# ---------------------------------------------------------------- validators


@dataclass(frozen=True, slots=True)
class Validator:
    entity_id: str
    public_key: bytes  # raw Ed25519 key, the one in the validator's certificate


VALIDATORS_MIN = 4
"""The smallest validator set: with fewer than 3f + 1 = 4 validators no fault is tolerated at all
(f = 0), and at n = 3 a quorum of 2 would let one faulty validator and one honest one commit
alone.  Network init, genesis loading and every path that changes the set keep n >= 4."""


def compute_faults_max(size: int) -> int:
    """f = floor((n - 1) / 3): the most Byzantine validators n validators tolerate."""
    return (size - 1) // 3


def compute_quorum(size: int) -> int:
    """The one quorum rule: q = floor((n + f) / 2) + 1, with f = floor((n - 1) / 3).

    Safety needs any two quorums to intersect in at least f + 1 validators, so that they share
    an honest one, who never signs two blocks for one (view, height).  Two quorums of q out of n
    share at least 2q - n; 2q - n >= f + 1 holds exactly when q > (n + f) / 2, and this q is the
    smallest such.  Liveness needs q <= n - f (the honest validators alone form a quorum), which
    holds for every n >= 3f + 1.  The rule equals 2f + 1 only when n = 3f + 1: at n = 5 it is 4
    (2f + 1 = 3 would let two quorums of 3 share only one, possibly faulty, validator), at n = 6
    it is 4 (a quorum of 3 lets a 3 | 3 partition commit on both sides).

    Every count of votes or signatures that decides something uses this number: PREPARE and
    COMMIT quorums, commit certificates, NEW-VIEW proofs, checkpoints, catch-up, audit and
    proofs.  Rules that only need one honest member (joining a later view) use f + 1.
    """
    return (size + compute_faults_max(size)) // 2 + 1


@dataclass(frozen=True, slots=True)
class ValidatorSet:
    """An ordered validator set; the primary of view v is `validators[v mod n]`."""

    validators: tuple[Validator, ...]

    def __post_init__(self) -> None:
        assert self.validators, "a validator set is never empty"
        ids = [validator.entity_id for validator in self.validators]
        assert len(set(ids)) == len(ids), "validator ids are distinct"

    @property
    def size(self) -> int:
        return len(self.validators)

    @property
    def faults_max(self) -> int:
        """f = floor((n - 1) / 3), the Byzantine validators tolerated."""
        return compute_faults_max(self.size)

    @property
    def quorum(self) -> int:
        """floor((n + f) / 2) + 1 votes: any two quorums share at least f + 1 validators."""
        return compute_quorum(self.size)

    def index_of(self, entity_id: str) -> int | None:
        for index, validator in enumerate(self.validators):
            if validator.entity_id == entity_id:
                return index
        return None

    def primary(self, view: int) -> int:
        return view % self.size

    def encode(self) -> bytes:
        return codec.encode(
            (TAG_VALIDATOR_SET, VERSION, tuple((v.entity_id, v.public_key) for v in self.validators))
        )

    def compute_hash(self) -> bytes:
        return crypto.hash_tagged("validators", self.encode())


def decode_validator_set(data: bytes) -> ValidatorSet:
    fields = codec.decode_struct(data, TAG_VALIDATOR_SET, VERSION, 3, "validator set")
    items = expect_tuple(fields[2], "validators", 1024)
    if not items:
        raise DecodeError("validator set is empty")
    validators = []
    for raw_item in items:
        item = expect_tuple(raw_item, "validator", 2)
        if len(item) != 2:
            raise DecodeError("validator: expected [entity id, public key]")
        validators.append(
            Validator(expect_str(item[0], "validator id", 128), expect_bytes(item[1], "validator key", 32))
        )
    if len({v.entity_id for v in validators}) != len(validators):
        raise DecodeError("validator set lists an entity twice")
    return ValidatorSet(tuple(validators))


# ---------------------------------------------------------------- commit certificates


@dataclass(frozen=True, slots=True)
class CommitCertificate:
    """A quorum of COMMIT signatures over (chain id, view, height, block hash)."""

    height: int
    view: int
    block_hash: bytes
    signatures: tuple[tuple[int, bytes], ...]  # (validator index, signature), ascending index

    def encode(self) -> bytes:
        return codec.encode(
            (TAG_COMMIT_CERTIFICATE, VERSION, self.height, self.view, self.block_hash, self.signatures)
        )

    def find_problem(self, chain_id: str, validators: ValidatorSet) -> str | None:
        """None when the certificate is valid for `validators`; otherwise the reason."""
        payload = compute_vote_payload(VoteKind.COMMIT, chain_id, self.view, self.height, self.block_hash)
        return find_quorum_problem(payload, self.signatures, validators)


def decode_index_signatures(value: Any, what: str = "signatures") -> tuple[tuple[int, bytes], ...]:
    """Decode `[[validator index, signature], ...]` as found in certificates."""
    signatures = []
    for raw_item in expect_tuple(value, what, 1024):
        item = expect_tuple(raw_item, what, 2)
        if len(item) != 2:
            raise DecodeError(f"{what}: expected [index, signature] pairs")
        signatures.append(
            (expect_int(item[0], f"{what} index", 0, 1023), expect_bytes(item[1], f"{what} signature", 64))
        )
    return tuple(signatures)


def decode_commit_certificate(data: bytes) -> CommitCertificate:
    fields = codec.decode_struct(data, TAG_COMMIT_CERTIFICATE, VERSION, 6, "commit certificate")
    return CommitCertificate(
        expect_int(fields[2], "certificate height"),
        expect_int(fields[3], "certificate view"),
        expect_bytes(fields[4], "certificate block hash", 32),
        decode_index_signatures(fields[5], "certificate signatures"),
    )


@dataclass(frozen=True, slots=True)
class CheckpointCertificate:
    """2f+1 CHECKPOINT signatures over the block hash at `height` (which binds its state root)."""

    height: int
    block_hash: bytes
    signatures: tuple[tuple[int, bytes], ...]  # (validator index, signature), ascending index

    def encode(self) -> bytes:
        return codec.encode(
            (TAG_CHECKPOINT_CERTIFICATE, VERSION, self.height, self.block_hash, self.signatures)
        )

    def find_problem(self, chain_id: str, validators: ValidatorSet) -> str | None:
        payload = compute_vote_payload(VoteKind.CHECKPOINT, chain_id, 0, self.height, self.block_hash)
        return find_quorum_problem(payload, self.signatures, validators)


def find_quorum_problem(
    payload: bytes, signatures: tuple[tuple[int, bytes], ...], validators: ValidatorSet
) -> str | None:
    """None when `signatures` are a quorum (`compute_quorum`) of valid signatures of distinct validators."""
    indexes = [index for index, _ in signatures]
    if indexes != sorted(set(indexes)):
        return "signatures are not from distinct validators in ascending order"
    if len(indexes) < validators.quorum:
        return f"{len(indexes)} signatures, quorum is {validators.quorum}"
    for index, signature in signatures:
        if index >= validators.size:
            return f"signature from unknown validator index {index}"
        if not crypto.verify(validators.validators[index].public_key, payload, signature):
            return f"invalid signature from validator {validators.validators[index].entity_id}"
    return None


def decode_checkpoint_certificate(data: bytes) -> CheckpointCertificate:
    fields = codec.decode_struct(data, TAG_CHECKPOINT_CERTIFICATE, VERSION, 5, "checkpoint certificate")
    return CheckpointCertificate(
        expect_int(fields[2], "checkpoint height"),
        expect_bytes(fields[3], "checkpoint block hash", 32),
        decode_index_signatures(fields[4], "checkpoint signatures"),
    )
