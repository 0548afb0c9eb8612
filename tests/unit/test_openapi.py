"""The OpenAPI document is computed from the same route declarations that mount the handlers:
every route the application serves is in the document and every operation of the document is
served, the document is valid OpenAPI 3.1, and every list takes `limit` and a cursor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from openapi_spec_validator import validate

from chainnode.api.common import ERROR_CODES, ROUTES_KEY
from chainnode.api.openapi import TX_ERROR_CODES, compute_document
from chainnode.api.server import create_app
from tests.integration.api_harness import LocalService


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> web.Application:
    service = LocalService(tmp_path_factory.mktemp("openapi"))
    return create_app(service)


def _served(app: web.Application) -> set[tuple[str, str]]:
    served = set()
    for route in app.router.routes():
        if route.method == "HEAD":
            continue  # aiohttp adds HEAD beside each GET
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        served.add((route.method, str(path)))
    return served


def test_every_served_route_is_in_the_document_and_nothing_else(app: web.Application) -> None:
    document = compute_document(app[ROUTES_KEY])
    documented = {
        (method.upper(), path) for path, operations in document["paths"].items() for method in operations
    }
    assert _served(app) == documented
    assert len(documented) >= 30


def test_the_document_is_valid_openapi_3_1(app: web.Application) -> None:
    document = compute_document(app[ROUTES_KEY])
    assert document["openapi"].startswith("3.1")
    validate(document)  # raises on an invalid document


def _operations(app: web.Application) -> list[tuple[str, str, dict[str, Any]]]:
    document = compute_document(app[ROUTES_KEY])
    return [
        (method, path, operation)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    ]


# Answers with arrays inside one object, not lists of objects of their own.
NOT_LISTS = {
    ("get", "/v1/status"),  # its peers
    ("get", "/v1/entities/{id}"),  # its roles and sectors
    ("get", "/v1/validators"),  # one validator set
    ("get", "/v1/proposals/{id}"),  # one proposal's votes
    ("get", "/v1/transactions/{hash}/proof"),  # one proof's branches
    ("get", "/v1/blocks/{height}"),  # one block's transactions
    ("get", "/v1/checkpoints/latest"),  # one checkpoint's signatures
    ("post", "/v1/transactions"),  # a batch's results, one per submitted item
    ("get", "/v1/light/changes"),  # every validator-set change: council decisions, few
}
# Lists whose cursor is a position (`from`), each with the code of a bad one.
FROM_LISTS = {"/v1/events": "bad_cursor", "/v1/light/headers": "bad_height"}


def test_every_list_takes_limit_and_a_cursor(app: web.Application) -> None:
    """An operation whose answer holds an array at its top level is a list: it is paginated."""
    lists = []
    for method, path, operation in _operations(app):
        schema = operation["responses"].get("200", {}).get("content", {}).get("application/json", {})
        properties = schema.get("schema", {}).get("properties", {})
        if not any(item.get("type") == "array" for item in properties.values()):
            continue
        if (method, path) in NOT_LISTS:
            continue
        names = {param["name"] for param in operation["parameters"]}
        lists.append(path)
        cursor = "from" if path in FROM_LISTS else "cursor"
        assert {"limit", cursor} <= names, path
        assert {"bad_limit", FROM_LISTS.get(path, "bad_cursor")} <= set(
            operation["responses"]["400"]["content"]["application/json"]["schema"]["properties"]["error"][
                "properties"
            ]["code"]["enum"]
        ), path
    assert len(lists) >= 13, lists


def test_error_codes_are_declared_once(app: web.Application) -> None:
    for _, path, operation in _operations(app):
        for status, answer in operation["responses"].items():
            if int(status) < 400:
                continue
            schema = answer["content"]["application/json"]["schema"]
            if "error" not in schema["properties"]:
                continue  # health and readiness answer 503 with their problems
            for code in schema["properties"]["error"]["properties"]["code"]["enum"]:
                assert code in ERROR_CODES or code in TX_ERROR_CODES, (path, status, code)


async def test_the_node_serves_the_document(tmp_path: Path) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    service = LocalService(tmp_path)
    try:
        async with TestClient(TestServer(create_app(service))) as http:
            response = await http.get("/openapi.json")
            assert response.status == 200
            document = await response.json()
            assert "/v1/events" in document["paths"] and "/openapi.json" in document["paths"]
    finally:
        service.close()


def test_every_code_the_api_raises_is_a_declared_stable_code() -> None:
    """The stable codes are one table: every `code="..."` the API modules raise or answer, and
    every code the error middleware gives an HTTP error, is in `ERROR_CODES` (or is a
    transaction rejection label)."""
    import re

    from chainnode.api import server

    api = Path(server.__file__).parent
    raised = {
        code for source in api.glob("*.py") for code in re.findall(r'code="([a-z_]+)"', source.read_text())
    }
    answered = {
        code
        for code in re.findall(
            r'error_body\(\s*"([a-z_]+)"', "".join(source.read_text() for source in api.glob("*.py"))
        )
    }
    codes = raised | answered | set(server.HTTP_ERROR_CODES.values())
    assert len(codes) >= 15
    assert codes <= set(ERROR_CODES) | set(TX_ERROR_CODES), codes - set(ERROR_CODES)
