"""Transactions, blocks, receipts, validator sets and commit certificates.

Each type is a frozen, slotted dataclass with `encode()` and a module-level
`decode_*` that is strict (see `chainnode.core.codec`).  Objects decoded from bytes
keep those bytes (`encoded`) and their hash, so hot paths never re-encode.

Hashes:
- transaction id: H_tx(encoding of the unsigned body); the signature covers
  this id, so replay protection keys on content, not on signature bytes.
- block hash: H_block(encoding of the header); the body is bound through
  `tx_root` and the commit certificate is kept beside the block, outside it.
- vote payload: H_vote([kind, chain id, view, height, block hash]).
"""

from __future__ import annotations

import enum
import functools
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

from chainnode.core import codec, crypto, merkle
from chainnode.core.codec import expect_bytes, expect_int, expect_str, expect_tuple
from chainnode.core.errors import DecodeError
from chainnode.core.fastinit import install_fast_init
from chainnode.core.statuses import ZoneStatus
from chainnode.core.tags import (
    TAG_BLOCK,
    TAG_BLOCK_HEADER,
    TAG_CHECKPOINT_CERTIFICATE,
    TAG_COMMIT_CERTIFICATE,
    TAG_COUNCIL_RECORD,
    TAG_ENTITY_RECORD,
    TAG_RECEIPT,
    TAG_TX,
    TAG_VALIDATOR_SET,
    TAG_ZONE_RECORD,
)

VERSION = 1

TX_BYTES_MAX = 16 * 1024
ZERO_HASH = b"\x00" * 32


class ErrorCode(enum.IntEnum):
    """Stable result codes of transactions (receipts and API rejections)."""

    OK = 0
    MALFORMED = 1
    WRONG_CHAIN = 2
    BAD_SIGNATURE = 3
    UNKNOWN_SIGNER = 4
    SIGNER_REVOKED = 5
    SIGNER_EXPIRED = 6
    MISSING_ROLE = 7
    EXPIRED = 8
    DUPLICATE = 9
    UNKNOWN_MODULE = 10
    UNKNOWN_ACTION = 11
    BAD_ARGUMENTS = 12
    TOO_LARGE = 13
    MEMPOOL_FULL = 14
    NOT_PERMITTED = 15
    SIGNER_NOT_YET_VALID = 16
    # Identity lifecycle and council governance (issue 4).
    ZONE_NOT_ACTIVE = 17  # the signer's zone (or the signing zone) is suspended or removed
    MISSING_SECTOR = 18  # a sector-scoped action by an entity without that sector
    WRONG_SIGNER_KIND = 19  # e.g. an entity signing a council action
    BAD_CERTIFICATE = 20  # does not chain to the registered zone CA and root, or is expired
    WRONG_ZONE = 21  # a zone authority acting on another zone's entity or certificate
    ALREADY_REGISTERED = 22
    UNKNOWN_ENTITY = 23
    UNKNOWN_PROPOSAL = 24
    PROPOSAL_EXPIRED = 25
    PROPOSAL_CLOSED = 26  # already executed, rejected or failed
    DUPLICATE_VOTE = 27
    BAD_PROPOSAL = 28  # a proposal whose change breaks a rule (unknown zone, too few validators, ...)
    # Records for data sharing (issue 13): numbers 40-49 are kept for the records module.
    NO_GRANT = 40  # a write or read marker in another entity's namespace without a grant covering the key
    GRANT_EXPIRED = 41  # the covering grant's `expires_at_height` has passed
    GRANT_REVOKED = 42  # the covering grant was revoked by the namespace owner
    WRONG_RIGHT = 43  # the covering grant holds another right (a read-marker grant used to write)
    VALUE_TOO_LARGE = 44  # a record value over `records.VALUE_BYTES_MAX`
    BAD_DOCUMENT = 45  # a document anchor with a bad SHA-256, size, media type or URI
    UNKNOWN_RECORD = 46  # a read marker for a key or version that does not exist
    UNKNOWN_GRANT = 47  # revoking a grant that was never made
    BAD_GRANT = 48  # a grant to oneself, to an unknown sector, or already expired when made

    # Digital assets (issue 13): numbers 60-79 are kept for the assets module.
    NOT_ISSUER = 60  # only the collection's issuer may do this
    NOT_OWNER = 61  # the holder named does not hold enough of the asset, or the signer is not it
    NOT_APPROVED = 62  # the signer is neither the holder, its operator, nor approved for the asset
    ASSET_FROZEN = 63  # the holding (or the holding to receive) is frozen
    COLLECTION_PAUSED = 64
    ASSET_BURNED = 65
    UNKNOWN_ASSET = 66
    UNKNOWN_COLLECTION = 67
    DUPLICATE_ID = 68  # a collection or token id that exists (or existed: ids are never reused)
    RECIPIENT_NOT_ACTIVE = 69  # unknown, revoked or expired recipient, or its zone not active
    BAD_METADATA_HASH = 70  # not 32 bytes, or all zero
    URI_ALREADY_SET = 71
    NOT_FROZEN = 72
    NOT_PAUSED = 73
    WRONG_ASSET_KIND = 74  # an action or amount the collection's kind does not allow

    @property
    def label(self) -> str:
        return self.name.lower()


