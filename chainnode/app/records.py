"""The `records` module: versioned records in each entity's own namespace.

Theory of operation
-------------------
`records.put(key, value)`, signed by an entity with the `submitter` role, writes
a new version of the record `key` in the signer's namespace.  Versions start at
1 and increase by one per put; no version is ever overwritten or deleted, so
the full history stays queryable.

State layout (the module owns the `rec/` prefix):

- latest:  `rec/v/<entity> NUL <key>`                  -> version:u64be
- history: `rec/h/<entity> NUL <key> NUL <version:u64be>` -> encode((version, value, height, tx_hash))

The latest entry points at its version instead of repeating it: each put
writes the value once (the state is most of what the ledger's LevelDB merges
and rewrites as the chain grows), at the price of a second read for "latest".

A key is 1..128 printable characters without NUL or '/', so `<entity> NUL <key>`
is unambiguous for point lookups (the key never holds a NUL, and the version is
fixed width).  The value is at most 4096 bytes; larger documents are stored
off chain and recorded by hash.

Failures (bad arguments) raise `TransactionError`; the executor turns them into
failed receipts.  Reads go through any `StateReader`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from chainnode.app.state import Action, Event, ExecutionContext, Overlay, StateReader, TransactionError
from chainnode.core import codec, types
from chainnode.core.codec import expect_bytes, expect_int, expect_tuple
from chainnode.core.errors import DecodeError, StorageError

MODULE = "records"
KEY_CHARS_MAX = 128
VALUE_BYTES_MAX = 4096

_LATEST_PREFIX = b"rec/v/"
_HISTORY_PREFIX = b"rec/h/"


@dataclass(frozen=True, slots=True)
class RecordVersion:
    """One version of a record."""

    entity: str  # the entity whose namespace holds the record
    key: str
    version: int  # 1 for the first put
    value: bytes
    height: int  # height of the block that committed this version
    tx_hash: bytes  # the transaction that wrote it


def is_valid_key(key: object) -> bool:
    return (
        isinstance(key, str)
        and 1 <= len(key) <= KEY_CHARS_MAX
        and key.isprintable()
        and "\x00" not in key
        and "/" not in key
    )


def compute_latest_key(entity: str, key: str) -> bytes:
    return _LATEST_PREFIX + entity.encode() + b"\x00" + key.encode()


def compute_history_key(entity: str, key: str, version: int) -> bytes:
    return _HISTORY_PREFIX + entity.encode() + b"\x00" + key.encode() + b"\x00" + version.to_bytes(8, "big")


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


def _decode_version(entity: str, key: str, stored: bytes) -> RecordVersion:
    # State is written only by this module, so a bad value means a corrupt data directory.
    try:
        fields = expect_tuple(codec.decode(stored), "record version", 4)
        if len(fields) != 4:
            raise DecodeError("record version: expected 4 fields")
        return RecordVersion(
            entity=entity,
            key=key,
            version=expect_int(fields[0], "record version number", 1),
            value=expect_bytes(fields[1], "record value", length_max=VALUE_BYTES_MAX),
            height=expect_int(fields[2], "record height"),
            tx_hash=expect_bytes(fields[3], "record tx hash", 32),
        )
    except DecodeError as error:
        raise StorageError(f"corrupt record {entity}/{key} in state: {error.message}") from error


def check_put_args(args: tuple[Any, ...]) -> None:
    """`records.put(key: str, value: bytes)`."""
    if len(args) != 2:
        raise TransactionError(
            types.ErrorCode.BAD_ARGUMENTS, f"records.put takes (key, value), got {len(args)} arguments"
        )
    key, value = args
    if not is_valid_key(key):
        raise TransactionError(
            types.ErrorCode.BAD_ARGUMENTS,
            f"record key must be 1..{KEY_CHARS_MAX} printable characters without '/' or NUL",
        )
    if not isinstance(value, bytes):
        raise TransactionError(types.ErrorCode.BAD_ARGUMENTS, "record value must be bytes")
    if len(value) > VALUE_BYTES_MAX:
        raise TransactionError(
            types.ErrorCode.BAD_ARGUMENTS,
            f"record value of {len(value)} bytes exceeds {VALUE_BYTES_MAX}",
        )


def apply_put(overlay: Overlay, tx: types.Transaction, context: ExecutionContext) -> Sequence[Event]:
    """Write the next version of `key` in the signer's namespace (arguments already checked)."""
    key, value = tx.args
    version = write_version(overlay, tx.signer, key, value, context, tx.hash)
    return [("records.put", (tx.signer, key, version))]


ACTIONS: dict[tuple[str, str], Action] = {
    (MODULE, "put"): Action(role="submitter", check_args=check_put_args, apply=apply_put, cannot_fail=True),
}
