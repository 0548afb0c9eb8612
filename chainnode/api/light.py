"""HTTP endpoints a light client follows a chain by: certified headers and validator-set changes.

Theory of operation: a light client (`chainnode.light`, `chainnode light sync`, the relayer)
never needs a block body or the state; it needs, per height, the header and the commit
certificate, and, for each block that changed the validator set, the write-set proof of the new
set that the node recorded when it committed that block (`Ledger.iter_validator_changes`).
Nothing here is trusted by the client: it checks every signature and proof itself.

- `GET /v1/light/headers?from=H&limit=N`: the encoded headers and certificates of heights
  H..H+N-1 that are committed (N <= 1000, default 100), ascending; `next_from` is the height to
  ask for next, null once the head is reached.
- `GET /v1/light/changes`: every validator-set change the node recorded, ascending by height,
  each as `ValidatorChangeProof.to_json()`.  A node whose ledger predates these records answers
  the changes it has; a client then meets a header it cannot follow and says so.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from chainnode.api.common import (
    INTEGER_TEXT_MAX,
    LIMIT_PARAM,
    Route,
    get_service,
    json_response,
    parse_height,
    parse_limit,
    query_param,
)
from chainnode.api.forms import (
    HASH,
    HEX,
    INTEGER,
    compute_array_schema,
    compute_nullable_schema,
    compute_object_schema,
)
from chainnode.core import codec, types
from chainnode.core.errors import StorageError
from chainnode.core.tags import TAG_BLOCK
from chainnode.light import decode_validator_change_proof

HEADERS_LIMIT_DEFAULT = 100


def _read_header(block: bytes) -> bytes:
    """The encoded header of an encoded block (what was committed, so canonical)."""
    fields = codec.decode_struct(block, TAG_BLOCK, types.VERSION, 4, "block")
    return types.block_header_from_fields(fields[2]).encode()


async def handle_headers(request: web.Request) -> web.Response:
    ledger = get_service(request).ledger
    start = max(1, parse_height(request.query.get("from", "1")))
    limit = parse_limit(request, HEADERS_LIMIT_DEFAULT)
    head = ledger.get_head().height
    items: list[dict[str, Any]] = []
    for height in range(start, min(head, start + limit - 1) + 1):
        block, certificate = ledger.get_block(height), ledger.get_certificate(height)
        if block is None or certificate is None:
            raise StorageError(f"committed height {height} has no block or certificate in the ledger")
        items.append(
            {"height": height, "header": _read_header(block).hex(), "certificate": certificate.hex()}
        )
    next_from = start + len(items)
    return json_response(
        {"headers": items, "head": head, "next_from": next_from if next_from <= head else None}
    )


async def handle_changes(request: web.Request) -> web.Response:
    ledger = get_service(request).ledger
    iterate = getattr(ledger, "iter_validator_changes", None)
    if iterate is None:
        raise web.HTTPNotImplemented(reason="this node's ledger keeps no validator-change proofs")
    changes = [decode_validator_change_proof(encoded).to_json() for _, encoded in iterate()]
    return json_response({"changes": changes})


HEADER_ITEM_SCHEMA = compute_object_schema({"height": INTEGER, "header": HEX, "certificate": HEX})
CHANGE_SCHEMA = compute_object_schema(
    {
        "height": INTEGER,
        "validators": HEX,
        "previous_state_root": HASH,
        "leaf_index": INTEGER,
        "leaf_count": INTEGER,
        "path": compute_array_schema(HASH),
    }
)

ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/v1/light/headers",
        handle_headers,
        "Encoded headers and commit certificates of consecutive committed heights",
        params=(
            query_param(
                "from",
                "the first height (default 1)",
                {"type": "integer", "minimum": 0, "maximum": INTEGER_TEXT_MAX},
            ),
            LIMIT_PARAM,
        ),
        responses={
            200: compute_object_schema(
                {
                    "headers": compute_array_schema(HEADER_ITEM_SCHEMA),
                    "head": INTEGER,
                    "next_from": compute_nullable_schema(INTEGER),
                }
            )
        },
        errors={400: ("bad_height", "bad_limit")},
        tag="light",
    ),
    Route(
        "GET",
        "/v1/light/changes",
        handle_changes,
        "Every validator-set change this node recorded, with its write-set proof",
        responses={200: compute_object_schema({"changes": compute_array_schema(CHANGE_SCHEMA)})},
        errors={501: ("not_implemented",)},
        tag="light",
    ),
)
