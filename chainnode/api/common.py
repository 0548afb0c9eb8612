"""Request and response helpers every route table of the API shares: decimal and name checks,
JSON bodies and the error shape, and the service behind a request.  Hex is parsed by the
house's one parser, `chainnode.core.hexstr.parse_hex` (a `RemoteError` answered `bad_hex`)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from chainnode.api.service import NodeService
from chainnode.core.errors import RemoteError

_HEIGHT_DIGITS_MAX = 20
_NAME_CHARS_MAX = 128

SERVICE_KEY = web.AppKey("service", NodeService)


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
