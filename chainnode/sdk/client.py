"""The client SDK for entities: load an identity, build and sign, submit, wait.

Theory of operation: an entity holds an Ed25519 key and the X.509 certificate
its zone authority issued (`cert.pem`, `key.pem` in one directory, as
`chainnode network init` writes them).  `Identity.load` reads both, takes the
entity id from the certificate's claims and refuses a key that does not match
the certificate.  `build_transaction` signs a `types.Transaction` with it; the
signature covers the domain-tagged transaction id (see `chainnode.core.types`).

Zone authorities and council members sign too (`AuthoritySigner`): a zone
authority as `zone:<zone id>` with its CA key (`zones/<zone>/ca.pem`,
`ca.key.pem`), a council member as `council:<member id>` with its key
(`council/<member>/key.pem`; the member id is the directory's name unless
given).  `build_transaction` accepts either kind of signer.

`Client` speaks the node's HTTP JSON API (`chainnode.api.server`) with the standard
library only (http.client and json), synchronously, so it works from scripts and
notebooks without an event loop.  Every failure is a `ClientError`: an error
answer from the node carries its HTTP status, the node's stable error code and the
`Retry-After` it advised; a node that cannot be reached is `unreachable` (status None),
an answer that is not JSON is `bad_response`, an expired deadline is `timeout`.

Every request goes through `Client.send`, the house's one HTTP request to a node (the
benchmark's load generator posts its prebuilt batch bodies through it too).  It keeps one keep-alive
connection per thread that uses the client, so a thread sending many requests (the
benchmark, an export fetching blocks) pays for one TCP connection, not one per request, and
threads never share one.  A reused connection the node has meanwhile closed (its idle
keep-alive timeout, a restart) fails on the next request before any answer; that request is
sent once more on a fresh connection.  Every call of the API is safe to repeat: reads are, and
a transaction sent twice is pooled once (its id is its content).  `close` closes the client's
connections; one that is dropped closes them when it is collected.

`wait_for_commit` polls the transaction's status at a fixed interval until it
is committed (returns the status, whose receipt may still report a failed
transaction: check `receipt.code`), rejected (raises with the rejection code)
or the deadline passes (raises `timeout`).  A node that does not know the
transaction yet (404, e.g. it was submitted to another node and is still being
gossiped) is polled again rather than treated as a failure.
"""

from __future__ import annotations

import http.client
import json
import secrets
import threading
import time
import urllib.parse
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

# Re-exported for SDK users (`import x as x` is the explicit re-export that mypy --strict accepts).
from chainnode.app.proof import ProofError as ProofError  # noqa: PLC0414
from chainnode.app.proof import ProofResult as ProofResult  # noqa: PLC0414
from chainnode.app.proof import verify_proof as verify_proof  # noqa: PLC0414
from chainnode.core import crypto, identity, types
from chainnode.core.errors import ConfigError, InvariantError
from chainnode.core.statuses import TxStatus
from chainnode.sdk.errors import ClientError

NONCE_BITS = 63
_RESPONSE_BYTES_MAX = 256 * 1024 * 1024
PAGE_ITEMS_MAX = 1000  # the largest page the API answers (`chainnode.api.common.LIMIT_MAX`)


@dataclass(frozen=True, slots=True)
class Identity:
    """An entity's signing identity."""

    entity_id: str  # from the certificate's claims (its CN)
    key: crypto.SigningKey
    certificate: x509.Certificate

    @classmethod
    def load(cls, directory: Path) -> Identity:
        """Read `cert.pem` and `key.pem` from `directory`; ConfigError if they do not match."""
        certificate, key = _load_matching_pair(Path(directory), "cert.pem", "key.pem")
        return cls(identity.read_claims(certificate).entity_id, key, certificate)


def _load_matching_pair(
    directory: Path, certificate_name: str, key_name: str
) -> tuple[x509.Certificate, crypto.SigningKey]:
    """A certificate and its private key from `directory`; ConfigError if they do not match."""
    certificate = identity.load_certificate(directory / certificate_name)
    key = crypto.SigningKey.load(directory / key_name)
    if identity.public_key_of(certificate) != key.public_key:
        raise ConfigError(f"{directory}: {key_name} does not belong to the key in {certificate_name}")
    return certificate, key


