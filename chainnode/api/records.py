"""HTTP endpoints of the records module: records, their history, prefix listings, documents
anchored by hash, grants and read markers.

Theory of operation: read-only views of the committed state through the `NodeService` the rest
of the API uses (`chainnode.api.common`); `chainnode.api.server.create_app` mounts them with
`add_routes`.  Every list is paginated with `limit` (1..`LIMIT_MAX`, default `LIMIT_DEFAULT`) and
`cursor`: the answer's `next_cursor` (null on the last page) is passed back as `cursor` to get the
next page.

- `GET /v1/records/{entity}/{key}[?version=N]`: a record's latest or given version, with its
  writer and, for an anchored document, its SHA-256, media type, size and URI.
- `GET /v1/records/{entity}/{key}/history?limit=&cursor=`: every version, oldest first (the
  cursor is the last version number seen).
- `GET /v1/records/{entity}/{key}/anchors?sha256=HEX`: the versions that anchor a document with
  that SHA-256 (an empty list when none does).
- `GET /v1/records/{entity}/{key}/reads`: who marked which version as read.
- `GET /v1/records/{entity}?prefix=&limit=&cursor=`: the latest version of each key that
  starts with `prefix`, in key order (the cursor is the last key seen).
- `GET /v1/grants/{owner}`: every grant the owner made, with its status at the next height
  (`active`, `expired` or `revoked`).

Listing needs a ledger that can iterate a key prefix (`iter_state`); a reader that cannot
answers 501.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from chainnode.api.common import check_name, error_body, get_service, json_response, parse_natural
from chainnode.api.service import LedgerReader
from chainnode.app import records, records_sharing
from chainnode.core.errors import RemoteError
from chainnode.core.hexstr import parse_hex

LIMIT_DEFAULT = 100
LIMIT_MAX = 1000


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


def _parse_limit(request: web.Request) -> int:
    limit = parse_natural(request.query.get("limit", str(LIMIT_DEFAULT)), "limit", code="bad_limit")
    if not 1 <= limit <= LIMIT_MAX:
        raise RemoteError(f"limit must be 1..{LIMIT_MAX}", code="bad_limit")
    return limit


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
    limit = _parse_limit(request)
    after = parse_natural(request.query.get("cursor", "0"), "cursor", code="bad_cursor")
    found = records.get_history(get_service(request).ledger, entity, key, after_version=after, limit=limit)
    return json_response(_page([compute_record_json(item) for item in found], limit, "version"))


async def handle_anchors(request: web.Request) -> web.Response:
    entity, key = _get_entity_and_key(request)
    sha256 = parse_hex(request.query.get("sha256", ""), "sha256", length=records.SHA256_BYTES)
    found = records.find_anchors(get_service(request).ledger, entity, key, sha256)
    return json_response({"sha256": sha256.hex(), "anchors": [compute_record_json(item) for item in found]})


async def handle_reads(request: web.Request) -> web.Response:
    entity, key = _get_entity_and_key(request)
    markers = records_sharing.list_read_markers(_get_lister(get_service(request).ledger), entity, key)
    return json_response(
        {
            "reads": [
                {
                    "reader": marker.reader,
                    "version": marker.version,
                    "height": marker.height,
                    "tx_hash": marker.tx_hash.hex(),
                }
                for marker in markers
            ]
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
    limit = _parse_limit(request)
    lister = _get_lister(get_service(request).ledger)
    found = records.list_records(lister, entity, prefix, after_key=cursor, limit=limit)
    return json_response(_page([compute_record_json(item) for item in found], limit, "key"))


async def handle_grants(request: web.Request) -> web.Response:
    owner = check_name(request.match_info["owner"], "owner")
    ledger = get_service(request).ledger
    next_height = ledger.get_head().height + 1
    grants = records_sharing.list_grants(_get_lister(ledger), owner)
    return json_response(
        {"owner": owner, "grants": [compute_grant_json(grant, next_height) for grant in grants]}
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/records/{entity}", handle_list)
    app.router.add_get("/v1/records/{entity}/{key}", handle_record)
    app.router.add_get("/v1/records/{entity}/{key}/history", handle_history)
    app.router.add_get("/v1/records/{entity}/{key}/anchors", handle_anchors)
    app.router.add_get("/v1/records/{entity}/{key}/reads", handle_reads)
    app.router.add_get("/v1/grants/{owner}", handle_grants)
