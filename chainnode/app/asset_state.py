"""The state of the `assets` module: its key layout, its stored records and the readers over them.

Theory of operation
-------------------
`chainnode.app.assets` holds the actions; this module owns what they write under the `ast/`
prefix and every read of it (the actions, the API and the tools read through the same
functions); the records it stores, with their encodings, are `chainnode.app.asset_records`'.
Identifiers: a collection id is a lowercase `[a-z0-9-]` id of at most 64 characters
(`identity.is_valid_id`); a token id is 1..64 characters of `[A-Za-z0-9._-]`.  Neither holds
NUL or '/', so `<collection> NUL <token> NUL ...` is unambiguous and an asset is named
`<collection>/<token>` in text.

Key layout (fixed-width big-endian integers, so keys sort in the order they were made):

- `ast/c/<collection>`                                 -> `Collection` (TAG_ASSET_COLLECTION)
- `ast/t/<collection> NUL <token>`                     -> `Asset` (TAG_ASSET)
- `ast/n/<collection> NUL <seq:u64be>`                 -> token id: the collection's assets in
  mint order (seq 1, 2, ...), so a page of them is point reads from a cursor
- `ast/b/<collection> NUL <token> NUL <holder>`        -> amount:u64be, present while > 0
- `ast/o/<holder> NUL <collection> NUL <token>`        -> b"": the holder's assets (listed with
  `iter_state`; the entry goes with the holding)
- `ast/f/<collection> NUL <token> NUL <holder>`        -> `Freeze` (TAG_ASSET_FREEZE)
- `ast/a/<collection> NUL <owner> NUL <operator>`      -> b"": `approve_all` grants
- `ast/h/<collection> NUL <token> NUL <index:u32be>`   -> `ProvenanceEntry` (TAG_ASSET_PROVENANCE),
  index 1..`Asset.history`: every action that touched the asset, never rewritten

Decoding is strict (tag, version, arity, types, bounds).  Only this module's writers put these
keys, so a value that does not decode is a corrupt data directory (`StorageError`), never bad
input.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol, TypeVar

from chainnode.app.asset_records import (
    AMOUNT_MAX,
    ENTITY_CHARS_MAX,
    HASH_BYTES,
    KIND_EDITIONED,
    KIND_UNIQUE,
    KINDS,
    NAME_CHARS_MAX,
    PROVENANCE_ACTIONS,
    SYMBOL_CHARS_MAX,
    TOKEN_CHARS_MAX,
    URI_CHARS_MAX,
    Asset,
    Collection,
    Freeze,
    ProvenanceEntry,
    compute_asset_id,
    decode_asset,
    decode_collection,
    decode_freeze,
    decode_provenance_entry,
    is_valid_collection_id,
    is_valid_token_id,
)
from chainnode.app.state import Overlay, StateReader
from chainnode.core import keyspaces
from chainnode.core.errors import DecodeError, StorageError

# What callers import from here, the records' names (now in chainnode.app.asset_records) included.
__all__ = [
    "AMOUNT_MAX",
    "ENTITY_CHARS_MAX",
    "HASH_BYTES",
    "KINDS",
    "KIND_EDITIONED",
    "KIND_UNIQUE",
    "NAME_CHARS_MAX",
    "PROVENANCE_ACTIONS",
    "SYMBOL_CHARS_MAX",
    "TOKEN_CHARS_MAX",
    "URI_CHARS_MAX",
    "Asset",
    "Collection",
    "Freeze",
    "Holding",
    "ProvenanceEntry",
    "StateIterator",
    "compute_asset_id",
    "compute_asset_key",
    "compute_balance_key",
    "compute_collection_key",
    "compute_freeze_key",
    "compute_history_key",
    "compute_holders_prefix",
    "compute_operator_key",
    "compute_owned_key",
    "compute_owned_prefix",
    "compute_sequence_key",
    "decode_asset",
    "decode_collection",
    "decode_freeze",
    "decode_provenance_entry",
    "get_asset",
    "get_balance",
    "get_collection",
    "get_freeze",
    "get_provenance_entry",
    "is_operator",
    "is_valid_collection_id",
    "is_valid_token_id",
    "list_collection_assets",
    "list_holders",
    "list_owned",
    "list_provenance",
    "put_balance",
    "set_operator",
]

_COLLECTION_PREFIX = b"ast/c/"
_ASSET_PREFIX = b"ast/t/"
_SEQUENCE_PREFIX = b"ast/n/"
_BALANCE_PREFIX = b"ast/b/"
_OWNED_PREFIX = b"ast/o/"
_FREEZE_PREFIX = b"ast/f/"
_OPERATOR_PREFIX = b"ast/a/"
_HISTORY_PREFIX = keyspaces.ASSET_HISTORY_PREFIX  # written once per entry

_Value = TypeVar("_Value")


# ---------------------------------------------------------------- keys


def _join(*parts: str) -> bytes:
    return b"\x00".join(part.encode() for part in parts)


def compute_collection_key(collection_id: str) -> bytes:
    return _COLLECTION_PREFIX + collection_id.encode()


def compute_asset_key(collection_id: str, token_id: str) -> bytes:
    return _ASSET_PREFIX + _join(collection_id, token_id)


def compute_sequence_key(collection_id: str, seq: int) -> bytes:
    return _SEQUENCE_PREFIX + collection_id.encode() + b"\x00" + seq.to_bytes(8, "big")


def compute_balance_key(collection_id: str, token_id: str, holder: str) -> bytes:
    return _BALANCE_PREFIX + _join(collection_id, token_id, holder)


def compute_holders_prefix(collection_id: str, token_id: str) -> bytes:
    return _BALANCE_PREFIX + _join(collection_id, token_id) + b"\x00"


def compute_owned_key(holder: str, collection_id: str, token_id: str) -> bytes:
    return _OWNED_PREFIX + _join(holder, collection_id, token_id)


def compute_owned_prefix(holder: str) -> bytes:
    return _OWNED_PREFIX + holder.encode() + b"\x00"


def compute_freeze_key(collection_id: str, token_id: str, holder: str) -> bytes:
    return _FREEZE_PREFIX + _join(collection_id, token_id, holder)


def compute_operator_key(collection_id: str, owner: str, operator: str) -> bytes:
    return _OPERATOR_PREFIX + _join(collection_id, owner, operator)


def compute_history_key(collection_id: str, token_id: str, index: int) -> bytes:
    return _HISTORY_PREFIX + _join(collection_id, token_id) + b"\x00" + index.to_bytes(4, "big")


def _decode_amount(data: bytes) -> int:
    if len(data) != 8:
        raise DecodeError(f"holding of {len(data)} bytes, expected 8")
    amount = int.from_bytes(data, "big")
    if not 1 <= amount <= AMOUNT_MAX:
        raise DecodeError(f"holding of {amount} units")
    return amount


def _decode_token_id(data: bytes) -> str:
    try:
        token_id = data.decode()
    except UnicodeDecodeError as error:
        raise DecodeError("token id is not UTF-8") from error
    if not is_valid_token_id(token_id):
        raise DecodeError(f"token id {token_id[:80]!r} is not valid")
    return token_id


def _decode_marker(data: bytes) -> bool:
    if data != b"":
        raise DecodeError("a marker entry holds no value")
    return True


# ---------------------------------------------------------------- readers


def _read(state: StateReader, key: bytes, decode: Callable[[bytes], _Value], what: str) -> _Value | None:
    stored = state.get_state(key)
    if stored is None:
        return None
    try:
        return decode(stored)
    except DecodeError as error:
        raise StorageError(f"corrupt {what} in state: {error.message}") from error


def get_collection(state: StateReader, collection_id: str) -> Collection | None:
    if not is_valid_collection_id(collection_id):
        return None
    return _read(
        state, compute_collection_key(collection_id), decode_collection, f"collection {collection_id}"
    )


def get_asset(state: StateReader, collection_id: str, token_id: str) -> Asset | None:
    if not (is_valid_collection_id(collection_id) and is_valid_token_id(token_id)):
        return None
    asset_id = compute_asset_id(collection_id, token_id)
    return _read(state, compute_asset_key(collection_id, token_id), decode_asset, f"asset {asset_id}")


def get_balance(state: StateReader, collection_id: str, token_id: str, holder: str) -> int:
    """Units of the asset `holder` holds (0 when none)."""
    what = f"holding of {compute_asset_id(collection_id, token_id)} by {holder}"
    amount = _read(state, compute_balance_key(collection_id, token_id, holder), _decode_amount, what)
    return amount or 0


def get_freeze(state: StateReader, collection_id: str, token_id: str, holder: str) -> Freeze | None:
    what = f"freeze of {compute_asset_id(collection_id, token_id)} held by {holder}"
    return _read(state, compute_freeze_key(collection_id, token_id, holder), decode_freeze, what)


def is_operator(state: StateReader, collection_id: str, owner: str, operator: str) -> bool:
    """Whether `owner` approved `operator` for all its assets of the collection."""
    what = f"operator {operator} of {owner} in {collection_id}"
    return bool(_read(state, compute_operator_key(collection_id, owner, operator), _decode_marker, what))


def get_provenance_entry(
    state: StateReader, collection_id: str, token_id: str, index: int
) -> ProvenanceEntry:
    what = f"provenance {index} of {compute_asset_id(collection_id, token_id)}"
    entry = _read(state, compute_history_key(collection_id, token_id, index), decode_provenance_entry, what)
    if entry is None or entry.index != index:
        raise StorageError(f"{what} is missing or misplaced in state")
    return entry


def list_provenance(state: StateReader, asset: Asset, *, after: int, limit: int) -> list[ProvenanceEntry]:
    """Entries `after + 1 ..` of the asset's history, at most `limit` (point reads)."""
    last = min(asset.history, after + limit)
    return [
        get_provenance_entry(state, asset.collection_id, asset.token_id, index)
        for index in range(max(after, 0) + 1, last + 1)
    ]