@dataclass(frozen=True, slots=True)
class AuthoritySigner:
    """A zone authority or a council member, signing as `zone:<id>` or `council:<id>`."""

    signer_id: str
    key: crypto.SigningKey

    @classmethod
    def load_zone(cls, directory: Path) -> AuthoritySigner:
        """Read a zone authority's `ca.pem` and `ca.key.pem`; ConfigError if they do not match."""
        certificate, key = _load_matching_pair(Path(directory), "ca.pem", "ca.key.pem")
        return cls(f"zone:{identity.read_zone_id(certificate)}", key)

    @classmethod
    def load_council(cls, directory: Path, member_id: str | None = None) -> AuthoritySigner:
        """Read a council member's `key.pem`; the member id defaults to the directory's name."""
        directory = Path(directory)
        member = member_id or directory.resolve().name
        if not identity.is_valid_id(member):
            raise ConfigError(f"council member id {member!r} is not lowercase [a-z0-9-]")
        return cls(f"council:{member}", crypto.SigningKey.load(directory / "key.pem"))


def build_transaction(
    signer: Identity | AuthoritySigner,
    *,
    chain_id: str,
    module: str,
    action: str,
    args: Sequence[Any],
    valid_until: int,
    nonce: int | None = None,
) -> types.Transaction:
    """A transaction signed by `signer`; the nonce defaults to 63 random bits."""
    return types.Transaction.create(
        signer.key,
        chain_id=chain_id,
        signer=signer.entity_id if isinstance(signer, Identity) else signer.signer_id,
        nonce=secrets.randbits(NONCE_BITS) if nonce is None else nonce,
        valid_until=valid_until,
        module=module,
        action=action,
        args=args,
    )


@dataclass(frozen=True, slots=True)
class Reply:
    """A node's successful (2xx) answer."""

    status: int
    value: Any  # the parsed JSON body
    retry_after_s: float | None  # `Retry-After`, e.g. on a batch with items refused for a full pool


# Failures of a reused keep-alive connection that show the node closed it while it was idle:
# the request is sent again once on a fresh connection.
_STALE_CONNECTION_ERRORS = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)