# ---------------------------------------------------------------- transactions


def _check_args(value: Any, depth: int = 0) -> None:
    if depth > 8:
        raise DecodeError("transaction arguments nested too deeply")
    if value is None or isinstance(value, (bool, int, str, bytes)):
        return
    if isinstance(value, tuple):
        for item in value:
            _check_args(item, depth + 1)
        return
    raise DecodeError(f"argument of type {type(value).__name__} is not allowed")


@install_fast_init
@dataclass(frozen=True, slots=True, weakref_slot=True)
class Transaction:
    """A signed transaction.  Build with `Transaction.create`, read with `decode_transaction`."""

    chain_id: str
    signer: str  # entity id of the signer
    nonce: int  # chosen by the signer; makes otherwise equal transactions distinct
    valid_until: int  # last height at which the transaction may be committed
    module: str
    action: str
    args: tuple[Any, ...]
    signature: bytes
    hash: bytes = field(repr=False)  # transaction id: H_tx(body)
    encoded: bytes = field(repr=False)  # canonical encoding including the signature

    @staticmethod
    def body(
        chain_id: str,
        signer: str,
        nonce: int,
        valid_until: int,
        module: str,
        action: str,
        args: tuple[Any, ...],
    ) -> tuple[Any, ...]:
        return (TAG_TX, VERSION, chain_id, signer, nonce, valid_until, module, action, args)

    @classmethod
    def create(
        cls,
        key: crypto.SigningKey,
        *,
        chain_id: str,
        signer: str,
        nonce: int,
        valid_until: int,
        module: str,
        action: str,
        args: Sequence[Any],
    ) -> Transaction:
        args_tuple = _to_tuple(args)
        body = cls.body(chain_id, signer, nonce, valid_until, module, action, args_tuple)
        tx_hash = crypto.hash_tagged("tx", codec.encode(body))
        signature = key.sign(tx_hash)
        # Decoding what we built applies every rule a receiver applies, so a
        # transaction this constructor returns is one any node can accept.
        return decode_transaction(codec.encode((*body, signature)))

    def encode(self) -> bytes:
        return self.encoded

    def verify_signature(self, public_key: bytes) -> bool:
        return crypto.verify(public_key, self.hash, self.signature)


def _to_tuple(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_to_tuple(item) for item in value)
    return value


# Every decoded transaction that something still holds (the mempool, above all, and the
# block being executed), by its exact bytes, without keeping any alive.  Decoding is a
# pure function of the bytes, so a hit returns what decoding would: a node decodes a
# transaction when it is gossiped and again inside the proposal that carries it, and
# this makes the second time a dictionary lookup.  (A FIFO memo that also kept the last
# 20,000 decoded transactions alive was dropped: the weak map finds every pooled one,
# and the memo only held committed transactions longer, ~20 MB, for the collector to walk.)
# A plain dict of weak references whose callback is `functools.partial(_LIVE.pop, key)`:
# all C calls, unlike `weakref.WeakValueDictionary` (about 1 us per transaction in Python
# code).  A callback only ever removes its own key; at worst an entry goes early and the
# next lookup decodes again, which returns the same thing.
_LIVE: dict[bytes, weakref.ref[Transaction]] = {}


