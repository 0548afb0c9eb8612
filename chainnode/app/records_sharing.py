"""Data sharing in the `records` module: grants, writes by grantees, documents anchored by hash
and read markers (issue 13).  The versions themselves, their layout and reads, and `put` are
`chainnode.app.records`.

Theory of operation
-------------------
All signed by entities with the `submitter` role:

- `grant(grantee, prefix, right, expires_at_height)`: the signer (the namespace owner) lets
  `grantee` (an entity id, or `sector:<sector>` for every entity whose certificate carries that
  sector) use `right` on the keys of its namespace that start with `prefix` ("" covers every
  key).  Rights: `write` (write versions and anchor documents; includes `read-marker`) and
  `read-marker` (record that one has read a version: an access log the owner can show).
  Expiry is a **height**, the last height at which the grant applies, like a transaction's
  `valid_until` and a proposal's expiry: block order alone decides it, no clock.  Granting the
  same (grantee, prefix) again replaces the earlier grant (so a revoked grant can be renewed).
- `revoke(grantee, prefix)`: from this transaction on the grant no longer applies; it stays in
  state with the revocation height (`list_grants` shows it).
- `put_to(owner, key, value)`: a version in `owner`'s namespace, recorded with its writer (the
  signer).  Writing into one's own namespace needs no grant.
- `anchor(owner, key, sha256, media_type, size, uri)`: a document anchored by hash as a version
  of `key` (value empty): the SHA-256 of the off-chain bytes, their media type and size, and
  where to fetch them.  Anyone holding the bytes can check them (`records.find_anchors`).
- `mark_read(owner, key, version)`: the signer records that it read that version (needs
  `read-marker` or `write`, or is the owner).

A grantee's action finds every grant of the owner to the signer and to the signer's sectors
whose prefix covers the key; it succeeds when one of them is active (not revoked, not expired)
and holds the right.  Otherwise it fails with, in this order: `wrong_right` (an active grant
with another right), `grant_revoked`, `grant_expired`, `no_grant`.  Grants take effect at once,
for the next transaction of the same block too: they are state, not identity (unlike signers,
which are read at the start of the block).

State (under the module's `rec/` prefix, see `chainnode.app.records`): one value per (owner,
grantee), `rec/g/<owner> NUL <grantee>` -> the grants sorted by prefix, so a grantee's write
costs a few point reads (one for the signer, one per sector of its certificate) whatever the
key's length, instead of one read per prefix of the key; read markers at
`rec/m/<owner> NUL <key> NUL <reader>` -> (version, height, tx hash).  None of these actions is
on the `put` hot path: `put` reads no grant.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from chainnode.app.records import (
    DOCUMENT_BYTES_MAX,
    KEY_CHARS_MAX,
    MEDIA_TYPE_CHARS_MAX,
    MODULE,
    SECTOR_PREFIX,
    SHA256_BYTES,
    URI_CHARS_MAX,
    VALUE_BYTES_MAX,
    Document,
    StateIterator,
    get_record,
    is_valid_key,
    is_valid_name,
    is_valid_prefix,
    write_version_by,
)
from chainnode.app.state import Action, Event, ExecutionContext, Overlay, StateReader, TransactionError
from chainnode.core import codec, identity_records, types
from chainnode.core.codec import expect_bytes, expect_int, expect_str, expect_tuple
from chainnode.core.errors import DecodeError, StorageError

ErrorCode = types.ErrorCode


def _fail(code: ErrorCode, message: str) -> TransactionError:
    return TransactionError(code, message)


RIGHT_WRITE = "write"
RIGHT_READ_MARKER = "read-marker"
RIGHTS = (RIGHT_WRITE, RIGHT_READ_MARKER)
GRANTS_PER_GRANTEE_MAX = 64  # prefixes one owner grants one grantee (revoked and expired ones included)
HEIGHT_MAX = 2**63 - 1
_GRANT_PREFIX = b"rec/g/"
_MARKER_PREFIX = b"rec/m/"


@dataclass(frozen=True, slots=True)
class Grant:
    """One grant of an owner to a grantee over a key prefix."""

    owner: str
    grantee: str  # an entity id or `sector:<sector>`
    prefix: str  # "" covers every key
    right: str  # `write` or `read-marker`
    expires_at_height: int  # the last height at which the grant applies
    granted_height: int
    revoked_height: int  # 0 while not revoked
    tx_hash: bytes  # the grant (or its revocation) transaction

    def is_covering(self, key: str) -> bool:
        return key.startswith(self.prefix)

    def get_refusal(self, height: int) -> ErrorCode | None:
        """Why this grant does not apply at `height` (revoked, expired), or None."""
        if self.revoked_height and height >= self.revoked_height:
            return ErrorCode.GRANT_REVOKED
        if height > self.expires_at_height:
            return ErrorCode.GRANT_EXPIRED
        return None

    def has_right(self, right: str) -> bool:
        return self.right in (right, RIGHT_WRITE)


@dataclass(frozen=True, slots=True)
class ReadMarker:
    """A grantee's statement, on chain, that it read a version of a record."""

    owner: str
    key: str
    reader: str
    version: int
    height: int
    tx_hash: bytes


