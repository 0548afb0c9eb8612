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
certificates) are served by `chainnode.api.governance`, records (versions, history, prefix
listings, anchored documents, grants, read markers) by `chainnode.api.records`, both mounted in
`create_app`.

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

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web

from chainnode.api import records as api_records
from chainnode.api.common import (
    SERVICE_KEY,
    error_body,
    get_service,
    json_response,
    parse_height,
    read_json_object,
)
from chainnode.api.forms import (
    compute_certificate_json,
    compute_header_json,
    compute_receipt_json,
    compute_transaction_json,
)
from chainnode.api.service import LedgerReader, NodeService, ReadinessProblem, SubmitResult
from chainnode.app import proof
from chainnode.core import metrics, quorum, types
from chainnode.core.errors import ChainError, DecodeError, LocalError, RemoteError, ValidationError
from chainnode.core.hexstr import parse_hex
from chainnode.core.statuses import TxStatus
from consensus.messages import decode_evidence

logger = logging.getLogger(__name__)

SUBMIT_TXS_MAX = 10_000
RETRY_AFTER_S = 1
# Rejection codes that mean "this is not a transaction at all" rather than
# "this transaction breaks a rule"; they answer 400 instead of 422.
_MALFORMED_CODES = frozenset({"malformed", "too_large", "bad_hex", "bad_request"})


# ---------------------------------------------------------------- handlers


def _compute_problems_json(problems: Sequence[ReadinessProblem]) -> dict[str, str]:
    return {problem.name: problem.message for problem in problems}


def _find_write_problems(service: NodeService) -> list[ReadinessProblem]:
    return [problem for problem in service.get_readiness_problems() if problem.blocks_writes]


async def handle_health(request: web.Request) -> web.Response:
    """Liveness: failing only while the node cannot write its ledger."""
    problems = _find_write_problems(get_service(request))
    if problems:
        return json_response({"status": "failing", "problems": _compute_problems_json(problems)}, status=503)
    return json_response({"status": "ok"})


async def handle_ready(request: web.Request) -> web.Response:
    """Readiness: every named problem the node finds (cannot write, low disk, catching up, ...)."""
    problems = get_service(request).get_readiness_problems()
    if problems:
        return json_response(
            {"status": "not_ready", "problems": _compute_problems_json(problems)}, status=503
        )
    return json_response({"status": "ok", "problems": {}})


async def handle_status(request: web.Request) -> web.Response:
    return json_response(get_service(request).get_status())


async def handle_evidence(request: web.Request) -> web.Response:
    service = get_service(request)
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
    return json_response({"count": len(items), "evidence": items})