def decode_transaction(data: bytes) -> Transaction:
    if type(data) is not bytes:
        data = bytes(data)
    reference = _LIVE.get(data)
    if reference is not None:
        known = reference()
        if known is not None:
            return known
    if len(data) > TX_BYTES_MAX:
        raise DecodeError(f"transaction of {len(data)} bytes exceeds {TX_BYTES_MAX}")
    tx = _decode_transaction_fast(data)
    if tx is None:
        # Something about it is unusual: the strict general path decides, and explains.
        tx = transaction_from_fields(codec.decode_struct(data, TAG_TX, VERSION, 10, "transaction"), data)
    _LIVE[data] = weakref.ref(tx, functools.partial(_LIVE.pop, data))
    return tx


_UNPACK_OPTIONS = codec.UNPACK_OPTIONS
_unpackb = msgpack.unpackb
_packb = msgpack.packb


def _decode_transaction_fast(data: bytes) -> Transaction | None:
    """The common case in one pass: exact types, canonical bytes; None for anything else.

    It accepts exactly what `codec.decode_struct` + `transaction_from_fields` accept
    when every field has its exact type (no bool for an int, no str subclass), and
    returns None rather than raising, so every refusal and its message come from the
    general path.  Every gossiped transaction goes through here once per node.
    """
    try:
        value = _unpackb(data, **_UNPACK_OPTIONS)
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError):
        return None  # the general path raises the precise DecodeError
    if type(value) is not tuple or len(value) != 10:
        return None
    tag, version, chain_id, signer, nonce, valid_until, module, action, args, signature = value
    if not (
        type(tag) is int
        and tag == TAG_TX
        and type(version) is int
        and version == VERSION
        and type(chain_id) is str
        and 0 < len(chain_id) <= 64
        and type(signer) is str
        and 0 < len(signer) <= 128
        and type(nonce) is int
        and 0 <= nonce <= _U64_MAX
        and type(valid_until) is int
        and 0 <= valid_until <= _U64_MAX
        and type(module) is str
        and 0 < len(module) <= 32
        and type(action) is str
        and 0 < len(action) <= 64
        and type(args) is tuple
        and len(args) <= 64
        and type(signature) is bytes
        and len(signature) == crypto.SIGNATURE_BYTES
    ):
        return None
    for item in args:
        if type(item) not in _FLAT_ARG_TYPES:
            return None  # nested or unusual arguments: the general path checks them
    if _packb(value, use_bin_type=True) != data:
        return None
    tx_hash = crypto.hash_tagged("tx", _compute_body_encoding(value, data))
    return Transaction(chain_id, signer, nonce, valid_until, module, action, args, signature, tx_hash, data)


_U64_MAX = 2**64 - 1
_FLAT_ARG_TYPES = frozenset({str, bytes, int, type(None)})


_SIGNATURE_SUFFIX = b"\xc4\x40"  # bin8 header of a 64-byte signature


_SIGNATURE_TAIL = len(_SIGNATURE_SUFFIX) + crypto.SIGNATURE_BYTES


def _cut_body_encoding(encoded: bytes) -> bytes | None:
    """The encoding of the unsigned body, cut from the encoding of the whole; None if it
    is not shaped like a canonical transaction.

    A canonical 10-element array starts with the fixarray byte 0x9a and ends with the
    signature as bin8; the 9-element body is the same bytes under 0x99 without that tail.
    """
    if encoded[:1] == b"\x9a" and encoded[-_SIGNATURE_TAIL : -crypto.SIGNATURE_BYTES] == _SIGNATURE_SUFFIX:
        return b"\x99" + encoded[1:-_SIGNATURE_TAIL]
    return None


