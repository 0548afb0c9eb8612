"""HTTP endpoints for identities and governance: entities, zones, validators, proposals and
expiring certificates.

Theory of operation: read-only views of the committed state, through the same `NodeService` the rest
of the API uses (`chainnode.api.common`); `chainnode.api.server.create_app` mounts them with
`ROUTES`, the declarations that also describe them in `/openapi.json`.  They live in their own
module so that `api.py` stays a readable size.

- `GET /v1/entities/{id}`: the registered record (roles, sectors, validity, revocation), the
  certificate as PEM, and whether the entity is in the current validator set.
- `GET /v1/zones[?limit&cursor]`, `GET /v1/zones/{id}`: admitted zones with their status (`active`,
  `suspended`, `removed`) and their CA certificate's validity.
- `GET /v1/validators[?height=H]`: the set that certifies block H (by default the next block,
  `head + 1`), with its size, quorum and hash, from the on-chain validator history.
- `GET /v1/proposals[?status=S&limit&cursor]`: council proposals, newest first, a page of
  `limit` (the cursor: the last proposal id seen); `S` is `open`, `expired`, `executed`,
  `rejected` or `failed`, as seen at the next height.
- `GET /v1/proposals/{id}`: one proposal with its votes.
- `GET /v1/certificates/expiring?within_days=D[&limit&cursor]` (default 30): entity and zone
  CA certificates that expire within D days of the node's clock, or have expired, soonest first.

Every list answers `next_cursor` (null on the last page), passed back as `cursor`.

Listing zones and expiring certificates needs a ledger that can iterate a key prefix
(`iter_state`); a reader that cannot answers 501 `not_implemented`.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from aiohttp import web

from chainnode.api.common import (
    CURSOR_PARAM,
    INTEGER_TEXT_MAX,
    LIMIT_PARAM,
    PAGE_ERRORS,
    Route,
    check_name,
    compute_offset_page,
    get_ledger,
    json_response,
    not_found,
    parse_limit,
    parse_natural,
    path_param,
    query_param,
)
from chainnode.api.forms import (
    ANY,
    BOOLEAN,
    HASH,
    HEX,
    INTEGER,
    STRING,
    compute_array_schema,
    compute_json_value,
    compute_nullable_schema,
    compute_object_schema,
)
from chainnode.api.service import LedgerReader
from chainnode.app import authority, governance
from chainnode.core import identity, identity_records, quorum
from chainnode.core.errors import ChainError, RemoteError
from chainnode.core.statuses import ProposalStatus

WITHIN_DAYS_MAX = 36_500
DAY_MS = 86_400_000


def _iter_state(ledger: LedgerReader, prefix: bytes) -> Any:
    iterate = getattr(ledger, "iter_state", None)
    if iterate is None:
        raise web.HTTPNotImplemented(reason="this node's ledger cannot list state")
    return iterate(prefix)


def _get_next_height(ledger: LedgerReader) -> int:
    return ledger.get_head().height + 1


# ---------------------------------------------------------------- JSON forms


def compute_entity_json(
    entity: identity_records.EntityRecord, validators: quorum.ValidatorSet
) -> dict[str, Any]:
    try:
        certificate_pem = identity.certificate_to_pem(identity.certificate_from_der(entity.certificate))
        pem: str | None = certificate_pem.decode("ascii")
    except ChainError:
        pem = None  # hand-built states (tests) may hold no certificate
    return {
        "id": entity.entity_id,
        "zone": entity.zone,
        "public_key": entity.public_key.hex(),
        "roles": list(entity.roles),
        "sectors": list(entity.sectors),
        "not_before_ms": entity.not_before_ms,
        "not_after_ms": entity.not_after_ms,
        "revoked": entity.revoked,
        "revoked_from_height": entity.revoked_from_height if entity.revoked else None,
        "revocation_reason": entity.revocation_reason if entity.revoked else None,
        "is_validator": validators.index_of(entity.entity_id) is not None,
        "certificate_pem": pem,
    }


def compute_zone_json(zone: identity_records.ZoneRecord) -> dict[str, Any]:
    not_before_ms: int | None = None
    not_after_ms: int | None = None
    with contextlib.suppress(ChainError):  # hand-built states (tests) may hold no certificate
        not_before_ms, not_after_ms = identity.get_validity_ms(
            identity.certificate_from_der(zone.certificate)
        )
    return {
        "id": zone.zone_id,
        "name": zone.name,
        "status": zone.status,
        "signer": authority.compute_zone_signer(zone.zone_id),
        "not_before_ms": not_before_ms,
        "not_after_ms": not_after_ms,
    }


def compute_validator_set_json(height: int, validators: quorum.ValidatorSet) -> dict[str, Any]:
    return {
        "height": height,
        "size": validators.size,
        "quorum": validators.quorum,
        "faults_max": validators.faults_max,
        "hash": validators.compute_hash().hex(),
        "validators": [{"id": v.entity_id, "public_key": v.public_key.hex()} for v in validators.validators],
    }


def compute_proposal_json(proposal: governance.Proposal, next_height: int) -> dict[str, Any]:
    payload: Any = compute_json_value(proposal.payload)
    if proposal.kind == "admit_zone" and proposal.payload and isinstance(proposal.payload[0], bytes):
        payload = {"certificate_der": proposal.payload[0].hex(), "name": proposal.payload[1]}
    elif proposal.kind == "set_params":
        payload = dict(proposal.payload[0])
    elif len(proposal.payload) == 1:
        payload = proposal.payload[0]
    return {
        "id": proposal.proposal_id,
        "kind": proposal.kind,
        "payload": payload,
        "proposer": proposal.proposer,
        "created_height": proposal.created_height,
        "expires_at_height": proposal.expires_at_height,
        "approvals": list(proposal.approvals),
        "rejections": list(proposal.rejections),
        "status": proposal.get_status_at(next_height),
        "outcome": proposal.outcome,
        "closed_height": proposal.closed_height or None,
    }


# ---------------------------------------------------------------- handlers


async def handle_entity(request: web.Request) -> web.Response:
    ledger = get_ledger(request)
    entity_id = check_name(request.match_info["id"], "entity id")
    entity = governance.get_entity_record(ledger, entity_id)
    if entity is None:
        return not_found(f"no registered entity {entity_id!r}")
    return json_response(compute_entity_json(entity, governance.get_validator_set(ledger)))


async def handle_zones(request: web.Request) -> web.Response:
    ledger = get_ledger(request)
    values = [value for _, value in _iter_state(ledger, b"id/z/")]
    page, next_cursor = compute_offset_page(values, request)
    zones = [identity_records.decode_zone_record(value) for value in page]
    return json_response({"zones": [compute_zone_json(zone) for zone in zones], "next_cursor": next_cursor})


async def handle_zone(request: web.Request) -> web.Response:
    zone_id = check_name(request.match_info["id"], "zone id")
    zone = governance.get_zone_record(get_ledger(request), zone_id)
    if zone is None:
        return not_found(f"no admitted zone {zone_id!r}")
    return json_response(compute_zone_json(zone))


async def handle_validators(request: web.Request) -> web.Response:
    ledger = get_ledger(request)
    height_text = request.query.get("height")
    if height_text is None:
        height = _get_next_height(ledger)
    else:
        height = parse_natural(height_text, "height", code="bad_height")
        if height < 1:
            raise RemoteError("height must be at least 1", code="bad_height")
    return json_response(compute_validator_set_json(height, governance.get_validator_set_at(ledger, height)))


async def handle_proposals(request: web.Request) -> web.Response:
    ledger = get_ledger(request)
    status = request.query.get("status")
    if status is not None and status not in set(ProposalStatus):
        choices = sorted(str(choice) for choice in ProposalStatus)
        raise RemoteError(f"status must be one of {choices}", code="bad_request")
    limit = parse_limit(request)
    next_height = _get_next_height(ledger)
    count = governance.get_proposal_count(ledger)
    # The cursor is the last (lowest) id seen; the next page goes on below it.
    cursor_text = request.query.get("cursor", "")
    before = count + 1 if cursor_text == "" else parse_natural(cursor_text, "cursor", code="bad_cursor")
    items = []
    next_cursor: str | None = None
    for proposal_id in range(min(before, count + 1) - 1, 0, -1):
        proposal = governance.get_proposal(ledger, proposal_id)
        if proposal is None:
            continue
        item = compute_proposal_json(proposal, next_height)
        if status is None or item["status"] == status:
            items.append(item)
        if len(items) >= limit:
            next_cursor = str(proposal_id) if proposal_id > 1 else None
            break
    threshold, members = governance.get_council(ledger) or (None, ())
    return json_response(
        {
            "count": count,
            "threshold": threshold,
            "council": list(members),
            "proposals": items,
            "next_cursor": next_cursor,
        }
    )


async def handle_proposal(request: web.Request) -> web.Response:
    ledger = get_ledger(request)
    proposal_id = parse_natural(request.match_info["id"], "proposal id", code="bad_request")
    proposal = governance.get_proposal(ledger, proposal_id)
    if proposal is None:
        return not_found(f"no proposal {proposal_id}")
    return json_response(compute_proposal_json(proposal, _get_next_height(ledger)))


async def handle_expiring(request: web.Request) -> web.Response:
    ledger = get_ledger(request)
    within_days = parse_natural(request.query.get("within_days", "30"), "within_days", code="bad_request")
    if within_days > WITHIN_DAYS_MAX:
        raise RemoteError(f"within_days must be at most {WITHIN_DAYS_MAX}", code="bad_request")
    _iter_state(ledger, b"")  # 501 before doing anything when the ledger cannot list
    now_ms = time.time_ns() // 1_000_000
    found, next_cursor = compute_offset_page(
        authority.find_expiring_certificates(ledger, now_ms, within_days * DAY_MS), request
    )
    return json_response(
        {
            "now_ms": now_ms,
            "within_days": within_days,
            "next_cursor": next_cursor,
            "certificates": [
                {
                    "kind": item.kind,
                    "id": item.subject,
                    "zone": item.zone,
                    "not_after_ms": item.not_after_ms,
                    "expires_in_ms": item.expires_in_ms,
                    "expired": item.is_expired,
                }
                for item in found
            ],
        }
    )


# ---------------------------------------------------------------- the routes, declared once

ENTITY_SCHEMA = compute_object_schema(
    {
        "id": STRING,
        "zone": STRING,
        "public_key": HEX,
        "roles": compute_array_schema(STRING),
        "sectors": compute_array_schema(STRING),
        "not_before_ms": INTEGER,
        "not_after_ms": INTEGER,
        "revoked": BOOLEAN,
        "revoked_from_height": compute_nullable_schema(INTEGER),
        "revocation_reason": compute_nullable_schema(STRING),
        "is_validator": BOOLEAN,
        "certificate_pem": compute_nullable_schema(STRING),
    }
)
ZONE_SCHEMA = compute_object_schema(
    {
        "id": STRING,
        "name": STRING,
        "status": STRING,
        "signer": STRING,
        "not_before_ms": compute_nullable_schema(INTEGER),
        "not_after_ms": compute_nullable_schema(INTEGER),
    }
)
VALIDATOR_SET_SCHEMA = compute_object_schema(
    {
        "height": INTEGER,
        "size": INTEGER,
        "quorum": INTEGER,
        "faults_max": INTEGER,
        "hash": HASH,
        "validators": compute_array_schema(compute_object_schema({"id": STRING, "public_key": HEX})),
    }
)
PROPOSAL_SCHEMA = compute_object_schema(
    {
        "id": INTEGER,
        "kind": STRING,
        "payload": ANY,
        "proposer": STRING,
        "created_height": INTEGER,
        "expires_at_height": INTEGER,
        "approvals": compute_array_schema(STRING),
        "rejections": compute_array_schema(STRING),
        "status": {"enum": [str(choice) for choice in ProposalStatus]},
        "outcome": ANY,
        "closed_height": compute_nullable_schema(INTEGER),
    }
)
_PROPOSALS_SCHEMA = compute_object_schema(
    {
        "count": INTEGER,
        "threshold": compute_nullable_schema(INTEGER),
        "council": compute_array_schema(STRING),
        "proposals": compute_array_schema(PROPOSAL_SCHEMA),
        "next_cursor": compute_nullable_schema(STRING),
    }
)
_EXPIRING_SCHEMA = compute_object_schema(
    {
        "now_ms": INTEGER,
        "within_days": INTEGER,
        "next_cursor": compute_nullable_schema(STRING),
        "certificates": compute_array_schema(
            compute_object_schema(
                {
                    "kind": STRING,
                    "id": STRING,
                    "zone": compute_nullable_schema(STRING),
                    "not_after_ms": INTEGER,
                    "expires_in_ms": {"type": "integer"},
                    "expired": BOOLEAN,
                }
            )
        ),
    }
)
_LIST_ERRORS = {**PAGE_ERRORS, 501: ("not_implemented",)}

ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/v1/entities/{id}",
        handle_entity,
        "A registered entity: roles, sectors, validity, revocation, certificate",
        params=(path_param("id", "entity id"),),
        responses={200: ENTITY_SCHEMA},
        errors={400: ("bad_request",), 404: ("not_found",)},
        tag="governance",
    ),
    Route(
        "GET",
        "/v1/zones",
        handle_zones,
        "Admitted zones",
        params=(LIMIT_PARAM, CURSOR_PARAM),
        responses={
            200: compute_object_schema(
                {"zones": compute_array_schema(ZONE_SCHEMA), "next_cursor": compute_nullable_schema(STRING)}
            )
        },
        errors=_LIST_ERRORS,
        tag="governance",
    ),
    Route(
        "GET",
        "/v1/zones/{id}",
        handle_zone,
        "One admitted zone",
        params=(path_param("id", "zone id"),),
        responses={200: ZONE_SCHEMA},
        errors={400: ("bad_request",), 404: ("not_found",)},
        tag="governance",
    ),
    Route(
        "GET",
        "/v1/validators",
        handle_validators,
        "The validator set that certifies a height (default: the next block)",
        params=(
            query_param(
                "height",
                "a height of at least 1",
                {"type": "integer", "minimum": 1, "maximum": INTEGER_TEXT_MAX},
            ),
        ),
        responses={200: VALIDATOR_SET_SCHEMA},
        errors={400: ("bad_height",)},
        tag="governance",
    ),
    Route(
        "GET",
        "/v1/proposals",
        handle_proposals,
        "Council proposals, newest first",
        params=(
            query_param(
                "status", "only proposals with this status", {"enum": [str(c) for c in ProposalStatus]}
            ),
            LIMIT_PARAM,
            CURSOR_PARAM,
        ),
        responses={200: _PROPOSALS_SCHEMA},
        errors={400: ("bad_request", "bad_limit", "bad_cursor")},
        tag="governance",
    ),
    Route(
        "GET",
        "/v1/proposals/{id}",
        handle_proposal,
        "One proposal with its votes",
        params=(
            path_param("id", "proposal id", {"type": "integer", "minimum": 0, "maximum": INTEGER_TEXT_MAX}),
        ),
        responses={200: PROPOSAL_SCHEMA},
        errors={400: ("bad_request",), 404: ("not_found",)},
        tag="governance",
    ),
    Route(
        "GET",
        "/v1/certificates/expiring",
        handle_expiring,
        "Entity and zone CA certificates that expire within some days, soonest first",
        params=(
            query_param(
                "within_days",
                f"days, 0..{WITHIN_DAYS_MAX} (default 30)",
                {"type": "integer", "minimum": 0, "maximum": WITHIN_DAYS_MAX, "default": 30},
            ),
            LIMIT_PARAM,
            CURSOR_PARAM,
        ),
        responses={200: _EXPIRING_SCHEMA},
        errors={400: ("bad_request", "bad_limit", "bad_cursor"), 501: ("not_implemented",)},
        tag="governance",
    ),
)
