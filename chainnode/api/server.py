"""The node's HTTP JSON API (aiohttp.web).

Theory of operation: the API is a thin, stateless translation layer between
JSON over HTTP and a `NodeService`, the protocol this module declares and the
node implements (CometBFT style: the user of an interface declares it).  Every
handler parses and checks its input completely before it calls the service,
and every answer is JSON.  Hashes and byte strings are lowercase hex.

Error model: one middleware turns everything that can go wrong into the shape
`{"error": {"code", "message"}}` with a stable code:
- aiohttp HTTP exceptions (unknown route 404 `not_found`, wrong method 405
  `method_not_allowed`, body over `body_bytes_max` 413 `too_large`, ...);
- `chainnode.core.errors.ChainError`: `RemoteError`s are the client's fault (400,
  422 for a `ValidationError`), a mempool that is full is 503 with a
  `Retry-After` header and code `mempool_full`, `LocalError`s are ours (500
  with the error's own code, logged);
- anything unexpected is 500 `internal`, logged with its traceback, which never
  goes into the body.

Health: `GET /v1/health` (alias `/healthz`) answers 200 `{"status": "ok"}` unless
the node cannot write its ledger (503 `{"status": "failing", "problems": {...}}`);
`GET /readyz` answers 200 when the node finds no readiness problem and 503
`{"status": "not_ready", "problems": {name: message}}` otherwise (names in
`chainnode.node.health`).  While the node cannot write, `POST /v1/transactions` is
refused with 503 `storage_unavailable` before the body is read.

Submitting: `POST /v1/transactions` takes `{"tx": hex}` or `{"txs": [hex, ...]}`
(at most `SUBMIT_TXS_MAX`).  A single transaction that is accepted answers 202;
a full mempool answers 503 with `Retry-After` (a batch answers 200 with the
items refused as `mempool_full` and the same header, so the client learns which
items were pooled);
one that is refused answers 400 when it is not a well-formed encoding
(`malformed`, `too_large`, `bad_hex`) and 422 when it is well-formed but
breaks a rule (bad signature, unknown signer, replay, ...), always with the
hash when it is known.  A batch answers 200 with one result per item, in
order; an item that is not hex is rejected on its own without failing the
rest.

Identities and governance (entities, zones, validators, proposals, expiring
certificates) are served by `chainnode.api.governance`, mounted in `create_app`.

Blocks: height 0 is the genesis state, which has no block and no commit
certificate; `GET /v1/blocks/0` (and `latest` before the first block) answers
a small genesis summary `{"height": 0, "hash", "genesis": true, ...}` so that
clients can always follow the head.  `?transactions=hashes` lists only the
transaction hashes and leaves out the raw encodings (a cheap way to follow
commits).

The service is synchronous and runs on the event loop's thread, so the node
never has to make its mempool or ledger thread-safe for the API's sake; a
batch of 10,000 transactions therefore holds the loop for as long as their
admission checks take (about 0.7 s of signature checks at the measured rate).
"""

from __future__ import annotations

import binascii
import json
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any, Protocol

from aiohttp import web

from chainnode.app import proof, records
from chainnode.core import metrics, types
from chainnode.core.errors import ChainError, DecodeError, LocalError, RemoteError, ValidationError
from chainnode.core.fastinit import install_fast_init
from chainnode.node.health import ReadinessProblem
from consensus.messages import decode_evidence

logger = logging.getLogger(__name__)

SUBMIT_TXS_MAX = 10_000
RETRY_AFTER_S = 1
_HEIGHT_DIGITS_MAX = 20
_HEX_PATTERN = re.compile(r"[0-9a-fA-F]*")
_NAME_CHARS_MAX = 128
# Rejection codes that mean "this is not a transaction at all" rather than
# "this transaction breaks a rule"; they answer 400 instead of 422.
_MALFORMED_CODES = frozenset({"malformed", "too_large", "bad_hex", "bad_request"})


# ---------------------------------------------------------------- the service protocol


@install_fast_init
@dataclass(frozen=True, slots=True)
class SubmitResult:
    """The node's verdict on one submitted transaction."""

    tx_hash: bytes | None  # None when the bytes did not even decode
    accepted: bool
    code: str  # "ok" when accepted, otherwise a stable rejection code
    message: str