def _compute_body_encoding(fields: tuple[Any, ...], encoded: bytes) -> bytes:
    """The encoding of the unsigned body: cut from `encoded`, or (never the case for
    canonical input) encoded afresh from `fields`."""
    body = _cut_body_encoding(encoded)
    return codec.encode(fields[:9]) if body is None else body


def transaction_from_fields(fields: tuple[Any, ...], encoded: bytes) -> Transaction:
    chain_id = expect_str(fields[2], "transaction chain id", 64)
    signer = expect_str(fields[3], "transaction signer", 128)
    nonce = expect_int(fields[4], "transaction nonce")
    valid_until = expect_int(fields[5], "transaction valid_until")
    module = expect_str(fields[6], "transaction module", 32)
    action = expect_str(fields[7], "transaction action", 64)
    args = expect_tuple(fields[8], "transaction args", 64)
    _check_args(args)
    signature = expect_bytes(fields[9], "transaction signature", crypto.SIGNATURE_BYTES)
    tx_hash = crypto.hash_tagged("tx", _compute_body_encoding(fields, encoded))
    return Transaction(
        chain_id, signer, nonce, valid_until, module, action, args, signature, tx_hash, encoded
    )


# ---------------------------------------------------------------- receipts


@install_fast_init
@dataclass(frozen=True, slots=True)
class Receipt:
    """The deterministic outcome of one transaction in a committed block."""

    tx_hash: bytes
    code: int  # an `ErrorCode` value; 0 is success
    message: str  # human-readable reason, empty on success
    events: tuple[tuple[str, tuple[Any, ...]], ...]  # (name, attributes) emitted on success
    # Encoded once: the receipts root and the ledger both need the bytes.
    encoded: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        fields = (TAG_RECEIPT, VERSION, self.tx_hash, self.code, self.message, self.events)
        _set_receipt_encoded(self, codec.encode(fields))

    def encode(self) -> bytes:
        return self.encoded

    @property
    def ok(self) -> bool:
        return self.code == ErrorCode.OK


_set_receipt_encoded = Receipt.__dict__["encoded"].__set__


def decode_receipt(data: bytes) -> Receipt:
    fields = codec.decode_struct(data, TAG_RECEIPT, VERSION, 6, "receipt")
    events_raw = expect_tuple(fields[5], "receipt events", 256)
    events: list[tuple[str, tuple[Any, ...]]] = []
    for raw_event in events_raw:
        event = expect_tuple(raw_event, "receipt event", 2)
        if len(event) != 2:
            raise DecodeError("receipt event: expected [name, attributes]")
        events.append((expect_str(event[0], "event name", 64), expect_tuple(event[1], "event attributes")))
    return Receipt(
        expect_bytes(fields[2], "receipt tx hash", 32),
        expect_int(fields[3], "receipt code", 0, 1 << 16),
        expect_str(fields[4], "receipt message", 1024, allow_empty=True),
        tuple(events),
    )


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


# ---------------------------------------------------------------- votes


class VoteKind(enum.IntEnum):
    """What a validator's signature is for; part of every signed payload."""

    PRE_PREPARE = 1
    PREPARE = 2
    COMMIT = 3
    VIEW_CHANGE = 4  # block hash field: H(prepared view, prepared hash) or zero
    CHECKPOINT = 5  # block hash of the checkpoint height; it binds the state root


def compute_vote_payload(kind: VoteKind, chain_id: str, view: int, height: int, block_hash: bytes) -> bytes:
    """The 32 bytes a validator signs for a pre-prepare, prepare or commit."""
    return crypto.hash_tagged("vote", codec.encode((int(kind), chain_id, view, height, block_hash)))


# ---------------------------------------------------------------- blocks


