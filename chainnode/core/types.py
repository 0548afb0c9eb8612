"""Transactions, receipts, votes and blocks (the codes receipts carry are in `chainnode.core.codes`).

Validator sets, quorums and certificates are in `chainnode.core.quorum`; the identity records
kept in state (entities, zones, council) and their keys in `chainnode.core.identity_records`.

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
from chainnode.core.codes import ErrorCode as ErrorCode  # noqa: PLC0414 (re-exported: types.ErrorCode)
from chainnode.core.errors import DecodeError
from chainnode.core.fastinit import install_fast_init
from chainnode.core.tags import (
    TAG_BLOCK,
    TAG_BLOCK_HEADER,
    TAG_RECEIPT,
    TAG_TX,
)

VERSION = 1

TX_BYTES_MAX = 16 * 1024
ZERO_HASH = b"\x00" * 32


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
    tx = decode_transaction_unshared(data)
    _LIVE[data] = weakref.ref(tx, functools.partial(_LIVE.pop, data))
    return tx


def decode_transaction_unshared(data: bytes) -> Transaction:
    """`decode_transaction` without the memo of live transactions: the same result, always a new
    object.  For a reader that decodes each transaction once (the auditor's replay), where the
    memo's lookup, weak reference and callback are ~3 us per transaction of nothing."""
    if type(data) is not bytes:
        data = bytes(data)
    if len(data) > TX_BYTES_MAX:
        raise DecodeError(f"transaction of {len(data)} bytes exceeds {TX_BYTES_MAX}")
    tx = _decode_transaction_fast(data)
    if tx is None:
        # Something about it is unusual: the strict general path decides, and explains.
        tx = transaction_from_fields(codec.decode_struct(data, TAG_TX, VERSION, 10, "transaction"), data)
    return tx


_UNPACK_OPTIONS = codec.UNPACK_OPTIONS
_unpackb = msgpack.unpackb
_pack = codec.pack


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
    if _pack(value) != data:
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


def decode_block(data: bytes, *, check_body: bool = True, share_transactions: bool = True) -> Block:
    """Decode a block; with `check_body` the tx count and tx root must match the header.

    `share_transactions=False` decodes its transactions with `decode_transaction_unshared`."""
    fields = codec.decode_struct(data, TAG_BLOCK, VERSION, 4, "block")
    header = block_header_from_fields(fields[2])
    tx_items = expect_tuple(fields[3], "block transactions", 1_000_000)
    decode = decode_transaction if share_transactions else decode_transaction_unshared
    transactions = []
    for item in tx_items:
        tx_bytes = expect_bytes(item, "block transaction", length_max=TX_BYTES_MAX)
        transactions.append(decode(tx_bytes))
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
