"""The SDK's records calls: write, grant, revoke, anchor and mark read; get, list, history, grants
and read markers; hash a local file and find where it is anchored.

Theory of operation: `Records` wraps a `Client` (and, to write, the entity's `Identity`).  Each
write signs one `records.<action>` transaction valid for `valid_for_blocks` past the node's
height, submits it and answers its hash; with `wait=True` it waits for the commit and raises
`ClientError` with the receipt's stable code (`no_grant`, `grant_expired`, `wrong_right`, ...)
when the transaction failed.  Reads answer the node's JSON; `iter_records` and `iter_history`
follow the `next_cursor` of each page until the last.

`put_confidential` seals a value on the client to named entities' on-chain keys (see
`chainnode.sdk.confidential`; the chain holds only the envelope) and `get_confidential` opens it
as the signer.

`compute_file_digest` hashes a file in chunks (never the whole file in memory): the SHA-256 the
chain anchors, the size and a media type guessed from the name (`application/octet-stream` when
unknown).  `verify_file` hashes a file and asks the node which versions of a record anchor that
hash: an empty list means the file is not anchored there (or differs from what was).
"""

from __future__ import annotations

import hashlib
import mimetypes
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chainnode.core.errors import ConfigError
from chainnode.sdk import confidential
from chainnode.sdk.client import Client, Identity, build_transaction
from chainnode.sdk.errors import ClientError

MODULE = "records"
VALID_FOR_BLOCKS = 1000
_CHUNK_BYTES = 1 << 20
_DEFAULT_MEDIA_TYPE = "application/octet-stream"


@dataclass(frozen=True, slots=True)
class FileDigest:
    """What the chain anchors of an off-chain document."""

    sha256: bytes
    size: int  # bytes
    media_type: str


@dataclass(frozen=True, slots=True)
class Verification:
    """Where a local file is anchored in a record (empty `anchors`: nowhere)."""

    path: Path
    digest: FileDigest
    entity: str
    key: str
    anchors: list[dict[str, Any]]  # record versions (JSON) anchoring the file's SHA-256

    @property
    def is_anchored(self) -> bool:
        return bool(self.anchors)


def compute_file_digest(path: Path, media_type: str | None = None) -> FileDigest:
    """SHA-256 and size of a file, and its media type (given, or guessed from its name)."""
    sha256 = hashlib.sha256()
    size = 0
    try:
        with Path(path).open("rb") as file:
            while chunk := file.read(_CHUNK_BYTES):
                sha256.update(chunk)
                size += len(chunk)
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error}") from error
    guessed, _ = mimetypes.guess_type(str(path))
    return FileDigest(sha256.digest(), size, media_type or guessed or _DEFAULT_MEDIA_TYPE)


def _quote(text: str) -> str:
    return urllib.parse.quote(text, safe="")