@dataclass(frozen=True, slots=True)
class BlockHeader:
    chain_id: str
    height: int
    view: int  # the view in which the block was proposed
    proposer: int  # validator index of the proposer in that view
    timestamp_ms: int  # proposer's clock; strictly above the parent's
    parent_hash: bytes
    tx_root: bytes  # RFC 6962 root over the encoded transactions
    receipts_root: bytes  # RFC 6962 root over the encoded receipts
    state_root: bytes  # state commitment after executing this block
    validator_set_hash: bytes  # hash of the validator set that certifies this block
    tx_count: int

    def to_fields(self) -> tuple[Any, ...]:
        return (
            TAG_BLOCK_HEADER,
            VERSION,
            self.chain_id,
            self.height,
            self.view,
            self.proposer,
            self.timestamp_ms,
            self.parent_hash,
            self.tx_root,
            self.receipts_root,
            self.state_root,
            self.validator_set_hash,
            self.tx_count,
        )

    def encode(self) -> bytes:
        return codec.encode(self.to_fields())

    def compute_hash(self) -> bytes:
        return crypto.hash_tagged("block", self.encode())


def block_header_from_fields(value: Any) -> BlockHeader:
    fields = codec.expect_struct(value, TAG_BLOCK_HEADER, VERSION, 13, "block header")
    return BlockHeader(
        chain_id=expect_str(fields[2], "header chain id", 64),
        height=expect_int(fields[3], "header height"),
        view=expect_int(fields[4], "header view"),
        proposer=expect_int(fields[5], "header proposer", 0, 1023),
        timestamp_ms=expect_int(fields[6], "header timestamp"),
        parent_hash=expect_bytes(fields[7], "header parent hash", 32),
        tx_root=expect_bytes(fields[8], "header tx root", 32),
        receipts_root=expect_bytes(fields[9], "header receipts root", 32),
        state_root=expect_bytes(fields[10], "header state root", 32),
        validator_set_hash=expect_bytes(fields[11], "header validator set hash", 32),
        tx_count=expect_int(fields[12], "header tx count", 0, 1_000_000),
    )


def decode_block_header(data: bytes) -> BlockHeader:
    return block_header_from_fields(codec.decode(data))


@dataclass(frozen=True, slots=True)
class Block:
    header: BlockHeader
    transactions: tuple[Transaction, ...]
    hash: bytes = field(repr=False)
    encoded: bytes = field(repr=False)

    @classmethod
    def create(cls, header: BlockHeader, transactions: Sequence[Transaction]) -> Block:
        encoded = codec.encode(
            (TAG_BLOCK, VERSION, header.to_fields(), tuple(tx.encoded for tx in transactions))
        )
        return cls(header, tuple(transactions), header.compute_hash(), encoded)

    @property
    def height(self) -> int:
        return self.header.height

    def encode(self) -> bytes:
        return self.encoded


def compute_tx_root(transactions: Iterable[Transaction]) -> bytes:
    return merkle.compute_root([tx.encoded for tx in transactions])


def compute_receipts_root(receipts: Iterable[Receipt]) -> bytes:
    return merkle.compute_root([receipt.encode() for receipt in receipts])


def decode_block(data: bytes, *, check_body: bool = True) -> Block:
    """Decode a block; with `check_body` the tx count and tx root must match the header."""
    fields = codec.decode_struct(data, TAG_BLOCK, VERSION, 4, "block")
    header = block_header_from_fields(fields[2])
    tx_items = expect_tuple(fields[3], "block transactions", 1_000_000)
    transactions = []
    for item in tx_items:
        tx_bytes = expect_bytes(item, "block transaction", length_max=TX_BYTES_MAX)
        transactions.append(decode_transaction(tx_bytes))
    if check_body:
        if header.tx_count != len(transactions):
            raise DecodeError(
                f"block header counts {header.tx_count} transactions, body has {len(transactions)}"
            )
        if compute_tx_root(transactions) != header.tx_root:
            raise DecodeError("block body does not match the header's tx root")
    return Block(header, tuple(transactions), header.compute_hash(), bytes(data))


