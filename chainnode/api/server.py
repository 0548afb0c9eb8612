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

Transactions and blocks (submit, status, proofs, blocks: what a 202 promises) are served by
`chainnode.api.chain`.  Identities and governance (entities, zones, validators, proposals, expiring
certificates) are served by `chainnode.api.governance`, records (versions, history, prefix
listings, anchored documents, grants, read markers) by `chainnode.api.records`, both mounted in
`create_app`.

Contract: every route is declared once, as data (`chainnode.api.common.Route`: method, path,
handler, parameters with their bounds, body and answer schemas, error codes by status), in a
`ROUTES` table per area (this module's health, status, metrics, evidence and checkpoint routes,
chain, governance, assets, records, events, light, xchain);
`create_app` mounts the declarations and `GET /openapi.json` serves the OpenAPI 3.1 document
computed from the same ones (`chainnode.api.openapi`).  Every list takes `limit` and `cursor`
(`common.parse_limit`, `bad_limit`; `bad_cursor`) and answers `next_cursor`.

The service is synchronous and runs on the event loop's thread, so the node
never has to make its mempool or ledger thread-safe for the API's sake; a
batch of 10,000 transactions therefore holds the loop for as long as their
admission checks take (about 0.7 s of signature checks at the measured rate).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from aiohttp import web

from chainnode.api import assets as api_assets
from chainnode.api import chain as api_chain
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
    compute_error_status,
    compute_offset_page,
    error_body,
    find_write_problems,
    get_service,
    json_response,
    register_routes,
)
from chainnode.api.forms import (
    CHECKPOINT_SCHEMA,
    EVIDENCE_SCHEMA,
    HEALTH_SCHEMA,
    PROBLEMS_SCHEMA,
    STATUS_SCHEMA,
    STRING,
)
from chainnode.api.openapi import compute_document
from chainnode.api.service import NodeService, ReadinessProblem
from chainnode.core import metrics, quorum
from chainnode.core.errors import ChainError
from consensus.messages import decode_evidence

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------- handlers


def _compute_problems_json(problems: Sequence[ReadinessProblem]) -> dict[str, str]:
    return {problem.name: problem.message for problem in problems}


async def handle_health(request: web.Request) -> web.Response:
    """Liveness: failing only while the node cannot write its ledger."""
    problems = find_write_problems(get_service(request))
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


async def handle_openapi(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 document of every route this application mounts."""
    routes: tuple[Route, ...] = request.app[ROUTES_KEY]
    return json_response(compute_document(routes))


# ---------------------------------------------------------------- the core routes, declared once

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
        headers = {"Retry-After": str(api_chain.RETRY_AFTER_S)} if status == 503 else {}
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
        api_chain.ROUTES,
        api_governance.ROUTES,
        api_assets.ROUTES,
        api_records.ROUTES,
        api_light.ROUTES,
        api_xchain.ROUTES,
    ):
        register_routes(app, module_routes)
    api_events.add_routes(app)
    return app
