"""The `records` module: versioned records in each entity's namespace, shared through grants.

Theory of operation
-------------------
`records.put(key, value)`, signed by an entity with the `submitter` role, writes
a new version of the record `key` in the signer's namespace.  Versions start at
1 and increase by one per write; no version is ever overwritten or deleted, so
the full history stays queryable.  `put` is the benchmark's hot path: it checks
everything in `check_put_args` and writes straight into the block's overlay.

Data sharing (issue 13) is `chainnode.app.records_sharing`: grants to other entities or
sectors over a key prefix, writes by grantees (`put_to`, recorded with their writer), documents
anchored by hash (`anchor`) and read markers (`mark_read`).  This module holds what every write
shares: the layout, the versions and their reads, and `put`.

State layout (the module owns the `rec/` prefix):

- latest:  `rec/v/<entity> NUL <key>`                  -> version:u64be
- history: `rec/h/<entity> NUL <key> NUL <version:u64be>` -> encode((version, value, height, tx_hash))
  or, for a version written by a grantee or holding a document,
  encode((version, value, height, tx_hash, writer, (sha256, media_type, size, uri) | None))
- grants:  `rec/g/<owner> NUL <grantee>`  -> encode(((prefix, right, expires_at_height,
  granted_height, revoked_height, tx_hash), ...)), written by `records_sharing`
- read markers: `rec/m/<owner> NUL <key> NUL <reader>`  -> encode((version, height, tx_hash)),
  written by `records_sharing`

The latest entry points at its version instead of repeating it: each put writes
the value once (the state is most of what the ledger's LevelDB merges and
rewrites as the chain grows), at the price of a second read for "latest".  Versions written by the owner with
`put` keep the four-field form, so the hot path's bytes did not change.

A key is 1..128 printable characters without NUL or '/', so `<entity> NUL <key>`
is unambiguous for point lookups (the key never holds a NUL, and the version is
fixed width).  The value is at most 4096 bytes (`value_too_large`); larger
documents are stored off chain and anchored by hash.

Failures raise `TransactionError` with a stable code; the executor turns them
into failed receipts.  Reads go through any `StateReader`; listing a prefix
needs one that can iterate (`iter_state`, the ledger).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from chainnode.app.state import Action, Event, ExecutionContext, Overlay, StateReader, TransactionError
from chainnode.core import codec, keyspaces, types
from chainnode.core.codec import expect_bytes, expect_int, expect_str, expect_tuple
from chainnode.core.errors import DecodeError, StorageError

ErrorCode = types.ErrorCode
MODULE = "records"
KEY_CHARS_MAX = 128
VALUE_BYTES_MAX = 4096
SECTOR_PREFIX = "sector:"  # a grantee naming a sector; also the sector namespaces of `put_sector`
MEDIA_TYPE_CHARS_MAX = 127
URI_CHARS_MAX = 1024
DOCUMENT_BYTES_MAX = 2**63 - 1
SHA256_BYTES = 32

_LATEST_PREFIX = b"rec/v/"
_HISTORY_PREFIX = keyspaces.RECORD_HISTORY_PREFIX  # written once per version


@dataclass(frozen=True, slots=True)
class Document:
    """An off-chain document anchored by hash."""

    sha256: bytes  # SHA-256 of the document's bytes
    media_type: str  # e.g. "application/pdf"
    size: int  # bytes
    uri: str  # where to fetch it ("" when not published)


@dataclass(frozen=True, slots=True)
class RecordVersion:
    """One version of a record."""

    entity: str  # the entity whose namespace holds the record
    key: str
    version: int  # 1 for the first put
    value: bytes
    height: int  # height of the block that committed this version
    tx_hash: bytes  # the transaction that wrote it
    # Who wrote it when not the namespace's owner: a grantee, or the member of a sector that
    # wrote a sector namespace (which has no owner); "" when the owner wrote it.
    writer: str = ""
    document: Document | None = None  # set for an anchored document

    @property
    def written_by(self) -> str:
        """Who wrote this version."""
        return self.writer or self.entity


class StateIterator(Protocol):
    """A state reader that can list a key prefix from a start key (the ledger)."""

    def get_state(self, key: bytes) -> bytes | None: ...
    def iter_state(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]: ...


# ---------------------------------------------------------------- keys and checks


def is_valid_key(key: object) -> bool:
    return (
        isinstance(key, str)
        and 1 <= len(key) <= KEY_CHARS_MAX
        and key.isprintable()
        and "\x00" not in key
        and "/" not in key
    )


def is_valid_prefix(prefix: object) -> bool:
    """A key prefix: "" (every key) or the start of a valid key."""
    return isinstance(prefix, str) and (prefix == "" or is_valid_key(prefix))


def is_valid_name(name: object) -> bool:
    """An entity id or `sector:<sector>` as it may appear in a state key."""
    return (
        isinstance(name, str)
        and 1 <= len(name) <= KEY_CHARS_MAX
        and name.isprintable()
        and "\x00" not in name
    )


def compute_latest_key(entity: str, key: str) -> bytes:
    return _LATEST_PREFIX + entity.encode() + b"\x00" + key.encode()


def compute_history_key(entity: str, key: str, version: int) -> bytes:
    return _HISTORY_PREFIX + entity.encode() + b"\x00" + key.encode() + b"\x00" + version.to_bytes(8, "big")


# ---------------------------------------------------------------- reads


def get_record(state: StateReader, entity: str, key: str, version: int | None = None) -> RecordVersion | None:
    """The latest version of a record, or the given version; None when absent."""
    if not is_valid_key(key):
        return None
    if version is None:
        version = get_latest_version(state, entity, key)
        if version is None:
            return None
    elif not 1 <= version < 2**64:
        return None
    stored = state.get_state(compute_history_key(entity, key, version))
    if stored is None:
        return None
    return _decode_version(entity, key, stored)


def get_latest_version(state: StateReader, entity: str, key: str) -> int | None:
    """The number of the latest version of a record (a valid key), None when it has none."""
    stored = state.get_state(compute_latest_key(entity, key))
    if stored is None:
        return None
    if len(stored) != 8:
        raise StorageError(f"corrupt record {entity}/{key} in state: latest version of {len(stored)} bytes")
    return int.from_bytes(stored, "big")


def get_history(
    state: StateReader, entity: str, key: str, *, after_version: int = 0, limit: int = 100
) -> list[RecordVersion]:
    """Versions of a record after `after_version`, oldest first, at most `limit`."""
    latest = get_latest_version(state, entity, key) if is_valid_key(key) else None
    if latest is None:
        return []
    found = []
    for version in range(after_version + 1, min(latest, after_version + limit) + 1):
        record = get_record(state, entity, key, version)
        if record is None:
            raise StorageError(f"corrupt record {entity}/{key} in state: version {version} is missing")
        found.append(record)
    return found


def find_anchors(
    state: StateReader,
    entity: str,
    key: str,
    sha256: bytes,
    *,
    after_version: int = 0,
    limit: int | None = None,
) -> list[RecordVersion]:
    """The versions of a record after `after_version` that anchor a document with this
    SHA-256, oldest first, at most `limit` (None: all).  Versions are point reads from the
    cursor on, so a page does not read the versions before it."""
    found: list[RecordVersion] = []
    after = after_version
    batch = 256 if limit is None else min(256, limit + 1)
    while True:
        page = get_history(state, entity, key, after_version=after, limit=batch)
        if not page:
            return found
        for item in page:
            if item.document is not None and item.document.sha256 == sha256:
                found.append(item)
                if limit is not None and len(found) >= limit:
                    return found
        after = page[-1].version


def list_records(
    state: StateIterator, entity: str, prefix: str = "", *, after_key: str = "", limit: int = 100
) -> list[RecordVersion]:
    """The latest versions of `entity`'s keys that start with `prefix` and sort after
    `after_key` (the cursor: the last key of the previous page), in key order, at most `limit`."""
    found: list[RecordVersion] = []
    namespace = compute_latest_key(entity, "")
    # The first key after the cursor: keys hold no NUL, so none sorts between the two.  The
    # ledger seeks there, so a page reads its own keys, not every key before the cursor.
    start = compute_latest_key(entity, after_key) + b"\x00" if after_key else None
    for state_key, _ in state.iter_state(compute_latest_key(entity, prefix), start=start):
        key_bytes = state_key[len(namespace) :]
        record = get_record(state, entity, key_bytes.decode())
        if record is not None:
            found.append(record)
        if len(found) >= limit:
            break
    return found


def _decode_version(entity: str, key: str, stored: bytes) -> RecordVersion:
    # State is written only by this module, so a bad value means a corrupt data directory.
    try:
        fields = expect_tuple(codec.decode(stored), "record version", 6)
        if len(fields) not in (4, 6):
            raise DecodeError("record version: expected 4 or 6 fields")
        writer = ""
        document = None
        if len(fields) == 6:
            writer = expect_str(fields[4], "record writer", KEY_CHARS_MAX, allow_empty=True)
            if fields[5] is not None:
                document = _decode_document(fields[5])
        return RecordVersion(
            entity=entity,
            key=key,
            version=expect_int(fields[0], "record version number", 1),
            value=expect_bytes(fields[1], "record value", length_max=VALUE_BYTES_MAX),
            height=expect_int(fields[2], "record height"),
            tx_hash=expect_bytes(fields[3], "record tx hash", 32),
            writer=writer,
            document=document,
        )
    except DecodeError as error:
        raise StorageError(f"corrupt record {entity}/{key} in state: {error.message}") from error


def _decode_document(value: Any) -> Document:
    fields = expect_tuple(value, "record document", 4)
    if len(fields) != 4:
        raise DecodeError("record document: expected 4 fields")
    return Document(
        sha256=expect_bytes(fields[0], "document sha256", SHA256_BYTES),
        media_type=expect_str(fields[1], "document media type", MEDIA_TYPE_CHARS_MAX),
        size=expect_int(fields[2], "document size", 0, DOCUMENT_BYTES_MAX),
        uri=expect_str(fields[3], "document uri", URI_CHARS_MAX, allow_empty=True),
    )


# ---------------------------------------------------------------- writes


def write_version(
    overlay: Overlay, namespace: str, key: str, value: bytes, context: ExecutionContext, tx_hash: bytes
) -> int:
    """Write the next version of `key` in `namespace` (arguments already checked); its number."""
    latest = get_latest_version(overlay, namespace, key)
    version = 1 if latest is None else latest + 1
    overlay.put(compute_latest_key(namespace, key), version.to_bytes(8, "big"))
    overlay.put(
        compute_history_key(namespace, key, version), codec.encode((version, value, context.height, tx_hash))
    )
    return version


def write_version_by(
    overlay: Overlay,
    namespace: str,
    key: str,
    value: bytes,
    context: ExecutionContext,
    tx_hash: bytes,
    *,
    writer: str,
    document: Document | None,
) -> int:
    """`write_version` in the six-field form: a grantee's version, or a document anchor.
    Kept apart from `write_version` so that the `put` hot path does no more than it did."""
    latest = get_latest_version(overlay, namespace, key)
    version = 1 if latest is None else latest + 1
    anchored = None
    if document is not None:
        anchored = (document.sha256, document.media_type, document.size, document.uri)
    overlay.put(compute_latest_key(namespace, key), version.to_bytes(8, "big"))
    overlay.put(
        compute_history_key(namespace, key, version),
        codec.encode((version, value, context.height, tx_hash, writer, anchored)),
    )
    return version


def _fail(code: ErrorCode, message: str) -> TransactionError:
    return TransactionError(code, message)


# ---------------------------------------------------------------- argument checks


def check_put_args(args: tuple[Any, ...]) -> None:
    """`records.put(key: str, value: bytes)`.  Written out rather than through the helpers the
    other actions share: it runs twice per transaction of the benchmark's workload."""
    if len(args) != 2:
        raise _fail(ErrorCode.BAD_ARGUMENTS, f"records.put takes (key, value), got {len(args)} arguments")
    key, value = args
    if not is_valid_key(key):
        raise _fail(
            ErrorCode.BAD_ARGUMENTS,
            f"record key must be 1..{KEY_CHARS_MAX} printable characters without '/' or NUL",
        )
    if not isinstance(value, bytes):
        raise _fail(ErrorCode.BAD_ARGUMENTS, "record value must be bytes")
    if len(value) > VALUE_BYTES_MAX:
        raise _fail(
            ErrorCode.VALUE_TOO_LARGE, f"record value of {len(value)} bytes exceeds {VALUE_BYTES_MAX}"
        )


# ---------------------------------------------------------------- apply


def apply_put(overlay: Overlay, tx: types.Transaction, context: ExecutionContext) -> Sequence[Event]:
    """Write the next version of `key` in the signer's namespace (arguments already checked)."""
    key, value = tx.args
    version = write_version(overlay, tx.signer, key, value, context, tx.hash)
    return [("records.put", (tx.signer, key, version))]


ACTIONS: dict[tuple[str, str], Action] = {
    (MODULE, "put"): Action(role="submitter", check_args=check_put_args, apply=apply_put, cannot_fail=True),
}