@dataclass(frozen=True, slots=True)
class TransactionStatus:
    """Where a transaction is: in the mempool, in a block, refused, or unknown."""

    status: str  # "pending" | "committed" | "rejected" | "unknown"
    height: int | None = None  # committed: the block height
    index: int | None = None  # committed: the position in the block
    receipt: types.Receipt | None = None  # committed: the outcome
    code: str = ""  # rejected: the stable rejection code
    message: str = ""  # rejected: the reason


class HeadView(Protocol):
    """The part of `storage.ledger.Head` the API reads."""

    @property
    def height(self) -> int: ...
    @property
    def block_hash(self) -> bytes: ...
    @property
    def state_root(self) -> bytes: ...
    @property
    def timestamp_ms(self) -> int: ...


class LedgerReader(Protocol):
    """The read side of `storage.ledger.Ledger` the API uses."""

    def get_head(self) -> HeadView: ...
    def get_genesis_hash(self) -> bytes: ...
    def get_block(self, height: int) -> bytes | None: ...
    def get_certificate(self, height: int) -> bytes | None: ...
    def get_receipt(self, height: int, index: int) -> bytes | None: ...
    def get_state(self, key: bytes) -> bytes | None: ...
    def get_latest_checkpoint(self) -> bytes | None: ...


class NodeService(Protocol):
    """What the API needs from a node; `chainnode.node.runtime` implements it."""

    chain_id: str
    node_id: str

    @property
    def ledger(self) -> LedgerReader: ...

    def get_status(self) -> dict[str, Any]:
        """JSON-ready: chain_id, node_id, validator_index, height, head_hash, state_root,
        view, peers, mempool_txs, genesis_hash."""
        ...

    def submit_transactions(self, encoded: Sequence[bytes]) -> list[SubmitResult]:
        """Decode and admit each transaction; one result per input, in order.  May raise
        `chainnode.node.mempool.MempoolFullError` for the whole batch."""
        ...

    def get_transaction_status(self, tx_hash: bytes) -> TransactionStatus: ...

    def get_busy_reason(self) -> str | None:
        """Why the node takes no transactions right now (answered 503 before the body is read)."""
        ...

    def get_readiness_problems(self) -> list[ReadinessProblem]:
        """What keeps the node from being ready, by name; empty when it is ready."""
        ...

    def get_validator_set(self, height: int) -> types.ValidatorSet: ...

    def get_evidence(self) -> list[bytes]:
        """Encoded proofs of validator equivocation (`consensus.messages.Evidence`), by height."""
        ...

    def render_metrics(self) -> str:
        """The node's metrics in Prometheus text format."""
        ...


SERVICE_KEY = web.AppKey("service", NodeService)


# ---------------------------------------------------------------- JSON forms


def compute_json_value(value: Any) -> Any:
    """The JSON form of a canonical value: bytes as {"hex": ...}, tuples as lists."""
    if isinstance(value, bytes):
        return {"hex": value.hex()}
    if isinstance(value, (tuple, list)):
        return [compute_json_value(item) for item in value]
    return value


def compute_receipt_json(receipt: types.Receipt) -> dict[str, Any]:
    try:
        code_name = types.ErrorCode(receipt.code).label
    except ValueError:
        code_name = "unknown"
    return {
        "code": receipt.code,
        "code_name": code_name,
        "message": receipt.message,
        "events": [
            {"name": name, "attributes": compute_json_value(attributes)}
            for name, attributes in receipt.events
        ],
    }


def compute_transaction_json(tx: types.Transaction) -> dict[str, Any]:
    return {
        "hash": tx.hash.hex(),
        "signer": tx.signer,
        "nonce": tx.nonce,
        "valid_until": tx.valid_until,
        "module": tx.module,
        "action": tx.action,
        "args": compute_json_value(tx.args),
        "signature": tx.signature.hex(),
    }


def compute_header_json(header: types.BlockHeader) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for item in fields(header):
        value = getattr(header, item.name)
        result[item.name] = value.hex() if isinstance(value, bytes) else value
    return result


