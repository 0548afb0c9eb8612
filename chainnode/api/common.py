"""Request and response helpers every route table of the API shares: the route declarations
(`Route`, `Param`) that both mount the handlers and describe them in the OpenAPI document
(`chainnode.api.openapi`), the stable error codes, decimal, name, `limit` and `cursor` checks,
JSON bodies and the error shape, and the service behind a request.  Hex is parsed by the
house's one parser, `chainnode.core.hexstr.parse_hex` (a `RemoteError` answered `bad_hex`)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web

from chainnode.api.service import LedgerReader, NodeService, ReadinessProblem
from chainnode.core.errors import ChainError, DecodeError, RemoteError, ValidationError

_HEIGHT_DIGITS_MAX = 20
_NAME_CHARS_MAX = 128

SERVICE_KEY = web.AppKey("service", NodeService)

LIMIT_DEFAULT = 100
LIMIT_MAX = 1000

# The API's stable error codes (`{"error": {"code", "message"}}`) and what each means.  The CLI
# and the SDK show the same codes (`chainnode.sdk.errors.ClientError.code`); the OpenAPI document
# lists, per operation and status, the codes it can answer.  Rejections of a transaction add the
# labels of `chainnode.core.types.ErrorCode` (`bad_signature`, `unknown_signer`, ...).
ERROR_CODES: Mapping[str, str] = {
    "bad_request": "the request is not of the form the endpoint takes",
    "malformed_json": "the body is not JSON",
    "bad_hex": "a hash or byte string is not lowercase hex of the expected length",
    "bad_height": "a height is not a non-negative decimal integer (or out of range)",
    "bad_version": "a record version is not a positive decimal integer",
    "bad_limit": f"limit is not a decimal integer in 1..{LIMIT_MAX}",
    "bad_cursor": "cursor is not one this list answered as next_cursor",
    "not_found": "no such route, or no such object on this node",
    "method_not_allowed": "the route does not take this method",
    "too_large": "the body is larger than the node takes",
    "too_many": "more transactions in one request than the node takes",
    "mempool_full": "the node's mempool is full; retry after Retry-After",
    "storage_unavailable": "the node cannot write its ledger; take the transaction to another node",
    "not_replicated": "a quorum of validators did not confirm holding the transaction in time; resubmit",
    "too_many_subscribers": "the node serves as many event subscribers as it takes",
    "not_implemented": "this node's ledger cannot list state",
    "internal": "the node failed; see its log",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Param:
    """A path or query parameter of a route."""

    name: str
    location: str  # "path" or "query"
    schema: Mapping[str, Any]  # JSON Schema of the parameter's text
    description: str
    required: bool = False  # path parameters are always required


@dataclass(frozen=True, slots=True)
class Route:
    """One endpoint, declared once: `register_routes` mounts `handler` and
    `chainnode.api.openapi.compute_document` describes it from the same declaration."""

    method: str
    path: str
    handler: Handler
    summary: str
    params: Sequence[Param] = ()
    responses: Mapping[int, Mapping[str, Any] | None] = field(default_factory=dict)  # status -> JSON Schema
    errors: Mapping[int, Sequence[str]] = field(default_factory=dict)  # status -> stable codes
    request_body: Mapping[str, Any] | None = None  # JSON Schema of a JSON body
    content_type: str = "application/json"  # of the success responses
    tag: str = ""


ROUTES_KEY: web.AppKey[tuple[Route, ...]] = web.AppKey("routes")


def register_routes(app: web.Application, routes: Sequence[Route]) -> None:
    """Mount each declared route; the app keeps the declarations for the OpenAPI document."""
    for route in routes:
        app.router.add_route(route.method, route.path, route.handler)
    app[ROUTES_KEY] = (*app.get(ROUTES_KEY, ()), *routes)


def path_param(name: str, description: str, schema: Mapping[str, Any] | None = None) -> Param:
    return Param(name, "path", schema or NAME_SCHEMA, description, required=True)


def query_param(name: str, description: str, schema: Mapping[str, Any]) -> Param:
    return Param(name, "query", schema, description)


NAME_SCHEMA: Mapping[str, Any] = {
    "type": "string",
    "minLength": 1,
    "maxLength": _NAME_CHARS_MAX,
    "pattern": "^[^\\x00]*$",
}
LIMIT_PARAM = query_param(
    "limit",
    f"items per page, 1..{LIMIT_MAX} (default {LIMIT_DEFAULT})",
    {"type": "integer", "minimum": 1, "maximum": LIMIT_MAX, "default": LIMIT_DEFAULT},
)
# Decimal texts the parse helpers take: at most 20 digits; the document promises what fits in 63 bits.
INTEGER_TEXT_MAX = 2**63 - 1
CURSOR_PARAM = query_param(
    "cursor",
    "the previous page's next_cursor (absent or empty: the first page)",
    {"type": "string", "pattern": "^[0-9]{0,19}$"},
)
PAGE_ERRORS: Mapping[int, Sequence[str]] = {400: ("bad_limit", "bad_cursor")}


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}, **extra}


def json_response(data: Any, status: int = 200, **kwargs: Any) -> web.Response:
    return web.json_response(data, status=status, dumps=json.dumps, **kwargs)


def parse_natural(text: str, what: str, *, code: str) -> int:
    """A non-negative decimal integer of at most 20 digits (no sign, no spaces)."""
    if not text.isascii() or not text.isdigit() or len(text) > _HEIGHT_DIGITS_MAX:
        raise RemoteError(f"{what} must be a non-negative integer, got {text[:40]!r}", code=code)
    return int(text)


def parse_height(text: str) -> int:
    return parse_natural(text, "height (or 'latest')", code="bad_height")


def parse_limit(request: web.Request, default: int = LIMIT_DEFAULT, maximum: int = LIMIT_MAX) -> int:
    """The `limit` query parameter: 1..`maximum`, `bad_limit` otherwise."""
    text = request.query.get("limit")
    if text is None:
        return default
    limit = parse_natural(text, "limit", code="bad_limit")
    if not 1 <= limit <= maximum:
        raise RemoteError(f"limit must be 1..{maximum}, got {limit}", code="bad_limit")
    return limit


def parse_offset_cursor(request: web.Request) -> int:
    """A cursor that counts the items already seen (lists held whole in memory)."""
    text = request.query.get("cursor", "")
    return 0 if text == "" else parse_natural(text, "cursor", code="bad_cursor")


Item = TypeVar("Item")


def compute_offset_page(items: Sequence[Item], request: web.Request) -> tuple[Sequence[Item], str | None]:
    """One page of a list held whole (`limit`, and `cursor` the count of items before it) and
    the cursor of the next page (None on the last)."""
    limit = parse_limit(request)
    start = parse_offset_cursor(request)
    end = start + limit
    return items[start:end], (str(end) if end < len(items) else None)


def check_name(text: str, what: str) -> str:
    if not 1 <= len(text) <= _NAME_CHARS_MAX or "\0" in text:
        raise RemoteError(f"{what} must be 1..{_NAME_CHARS_MAX} characters without NUL", code="bad_request")
    return text


async def read_json_object(request: web.Request) -> dict[str, Any]:
    body = await request.read()  # raises 413 past the application's client_max_size
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise RemoteError(f"the body is not valid JSON: {error}", code="malformed_json") from error
    if not isinstance(value, dict):
        raise RemoteError("the body must be a JSON object", code="bad_request")
    return value


def get_service(request: web.Request) -> NodeService:
    return request.app[SERVICE_KEY]


def get_ledger(request: web.Request) -> LedgerReader:
    """The committed state and chain the request reads."""
    return get_service(request).ledger


def not_found(message: str) -> web.Response:
    """404 `not_found` with `message`: an object this node does not hold."""
    return json_response(error_body("not_found", message), status=404)


def find_write_problems(service: NodeService) -> list[ReadinessProblem]:
    """The readiness problems that keep the node from writing (it then refuses submissions)."""
    return [problem for problem in service.get_readiness_problems() if problem.blocks_writes]


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
