"""The API's OpenAPI 3.1 document, computed from the route declarations that also mount the
handlers (`chainnode.api.common.Route`), so the document cannot drift from the routes.

Every operation lists its parameters with their bounds, its request body, the schema of each
success answer, and, per error status, the enum of stable codes (`common.ERROR_CODES`, and the
transaction rejection labels of `chainnode.core.types.ErrorCode`) it can answer in the shape
`{"error": {"code", "message"}}`.  Pure: no aiohttp application, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from chainnode.api.common import ERROR_CODES, Route
from chainnode.api.forms import STRING, compute_object_schema
from chainnode.core import types

OPENAPI_VERSION = "3.1.0"
API_VERSION = "1"
# Transaction rejection codes: the stable labels of receipts and admission refusals.
TX_ERROR_CODES: tuple[str, ...] = tuple(code.label for code in types.ErrorCode if code != types.ErrorCode.OK)

_REASONS = {
    101: "Switching Protocols (websocket)",
    200: "OK",
    202: "Accepted",
    400: "Bad request",
    404: "Not found",
    405: "Method not allowed",
    413: "Body too large",
    422: "Well-formed but breaks a rule",
    501: "Not implemented by this node",
    503: "Unavailable; see Retry-After",
}


def compute_error_schema(codes: Sequence[str]) -> dict[str, Any]:
    """The error body with the codes an operation answers at one status."""
    return dict(
        compute_object_schema(
            {
                "error": compute_object_schema(
                    {"code": {"type": "string", "enum": sorted(set(codes))}, "message": STRING}
                )
            }
        )
    )


def _compute_operation_id(route: Route) -> str:
    words = [part.strip("{}") for part in route.path.split("/") if part and part != "v1"]
    return "_".join([route.method.lower(), *words]).replace(".", "_").replace("-", "_")


def _compute_parameter(param: Any) -> dict[str, Any]:
    return {
        "name": param.name,
        "in": param.location,
        "required": param.required or param.location == "path",
        "description": param.description,
        "schema": dict(param.schema),
    }


def _compute_operation(route: Route) -> dict[str, Any]:
    overlap = set(route.responses) & set(route.errors)
    if overlap:
        raise ValueError(
            f"{route.method} {route.path}: statuses {sorted(overlap)} are both answers and errors"
        )
    responses: dict[str, Any] = {}
    for status, schema in sorted(route.responses.items()):
        answer: dict[str, Any] = {"description": _REASONS.get(status, str(status))}
        if schema is not None:
            answer["content"] = {route.content_type: {"schema": dict(schema)}}
        responses[str(status)] = answer
    for status, codes in sorted(route.errors.items()):
        unknown = [code for code in codes if code not in ERROR_CODES and code not in TX_ERROR_CODES]
        if unknown:
            raise ValueError(f"{route.method} {route.path}: undeclared error codes {unknown}")
        responses[str(status)] = {
            "description": f"{_REASONS.get(status, str(status))}: " + ", ".join(sorted(set(codes))),
            "content": {"application/json": {"schema": compute_error_schema(codes)}},
        }
    operation: dict[str, Any] = {
        "operationId": _compute_operation_id(route),
        "summary": route.summary,
        "parameters": [_compute_parameter(param) for param in route.params],
        "responses": responses,
    }
    if route.tag:
        operation["tags"] = [route.tag]
    if route.request_body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": dict(route.request_body)}},
        }
    return operation


def compute_document(routes: Sequence[Route]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `routes`."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        operations = paths.setdefault(route.path, {})
        method = route.method.lower()
        if method in operations:
            raise ValueError(f"{route.method} {route.path} is declared twice")
        operations[method] = _compute_operation(route)
    codes: Mapping[str, str] = {**ERROR_CODES, **dict.fromkeys(TX_ERROR_CODES, "a transaction rejection")}
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "chainnode node API",
            "version": API_VERSION,
            "description": (
                'Errors answer {"error": {"code", "message"}} with a stable code: '
                + "; ".join(f"{code}: {meaning}" for code, meaning in codes.items())
                + ".  Every list takes `limit` and `cursor` (events: `from`) and answers the "
                "cursor of its next page."
            ),
        },
        "paths": paths,
        "components": {"schemas": {"Error": compute_error_schema(sorted(codes))}},
    }