# ---------------------------------------------------------------- grants and read markers in state


def compute_grant_key(owner: str, grantee: str) -> bytes:
    return _GRANT_PREFIX + owner.encode() + b"\x00" + grantee.encode()


def compute_marker_key(owner: str, key: str, reader: str) -> bytes:
    return _MARKER_PREFIX + owner.encode() + b"\x00" + key.encode() + b"\x00" + reader.encode()


def get_grants(state: StateReader, owner: str, grantee: str) -> list[Grant]:
    """The grants (active or not) of `owner` to `grantee`, by prefix."""
    stored = state.get_state(compute_grant_key(owner, grantee))
    if stored is None:
        return []
    return _decode_grants(owner, grantee, stored)


def list_grants(
    state: StateIterator,
    owner: str,
    *,
    after_grantee: str = "",
    after_prefix: str = "",
    limit: int | None = None,
) -> list[Grant]:
    """Every grant `owner` made (active, expired or revoked), by grantee and prefix, after the
    grant (`after_grantee`, `after_prefix`) when `after_grantee` is given (the cursor: the last
    grant of the previous page), at most `limit` (None: all).  The ledger seeks to the cursor's
    grantee, so a page reads its own grants and those of one grantee, not every one before."""
    found: list[Grant] = []
    namespace = compute_grant_key(owner, "")
    start = compute_grant_key(owner, after_grantee) if after_grantee else None
    for state_key, stored in state.iter_state(namespace, start=start):
        grantee = state_key[len(namespace) :].decode()
        for grant in _decode_grants(owner, grantee, stored):
            if grantee == after_grantee and grant.prefix <= after_prefix:
                continue  # on the previous page
            found.append(grant)
            if limit is not None and len(found) >= limit:
                return found
    return found


def list_read_markers(
    state: StateIterator, owner: str, key: str, *, after: str = "", limit: int | None = None
) -> list[ReadMarker]:
    """Who marked which version of a record as read, by reader, after the reader `after` (""
    for the first page), at most `limit` (None: all); the ledger seeks to the cursor."""
    found: list[ReadMarker] = []
    namespace = compute_marker_key(owner, key, "")
    start = compute_marker_key(owner, key, after) + b"\x00" if after else None
    for state_key, stored in state.iter_state(namespace, start=start):
        reader = state_key[len(namespace) :].decode()
        try:
            fields = expect_tuple(codec.decode(stored), "read marker", 3)
            if len(fields) != 3:
                raise DecodeError("read marker: expected 3 fields")
            version = expect_int(fields[0], "read marker version", 1)
            height = expect_int(fields[1], "read marker height")
            tx_hash = expect_bytes(fields[2], "read marker tx hash", 32)
        except DecodeError as error:
            raise StorageError(f"corrupt read marker {owner}/{key}/{reader}: {error.message}") from error
        found.append(ReadMarker(owner, key, reader, version, height, tx_hash))
        if limit is not None and len(found) >= limit:
            break
    return found


