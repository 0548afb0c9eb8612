"""The records of the `assets` module: collections, assets, freezes and provenance entries.

Theory of operation: each record is a frozen dataclass with its canonical encoding (a
fixed-order msgpack array led by its wire tag and version, `chainnode.core.tags`) and a strict
decoder (tag, version, arity, types, bounds), beside the identifiers and bounds they obey: a
collection id is a lowercase `[a-z0-9-]` id of at most 64 characters, a token id 1..64
characters of `[A-Za-z0-9._-]`, and an asset is named `<collection>/<token>` in text.  Where
the records live in state, and every read and write of them, is `chainnode.app.asset_state`'s.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from chainnode.core import codec, identity, tags
from chainnode.core.codec import expect_bytes, expect_int, expect_str
from chainnode.core.errors import DecodeError

KIND_UNIQUE = "unique"  # 721-like: one unit, one owner
KIND_EDITIONED = "editioned"  # 1155-like: a token id with an amount
KINDS = (KIND_UNIQUE, KIND_EDITIONED)

TOKEN_CHARS_MAX = 64
NAME_CHARS_MAX = 128
SYMBOL_CHARS_MAX = 16
URI_CHARS_MAX = 512
ENTITY_CHARS_MAX = 64
HASH_BYTES = 32
AMOUNT_MAX = 2**63 - 1
PROVENANCE_ACTIONS = frozenset({"mint", "set_uri", "transfer", "approve", "burn", "freeze", "unfreeze"})

_TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def is_valid_collection_id(value: object) -> bool:
    return isinstance(value, str) and identity.is_valid_id(value)


def is_valid_token_id(value: object) -> bool:
    return isinstance(value, str) and bool(_TOKEN_PATTERN.match(value))


def compute_asset_id(collection_id: str, token_id: str) -> str:
    """The asset's name in text: `<collection>/<token>`."""
    return f"{collection_id}/{token_id}"