def _parse_retry_after(value: str | None) -> float | None:
    """`Retry-After` in seconds (the API sends whole seconds; an HTTP date is not used)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if 0 <= seconds < float("inf") else None


def _close_connections(connections: set[http.client.HTTPConnection], lock: threading.Lock) -> None:
    with lock:
        for connection in connections:
            connection.close()
        connections.clear()


class Client:
    """A synchronous client of one node's HTTP JSON API, with a keep-alive connection per thread."""

    def __init__(self, url: str, *, timeout_s: float = 10.0) -> None:
        parsed = urllib.parse.urlsplit(url)
        try:
            port = parsed.port
        except ValueError:
            port = -1
        if parsed.scheme not in ("http", "https") or not parsed.hostname or port == -1:
            raise ClientError(f"not an http(s) URL: {url!r}", code="bad_url")
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self._https = parsed.scheme == "https"
        self._host = parsed.hostname
        self._port = port
        self._path_prefix = parsed.path.rstrip("/")
        self._local = threading.local()
        self._connections: set[http.client.HTTPConnection] = set()
        self._connections_lock = threading.Lock()
        self._finalizer = weakref.finalize(
            self, _close_connections, self._connections, self._connections_lock
        )

    def close(self) -> None:
        """Close every connection of this client (call it while no request is in flight)."""
        self._local = threading.local()
        _close_connections(self._connections, self._connections_lock)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------ transport

    def _get_connection(self) -> tuple[http.client.HTTPConnection, bool]:
        """This thread's connection, and whether it has carried a request before."""
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        if connection is not None:
            return connection, True
        kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        connection = kind(self._host, self._port, timeout=self.timeout_s)
        with self._connections_lock:
            self._connections.add(connection)
        self._local.connection = connection
        return connection, False

    def _drop_connection(self, connection: http.client.HTTPConnection) -> None:
        connection.close()
        self._local.connection = None
        with self._connections_lock:
            self._connections.discard(connection)

    def send(self, method: str, path: str, body: bytes | None = None) -> Reply:
        """Send one request (`body`: JSON bytes) on this thread's keep-alive connection; the
        parsed 2xx answer, or `ClientError` for an error answer or no answer at all."""
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            connection, reused = self._get_connection()
            try:
                connection.request(method, self._path_prefix + path, body=body, headers=headers)
                response = connection.getresponse()
                payload = response.read(_RESPONSE_BYTES_MAX)
            except TimeoutError as error:
                self._drop_connection(connection)
                raise ClientError(
                    f"{method} {self.url}{path}: no answer within {self.timeout_s} s", code="timeout"
                ) from error
            except _STALE_CONNECTION_ERRORS as error:
                self._drop_connection(connection)
                if reused and attempt == 1:
                    continue
                raise ClientError(f"cannot reach {self.url}: {error}", code="unreachable") from error
            except OSError as error:
                self._drop_connection(connection)
                raise ClientError(f"cannot reach {self.url}: {error}", code="unreachable") from error
            except http.client.HTTPException as error:
                self._drop_connection(connection)
                raise ClientError(
                    f"{method} {self.url}{path}: not an HTTP answer ({type(error).__name__}: {error})",
                    code="bad_response",
                ) from error
            if not response.isclosed():
                # An answer larger than the cap was cut short: its rest would poison the connection.
                self._drop_connection(connection)
            retry_after_s = _parse_retry_after(response.getheader("Retry-After"))
            if not 200 <= response.status < 300:
                answer = self._parse_error_body(payload)
                code, message = answer if answer else (f"http_{response.status}", response.reason)
                raise ClientError(message, code=code, status=response.status, retry_after_s=retry_after_s)
            return Reply(response.status, self._parse(payload, response.status), retry_after_s)
        raise InvariantError("the second attempt returns or raises")

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        return self.send(method, path, data).value

    @staticmethod
    def _parse(raw: bytes, status: int) -> Any:
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ClientError(
                f"the node's answer is not JSON: {error}", code="bad_response", status=status
            ) from error

    @staticmethod
    def _parse_error_body(raw: bytes) -> tuple[str, str] | None:
        try:
            value = json.loads(raw)
            error = value["error"]
            return str(error["code"]), str(error["message"])
        except (ValueError, TypeError, KeyError):
            return None

    def _get_object(self, path: str) -> dict[str, Any]:
        value = self._request("GET", path)
        if not isinstance(value, dict):
            raise ClientError(f"GET {path}: expected a JSON object", code="bad_response")
        return value

    # ------------------------------------------------------------ API

    def get_status(self) -> dict[str, Any]:
        return self._get_object("/v1/status")

    def get_health(self) -> dict[str, Any]:
        return self._get_object("/v1/health")

    def submit(self, tx: types.Transaction) -> str:
        """Submit one transaction; its hash (hex) once the node admitted it to its mempool."""
        answer = self._request("POST", "/v1/transactions", {"tx": tx.encoded.hex()})
        if not isinstance(answer, dict) or not isinstance(answer.get("hash"), str):
            raise ClientError("the node's answer has no transaction hash", code="bad_response")
        return str(answer["hash"])

    def submit_replicated(self, tx: types.Transaction, *, wait_ms: int = 5_000) -> dict[str, Any]:
        """Submit one transaction and return once a quorum of validators' mempools hold it:
        {"hash", "status": "pending", "replicated": true, "holders"}.  ClientError
        `not_replicated` (504) when they do not within `wait_ms`; submitting again is safe."""
        answer = self._request(
            "POST", f"/v1/transactions?wait=replicated&wait_ms={int(wait_ms)}", {"tx": tx.encoded.hex()}
        )
        if not isinstance(answer, dict) or answer.get("replicated") is not True:
            raise ClientError(
                "the node's answer does not say the transaction is replicated", code="bad_response"
            )
        return answer

    def submit_batch(self, txs: Sequence[types.Transaction]) -> dict[str, Any]:
        """Submit up to 10,000 transactions: {"accepted", "rejected", "results": [...]}."""
        answer = self._request("POST", "/v1/transactions", {"txs": [tx.encoded.hex() for tx in txs]})
        if not isinstance(answer, dict):
            raise ClientError("the node's answer is not a JSON object", code="bad_response")
        return answer

    def get_transaction(self, tx_hash_hex: str) -> dict[str, Any]:
        """The status of a transaction; ClientError `not_found` (404) if the node never saw it."""
        return self._get_object(f"/v1/transactions/{urllib.parse.quote(tx_hash_hex, safe='')}")

    def get_block(
        self, height: int | str = "latest", *, hashes_only: bool = False, wait_ms: int = 0
    ) -> dict[str, Any]:
        """A block; with `hashes_only` its transactions are listed by hash alone (the cheap form).
        With `wait_ms`, a height above the head is answered when it commits (a `ClientError`
        404 `not_found` if it has not after `wait_ms`): how a follower learns of each commit."""
        options = {"transactions": "hashes"} if hashes_only else {}
        if wait_ms:
            options["wait_ms"] = str(int(wait_ms))
        query = f"?{urllib.parse.urlencode(options)}" if options else ""
        return self._get_object(f"/v1/blocks/{urllib.parse.quote(str(height), safe='')}{query}")

    def get_proof(self, tx_hash_hex: str) -> dict[str, Any]:
        """The inclusion proof of a committed transaction; check it with `verify_proof(proof, genesis)`."""
        return self._get_object(f"/v1/transactions/{urllib.parse.quote(tx_hash_hex, safe='')}/proof")

    def get_record(self, entity: str, key: str, version: int | None = None) -> dict[str, Any] | None:
        """A record's latest (or given) version, or None when there is none."""
        path = f"/v1/records/{urllib.parse.quote(entity, safe='')}/{urllib.parse.quote(key, safe='')}"
        if version is not None:
            path += f"?version={int(version)}"
        return self._get_optional(path)

    def _get_optional(self, path: str) -> dict[str, Any] | None:
        try:
            return self._get_object(path)
        except ClientError as error:
            if error.status == 404 and error.code == "not_found":
                return None
            raise

    def get_entity(self, entity_id: str) -> dict[str, Any] | None:
        """An entity's registered record, or None when it is not registered."""
        return self._get_optional(f"/v1/entities/{urllib.parse.quote(entity_id, safe='')}")

    def get_all_pages(
        self, path: str, field: str, query: dict[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """Every item (in `field`) of a paginated list of the API, following `next_cursor` from
        the first page to the last, in pages of `PAGE_ITEMS_MAX`."""
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            page_query = {**(query or {}), "limit": str(PAGE_ITEMS_MAX)}
            if cursor is not None:
                page_query["cursor"] = cursor
            page = self._get_object(f"{path}?{urllib.parse.urlencode(page_query)}")
            items.extend(page.get(field, []))
            cursor = page.get("next_cursor")
            if cursor is None:
                return items

    def get_zones(self) -> list[dict[str, Any]]:
        return self.get_all_pages("/v1/zones", "zones")

    def get_zone(self, zone_id: str) -> dict[str, Any] | None:
        return self._get_optional(f"/v1/zones/{urllib.parse.quote(zone_id, safe='')}")

    def get_validators(self, height: int | None = None) -> dict[str, Any]:
        """The validator set for `height` (default: the next block)."""
        return self._get_object("/v1/validators" + ("" if height is None else f"?height={int(height)}"))

    def get_proposals(
        self, status: str | None = None, *, limit: int = PAGE_ITEMS_MAX, cursor: str | None = None
    ) -> dict[str, Any]:
        """A page of proposals, newest first: {"count", "threshold", "council", "proposals",
        "next_cursor"} (pass `next_cursor` back as `cursor` for the next page)."""
        query = {"limit": str(int(limit))}
        if status is not None:
            query["status"] = status
        if cursor is not None:
            query["cursor"] = cursor
        return self._get_object(f"/v1/proposals?{urllib.parse.urlencode(query)}")

    def get_proposal(self, proposal_id: int) -> dict[str, Any] | None:
        return self._get_optional(f"/v1/proposals/{int(proposal_id)}")

    def get_expiring_certificates(self, within_days: int = 30) -> dict[str, Any]:
        """{"within_days", "certificates"} with every page's certificates, soonest first."""
        query = {"within_days": str(int(within_days))}
        certificates = self.get_all_pages("/v1/certificates/expiring", "certificates", query)
        return {"within_days": int(within_days), "certificates": certificates}

    def events(self, *, from_cursor: str | None = None, **options: Any) -> Iterator[dict[str, Any]]:
        """Every committed event from `from_cursor` on, each exactly once and in order, across
        reconnections: `chainnode.sdk.events.events` (its options: module, entity, ...)."""
        from chainnode.sdk.events import events  # it builds on this module

        return events(self, from_cursor=from_cursor, **options)

    def wait_for_commit(
        self, tx_hash_hex: str, *, timeout_s: float = 30.0, poll_ms: int = 100
    ) -> dict[str, Any]:
        """Poll until committed (returns the status) or rejected / past the deadline (raises)."""
        deadline = time.monotonic() + timeout_s
        polls_max = max(1, int(timeout_s * 1000 / max(poll_ms, 1)) + 1)
        last_status = str(TxStatus.UNKNOWN)
        for _ in range(polls_max):
            try:
                answer = self.get_transaction(tx_hash_hex)
            except ClientError as error:
                if error.status != 404:
                    raise
                answer = {"status": TxStatus.UNKNOWN}
            last_status = str(answer.get("status"))
            if last_status == TxStatus.COMMITTED:
                return answer
            if last_status == TxStatus.REJECTED:
                error_body = answer.get("error") or {}
                raise ClientError(
                    f"transaction {tx_hash_hex} was rejected: {error_body.get('message', '')}",
                    code=str(error_body.get("code", "rejected")),
                )
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                break
            time.sleep(min(poll_ms / 1000, remaining_s))
        raise ClientError(
            f"transaction {tx_hash_hex} not committed within {timeout_s} s (last status: {last_status})",
            code="timeout",
        )