def _decode_grants(owner: str, grantee: str, stored: bytes) -> list[Grant]:
    try:
        items = expect_tuple(codec.decode(stored), "grants", GRANTS_PER_GRANTEE_MAX)
        grants = []
        for item in items:
            fields = expect_tuple(item, "grant", 6)
            if len(fields) != 6:
                raise DecodeError("grant: expected 6 fields")
            grants.append(
                Grant(
                    owner=owner,
                    grantee=grantee,
                    prefix=expect_str(fields[0], "grant prefix", KEY_CHARS_MAX, allow_empty=True),
                    right=expect_str(fields[1], "grant right", 32),
                    expires_at_height=expect_int(fields[2], "grant expiry", 0, HEIGHT_MAX),
                    granted_height=expect_int(fields[3], "grant height"),
                    revoked_height=expect_int(fields[4], "grant revocation height"),
                    tx_hash=expect_bytes(fields[5], "grant tx hash", 32),
                )
            )
        return grants
    except DecodeError as error:
        raise StorageError(f"corrupt grants of {owner} to {grantee} in state: {error.message}") from error


def _encode_grants(grants: Sequence[Grant]) -> bytes:
    return codec.encode(
        tuple(
            (
                grant.prefix,
                grant.right,
                grant.expires_at_height,
                grant.granted_height,
                grant.revoked_height,
                grant.tx_hash,
            )
            for grant in sorted(grants, key=lambda grant: grant.prefix)
        )
    )


# ---------------------------------------------------------------- rights


def _require_right(overlay: Overlay, owner: str, key: str, right: str, context: ExecutionContext) -> None:
    """The signer may use `right` on `owner`'s `key` (see the module docstring), else raise."""
    signer = context.signer
    if signer.name == owner:
        return
    entity = signer.entity
    assert entity is not None, "records actions are signed by entities"
    candidates = [signer.name, *(SECTOR_PREFIX + sector for sector in entity.sectors)]
    refusals: set[ErrorCode] = set()
    for grantee in candidates:
        for grant in get_grants(overlay, owner, grantee):
            if not grant.is_covering(key):
                continue
            refusal = grant.get_refusal(context.height)
            if refusal is None:
                if grant.has_right(right):
                    return
                refusal = ErrorCode.WRONG_RIGHT
            refusals.add(refusal)
    what = f"the grant of {owner!r} to {signer.name!r} covering {key!r}"
    if ErrorCode.WRONG_RIGHT in refusals:
        raise _fail(ErrorCode.WRONG_RIGHT, f"{what} does not give {right!r}")
    if ErrorCode.GRANT_REVOKED in refusals:
        raise _fail(ErrorCode.GRANT_REVOKED, f"{what} was revoked")
    if ErrorCode.GRANT_EXPIRED in refusals:
        raise _fail(ErrorCode.GRANT_EXPIRED, f"{what} expired before height {context.height}")
    raise _fail(ErrorCode.NO_GRANT, f"{owner!r} granted {signer.name!r} no {right!r} over {key!r}")


# ---------------------------------------------------------------- argument checks


def _check_arity(action: str, args: tuple[Any, ...], names: str) -> None:
    count = len(names.split(", "))
    if len(args) != count:
        raise _fail(ErrorCode.BAD_ARGUMENTS, f"records.{action} takes ({names}), got {len(args)} arguments")


def _check_key(key: Any) -> None:
    if not is_valid_key(key):
        raise _fail(
            ErrorCode.BAD_ARGUMENTS,
            f"record key must be 1..{KEY_CHARS_MAX} printable characters without '/' or NUL",
        )


def _check_owner(owner: Any) -> None:
    if not is_valid_name(owner) or owner.startswith(SECTOR_PREFIX):
        raise _fail(
            ErrorCode.BAD_ARGUMENTS, "the owner must be an entity id (sector namespaces take put_sector)"
        )


def _check_value(value: Any) -> None:
    if not isinstance(value, bytes):
        raise _fail(ErrorCode.BAD_ARGUMENTS, "record value must be bytes")
    if len(value) > VALUE_BYTES_MAX:
        raise _fail(
            ErrorCode.VALUE_TOO_LARGE, f"record value of {len(value)} bytes exceeds {VALUE_BYTES_MAX}"
        )


def check_put_to_args(args: tuple[Any, ...]) -> None:
    """`records.put_to(owner: str, key: str, value: bytes)`."""
    _check_arity("put_to", args, "owner, key, value")
    _check_owner(args[0])
    _check_key(args[1])
    _check_value(args[2])