def _expect_bool(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise DecodeError(f"{what}: expected true or false")
    return value


def _expect_kind(value: Any) -> str:
    if value not in KINDS:
        raise DecodeError(f"collection kind {value!r} is not one of {KINDS}")
    return str(value)


@dataclass(frozen=True, slots=True)
class Collection:
    """A collection of assets and its running statistics."""

    collection_id: str
    issuer: str  # the entity that created it; the only one that mints, pauses and freezes
    name: str
    symbol: str
    kind: str  # KIND_UNIQUE or KIND_EDITIONED
    schema_hash: bytes  # SHA-256 of the metadata schema, or b"" when none was given
    created_height: int
    paused: bool
    tokens: int  # token ids minted so far (the last sequence number)
    tokens_burned: int  # token ids whose every unit was burned
    units: int  # units outstanding (minted minus burned) over all tokens
    transfers: int  # successful transfers, counting each item of a batch
    frozen: int  # holdings frozen now

    def encode(self) -> bytes:
        return codec.encode(
            (
                tags.TAG_ASSET_COLLECTION,
                1,
                self.collection_id,
                self.issuer,
                self.name,
                self.symbol,
                self.kind,
                self.schema_hash,
                self.created_height,
                self.paused,
                self.tokens,
                self.tokens_burned,
                self.units,
                self.transfers,
                self.frozen,
            )
        )


def decode_collection(data: bytes) -> Collection:
    fields = codec.decode_struct(data, tags.TAG_ASSET_COLLECTION, 1, 15, "asset collection")
    schema_hash = expect_bytes(fields[7], "schema hash", length_max=HASH_BYTES)
    if len(schema_hash) not in (0, HASH_BYTES):
        raise DecodeError(f"schema hash: {len(schema_hash)} bytes")
    return Collection(
        collection_id=expect_str(fields[2], "collection id", 64),
        issuer=expect_str(fields[3], "issuer", ENTITY_CHARS_MAX),
        name=expect_str(fields[4], "collection name", NAME_CHARS_MAX),
        symbol=expect_str(fields[5], "collection symbol", SYMBOL_CHARS_MAX),
        kind=_expect_kind(fields[6]),
        schema_hash=schema_hash,
        created_height=expect_int(fields[8], "created height", 1),
        paused=_expect_bool(fields[9], "paused"),
        tokens=expect_int(fields[10], "tokens"),
        tokens_burned=expect_int(fields[11], "tokens burned"),
        units=expect_int(fields[12], "units"),
        transfers=expect_int(fields[13], "transfers"),
        frozen=expect_int(fields[14], "frozen holdings"),
    )


@dataclass(frozen=True, slots=True)
class Asset:
    """One token id of a collection."""

    collection_id: str
    token_id: str
    seq: int  # its place in the collection's mint order, from 1
    metadata_hash: bytes  # SHA-256 of the off-chain metadata document
    uri: str  # where the metadata lives; "" until set, and set at most once
    minted_height: int
    units: int  # outstanding (0 once burned)
    owner: str  # unique assets: the owner ("" once burned); editioned: always ""
    approved: str  # unique assets: the one entity approved to transfer it, or ""
    history: int  # provenance entries, indexes 1..history

    @property
    def asset_id(self) -> str:
        return compute_asset_id(self.collection_id, self.token_id)

    @property
    def is_burned(self) -> bool:
        return self.units == 0

    def encode(self) -> bytes:
        return codec.encode(
            (
                tags.TAG_ASSET,
                1,
                self.collection_id,
                self.token_id,
                self.seq,
                self.metadata_hash,
                self.uri,
                self.minted_height,
                self.units,
                self.owner,
                self.approved,
                self.history,
            )
        )


def decode_asset(data: bytes) -> Asset:
    fields = codec.decode_struct(data, tags.TAG_ASSET, 1, 12, "asset")
    return Asset(
        collection_id=expect_str(fields[2], "collection id", 64),
        token_id=expect_str(fields[3], "token id", TOKEN_CHARS_MAX),
        seq=expect_int(fields[4], "asset sequence", 1),
        metadata_hash=expect_bytes(fields[5], "metadata hash", HASH_BYTES),
        uri=expect_str(fields[6], "uri", URI_CHARS_MAX, allow_empty=True),
        minted_height=expect_int(fields[7], "minted height", 1),
        units=expect_int(fields[8], "units", 0, AMOUNT_MAX),
        owner=expect_str(fields[9], "owner", ENTITY_CHARS_MAX, allow_empty=True),
        approved=expect_str(fields[10], "approved", ENTITY_CHARS_MAX, allow_empty=True),
        history=expect_int(fields[11], "history", 1, 2**32 - 1),
    )


@dataclass(frozen=True, slots=True)
class Freeze:
    """A frozen holding: who froze it (the issuer's entity id or `zone:<id>`) and when."""

    frozen_by: str
    height: int

    def encode(self) -> bytes:
        return codec.encode((tags.TAG_ASSET_FREEZE, 1, self.frozen_by, self.height))


def decode_freeze(data: bytes) -> Freeze:
    fields = codec.decode_struct(data, tags.TAG_ASSET_FREEZE, 1, 4, "asset freeze")
    return Freeze(expect_str(fields[2], "frozen by", 128), expect_int(fields[3], "freeze height", 1))


@dataclass(frozen=True, slots=True)
class ProvenanceEntry:
    """One action in an asset's history.

    `source` and `target` by action: mint ("", owner), transfer (from, to), approve (owner,
    approved or ""), freeze and unfreeze (holder, ""), burn (holder, ""), set_uri ("", "").
    """

    index: int  # 1-based position in the asset's history
    action: str
    actor: str  # the transaction's signer
    source: str
    target: str
    amount: int  # units moved, minted or burned; 0 for the others
    height: int
    tx_hash: bytes

    def encode(self) -> bytes:
        return codec.encode(
            (
                tags.TAG_ASSET_PROVENANCE,
                1,
                self.index,
                self.action,
                self.actor,
                self.source,
                self.target,
                self.amount,
                self.height,
                self.tx_hash,
            )
        )


def _expect_action(value: Any) -> str:
    if value not in PROVENANCE_ACTIONS or not isinstance(value, str):
        raise DecodeError(f"provenance action {value!r} is not one the module records")
    return value


def decode_provenance_entry(data: bytes) -> ProvenanceEntry:
    fields = codec.decode_struct(data, tags.TAG_ASSET_PROVENANCE, 1, 10, "asset provenance entry")
    return ProvenanceEntry(
        index=expect_int(fields[2], "provenance index", 1, 2**32 - 1),
        action=_expect_action(fields[3]),
        actor=expect_str(fields[4], "provenance actor", 128),
        source=expect_str(fields[5], "provenance source", ENTITY_CHARS_MAX, allow_empty=True),
        target=expect_str(fields[6], "provenance target", ENTITY_CHARS_MAX, allow_empty=True),
        amount=expect_int(fields[7], "provenance amount", 0, AMOUNT_MAX),
        height=expect_int(fields[8], "provenance height", 1),
        tx_hash=expect_bytes(fields[9], "provenance tx hash", 32),
    )