def compute_certificate_json(
    certificate: types.CommitCertificate, validators: types.ValidatorSet | None
) -> dict[str, Any]:
    signatures = []
    for index, signature in certificate.signatures:
        name = None
        if validators is not None and index < validators.size:
            name = validators.validators[index].entity_id
        signatures.append({"validator_index": index, "validator": name, "signature": signature.hex()})
    return {
        "height": certificate.height,
        "view": certificate.view,
        "block_hash": certificate.block_hash.hex(),
        "signatures": signatures,
    }


# ---------------------------------------------------------------- input parsing


def _error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}, **extra}


def _json_response(data: Any, status: int = 200, **kwargs: Any) -> web.Response:
    return web.json_response(data, status=status, dumps=json.dumps, **kwargs)


def parse_hex(text: Any, what: str, *, length: int | None = None) -> bytes:
    """Strict hex: a string of an even number of hex digits (either case), nothing else."""
    if not isinstance(text, str):
        raise RemoteError(f"{what} must be a hex string", code="bad_hex")
    if len(text) % 2 or not _HEX_PATTERN.fullmatch(text):
        raise RemoteError(f"{what} is not valid hex", code="bad_hex")
    try:
        data = binascii.unhexlify(text)
    except binascii.Error as error:
        raise RemoteError(f"{what} is not valid hex: {error}", code="bad_hex") from error
    if length is not None and len(data) != length:
        raise RemoteError(f"{what} must be {length} bytes ({2 * length} hex digits)", code="bad_hex")
    return data


def parse_natural(text: str, what: str, *, code: str) -> int:
    """A non-negative decimal integer of at most 20 digits (no sign, no spaces)."""
    if not text.isascii() or not text.isdigit() or len(text) > _HEIGHT_DIGITS_MAX:
        raise RemoteError(f"{what} must be a non-negative integer, got {text[:40]!r}", code=code)
    return int(text)


def parse_height(text: str) -> int:
    return parse_natural(text, "height (or 'latest')", code="bad_height")


def _check_name(text: str, what: str) -> str:
    if not 1 <= len(text) <= _NAME_CHARS_MAX or "\0" in text:
        raise RemoteError(f"{what} must be 1..{_NAME_CHARS_MAX} characters without NUL", code="bad_request")
    return text


async def _read_json_object(request: web.Request) -> dict[str, Any]:
    body = await request.read()  # raises 413 past the application's client_max_size
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise RemoteError(f"the body is not valid JSON: {error}", code="malformed_json") from error
    if not isinstance(value, dict):
        raise RemoteError("the body must be a JSON object", code="bad_request")
    return value


# ---------------------------------------------------------------- handlers


def _get_service(request: web.Request) -> NodeService:
    return request.app[SERVICE_KEY]


def _compute_problems_json(problems: Sequence[ReadinessProblem]) -> dict[str, str]:
    return {problem.name: problem.message for problem in problems}


def _find_write_problems(service: NodeService) -> list[ReadinessProblem]:
    return [problem for problem in service.get_readiness_problems() if problem.blocks_writes]


async def handle_health(request: web.Request) -> web.Response:
    """Liveness: failing only while the node cannot write its ledger."""
    problems = _find_write_problems(_get_service(request))
    if problems:
        return _json_response({"status": "failing", "problems": _compute_problems_json(problems)}, status=503)
    return _json_response({"status": "ok"})


async def handle_ready(request: web.Request) -> web.Response:
    """Readiness: every named problem the node finds (cannot write, low disk, catching up, ...)."""
    problems = _get_service(request).get_readiness_problems()
    if problems:
        return _json_response(
            {"status": "not_ready", "problems": _compute_problems_json(problems)}, status=503
        )
    return _json_response({"status": "ok", "problems": {}})


async def handle_status(request: web.Request) -> web.Response:
    return _json_response(_get_service(request).get_status())