def check_document(sha256: Any, media_type: Any, size: Any, uri: Any) -> Document:
    """A document anchor's fields, checked (`bad_document` otherwise)."""
    if not isinstance(sha256, bytes) or len(sha256) != SHA256_BYTES:
        raise _fail(ErrorCode.BAD_DOCUMENT, f"a document's sha256 is {SHA256_BYTES} bytes")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= DOCUMENT_BYTES_MAX:
        raise _fail(ErrorCode.BAD_DOCUMENT, "a document's size is a non-negative integer of bytes")
    if (
        not isinstance(media_type, str)
        or not 3 <= len(media_type) <= MEDIA_TYPE_CHARS_MAX
        or not media_type.isascii()
        or not media_type.isprintable()
        or " " in media_type
        or media_type.count("/") != 1
        or media_type.startswith("/")
        or media_type.endswith("/")
    ):
        raise _fail(ErrorCode.BAD_DOCUMENT, "a document's media type is 'type/subtype', e.g. application/pdf")
    if not isinstance(uri, str) or len(uri) > URI_CHARS_MAX or not uri.isprintable():
        raise _fail(
            ErrorCode.BAD_DOCUMENT, f"a document's URI is at most {URI_CHARS_MAX} printable characters"
        )
    return Document(sha256, media_type, size, uri)


def check_anchor_args(args: tuple[Any, ...]) -> None:
    """`records.anchor(owner: str, key: str, sha256: bytes, media_type: str, size: int, uri: str)`."""
    _check_arity("anchor", args, "owner, key, sha256, media_type, size, uri")
    _check_owner(args[0])
    _check_key(args[1])
    check_document(*args[2:])


def check_grant_args(args: tuple[Any, ...]) -> None:
    """`records.grant(grantee: str, prefix: str, right: str, expires_at_height: int)`."""
    _check_arity("grant", args, "grantee, prefix, right, expires_at_height")
    grantee, prefix, right, expires_at_height = args
    _check_grantee(grantee)
    _check_prefix(prefix)
    if right not in RIGHTS:
        raise _fail(ErrorCode.BAD_ARGUMENTS, f"a grant's right is one of {list(RIGHTS)}")
    if (
        not isinstance(expires_at_height, int)
        or isinstance(expires_at_height, bool)
        or not 1 <= expires_at_height <= HEIGHT_MAX
    ):
        raise _fail(ErrorCode.BAD_ARGUMENTS, "expires_at_height is a height (a positive integer)")


def check_revoke_args(args: tuple[Any, ...]) -> None:
    """`records.revoke(grantee: str, prefix: str)`."""
    _check_arity("revoke", args, "grantee, prefix")
    _check_grantee(args[0])
    _check_prefix(args[1])


def check_mark_read_args(args: tuple[Any, ...]) -> None:
    """`records.mark_read(owner: str, key: str, version: int)`."""
    _check_arity("mark_read", args, "owner, key, version")
    _check_owner(args[0])
    _check_key(args[1])
    version = args[2]
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version < 2**64:
        raise _fail(ErrorCode.BAD_ARGUMENTS, "version is a positive integer")


def _check_grantee(grantee: Any) -> None:
    if not is_valid_name(grantee):
        raise _fail(ErrorCode.BAD_ARGUMENTS, "a grantee is an entity id or sector:<sector>")
    if grantee.startswith(SECTOR_PREFIX) and grantee[len(SECTOR_PREFIX) :] not in identity_records.SECTORS:
        raise _fail(
            ErrorCode.BAD_GRANT, f"unknown sector in {grantee!r}; sectors: {sorted(identity_records.SECTORS)}"
        )


def _check_prefix(prefix: Any) -> None:
    if not is_valid_prefix(prefix):
        raise _fail(ErrorCode.BAD_ARGUMENTS, f'a prefix is "" or up to {KEY_CHARS_MAX} key characters')


# ---------------------------------------------------------------- apply


def apply_put_to(overlay: Overlay, tx: types.Transaction, context: ExecutionContext) -> Sequence[Event]:
    owner, key, value = tx.args
    _require_right(overlay, owner, key, RIGHT_WRITE, context)
    writer = "" if owner == tx.signer else tx.signer
    version = write_version_by(overlay, owner, key, value, context, tx.hash, writer=writer, document=None)
    return [("records.written", (owner, key, version, tx.signer))]