def decode_block_summary(data: bytes) -> tuple[BlockHeader, list[bytes]]:
    """The header and the transaction ids of a block, without decoding its transactions.

    For blocks read back from our own ledger (checked when they were committed), where only
    the ids are wanted: an id is the hash of the encoding cut short of its signature, about
    a tenth of the cost of decoding the transaction.  An item that is not shaped like a
    canonical transaction is decoded in full, which raises `DecodeError` if it is not one.
    """
    fields = codec.decode_struct(data, TAG_BLOCK, VERSION, 4, "block")
    header = block_header_from_fields(fields[2])
    hashes = []
    for item in expect_tuple(fields[3], "block transactions", 1_000_000):
        tx_bytes = expect_bytes(item, "block transaction", length_max=TX_BYTES_MAX)
        body = _cut_body_encoding(tx_bytes)
        hashes.append(decode_transaction(tx_bytes).hash if body is None else crypto.hash_tagged("tx", body))
    return header, hashes


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


# ---------------------------------------------------------------- identity records in state

ROLES = frozenset({"submitter", "validator", "observer", "auditor", "issuer"})
SECTORS = frozenset(
    {
        "government",
        "energy",
        "law",
        "manufacturing",
        "trade-finance",
        "health",
        "education",
        "tax",
        "cross-border-finance",
    }
)


@dataclass(frozen=True, slots=True)
class EntityRecord:
    """An entity's registered certificate, as every node holds it in state.

    Encoded as version 1 (11 fields) while `revoked_from_height` and `revocation_reason` keep
    their defaults, so records written by genesis and before on-chain revocation existed keep
    their bytes; an on-chain revocation writes version 2 (13 fields).  A revoked record with
    `revoked_from_height == 0` is revoked at every height.
    """

    entity_id: str
    zone: str  # zone whose authority issued the certificate
    public_key: bytes  # raw Ed25519 key from the certificate
    roles: tuple[str, ...]  # sorted
    sectors: tuple[str, ...]  # sorted
    not_before_ms: int
    not_after_ms: int
    revoked: bool
    certificate: bytes  # the DER certificate, so auditors can re-check it
    revoked_from_height: int = 0  # first height at which the revocation applies (0: always)
    revocation_reason: str = ""  # as given by the zone authority

    def encode(self) -> bytes:
        if self.revoked_from_height or self.revocation_reason:
            return codec.encode(
                (
                    TAG_ENTITY_RECORD,
                    ENTITY_RECORD_VERSION_REVOCATION,
                    *self._to_v1_fields()[2:],
                    self.revoked_from_height,
                    self.revocation_reason,
                )
            )
        return codec.encode(self._to_v1_fields())

    def is_revoked_at(self, height: int) -> bool:
        """Whether the certificate is revoked for a transaction in block `height`."""
        return self.revoked and height >= self.revoked_from_height

    def _to_v1_fields(self) -> tuple[Any, ...]:
        return (
            TAG_ENTITY_RECORD,
            VERSION,
            self.entity_id,
            self.zone,
            self.public_key,
            self.roles,
            self.sectors,
            self.not_before_ms,
            self.not_after_ms,
            self.revoked,
            self.certificate,
        )

    def has_role(self, role: str) -> bool:
        return role in self.roles


ENTITY_RECORD_VERSION_REVOCATION = 2


def decode_entity_record(data: bytes) -> EntityRecord:
    value = codec.decode(data)
    version_2 = ENTITY_RECORD_VERSION_REVOCATION
    if isinstance(value, tuple) and len(value) > 1 and value[1] == version_2:
        fields = codec.expect_struct(value, TAG_ENTITY_RECORD, version_2, 13, "entity record")
        revoked_from_height = expect_int(fields[11], "revoked from height")
        reason = expect_str(fields[12], "revocation reason", 256, allow_empty=True)
    else:
        fields = codec.expect_struct(value, TAG_ENTITY_RECORD, VERSION, 11, "entity record")
        revoked_from_height, reason = 0, ""
    roles = tuple(expect_str(r, "role", 32) for r in expect_tuple(fields[5], "roles", 16))
    sectors = tuple(expect_str(s, "sector", 32) for s in expect_tuple(fields[6], "sectors", 16))
    if not isinstance(fields[9], bool):
        raise DecodeError("entity record: revoked must be a boolean")
    return EntityRecord(
        expect_str(fields[2], "entity id", 128),
        expect_str(fields[3], "zone", 64),
        expect_bytes(fields[4], "entity public key", 32),
        roles,
        sectors,
        expect_int(fields[7], "not before"),
        expect_int(fields[8], "not after"),
        fields[9],
        expect_bytes(fields[10], "certificate", length_max=16384),
        revoked_from_height,
        reason,
    )