async def handle_evidence(request: web.Request) -> web.Response:
    service = _get_service(request)
    items = []
    for payload in service.get_evidence():
        evidence = decode_evidence(payload)
        validators = service.get_validator_set(evidence.height)
        items.append(
            {
                "validator": validators.validators[evidence.validator].entity_id,
                "validator_index": evidence.validator,
                "kind": evidence.kind.name.lower(),
                "view": evidence.view,
                "height": evidence.height,
                "first_block_hash": evidence.first.block_hash.hex(),
                "second_block_hash": evidence.second.block_hash.hex(),
                "encoded": payload.hex(),
            }
        )
    return _json_response({"count": len(items), "evidence": items})


async def handle_checkpoint(request: web.Request) -> web.Response:
    service = _get_service(request)
    encoded = service.ledger.get_latest_checkpoint()
    if encoded is None:
        return _json_response(_error_body("not_found", "no stable checkpoint yet"), status=404)
    checkpoint = types.decode_checkpoint_certificate(encoded)
    validators = service.get_validator_set(checkpoint.height)
    return _json_response(
        {
            "height": checkpoint.height,
            "block_hash": checkpoint.block_hash.hex(),
            "signatures": [
                {
                    "validator_index": index,
                    "validator": validators.validators[index].entity_id,
                    "signature": signature.hex(),
                }
                for index, signature in checkpoint.signatures
            ],
            "encoded": encoded.hex(),
        }
    )


async def handle_metrics(request: web.Request) -> web.Response:
    text = _get_service(request).render_metrics()
    return web.Response(body=text.encode(), headers={"Content-Type": metrics.CONTENT_TYPE})


def _compute_submit_item(result: SubmitResult) -> dict[str, Any]:
    item: dict[str, Any] = {
        "hash": result.tx_hash.hex() if result.tx_hash is not None else None,
        "status": "pending" if result.accepted else "rejected",
    }
    if not result.accepted:
        item["error"] = {"code": result.code, "message": result.message}
    return item


