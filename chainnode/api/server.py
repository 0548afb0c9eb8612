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

Contract: every route is declared once, as data (`chainnode.api.common.Route`: method, path,
handler, parameters with their bounds, body and answer schemas, error codes by status), in a
`ROUTES` table per area (this module's core routes, governance, assets, records, events);
`create_app` mounts the declarations and `GET /openapi.json` serves the OpenAPI 3.1 document
computed from the same ones (`chainnode.api.openapi`).  Every list takes `limit` and `cursor`
(`common.parse_limit`, `bad_limit`; `bad_cursor`) and answers `next_cursor`.

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
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from chainnode.api import assets as api_assets
from chainnode.api import events as api_events
from chainnode.api import governance as api_governance
from chainnode.api import light as api_light
from chainnode.api import records as api_records
from chainnode.api import xchain as api_xchain
from chainnode.api.common import (
    CURSOR_PARAM,
    LIMIT_PARAM,
    PAGE_ERRORS,
    ROUTES_KEY,
    SERVICE_KEY,
    Handler,
    Route,
    compute_offset_page,
    error_body,
    get_service,
    json_response,
    parse_height,
    path_param,
    query_param,
    read_json_object,
    register_routes,
)
from chainnode.api.forms import (
    BLOCK_SCHEMA,
    CHECKPOINT_SCHEMA,
    EVIDENCE_SCHEMA,
    HASH,
    HEALTH_SCHEMA,
    HEX,
    PROBLEMS_SCHEMA,
    PROOF_SCHEMA,
    STATUS_SCHEMA,
    STRING,
    SUBMIT_BATCH_SCHEMA,
    SUBMIT_ITEM_SCHEMA,
    TX_STATUS_SCHEMA,
    compute_array_schema,
    compute_certificate_json,
    compute_header_json,
    compute_receipt_json,
    compute_transaction_json,
)
from chainnode.api.openapi import TX_ERROR_CODES, compute_document
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
    proofs = service.get_evidence()
    page, next_cursor = compute_offset_page(proofs, request)
    items = []
    for payload in page:
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
    return json_response({"count": len(proofs), "evidence": items, "next_cursor": next_cursor})


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


async def handle_openapi(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 document of every route this application mounts."""
    routes: tuple[Route, ...] = request.app[ROUTES_KEY]
    return json_response(compute_document(routes))


# ---------------------------------------------------------------- the core routes, declared once

_SUBMIT_BODY_SCHEMA = {
    "oneOf": [
        {"type": "object", "required": ["tx"], "properties": {"tx": HEX}, "additionalProperties": False},
        {
            "type": "object",
            "required": ["txs"],
            "properties": {"txs": {**compute_array_schema(HEX), "minItems": 1, "maxItems": SUBMIT_TXS_MAX}},
            "additionalProperties": False,
        },
    ]
}
_HASH_PARAM = path_param("hash", "a transaction hash: 64 lowercase hex digits", HASH)

ROUTES: tuple[Route, ...] = (
    Route("GET", "/openapi.json", handle_openapi, "This document", responses={200: {"type": "object"}}),
    Route(
        "GET",
        "/v1/health",
        handle_health,
        "Liveness: failing only while the node cannot write its ledger",
        responses={200: HEALTH_SCHEMA, 503: PROBLEMS_SCHEMA},
    ),
    Route(
        "GET",
        "/healthz",
        handle_health,
        "Liveness (alias of /v1/health)",
        responses={200: HEALTH_SCHEMA, 503: PROBLEMS_SCHEMA},
    ),
    Route(
        "GET",
        "/readyz",
        handle_ready,
        "Readiness: every named problem",
        responses={200: PROBLEMS_SCHEMA, 503: PROBLEMS_SCHEMA},
    ),
    Route(
        "GET",
        "/v1/status",
        handle_status,
        "Chain, head, view, peers and mempool",
        responses={200: STATUS_SCHEMA},
    ),
    Route(
        "GET",
        "/v1/evidence",
        handle_evidence,
        "Proofs that a validator signed two conflicting messages",
        params=(LIMIT_PARAM, CURSOR_PARAM),
        responses={200: EVIDENCE_SCHEMA},
        errors=PAGE_ERRORS,
    ),
    Route(
        "GET",
        "/v1/checkpoints/latest",
        handle_checkpoint,
        "The latest stable checkpoint",
        responses={200: CHECKPOINT_SCHEMA},
        errors={404: ("not_found",)},
    ),
    Route(
        "GET",
        "/metrics",
        handle_metrics,
        "Prometheus metrics",
        responses={200: STRING},
        content_type="text/plain",
    ),
    Route(
        "POST",
        "/v1/transactions",
        handle_submit,
        "Submit one transaction (202) or a batch (200, a result per item)",
        request_body=_SUBMIT_BODY_SCHEMA,
        responses={200: SUBMIT_BATCH_SCHEMA, 202: SUBMIT_ITEM_SCHEMA},
        errors={
            400: ("bad_request", "malformed_json", "bad_hex", "too_many", "malformed", "too_large"),
            413: ("too_large",),
            422: TX_ERROR_CODES,
            503: ("mempool_full", "storage_unavailable"),
        },
    ),
    Route(
        "GET",
        "/v1/transactions/{hash}",
        handle_transaction,
        "A transaction's status: pending, committed (with its receipt) or rejected",
        params=(_HASH_PARAM,),
        responses={200: TX_STATUS_SCHEMA},
        errors={400: ("bad_hex",), 404: ("not_found",)},
    ),
    Route(
        "GET",
        "/v1/transactions/{hash}/proof",
        handle_transaction_proof,
        "An offline-verifiable inclusion proof of a committed transaction and its receipt",
        params=(_HASH_PARAM,),
        responses={200: PROOF_SCHEMA},
        errors={400: ("bad_hex",), 404: ("not_found",)},
    ),
    Route(
        "GET",
        "/v1/blocks/{height}",
        handle_block,
        "A block with its header, certificate and transactions (height 0: the genesis summary)",
        params=(
            path_param(
                "height",
                "a height or 'latest'",
                {"anyOf": [{"type": "string", "pattern": "^[0-9]{1,20}$"}, {"const": "latest"}]},
            ),
            query_param(
                "transactions",
                "full (default) or hashes only",
                {"enum": ["full", "hashes"], "default": "full"},
            ),
        ),
        responses={200: BLOCK_SCHEMA},
        errors={400: ("bad_height", "bad_request"), 404: ("not_found",)},
    ),
)


# ---------------------------------------------------------------- errors and the app

# The stable codes of the HTTP errors aiohttp raises (`common.ERROR_CODES`); any other status
# answers `http_<status>`.
HTTP_ERROR_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    501: "not_implemented",
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


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        code = HTTP_ERROR_CODES.get(error.status, f"http_{error.status}")
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
    for module_routes in (
        ROUTES,
        api_governance.ROUTES,
        api_assets.ROUTES,
        api_records.ROUTES,
        api_light.ROUTES,
        api_xchain.ROUTES,
    ):
        register_routes(app, module_routes)
    api_events.add_routes(app)
    return app