class Records:
    """The records module through one node's API; `signer` is needed only to write."""

    def __init__(
        self, client: Client, signer: Identity | None = None, *, valid_for_blocks: int = VALID_FOR_BLOCKS
    ) -> None:
        self.client = client
        self.signer = signer
        self.valid_for_blocks = valid_for_blocks

    # ------------------------------------------------------------ writes

    def submit(
        self, action: str, args: tuple[Any, ...], *, wait: bool = False, timeout_s: float = 30.0
    ) -> str:
        """Sign and submit `records.<action>(*args)`; its hash (hex).  With `wait`, wait for the
        commit and raise `ClientError` with the receipt's code when it failed."""
        signer = self._require_signer()
        status = self.client.get_status()
        tx = build_transaction(
            signer,
            chain_id=str(status["chain_id"]),
            module=MODULE,
            action=action,
            args=args,
            valid_until=int(status["height"]) + self.valid_for_blocks,
        )
        tx_hash = self.client.submit(tx)
        if wait:
            self.wait(tx_hash, timeout_s=timeout_s)
        return tx_hash

    def wait(self, tx_hash: str, *, timeout_s: float = 30.0) -> dict[str, Any]:
        """Wait for the commit; the status, or `ClientError` with the code of a failed receipt."""
        answer = self.client.wait_for_commit(tx_hash, timeout_s=timeout_s)
        receipt = answer.get("receipt") or {}
        if receipt.get("code", 0) != 0:
            raise ClientError(
                f"transaction {tx_hash} was committed but failed: {receipt.get('message', '')}",
                code=str(receipt.get("code_name", "failed")),
            )
        return answer

    def put(self, key: str, value: bytes, **options: Any) -> str:
        """A new version of `key` in the signer's own namespace."""
        return self.submit("put", (key, value), **options)

    def put_to(self, owner: str, key: str, value: bytes, **options: Any) -> str:
        """A new version of `key` in `owner`'s namespace (needs a `write` grant unless it is ours)."""
        return self.submit("put_to", (owner, key, value), **options)

    def grant(self, grantee: str, prefix: str, right: str, expires_at_height: int, **options: Any) -> str:
        """Let `grantee` (an entity id or `sector:<sector>`) use `right` (`write`, `read-marker`)
        on our keys starting with `prefix`, up to and including `expires_at_height`."""
        return self.submit("grant", (grantee, prefix, right, expires_at_height), **options)

    def revoke(self, grantee: str, prefix: str, **options: Any) -> str:
        return self.submit("revoke", (grantee, prefix), **options)

    def anchor(
        self, key: str, digest: FileDigest, *, uri: str = "", owner: str | None = None, **options: Any
    ) -> str:
        """Anchor a document by hash as a version of `key` (in `owner`'s namespace, default ours)."""
        if owner is None:
            owner = self._require_signer().entity_id
        args = (owner, key, digest.sha256, digest.media_type, digest.size, uri)
        return self.submit("anchor", args, **options)

    def mark_read(self, owner: str, key: str, version: int, **options: Any) -> str:
        return self.submit("mark_read", (owner, key, version), **options)

    def seal(self, value: bytes, recipients: Sequence[str]) -> bytes:
        """`value` sealed to `recipients` (entity ids; the signer is always one), with the keys
        their entity records hold on chain (`chainnode.sdk.confidential`)."""
        signer = self._require_signer()
        keys: dict[str, bytes] = {signer.entity_id: signer.key.public_key}
        for entity_id in recipients:
            if entity_id in keys:
                continue
            entity = self.client.get_entity(entity_id)
            if entity is None or entity.get("revoked"):
                raise ClientError(
                    f"{entity_id!r} is not a registered, unrevoked entity", code="unknown_entity"
                )
            keys[entity_id] = bytes.fromhex(str(entity["public_key"]))
        return confidential.seal(value, keys)

    def put_confidential(
        self, key: str, value: bytes, recipients: Sequence[str], *, owner: str | None = None, **options: Any
    ) -> str:
        """Write `value` sealed to `recipients` (see `seal`) as a version of `key` (in `owner`'s
        namespace with a grant); the chain holds only the envelope."""
        sealed = self.seal(value, recipients)
        if owner is None or owner == self._require_signer().entity_id:
            return self.submit("put", (key, sealed), **options)
        return self.submit("put_to", (owner, key, sealed), **options)

    def get_confidential(self, entity: str, key: str, version: int | None = None) -> bytes | None:
        """Open a confidential version as the signer (None when the record does not exist);
        `ConfidentialError` (`not_a_recipient`, `not_sealed`, ...) when it cannot."""
        signer = self._require_signer()
        record = self.get(entity, key, version)
        if record is None:
            return None
        return confidential.open_sealed(bytes.fromhex(str(record["value_hex"])), signer.entity_id, signer.key)

    def _require_signer(self) -> Identity:
        if self.signer is None:
            raise ClientError("this call needs the entity's identity", code="no_identity")
        return self.signer

    # ------------------------------------------------------------ reads

    def get(self, entity: str, key: str, version: int | None = None) -> dict[str, Any] | None:
        """A record's latest (or given) version, or None."""
        return self.client.get_record(entity, key, version)

    def list_records(
        self, entity: str, prefix: str = "", *, limit: int = 100, cursor: str | None = None
    ) -> dict[str, Any]:
        """One page of `entity`'s records whose key starts with `prefix`: {"items", "next_cursor"}."""
        query = {"prefix": prefix, "limit": str(int(limit))}
        if cursor is not None:
            query["cursor"] = cursor
        return self._get(f"/v1/records/{_quote(entity)}?{urllib.parse.urlencode(query)}")

    def iter_records(
        self, entity: str, prefix: str = "", *, page_size: int = 100
    ) -> Iterator[dict[str, Any]]:
        cursor: str | None = None
        while True:
            page = self.list_records(entity, prefix, limit=page_size, cursor=cursor)
            yield from page["items"]
            cursor = page.get("next_cursor")
            if cursor is None:
                return

    def history(
        self, entity: str, key: str, *, limit: int = 100, cursor: str | None = None
    ) -> dict[str, Any]:
        """One page of a record's versions, oldest first: {"items", "next_cursor"}."""
        query = {"limit": str(int(limit))}
        if cursor is not None:
            query["cursor"] = cursor
        path = f"/v1/records/{_quote(entity)}/{_quote(key)}/history?{urllib.parse.urlencode(query)}"
        return self._get(path)

    def iter_history(self, entity: str, key: str, *, page_size: int = 100) -> Iterator[dict[str, Any]]:
        cursor: str | None = None
        while True:
            page = self.history(entity, key, limit=page_size, cursor=cursor)
            yield from page["items"]
            cursor = page.get("next_cursor")
            if cursor is None:
                return

    def grants(self, owner: str) -> list[dict[str, Any]]:
        """Every grant `owner` made, with its status at the next height (all pages)."""
        return self.client.get_all_pages(f"/v1/grants/{_quote(owner)}", "grants", {})

    def reads(self, entity: str, key: str) -> list[dict[str, Any]]:
        """Who marked which version of a record as read (all pages)."""
        return self.client.get_all_pages(f"/v1/records/{_quote(entity)}/{_quote(key)}/reads", "reads", {})

    def find_anchors(self, entity: str, key: str, sha256: bytes) -> list[dict[str, Any]]:
        """The versions of a record that anchor a document with this SHA-256 (all pages)."""
        path = f"/v1/records/{_quote(entity)}/{_quote(key)}/anchors"
        return self.client.get_all_pages(path, "anchors", {"sha256": sha256.hex()})

    def verify_file(self, path: Path, entity: str, key: str) -> Verification:
        """Hash a local file and find the versions of `entity`'s `key` that anchor it."""
        digest = compute_file_digest(path)
        return Verification(Path(path), digest, entity, key, self.find_anchors(entity, key, digest.sha256))

    def _get(self, path: str) -> dict[str, Any]:
        value = self.client.send("GET", path).value
        if not isinstance(value, dict):
            raise ClientError(f"GET {path}: expected a JSON object", code="bad_response")
        return value