def apply_anchor(overlay: Overlay, tx: types.Transaction, context: ExecutionContext) -> Sequence[Event]:
    owner, key, *fields = tx.args
    document = check_document(*fields)
    _require_right(overlay, owner, key, RIGHT_WRITE, context)
    writer = "" if owner == tx.signer else tx.signer
    version = write_version_by(overlay, owner, key, b"", context, tx.hash, writer=writer, document=document)
    return [("records.anchored", (owner, key, version, tx.signer, document.sha256))]


def apply_grant(overlay: Overlay, tx: types.Transaction, context: ExecutionContext) -> Sequence[Event]:
    grantee, prefix, right, expires_at_height = tx.args
    owner = tx.signer
    if grantee == owner:
        raise _fail(ErrorCode.BAD_GRANT, "an entity needs no grant over its own namespace")
    if expires_at_height < context.height:
        raise _fail(
            ErrorCode.BAD_GRANT,
            f"expires at height {expires_at_height}, before this block ({context.height})",
        )
    if (
        not grantee.startswith(SECTOR_PREFIX)
        and overlay.get_state(identity_records.entity_key(grantee)) is None
    ):
        raise _fail(ErrorCode.UNKNOWN_ENTITY, f"no registered entity {grantee!r}")
    grants = [grant for grant in get_grants(overlay, owner, grantee) if grant.prefix != prefix]
    if len(grants) >= GRANTS_PER_GRANTEE_MAX:
        # Room is made by forgetting the grantee's revoked and expired grants (their grant and
        # revocation transactions and events stay in the chain); active ones are never dropped.
        grants = [grant for grant in grants if grant.get_refusal(context.height) is None]
    if len(grants) >= GRANTS_PER_GRANTEE_MAX:
        raise _fail(
            ErrorCode.BAD_GRANT,
            f"{grantee!r} holds {len(grants)} active grants of {owner!r}, at most {GRANTS_PER_GRANTEE_MAX}:"
            " revoke one first",
        )
    grants.append(Grant(owner, grantee, prefix, right, expires_at_height, context.height, 0, tx.hash))
    overlay.put(compute_grant_key(owner, grantee), _encode_grants(grants))
    return [("records.granted", (owner, grantee, prefix, right, expires_at_height))]


def apply_revoke(overlay: Overlay, tx: types.Transaction, context: ExecutionContext) -> Sequence[Event]:
    grantee, prefix = tx.args
    owner = tx.signer
    grants = get_grants(overlay, owner, grantee)
    for index, grant in enumerate(grants):
        if grant.prefix != prefix:
            continue
        if grant.revoked_height:
            raise _fail(
                ErrorCode.GRANT_REVOKED, f"the grant to {grantee!r} over {prefix!r} is already revoked"
            )
        grants[index] = Grant(
            owner,
            grantee,
            prefix,
            grant.right,
            grant.expires_at_height,
            grant.granted_height,
            context.height,
            tx.hash,
        )
        overlay.put(compute_grant_key(owner, grantee), _encode_grants(grants))
        return [("records.revoked", (owner, grantee, prefix))]
    raise _fail(ErrorCode.UNKNOWN_GRANT, f"{owner!r} made no grant to {grantee!r} over {prefix!r}")


def apply_mark_read(overlay: Overlay, tx: types.Transaction, context: ExecutionContext) -> Sequence[Event]:
    owner, key, version = tx.args
    _require_right(overlay, owner, key, RIGHT_READ_MARKER, context)
    if get_record(overlay, owner, key, version) is None:
        raise _fail(ErrorCode.UNKNOWN_RECORD, f"no version {version} of record {key!r} of {owner!r}")
    overlay.put(compute_marker_key(owner, key, tx.signer), codec.encode((version, context.height, tx.hash)))
    return [("records.read_marked", (owner, key, version, tx.signer))]


ACTIONS: dict[tuple[str, str], Action] = {
    (MODULE, "put_to"): Action(role="submitter", check_args=check_put_to_args, apply=apply_put_to),
    (MODULE, "anchor"): Action(role="submitter", check_args=check_anchor_args, apply=apply_anchor),
    (MODULE, "grant"): Action(role="submitter", check_args=check_grant_args, apply=apply_grant),
    (MODULE, "revoke"): Action(role="submitter", check_args=check_revoke_args, apply=apply_revoke),
    (MODULE, "mark_read"): Action(role="submitter", check_args=check_mark_read_args, apply=apply_mark_read),
}