def list_collection_assets(
    state: StateReader, collection: Collection, *, after: int, limit: int
) -> list[Asset]:
    """The collection's assets with sequence numbers `after + 1 ..`, at most `limit`, burned
    ones included (point reads)."""
    found = []
    for seq in range(max(after, 0) + 1, min(collection.tokens, after + limit) + 1):
        what = f"sequence {seq} of {collection.collection_id}"
        token_id = _read(state, compute_sequence_key(collection.collection_id, seq), _decode_token_id, what)
        asset = None if token_id is None else get_asset(state, collection.collection_id, token_id)
        if asset is None or asset.seq != seq:
            raise StorageError(f"{what} is missing or misplaced in state")
        found.append(asset)
    return found


class StateIterator(Protocol):
    """A state reader that can list a key prefix in key order (the ledger, `MapState`)."""

    def get_state(self, key: bytes) -> bytes | None: ...
    def iter_state(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]: ...


@dataclass(frozen=True, slots=True)
class Holding:
    """Units of one asset held by one entity."""

    holder: str
    collection_id: str
    token_id: str
    amount: int
    frozen_by: str  # "" when not frozen


def _split_suffix(key: bytes, prefix: bytes, parts: int) -> list[str]:
    try:
        items = key[len(prefix) :].decode().split("\x00")
    except UnicodeDecodeError as error:
        raise StorageError(f"corrupt asset key {key[:80]!r} in state") from error
    if len(items) != parts:
        raise StorageError(f"corrupt asset key {key[:80]!r} in state")
    return items