def _submit_single(service: NodeService, text: Any) -> web.Response:
    try:
        encoded = parse_hex(text, "tx")
        (result,) = service.submit_transactions([encoded])
    except ChainError as error:
        if error.code == "mempool_full" or not isinstance(error, RemoteError):
            raise
        return _json_response(
            _error_body(error.code, error.message, hash=None), status=compute_error_status(error)
        )
    if result.accepted:
        return _json_response(_compute_submit_item(result), status=202)
    tx_hash = result.tx_hash.hex() if result.tx_hash is not None else None
    if result.code == "mempool_full":
        return _json_response(
            _error_body(result.code, result.message, hash=tx_hash),
            status=503,
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    status = 400 if result.code in _MALFORMED_CODES else 422
    return _json_response(_error_body(result.code, result.message, hash=tx_hash), status=status)


def _submit_batch(service: NodeService, items: Any) -> web.Response:
    if not isinstance(items, list) or not items:
        raise RemoteError("txs must be a non-empty list of hex strings", code="bad_request")
    if len(items) > SUBMIT_TXS_MAX:
        raise RemoteError(
            f"at most {SUBMIT_TXS_MAX} transactions per request, got {len(items)}", code="too_many"
        )
    # Items that are not hex are refused here; the rest go to the service in one call.
    results: list[SubmitResult | None] = []
    encoded: list[bytes] = []
    for position, text in enumerate(items):
        try:
            encoded.append(parse_hex(text, f"txs[{position}]"))
            results.append(None)
        except RemoteError as error:
            results.append(SubmitResult(None, False, error.code, error.message))
    admitted = service.submit_transactions(encoded) if encoded else []
    if len(admitted) != len(encoded):
        raise LocalError(
            f"the node answered {len(admitted)} results for {len(encoded)} transactions", code="internal"
        )
    pending = iter(admitted)
    merged = [result if result is not None else next(pending) for result in results]
    accepted = sum(1 for result in merged if result.accepted)
    # Items refused only because the pool is full may be retried: say when.
    is_full = any(result.code == "mempool_full" for result in merged)
    return _json_response(
        {
            "accepted": accepted,
            "rejected": len(merged) - accepted,
            "results": [_compute_submit_item(result) for result in merged],
        },
        headers={"Retry-After": str(RETRY_AFTER_S)} if is_full else None,
    )


async def handle_submit(request: web.Request) -> web.Response:
    write_problems = _find_write_problems(_get_service(request))
    if write_problems:
        # A node that cannot write its ledger could pool a transaction but never commit it:
        # the client should take it to another node.
        message = "; ".join(problem.message for problem in write_problems)
        return _json_response(_error_body("storage_unavailable", message), status=503)
    busy = _get_service(request).get_busy_reason()
    if busy is not None:
        # Refuse before reading and decoding the body: a client flooding a busy node
        # must not cost it the work the refusal is meant to spare.
        raise RemoteError(busy, code="mempool_full")
    body = await _read_json_object(request)
    keys = set(body)
    if keys == {"tx"}:
        return _submit_single(_get_service(request), body["tx"])
    if keys == {"txs"}:
        return _submit_batch(_get_service(request), body["txs"])
    raise RemoteError('the body must be {"tx": hex} or {"txs": [hex, ...]}', code="bad_request")


async def handle_transaction(request: web.Request) -> web.Response:
    service = _get_service(request)
    tx_hash = parse_hex(request.match_info["hash"], "transaction hash", length=32)
    status = service.get_transaction_status(tx_hash)
    result: dict[str, Any] = {"hash": tx_hash.hex(), "status": status.status}
    if status.status == "pending":
        return _json_response(result)
    if status.status == "committed":
        if status.height is None or status.index is None:
            raise LocalError("a committed transaction without a location", code="internal")
        receipt = status.receipt
        if receipt is None:
            encoded = service.ledger.get_receipt(status.height, status.index)
            if encoded is None:
                raise LocalError(f"no receipt at {status.height}/{status.index}", code="internal")
            receipt = types.decode_receipt(encoded)
        result.update(height=status.height, index=status.index, receipt=compute_receipt_json(receipt))
        return _json_response(result)
    if status.status == "rejected":
        result["error"] = {"code": status.code, "message": status.message}
        return _json_response(result)
    return _json_response(
        _error_body("not_found", f"transaction {tx_hash.hex()} is not known to this node"),
        status=404,
    )


async def handle_transaction_proof(request: web.Request) -> web.Response:
    """Everything to verify offline that a committed transaction and its receipt are in the chain."""
    service = _get_service(request)
    tx_hash = parse_hex(request.match_info["hash"], "transaction hash", length=32)
    status = service.get_transaction_status(tx_hash)
    if status.status != "committed" or status.height is None or status.index is None:
        return _json_response(
            _error_body("not_found", f"transaction {tx_hash.hex()} is not committed on this node "
                                     f"(status: {status.status})"),
            status=404,
        )
    return _json_response(proof.compute_proof(service.ledger, status.height, status.index))


def _compute_genesis_json(ledger: LedgerReader) -> dict[str, Any]:
    return {
        "height": 0,
        "hash": ledger.get_genesis_hash().hex(),
        "genesis": True,
        "message": "height 0 is the genesis state defined by genesis.json; it has no block",
        "transactions": [],
    }


async def handle_block(request: web.Request) -> web.Response:
    service = _get_service(request)
    ledger = service.ledger
    text = request.match_info["height"]
    head_height = ledger.get_head().height
    height = head_height if text == "latest" else parse_height(text)
    if height == 0:
        return _json_response(_compute_genesis_json(ledger))
    block_encoded = ledger.get_block(height) if height <= head_height else None
    certificate_encoded = ledger.get_certificate(height) if block_encoded is not None else None
    if block_encoded is None or certificate_encoded is None:
        return _json_response(
            _error_body("not_found", f"no block at height {height}; the head is {head_height}"),
            status=404,
        )
    view = request.query.get("transactions", "full")
    if view not in ("full", "hashes"):
        raise RemoteError(f"transactions must be 'full' or 'hashes', got {view[:40]!r}", code="bad_request")
    certificate = types.decode_commit_certificate(certificate_encoded)
    validators = service.get_validator_set(height)
    if view == "hashes":
        # For followers that only need to know what committed (the benchmark's watcher):
        # ids without decoding the transactions, no per-transaction JSON, no raw encodings.
        header, tx_hashes = types.decode_block_summary(block_encoded)
        return _json_response(
            {
                "height": header.height,
                "hash": header.compute_hash().hex(),
                "header": compute_header_json(header),
                "certificate": compute_certificate_json(certificate, validators),
                "transactions": [{"hash": tx_hash.hex()} for tx_hash in tx_hashes],
            }
        )
    block = types.decode_block(block_encoded, check_body=False)
    body: dict[str, Any] = {
        "height": block.height,
        "hash": block.hash.hex(),
        "header": compute_header_json(block.header),
        "certificate": compute_certificate_json(certificate, validators),
    }
    body["transactions"] = [compute_transaction_json(tx) for tx in block.transactions]
    body["block_encoded"] = block_encoded.hex()
    body["certificate_encoded"] = certificate_encoded.hex()
    return _json_response(body)


async def handle_record(request: web.Request) -> web.Response:
    service = _get_service(request)
    entity = _check_name(request.match_info["entity"], "entity")
    key = _check_name(request.match_info["key"], "key")
    version: int | None = None
    version_text = request.query.get("version")
    if version_text is not None:
        version = parse_natural(version_text, "version", code="bad_version")
        if version < 1:
            raise RemoteError("version must be a positive integer", code="bad_version")
    record = records.get_record(service.ledger, entity, key, version)
    if record is None:
        what = f"version {version} of " if version is not None else ""
        return _json_response(
            _error_body("not_found", f"no {what}record {key!r} of entity {entity!r}"), status=404
        )
    try:
        text: str | None = record.value.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    return _json_response(
        {
            "entity": record.entity,
            "key": record.key,
            "version": record.version,
            "value_hex": record.value.hex(),
            "value": text,
            "height": record.height,
            "tx_hash": record.tx_hash.hex(),
        }
    )


# ---------------------------------------------------------------- errors and the app

_HTTP_ERROR_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
}


