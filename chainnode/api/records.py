"""HTTP endpoints of the records module: records, their history, prefix listings, documents
anchored by hash, grants and read markers.

Theory of operation: read-only views of the committed state through the `NodeService` the rest of
the API uses (`chainnode.api.common`); `chainnode.api.server.create_app` mounts them with `ROUTES`,
the declarations that also describe them in `/openapi.json`.  Every list is paginated with `limit`
(1..`common.LIMIT_MAX`, default `common.LIMIT_DEFAULT`) and `cursor`: the answer's `next_cursor`
(null on the last page) is passed back as `cursor` to get the next page.

- `GET /v1/records/{entity}/{key}[?version=N]`: a record's latest or given version, with its
  writer and, for an anchored document, its SHA-256, media type, size and URI.
- `GET /v1/records/{entity}/{key}/history?limit=&cursor=`: every version, oldest first (the
  cursor is the last version number seen).
- `GET /v1/records/{entity}/{key}/anchors?sha256=HEX[&limit&cursor]`: the versions that anchor
  a document with that SHA-256 (an empty list when none does; the cursor is the last version
  seen).
- `GET /v1/records/{entity}/{key}/reads[?limit&cursor]`: who marked which version as read, by
  reader (the cursor is the last reader seen).
- `GET /v1/records/{entity}?prefix=&limit=&cursor=`: the latest version of each key that
  starts with `prefix`, in key order (the cursor is the last key seen).
- `GET /v1/grants/{owner}[?limit&cursor]`: every grant the owner made, by grantee and prefix,
  with its status at the next height (`active`, `expired` or `revoked`); the cursor is the last
  grant seen, `<grantee>/<prefix>`.

Prefix listings, reads and grants start reading the ledger at the cursor (`iter_state`'s start
key), so a page costs its own size however deep it is.

Listing needs a ledger that can iterate a key prefix (`iter_state`); a reader that cannot
answers 501.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from chainnode.api.common import (
    CURSOR_PARAM,
    INTEGER_TEXT_MAX,
    LIMIT_PARAM,
    PAGE_ERRORS,
    Param,
    Route,
    check_name,
    error_body,
    get_service,
    json_response,
    parse_limit,
    parse_natural,
    parse_offset_cursor,
    path_param,
    query_param,
)
from chainnode.api.forms import (
    HASH,
    HEX,
    INTEGER,
    STRING,
    compute_nullable_schema,
    compute_object_schema,
    compute_page_schema,
)
from chainnode.api.service import LedgerReader
from chainnode.app import records, records_sharing
from chainnode.core.claims import is_valid_id
from chainnode.core.errors import RemoteError
from chainnode.core.hexstr import parse_hex

# ---------------------------------------------------------------- JSON forms


def compute_record_json(record: records.RecordVersion) -> dict[str, Any]:
    try:
        text: str | None = record.value.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    document = record.document
    return {
        "entity": record.entity,
        "key": record.key,
        "version": record.version,
        "value_hex": record.value.hex(),
        "value": text,
        "height": record.height,
        "tx_hash": record.tx_hash.hex(),
        "writer": record.written_by,
        "document": None
        if document is None
        else {
            "sha256": document.sha256.hex(),
            "media_type": document.media_type,
            "size": document.size,
            "uri": document.uri,
        },
    }


def compute_grant_json(grant: records_sharing.Grant, next_height: int) -> dict[str, Any]:
    refusal = grant.get_refusal(next_height)
    status = (
        "active"
        if refusal is None
        else ("revoked" if refusal == records_sharing.ErrorCode.GRANT_REVOKED else "expired")
    )
    return {
        "owner": grant.owner,
        "grantee": grant.grantee,
        "prefix": grant.prefix,
        "right": grant.right,
        "expires_at_height": grant.expires_at_height,
        "granted_height": grant.granted_height,
        "revoked_height": grant.revoked_height or None,
        "status": status,
        "tx_hash": grant.tx_hash.hex(),
    }


# ---------------------------------------------------------------- request parts


def _get_lister(ledger: LedgerReader) -> records.StateIterator:
    if getattr(ledger, "iter_state", None) is None:
        raise web.HTTPNotImplemented(reason="this node's ledger cannot list state")
    return ledger  # type: ignore[return-value]  # it has iter_state, checked above


def _get_entity_and_key(request: web.Request) -> tuple[str, str]:
    return check_name(request.match_info["entity"], "entity"), check_name(request.match_info["key"], "key")


def _page(items: list[dict[str, Any]], limit: int, cursor_field: str) -> dict[str, Any]:
    next_cursor = str(items[-1][cursor_field]) if len(items) == limit else None
    return {"items": items, "next_cursor": next_cursor}


# ---------------------------------------------------------------- handlers


async def handle_record(request: web.Request) -> web.Response:
    entity, key = _get_entity_and_key(request)
    version: int | None = None
    version_text = request.query.get("version")
    if version_text is not None:
        version = parse_natural(version_text, "version", code="bad_version")
        if version < 1:
            raise RemoteError("version must be a positive integer", code="bad_version")
    record = records.get_record(get_service(request).ledger, entity, key, version)
    if record is None:
        what = f"version {version} of " if version is not None else ""
        return json_response(
            error_body("not_found", f"no {what}record {key!r} of entity {entity!r}"), status=404
        )
    return json_response(compute_record_json(record))


async def handle_history(request: web.Request) -> web.Response:
    entity, key = _get_entity_and_key(request)
    limit = parse_limit(request)
    after = parse_offset_cursor(request)  # the last version seen
    found = records.get_history(get_service(request).ledger, entity, key, after_version=after, limit=limit)
    return json_response(_page([compute_record_json(item) for item in found], limit, "version"))


async def handle_anchors(request: web.Request) -> web.Response:
    entity, key = _get_entity_and_key(request)
    sha256 = parse_hex(request.query.get("sha256", ""), "sha256", length=records.SHA256_BYTES)
    limit = parse_limit(request)
    after = parse_offset_cursor(request)  # the last version seen
    # One more than the page tells whether another follows.
    matches = records.find_anchors(
        get_service(request).ledger, entity, key, sha256, after_version=after, limit=limit + 1
    )
    found = matches[:limit]
    next_cursor = str(found[-1].version) if len(matches) > limit else None
    return json_response(
        {
            "sha256": sha256.hex(),
            "anchors": [compute_record_json(item) for item in found],
            "next_cursor": next_cursor,
        }
    )


async def handle_reads(request: web.Request) -> web.Response:
    entity, key = _get_entity_and_key(request)
    limit = parse_limit(request)
    after = request.query.get("cursor", "")
    if after and not is_valid_id(after):
        raise RemoteError("cursor must be a reader's entity id from a previous page", code="bad_cursor")
    lister = _get_lister(get_service(request).ledger)
    # One more than the page tells whether another follows.
    found = records_sharing.list_read_markers(lister, entity, key, after=after, limit=limit + 1)
    markers = found[:limit]
    next_cursor = markers[-1].reader if len(found) > limit else None
    return json_response(
        {
            "next_cursor": next_cursor,
            "reads": [
                {
                    "reader": marker.reader,
                    "version": marker.version,
                    "height": marker.height,
                    "tx_hash": marker.tx_hash.hex(),
                }
                for marker in markers
            ],
        }
    )


async def handle_list(request: web.Request) -> web.Response:
    entity = check_name(request.match_info["entity"], "entity")
    prefix = request.query.get("prefix", "")
    if not records.is_valid_prefix(prefix):
        raise RemoteError(
            f"prefix must be at most {records.KEY_CHARS_MAX} key characters", code="bad_request"
        )
    cursor = request.query.get("cursor", "")
    if len(cursor) > records.KEY_CHARS_MAX:
        raise RemoteError(f"cursor must be at most {records.KEY_CHARS_MAX} characters", code="bad_cursor")
    limit = parse_limit(request)
    lister = _get_lister(get_service(request).ledger)
    found = records.list_records(lister, entity, prefix, after_key=cursor, limit=limit)
    return json_response(_page([compute_record_json(item) for item in found], limit, "key"))


async def handle_grants(request: web.Request) -> web.Response:
    owner = check_name(request.match_info["owner"], "owner")
    limit = parse_limit(request)
    cursor = request.query.get("cursor", "")
    after_grantee, slash, after_prefix = cursor.partition("/")
    if cursor and not (
        slash and records.is_valid_name(after_grantee) and records.is_valid_prefix(after_prefix)
    ):
        raise RemoteError(
            "cursor must be the last grant of a previous page, <grantee>/<prefix>", code="bad_cursor"
        )
    ledger = get_service(request).ledger
    next_height = ledger.get_head().height + 1
    found = records_sharing.list_grants(
        _get_lister(ledger), owner, after_grantee=after_grantee, after_prefix=after_prefix, limit=limit + 1
    )
    grants = found[:limit]
    next_cursor = f"{grants[-1].grantee}/{grants[-1].prefix}" if len(found) > limit else None
    return json_response(
        {
            "owner": owner,
            "grants": [compute_grant_json(grant, next_height) for grant in grants],
            "next_cursor": next_cursor,
        }
    )


# ---------------------------------------------------------------- the routes, declared once

RECORD_SCHEMA = compute_object_schema(
    {
        "entity": STRING,
        "key": STRING,
        "version": INTEGER,
        "value_hex": HEX,
        "value": compute_nullable_schema(STRING),
        "height": INTEGER,
        "tx_hash": HASH,
        "writer": STRING,
        "document": compute_nullable_schema(
            compute_object_schema({"sha256": HASH, "media_type": STRING, "size": INTEGER, "uri": STRING})
        ),
    }
)
GRANT_SCHEMA = compute_object_schema(
    {
        "owner": STRING,
        "grantee": STRING,
        "prefix": STRING,
        "right": STRING,
        "expires_at_height": INTEGER,
        "granted_height": INTEGER,
        "revoked_height": compute_nullable_schema(INTEGER),
        "status": {"enum": ["active", "expired", "revoked"]},
        "tx_hash": HASH,
    }
)
_READ_SCHEMA = compute_object_schema(
    {"reader": STRING, "version": INTEGER, "height": INTEGER, "tx_hash": HASH}
)
# An entity id (`chainnode.core.claims.ID_PATTERN`), or empty.
_ENTITY_ID_PATTERN = "^([a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?)?$"
_ENTITY_PARAM = path_param("entity", "the namespace owner's entity id")
_KEY_PARAM = path_param("key", "a record key")
_LIST_ERRORS = {400: ("bad_request", *PAGE_ERRORS[400]), 501: ("not_implemented",)}

ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/v1/records/{entity}",
        handle_list,
        "The latest version of each key with a prefix, in key order (the cursor: the last key seen)",
        params=(
            _ENTITY_PARAM,
            query_param(
                "prefix",
                "a key prefix: printable characters, no '/'",
                {"type": "string", "maxLength": records.KEY_CHARS_MAX, "pattern": "^[ -.0-~]*$"},
            ),
            LIMIT_PARAM,
            query_param(
                "cursor",
                "the previous page's next_cursor, the last key seen (absent or empty: the first page)",
                {"type": "string", "maxLength": records.KEY_CHARS_MAX},
            ),
        ),
        responses={200: compute_page_schema("items", RECORD_SCHEMA)},
        errors=_LIST_ERRORS,
        tag="records",
    ),
    Route(
        "GET",
        "/v1/records/{entity}/{key}",
        handle_record,
        "A record's latest or given version",
        params=(
            _ENTITY_PARAM,
            _KEY_PARAM,
            query_param(
                "version", "a version, from 1", {"type": "integer", "minimum": 1, "maximum": INTEGER_TEXT_MAX}
            ),
        ),
        responses={200: RECORD_SCHEMA},
        errors={400: ("bad_request", "bad_version"), 404: ("not_found",)},
        tag="records",
    ),
    Route(
        "GET",
        "/v1/records/{entity}/{key}/history",
        handle_history,
        "Every version of a record, oldest first (the cursor: the last version seen)",
        params=(_ENTITY_PARAM, _KEY_PARAM, LIMIT_PARAM, CURSOR_PARAM),
        responses={200: compute_page_schema("items", RECORD_SCHEMA)},
        errors={400: ("bad_request", *PAGE_ERRORS[400])},
        tag="records",
    ),
    Route(
        "GET",
        "/v1/records/{entity}/{key}/anchors",
        handle_anchors,
        "The versions of a record that anchor a document with a SHA-256 (the cursor: the last version seen)",
        params=(
            _ENTITY_PARAM,
            _KEY_PARAM,
            Param("sha256", "query", HASH, "the document's SHA-256, 64 lowercase hex digits", required=True),
            LIMIT_PARAM,
            CURSOR_PARAM,
        ),
        responses={200: compute_page_schema("anchors", RECORD_SCHEMA, sha256=HASH)},
        errors={400: ("bad_request", "bad_hex", *PAGE_ERRORS[400])},
        tag="records",
    ),
    Route(
        "GET",
        "/v1/records/{entity}/{key}/reads",
        handle_reads,
        "Who marked which version of a record as read, by reader (the cursor: the last reader seen)",
        params=(
            _ENTITY_PARAM,
            _KEY_PARAM,
            LIMIT_PARAM,
            query_param(
                "cursor",
                "the previous page's next_cursor, the last reader seen (absent or empty: the first page)",
                {"type": "string", "pattern": _ENTITY_ID_PATTERN},
            ),
        ),
        responses={200: compute_page_schema("reads", _READ_SCHEMA)},
        errors=_LIST_ERRORS,
        tag="records",
    ),
    Route(
        "GET",
        "/v1/grants/{owner}",
        handle_grants,
        "Every grant an owner made, with its status at the next height (the cursor: the last grant seen)",
        params=(
            path_param("owner", "the granting entity's id"),
            LIMIT_PARAM,
            query_param(
                "cursor",
                "the previous page's next_cursor, the last grant seen as <grantee>/<prefix> "
                "(absent or empty: the first page)",
                {
                    "type": "string",
                    "maxLength": 2 * records.KEY_CHARS_MAX + 1,
                    "pattern": "^([^/]+/[ -.0-~]*)?$",
                },
            ),
        ),
        responses={200: compute_page_schema("grants", GRANT_SCHEMA, owner=STRING)},
        errors=_LIST_ERRORS,
        tag="records",
    ),
)