@dataclass(frozen=True, slots=True)
class ZoneRecord:
    """A pilot zone admitted by the council, with its authority's CA certificate.

    `active` false and `removed` false: suspended (the council may reinstate it).  `removed`:
    permanently out (always with `active` false); the record stays so that auditors can still
    check the certificates it issued, and its id is never admitted again.  Version 1 encoding
    (6 fields) unless removed, version 2 (7 fields) then.
    """

    zone_id: str
    name: str
    certificate: bytes  # DER of the zone authority's CA certificate
    active: bool
    removed: bool = False

    def encode(self) -> bytes:
        if self.removed:
            return codec.encode(
                (TAG_ZONE_RECORD, 2, self.zone_id, self.name, self.certificate, self.active, True)
            )
        return codec.encode(
            (TAG_ZONE_RECORD, VERSION, self.zone_id, self.name, self.certificate, self.active)
        )

    @property
    def status(self) -> ZoneStatus:
        if self.removed:
            return ZoneStatus.REMOVED
        return ZoneStatus.ACTIVE if self.active else ZoneStatus.SUSPENDED


def decode_zone_record(data: bytes) -> ZoneRecord:
    value = codec.decode(data)
    is_removed = isinstance(value, tuple) and len(value) > 1 and value[1] == 2
    if is_removed:
        fields = codec.expect_struct(value, TAG_ZONE_RECORD, 2, 7, "zone record")
        if fields[6] is not True or fields[5] is not False:
            raise DecodeError("zone record: a removed zone is inactive and flagged removed")
    else:
        fields = codec.expect_struct(value, TAG_ZONE_RECORD, VERSION, 6, "zone record")
    if not isinstance(fields[5], bool):
        raise DecodeError("zone record: active must be a boolean")
    return ZoneRecord(
        expect_str(fields[2], "zone id", 64),
        expect_str(fields[3], "zone name", 128),
        expect_bytes(fields[4], "zone certificate", length_max=16384),
        fields[5],
        is_removed,
    )


@dataclass(frozen=True, slots=True)
class CouncilRecord:
    """A council member as held in state (written at genesis); signs as `council:<member_id>`."""

    member_id: str
    name: str
    public_key: bytes  # raw Ed25519 key

    def encode(self) -> bytes:
        return codec.encode((TAG_COUNCIL_RECORD, VERSION, self.member_id, self.name, self.public_key))


def decode_council_record(data: bytes) -> CouncilRecord:
    fields = codec.decode_struct(data, TAG_COUNCIL_RECORD, VERSION, 5, "council record")
    return CouncilRecord(
        expect_str(fields[2], "council member id", 64),
        expect_str(fields[3], "council member name", 128),
        expect_bytes(fields[4], "council member key", 32),
    )


# State key layout: each module owns a prefix; see chainnode/execution.py.
VALIDATOR_SET_KEY = b"val/set"  # the set that certifies the next block
VALIDATOR_HISTORY_PREFIX = b"val/from/"  # + first height (u64be) -> the set from that height on
ROOT_CERTIFICATE_KEY = b"id/root"  # DER of the network root CA (genesis)
COUNCIL_KEY = b"gov/council"  # encode((M, member ids)): M approvals of N needed (genesis)
CHAIN_PARAMS_KEY = b"gov/params"  # genesis.encode_chain_params (genesis, then governance)


def validator_history_key(height: int) -> bytes:
    """The key of the validator set that applies from `height` on."""
    return VALIDATOR_HISTORY_PREFIX + height.to_bytes(8, "big")


def council_key(member_id: str) -> bytes:
    return b"gov/c/" + member_id.encode()


def entity_key(entity_id: str) -> bytes:
    return b"id/e/" + entity_id.encode()


def zone_key(zone_id: str) -> bytes:
    return b"id/z/" + zone_id.encode()