def compute_error_status(error: ChainError) -> int:
    """The HTTP status of a typed error: 4xx for the client's fault, 503 when full, 500 ours."""
    if error.code == "mempool_full":
        return 503
    if isinstance(error, (DecodeError,)):
        return 400
    if isinstance(error, ValidationError):
        return 422
    if isinstance(error, RemoteError):
        return 400
    return 500


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        code = _HTTP_ERROR_CODES.get(error.status, f"http_{error.status}")
        headers = {name: value for name, value in error.headers.items() if name == "Allow"}
        message = f"{error.reason}: {request.method} {request.path}"
        return _json_response(_error_body(code, message), status=error.status, headers=headers)
    except ChainError as error:
        status = compute_error_status(error)
        headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else {}
        if status >= 500:
            logger.error("%s %s failed: %s", request.method, request.path, error)
        return _json_response(_error_body(error.code, error.message), status=status, headers=headers)
    except Exception:
        logger.exception("%s %s failed unexpectedly", request.method, request.path)
        return _json_response(_error_body("internal", "internal error; see the node's log"), status=500)


def create_app(service: NodeService, *, body_bytes_max: int = 32 * 1024 * 1024) -> web.Application:
    """The API application; run it with `web.AppRunner` on the node's API address."""
    app = web.Application(middlewares=[error_middleware], client_max_size=body_bytes_max)
    app[SERVICE_KEY] = service
    app.router.add_get("/v1/health", handle_health)
    app.router.add_get("/healthz", handle_health)
    app.router.add_get("/readyz", handle_ready)
    app.router.add_get("/v1/status", handle_status)
    app.router.add_get("/v1/evidence", handle_evidence)
    app.router.add_get("/v1/checkpoints/latest", handle_checkpoint)
    app.router.add_get("/metrics", handle_metrics)
    app.router.add_post("/v1/transactions", handle_submit)
    app.router.add_get("/v1/transactions/{hash}", handle_transaction)
    app.router.add_get("/v1/transactions/{hash}/proof", handle_transaction_proof)
    app.router.add_get("/v1/blocks/{height}", handle_block)
    app.router.add_get("/v1/records/{entity}/{key}", handle_record)
    # Imported here: api_governance builds on this module's helpers.
    from chainnode.api import governance as api_governance

    api_governance.add_routes(app)
    return app