def _holding(state: StateReader, holder: str, collection_id: str, token_id: str) -> Holding:
    freeze = get_freeze(state, collection_id, token_id, holder)
    return Holding(
        holder,
        collection_id,
        token_id,
        get_balance(state, collection_id, token_id, holder),
        "" if freeze is None else freeze.frozen_by,
    )


def list_owned(state: StateIterator, holder: str, *, after: str, limit: int) -> list[Holding]:
    """The holder's holdings in (collection, token) order, from after the asset id `after`
    (`<collection>/<token>`, "" for the first page), at most `limit`."""
    prefix = compute_owned_prefix(holder)
    start = None
    if after:
        collection_id, _, token_id = after.partition("/")
        # The first key after the cursor's (ids hold no NUL): the ledger seeks there.
        start = prefix + _join(collection_id, token_id) + b"\x00"
    found: list[Holding] = []
    for key, value in state.iter_state(prefix, start=start):
        _decode_marker(value)
        collection_id, token_id = _split_suffix(key, prefix, 2)
        found.append(_holding(state, holder, collection_id, token_id))
        if len(found) >= limit:
            break
    return found


def list_holders(
    state: StateIterator, collection_id: str, token_id: str, *, after: str = "", limit: int
) -> list[Holding]:
    """The holders of an asset in id order, after the holder id `after` ("" for the first
    page), at most `limit`."""
    prefix = compute_holders_prefix(collection_id, token_id)
    start = prefix + after.encode() + b"\x00" if after else None
    found: list[Holding] = []
    for key, _ in state.iter_state(prefix, start=start):
        (holder,) = _split_suffix(key, prefix, 1)
        found.append(_holding(state, holder, collection_id, token_id))
        if len(found) >= limit:
            break
    return found


# ---------------------------------------------------------------- writers


def put_balance(overlay: Overlay, collection_id: str, token_id: str, holder: str, amount: int) -> None:
    """Set a holding (and the holder's index entry); an amount of 0 deletes both."""
    key = compute_balance_key(collection_id, token_id, holder)
    owned_key = compute_owned_key(holder, collection_id, token_id)
    if amount == 0:
        overlay.delete(key)
        overlay.delete(owned_key)
        return
    overlay.put(key, amount.to_bytes(8, "big"))
    overlay.put(owned_key, b"")


def set_operator(overlay: Overlay, collection_id: str, owner: str, operator: str, approved: bool) -> None:
    key = compute_operator_key(collection_id, owner, operator)
    if approved:
        overlay.put(key, b"")
    else:
        overlay.delete(key)
