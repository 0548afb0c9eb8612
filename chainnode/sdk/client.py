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
library only (urllib and json), synchronously, so it works from scripts and
notebooks without an event loop.  Every failure is a `ClientError`: an error
answer from the node carries its HTTP status and the node's stable error code;
a node that cannot be reached is `unreachable` (status None), an answer that
is not JSON is `bad_response`, an expired deadline is `timeout`.

`wait_for_commit` polls the transaction's status at a fixed interval until it
is committed (returns the status, whose receipt may still report a failed
transaction: check `receipt.code`), rejected (raises with the rejection code)
or the deadline passes (raises `timeout`).  A node that does not know the
transaction yet (404, e.g. it was submitted to another node and is still being
gossiped) is polled again rather than treated as a failure.
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

# Re-exported for SDK users (`import x as x` is the explicit re-export that mypy --strict accepts).
from chainnode.app.proof import ProofError as ProofError  # noqa: PLC0414
from chainnode.app.proof import ProofResult as ProofResult  # noqa: PLC0414
from chainnode.app.proof import verify_proof as verify_proof  # noqa: PLC0414
from chainnode.core import crypto, identity, types
from chainnode.core.errors import ChainError, ConfigError
from chainnode.core.statuses import TxStatus

NONCE_BITS = 63
_RESPONSE_BYTES_MAX = 256 * 1024 * 1024


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


class ClientError(ChainError):
    """A failed API call: the HTTP status (None without an answer), code and message."""

    code = "client_error"

    def __init__(self, message: str, *, code: str, status: int | None = None) -> None:
        super().__init__(message, code=code)
        self.status = status


class Client:
    """A synchronous client of one node's HTTP JSON API."""

    def __init__(self, url: str, *, timeout_s: float = 10.0) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ClientError(f"not an http(s) URL: {url!r}", code="bad_url")
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    # ------------------------------------------------------------ transport

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return self._parse(response.read(_RESPONSE_BYTES_MAX), response.status)
        except urllib.error.HTTPError as error:
            with error:
                answer = self._parse_error_body(error.read(_RESPONSE_BYTES_MAX))
            code, message = answer if answer else (f"http_{error.code}", str(error.reason))
            raise ClientError(message, code=code, status=error.code) from None
        except TimeoutError as error:
            raise ClientError(f"{method} {self.url}{path}: no answer within {self.timeout_s} s",
                              code="timeout") from error
        except urllib.error.URLError as error:
            if isinstance(error.reason, TimeoutError):
                raise ClientError(f"{method} {self.url}{path}: no answer within "
                                  f"{self.timeout_s} s", code="timeout") from error
            raise ClientError(f"cannot reach {self.url}: {error.reason}",
                              code="unreachable") from error
        except OSError as error:
            raise ClientError(f"cannot reach {self.url}: {error}", code="unreachable") from error

    @staticmethod
    def _parse(raw: bytes, status: int) -> Any:
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ClientError(f"the node's answer is not JSON: {error}", code="bad_response",
                              status=status) from error

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

    def submit_batch(self, txs: Sequence[types.Transaction]) -> dict[str, Any]:
        """Submit up to 10,000 transactions: {"accepted", "rejected", "results": [...]}."""
        answer = self._request(
            "POST", "/v1/transactions", {"txs": [tx.encoded.hex() for tx in txs]}
        )
        if not isinstance(answer, dict):
            raise ClientError("the node's answer is not a JSON object", code="bad_response")
        return answer

    def get_transaction(self, tx_hash_hex: str) -> dict[str, Any]:
        """The status of a transaction; ClientError `not_found` (404) if the node never saw it."""
        return self._get_object(f"/v1/transactions/{urllib.parse.quote(tx_hash_hex, safe='')}")

    def get_block(self, height: int | str = "latest") -> dict[str, Any]:
        return self._get_object(f"/v1/blocks/{urllib.parse.quote(str(height), safe='')}")

    def get_proof(self, tx_hash_hex: str) -> dict[str, Any]:
        """The inclusion proof of a committed transaction; check it with `verify_proof(proof, genesis)`."""
        return self._get_object(f"/v1/transactions/{urllib.parse.quote(tx_hash_hex, safe='')}/proof")

    def get_record(self, entity: str, key: str, version: int | None = None) -> dict[str, Any] | None:
        """A record's latest (or given) version, or None when there is none."""
        path = (
            f"/v1/records/{urllib.parse.quote(entity, safe='')}/{urllib.parse.quote(key, safe='')}"
        )
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

    def get_zones(self) -> list[dict[str, Any]]:
        return list(self._get_object("/v1/zones").get("zones", []))

    def get_zone(self, zone_id: str) -> dict[str, Any] | None:
        return self._get_optional(f"/v1/zones/{urllib.parse.quote(zone_id, safe='')}")

    def get_validators(self, height: int | None = None) -> dict[str, Any]:
        """The validator set for `height` (default: the next block)."""
        return self._get_object("/v1/validators" + ("" if height is None else f"?height={int(height)}"))

    def get_proposals(self, status: str | None = None) -> dict[str, Any]:
        query = "" if status is None else f"?status={urllib.parse.quote(status, safe='')}"
        return self._get_object("/v1/proposals" + query)

    def get_proposal(self, proposal_id: int) -> dict[str, Any] | None:
        return self._get_optional(f"/v1/proposals/{int(proposal_id)}")

    def get_expiring_certificates(self, within_days: int = 30) -> dict[str, Any]:
        return self._get_object(f"/v1/certificates/expiring?within_days={int(within_days)}")

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
            f"transaction {tx_hash_hex} not committed within {timeout_s} s (last status: "
            f"{last_status})",
            code="timeout",
        )
