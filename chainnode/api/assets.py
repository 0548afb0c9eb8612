"""HTTP endpoints for digital assets: collections, assets, holdings and provenance.

Theory of operation: read-only views of the committed state of the `assets` module, through the
readers of `chainnode.app.asset_state` over the node's ledger; `chainnode.api.server.create_app`
mounts their declarations (`ROUTES`).  Every list is paginated: `limit` (1..`common.LIMIT_MAX`,
default `common.LIMIT_DEFAULT`) and an opaque `cursor` taken from the previous page's `next_cursor`
(null on the last page).  A cursor is only meaningful for the list that returned it.

- `GET /v1/collections/{collection}`: the collection and its statistics.
- `GET /v1/collections/{collection}/assets[?limit&cursor]`: its assets in mint order, burned
  ones included.
- `GET /v1/collections/{collection}/assets/{token}[?limit&cursor]`: one asset with a page of
  its holders and their freezes, in holder id order (the cursor: the last holder id seen;
  `holders_truncated` says whether `next_cursor` leads to more).
- `GET /v1/collections/{collection}/assets/{token}/provenance[?limit&cursor]`: every action
  that touched the asset, oldest first, with height and tx hash.
- `GET /v1/entities/{id}/assets[?limit&cursor]`: what an entity holds.

Unknown collections and assets answer 404 `not_found`; a bad `limit` 400 `bad_limit`, a bad
`cursor` 400 `bad_cursor`.  Listing holdings needs a ledger that can list a key prefix
(`iter_state`); a reader that cannot answers 501.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from chainnode.api.common import (
    CURSOR_PARAM,
    LIMIT_PARAM,
    PAGE_ERRORS,
    Route,
    check_name,
    get_ledger,
    json_response,
    not_found,
    parse_limit,
    parse_natural,
    path_param,
    query_param,
)
from chainnode.api.forms import (
    BOOLEAN,
    HASH,
    HEX,
    INTEGER,
    STRING,
    compute_array_schema,
    compute_nullable_schema,
    compute_object_schema,
    compute_page_schema,
)
from chainnode.api.service import LedgerReader
from chainnode.app import asset_state
from chainnode.core.claims import is_valid_id
from chainnode.core.errors import RemoteError


def _get_iterator(ledger: LedgerReader) -> asset_state.StateIterator:
    if getattr(ledger, "iter_state", None) is None:
        raise web.HTTPNotImplemented(reason="this node's ledger cannot list state")
    return ledger  # type: ignore[return-value]  # checked just above


def _parse_index_cursor(request: web.Request) -> int:
    text = request.query.get("cursor", "")
    return 0 if text == "" else parse_natural(text, "cursor", code="bad_cursor")


# ---------------------------------------------------------------- JSON forms


def compute_collection_json(collection: asset_state.Collection) -> dict[str, Any]:
    return {
        "id": collection.collection_id,
        "issuer": collection.issuer,
        "name": collection.name,
        "symbol": collection.symbol,
        "kind": collection.kind,
        "schema_hash": collection.schema_hash.hex() or None,
        "created_height": collection.created_height,
        "paused": collection.paused,
        "stats": {
            "tokens": collection.tokens,
            "tokens_burned": collection.tokens_burned,
            "tokens_live": collection.tokens - collection.tokens_burned,
            "units": collection.units,
            "transfers": collection.transfers,
            "frozen_holdings": collection.frozen,
        },
    }


def compute_asset_json(asset: asset_state.Asset) -> dict[str, Any]:
    return {
        "asset_id": asset.asset_id,
        "collection": asset.collection_id,
        "token": asset.token_id,
        "seq": asset.seq,
        "metadata_hash": asset.metadata_hash.hex(),
        "uri": asset.uri or None,
        "minted_height": asset.minted_height,
        "units": asset.units,
        "burned": asset.is_burned,
        "owner": asset.owner or None,
        "approved": asset.approved or None,
        "provenance_entries": asset.history,
    }


def compute_holding_json(holding: asset_state.Holding) -> dict[str, Any]:
    return {
        "asset_id": asset_state.compute_asset_id(holding.collection_id, holding.token_id),
        "collection": holding.collection_id,
        "token": holding.token_id,
        "holder": holding.holder,
        "amount": holding.amount,
        "frozen_by": holding.frozen_by or None,
    }


def compute_provenance_json(entry: asset_state.ProvenanceEntry) -> dict[str, Any]:
    return {
        "index": entry.index,
        "action": entry.action,
        "actor": entry.actor,
        "from": entry.source or None,
        "to": entry.target or None,
        "amount": entry.amount,
        "height": entry.height,
        "tx_hash": entry.tx_hash.hex(),
    }


# ---------------------------------------------------------------- handlers


def _find_collection(ledger: LedgerReader, request: web.Request) -> asset_state.Collection | None:
    collection_id = check_name(request.match_info["collection"], "collection id")
    return asset_state.get_collection(ledger, collection_id)


def _find_asset(ledger: LedgerReader, request: web.Request) -> asset_state.Asset | None:
    collection_id = check_name(request.match_info["collection"], "collection id")
    token_id = check_name(request.match_info["token"], "token id")
    return asset_state.get_asset(ledger, collection_id, token_id)


async def handle_collection(request: web.Request) -> web.Response:
    collection = _find_collection(get_ledger(request), request)
    if collection is None:
        return not_found(f"no collection {request.match_info['collection']!r}")
    return json_response(compute_collection_json(collection))


async def handle_collection_assets(request: web.Request) -> web.Response:
    ledger = get_ledger(request)
    limit = parse_limit(request)
    after = _parse_index_cursor(request)
    collection = _find_collection(ledger, request)
    if collection is None:
        return not_found(f"no collection {request.match_info['collection']!r}")
    found = asset_state.list_collection_assets(ledger, collection, after=after, limit=limit)
    last = found[-1].seq if found else after
    return json_response(
        {
            "collection": collection.collection_id,
            "assets": [compute_asset_json(asset) for asset in found],
            "next_cursor": str(last) if last < collection.tokens else None,
        }
    )


async def handle_asset(request: web.Request) -> web.Response:
    ledger = get_ledger(request)
    asset = _find_asset(ledger, request)
    if asset is None:
        return not_found(f"no asset {request.match_info['collection']}/{request.match_info['token']}")
    limit = parse_limit(request)
    after = request.query.get("cursor", "")
    if after and not is_valid_id(after):
        raise RemoteError("cursor must be a holder id from a previous page", code="bad_cursor")
    answer = compute_asset_json(asset)
    # One more than the page tells whether another page follows without a second read.
    holders = asset_state.list_holders(
        _get_iterator(ledger), asset.collection_id, asset.token_id, after=after, limit=limit + 1
    )
    page = holders[:limit]
    more = len(holders) > limit
    answer["holders"] = [compute_holding_json(holding) for holding in page]
    answer["holders_truncated"] = more
    answer["next_cursor"] = page[-1].holder if more else None
    return json_response(answer)


async def handle_provenance(request: web.Request) -> web.Response:
    ledger = get_ledger(request)
    limit = parse_limit(request)
    after = _parse_index_cursor(request)
    asset = _find_asset(ledger, request)
    if asset is None:
        return not_found(f"no asset {request.match_info['collection']}/{request.match_info['token']}")
    entries = asset_state.list_provenance(ledger, asset, after=after, limit=limit)
    last = entries[-1].index if entries else after
    return json_response(
        {
            "asset_id": asset.asset_id,
            "entries": [compute_provenance_json(entry) for entry in entries],
            "next_cursor": str(last) if last < asset.history else None,
        }
    )


async def handle_owned(request: web.Request) -> web.Response:
    ledger = get_ledger(request)
    holder = check_name(request.match_info["id"], "entity id")
    limit = parse_limit(request)
    after = request.query.get("cursor", "")
    collection_id, slash, token_id = after.partition("/")
    if after and not (
        slash
        and asset_state.is_valid_collection_id(collection_id)
        and asset_state.is_valid_token_id(token_id)
    ):
        raise RemoteError(
            "cursor must be an asset id <collection>/<token> from a previous page", code="bad_cursor"
        )
    found = asset_state.list_owned(_get_iterator(ledger), holder, after=after, limit=limit)
    last = asset_state.compute_asset_id(found[-1].collection_id, found[-1].token_id) if found else ""
    return json_response(
        {
            "holder": holder,
            "assets": [compute_holding_json(holding) for holding in found],
            "next_cursor": last if len(found) == limit else None,
        }
    )


# ---------------------------------------------------------------- the routes, declared once

COLLECTION_SCHEMA = compute_object_schema(
    {
        "id": STRING,
        "issuer": STRING,
        "name": STRING,
        "symbol": STRING,
        "kind": STRING,
        "schema_hash": compute_nullable_schema(HEX),
        "created_height": INTEGER,
        "paused": BOOLEAN,
        "stats": compute_object_schema(
            {
                "tokens": INTEGER,
                "tokens_burned": INTEGER,
                "tokens_live": INTEGER,
                "units": INTEGER,
                "transfers": INTEGER,
                "frozen_holdings": INTEGER,
            }
        ),
    }
)
_ASSET_FIELDS = {
    "asset_id": STRING,
    "collection": STRING,
    "token": STRING,
    "seq": INTEGER,
    "metadata_hash": HEX,
    "uri": compute_nullable_schema(STRING),
    "minted_height": INTEGER,
    "units": INTEGER,
    "burned": BOOLEAN,
    "owner": compute_nullable_schema(STRING),
    "approved": compute_nullable_schema(STRING),
    "provenance_entries": INTEGER,
}
ASSET_SCHEMA = compute_object_schema(_ASSET_FIELDS)
HOLDING_SCHEMA = compute_object_schema(
    {
        "asset_id": STRING,
        "collection": STRING,
        "token": STRING,
        "holder": STRING,
        "amount": INTEGER,
        "frozen_by": compute_nullable_schema(STRING),
    }
)
PROVENANCE_SCHEMA = compute_object_schema(
    {
        "index": INTEGER,
        "action": STRING,
        "actor": STRING,
        "from": compute_nullable_schema(STRING),
        "to": compute_nullable_schema(STRING),
        "amount": INTEGER,
        "height": INTEGER,
        "tx_hash": HASH,
    }
)
_ASSET_WITH_HOLDERS_SCHEMA = compute_object_schema(
    {
        **_ASSET_FIELDS,
        "holders": compute_array_schema(HOLDING_SCHEMA),
        "holders_truncated": BOOLEAN,
        "next_cursor": compute_nullable_schema(STRING),
    }
)
# `<collection>/<token>` (`asset_state.is_valid_collection_id`, `is_valid_token_id`), or empty.
_ASSET_ID_PATTERN = "^([a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?/[A-Za-z0-9._-]{1,64})?$"
# An entity id (`chainnode.core.claims.ID_PATTERN`), or empty.
_HOLDER_ID_PATTERN = "^([a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?)?$"
_COLLECTION_PARAM = path_param("collection", "collection id")
_TOKEN_PARAM = path_param("token", "token id")
_NOT_FOUND = {404: ("not_found",)}

ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/v1/collections/{collection}",
        handle_collection,
        "A collection and its statistics",
        params=(_COLLECTION_PARAM,),
        responses={200: COLLECTION_SCHEMA},
        errors={400: ("bad_request",), **_NOT_FOUND},
        tag="assets",
    ),
    Route(
        "GET",
        "/v1/collections/{collection}/assets",
        handle_collection_assets,
        "A collection's assets in mint order, burned ones included",
        params=(_COLLECTION_PARAM, LIMIT_PARAM, CURSOR_PARAM),
        responses={200: compute_page_schema("assets", ASSET_SCHEMA, collection=STRING)},
        errors={400: ("bad_request", *PAGE_ERRORS[400]), **_NOT_FOUND},
        tag="assets",
    ),
    Route(
        "GET",
        "/v1/collections/{collection}/assets/{token}",
        handle_asset,
        "One asset with a page of its holders and their freezes (the cursor: the last holder id seen)",
        params=(
            _COLLECTION_PARAM,
            _TOKEN_PARAM,
            LIMIT_PARAM,
            query_param(
                "cursor",
                "the previous page's next_cursor, the last holder id seen (absent or empty: the first page)",
                {"type": "string", "pattern": _HOLDER_ID_PATTERN},
            ),
        ),
        responses={200: _ASSET_WITH_HOLDERS_SCHEMA},
        errors={400: ("bad_request", *PAGE_ERRORS[400]), **_NOT_FOUND, 501: ("not_implemented",)},
        tag="assets",
    ),
    Route(
        "GET",
        "/v1/collections/{collection}/assets/{token}/provenance",
        handle_provenance,
        "Every action that touched an asset, oldest first",
        params=(_COLLECTION_PARAM, _TOKEN_PARAM, LIMIT_PARAM, CURSOR_PARAM),
        responses={200: compute_page_schema("entries", PROVENANCE_SCHEMA, asset_id=STRING)},
        errors={400: ("bad_request", *PAGE_ERRORS[400]), **_NOT_FOUND},
        tag="assets",
    ),
    Route(
        "GET",
        "/v1/entities/{id}/assets",
        handle_owned,
        "What an entity holds (the cursor: the last asset id seen)",
        params=(
            path_param("id", "entity id"),
            LIMIT_PARAM,
            query_param(
                "cursor",
                "the previous page's next_cursor, the last asset id seen (absent or empty: the first page)",
                {"type": "string", "pattern": _ASSET_ID_PATTERN},
            ),
        ),
        responses={200: compute_page_schema("assets", HOLDING_SCHEMA, holder=STRING)},
        errors={400: ("bad_request", *PAGE_ERRORS[400]), 501: ("not_implemented",)},
        tag="assets",
    ),
)