async def handle_checkpoint(request: web.Request) -> web.Response:
    service = get_service(request)
    encoded = service.ledger.get_latest_checkpoint()
    if encoded is None:
        return json_response(error_body("not_found", "no stable checkpoint yet"), status=404)
    checkpoint = quorum.decode_checkpoint_certificate(encoded)
    validators = service.get_validator_set(checkpoint.height)
    return json_response(
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
    text = get_service(request).render_metrics()
    return web.Response(body=text.encode(), headers={"Content-Type": metrics.CONTENT_TYPE})


def _compute_submit_item(result: SubmitResult) -> dict[str, Any]:
    item: dict[str, Any] = {
        "hash": result.tx_hash.hex() if result.tx_hash is not None else None,
        "status": TxStatus.PENDING if result.accepted else TxStatus.REJECTED,
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
        return json_response(
            error_body(error.code, error.message, hash=None), status=compute_error_status(error)
        )
    if result.accepted:
        return json_response(_compute_submit_item(result), status=202)
    tx_hash = result.tx_hash.hex() if result.tx_hash is not None else None
    if result.code == "mempool_full":
        return json_response(
            error_body(result.code, result.message, hash=tx_hash),
            status=503,
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    status = 400 if result.code in _MALFORMED_CODES else 422
    return json_response(error_body(result.code, result.message, hash=tx_hash), status=status)


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
    return json_response(
        {
            "accepted": accepted,
            "rejected": len(merged) - accepted,
            "results": [_compute_submit_item(result) for result in merged],
        },
        headers={"Retry-After": str(RETRY_AFTER_S)} if is_full else None,
    )


async def handle_submit(request: web.Request) -> web.Response:
    write_problems = _find_write_problems(get_service(request))
    if write_problems:
        # A node that cannot write its ledger could pool a transaction but never commit it:
        # the client should take it to another node.
        message = "; ".join(problem.message for problem in write_problems)
        return json_response(error_body("storage_unavailable", message), status=503)
    busy = get_service(request).get_busy_reason()
    if busy is not None:
        # Refuse before reading and decoding the body: a client flooding a busy node
        # must not cost it the work the refusal is meant to spare.
        raise RemoteError(busy, code="mempool_full")
    body = await read_json_object(request)
    keys = set(body)
    if keys == {"tx"}:
        return _submit_single(get_service(request), body["tx"])
    if keys == {"txs"}:
        return _submit_batch(get_service(request), body["txs"])
    raise RemoteError('the body must be {"tx": hex} or {"txs": [hex, ...]}', code="bad_request")


async def handle_transaction(request: web.Request) -> web.Response:
    service = get_service(request)
    tx_hash = parse_hex(request.match_info["hash"], "transaction hash", length=32)
    status = service.get_transaction_status(tx_hash)
    result: dict[str, Any] = {"hash": tx_hash.hex(), "status": status.status}
    if status.status == TxStatus.PENDING:
        return json_response(result)
    if status.status == TxStatus.COMMITTED:
        if status.height is None or status.index is None:
            raise LocalError("a committed transaction without a location", code="internal")
        receipt = status.receipt
        if receipt is None:
            encoded = service.ledger.get_receipt(status.height, status.index)
            if encoded is None:
                raise LocalError(f"no receipt at {status.height}/{status.index}", code="internal")
            receipt = types.decode_receipt(encoded)
        result.update(height=status.height, index=status.index, receipt=compute_receipt_json(receipt))
        return json_response(result)
    if status.status == TxStatus.REJECTED:
        result["error"] = {"code": status.code, "message": status.message}
        return json_response(result)
    return json_response(
        error_body("not_found", f"transaction {tx_hash.hex()} is not known to this node"),
        status=404,
    )


async def handle_transaction_proof(request: web.Request) -> web.Response:
    """Everything to verify offline that a committed transaction and its receipt are in the chain."""
    service = get_service(request)
    tx_hash = parse_hex(request.match_info["hash"], "transaction hash", length=32)
    status = service.get_transaction_status(tx_hash)
    if status.status != TxStatus.COMMITTED or status.height is None or status.index is None:
        return json_response(
            error_body(
                "not_found",
                f"transaction {tx_hash.hex()} is not committed on this node (status: {status.status})",
            ),
            status=404,
        )
    return json_response(proof.compute_proof(service.ledger, status.height, status.index))


def _compute_genesis_json(ledger: LedgerReader) -> dict[str, Any]:
    return {
        "height": 0,
        "hash": ledger.get_genesis_hash().hex(),
        "genesis": True,
        "message": "height 0 is the genesis state defined by genesis.json; it has no block",
        "transactions": [],
    }


async def handle_block(request: web.Request) -> web.Response:
    service = get_service(request)
    ledger = service.ledger
    text = request.match_info["height"]
    head_height = ledger.get_head().height
    height = head_height if text == "latest" else parse_height(text)
    if height == 0:
        return json_response(_compute_genesis_json(ledger))
    block_encoded = ledger.get_block(height) if height <= head_height else None
    certificate_encoded = ledger.get_certificate(height) if block_encoded is not None else None
    if block_encoded is None or certificate_encoded is None:
        return json_response(
            error_body("not_found", f"no block at height {height}; the head is {head_height}"),
            status=404,
        )
    view = request.query.get("transactions", "full")
    if view not in ("full", "hashes"):
        raise RemoteError(f"transactions must be 'full' or 'hashes', got {view[:40]!r}", code="bad_request")
    certificate = quorum.decode_commit_certificate(certificate_encoded)
    validators = service.get_validator_set(height)
    if view == "hashes":
        # For followers that only need to know what committed (the benchmark's watcher):
        # ids without decoding the transactions, no per-transaction JSON, no raw encodings.
        header, tx_hashes = types.decode_block_summary(block_encoded)
        return json_response(
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
    return json_response(body)


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
        return json_response(error_body(code, message), status=error.status, headers=headers)
    except ChainError as error:
        status = compute_error_status(error)
        headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else {}
        if status >= 500:
            logger.error("%s %s failed: %s", request.method, request.path, error)
        return json_response(error_body(error.code, error.message), status=status, headers=headers)
    except Exception:
        logger.exception("%s %s failed unexpectedly", request.method, request.path)
        return json_response(error_body("internal", "internal error; see the node's log"), status=500)


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
    # Imported here: api_governance builds on this module's helpers.
    from chainnode.api import assets as api_assets
    from chainnode.api import events as api_events
    from chainnode.api import governance as api_governance

    api_governance.add_routes(app)
    api_assets.add_routes(app)
    api_events.add_routes(app)
    api_records.add_routes(app)
    return app
