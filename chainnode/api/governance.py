"""HTTP endpoints for identities and governance: entities, zones, validators, proposals and
expiring certificates.

Theory of operation: read-only views of the committed state, through the same `NodeService`
the rest of the API uses (`chainnode.api.common`); `chainnode.api.server.create_app` mounts them with
`add_routes`.  They live in their own module so that `api.py` stays a readable size.

- `GET /v1/entities/{id}`: the registered record (roles, sectors, validity, revocation), the
  certificate as PEM, and whether the entity is in the current validator set.
- `GET /v1/zones`, `GET /v1/zones/{id}`: admitted zones with their status (`active`,
  `suspended`, `removed`) and their CA certificate's validity.
- `GET /v1/validators[?height=H]`: the set that certifies block H (by default the next block,
  `head + 1`), with its size, quorum and hash, from the on-chain validator history.
- `GET /v1/proposals[?status=S]`: council proposals, newest first (at most `PROPOSALS_MAX`);
  `S` is `open`, `expired`, `executed`, `rejected` or `failed`, as seen at the next height.
- `GET /v1/proposals/{id}`: one proposal with its votes.
- `GET /v1/certificates/expiring?within_days=D` (default 30): entity and zone CA certificates
  that expire within D days of the node's clock, or have expired, soonest first.

Listing zones and expiring certificates needs a ledger that can iterate a key prefix
(`iter_state`); a reader that cannot answers 501 `not_implemented`.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from aiohttp import web

from chainnode.api.common import check_name, error_body, get_service, json_response, parse_natural
from chainnode.api.forms import compute_json_value
from chainnode.api.service import LedgerReader
from chainnode.app import authority, governance
from chainnode.core import identity, identity_records, quorum
from chainnode.core.errors import ChainError, RemoteError
from chainnode.core.statuses import ProposalStatus

PROPOSALS_MAX = 1000
WITHIN_DAYS_MAX = 36_500
DAY_MS = 86_400_000


def _not_found(message: str) -> web.Response:
    return json_response(error_body("not_found", message), status=404)


def _get_ledger(request: web.Request) -> LedgerReader:
    return get_service(request).ledger


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
    ledger = _get_ledger(request)
    entity_id = check_name(request.match_info["id"], "entity id")
    entity = governance.get_entity_record(ledger, entity_id)
    if entity is None:
        return _not_found(f"no registered entity {entity_id!r}")
    return json_response(compute_entity_json(entity, governance.get_validator_set(ledger)))


async def handle_zones(request: web.Request) -> web.Response:
    ledger = _get_ledger(request)
    zones = [identity_records.decode_zone_record(value) for _, value in _iter_state(ledger, b"id/z/")]
    return json_response({"zones": [compute_zone_json(zone) for zone in zones]})


async def handle_zone(request: web.Request) -> web.Response:
    zone_id = check_name(request.match_info["id"], "zone id")
    zone = governance.get_zone_record(_get_ledger(request), zone_id)
    if zone is None:
        return _not_found(f"no admitted zone {zone_id!r}")
    return json_response(compute_zone_json(zone))


async def handle_validators(request: web.Request) -> web.Response:
    ledger = _get_ledger(request)
    height_text = request.query.get("height")
    if height_text is None:
        height = _get_next_height(ledger)
    else:
        height = parse_natural(height_text, "height", code="bad_height")
        if height < 1:
            raise RemoteError("height must be at least 1", code="bad_height")
    return json_response(compute_validator_set_json(height, governance.get_validator_set_at(ledger, height)))


async def handle_proposals(request: web.Request) -> web.Response:
    ledger = _get_ledger(request)
    status = request.query.get("status")
    if status is not None and status not in set(ProposalStatus):
        choices = sorted(str(choice) for choice in ProposalStatus)
        raise RemoteError(f"status must be one of {choices}", code="bad_request")
    next_height = _get_next_height(ledger)
    count = governance.get_proposal_count(ledger)
    items = []
    for proposal_id in range(count, 0, -1):
        proposal = governance.get_proposal(ledger, proposal_id)
        if proposal is None:
            continue
        item = compute_proposal_json(proposal, next_height)
        if status is None or item["status"] == status:
            items.append(item)
        if len(items) >= PROPOSALS_MAX:
            break
    threshold, members = governance.get_council(ledger) or (None, ())
    return json_response(
        {"count": count, "threshold": threshold, "council": list(members), "proposals": items}
    )


async def handle_proposal(request: web.Request) -> web.Response:
    ledger = _get_ledger(request)
    proposal_id = parse_natural(request.match_info["id"], "proposal id", code="bad_request")
    proposal = governance.get_proposal(ledger, proposal_id)
    if proposal is None:
        return _not_found(f"no proposal {proposal_id}")
    return json_response(compute_proposal_json(proposal, _get_next_height(ledger)))


async def handle_expiring(request: web.Request) -> web.Response:
    ledger = _get_ledger(request)
    within_days = parse_natural(request.query.get("within_days", "30"), "within_days", code="bad_request")
    if within_days > WITHIN_DAYS_MAX:
        raise RemoteError(f"within_days must be at most {WITHIN_DAYS_MAX}", code="bad_request")
    _iter_state(ledger, b"")  # 501 before doing anything when the ledger cannot list
    now_ms = time.time_ns() // 1_000_000
    found = authority.find_expiring_certificates(ledger, now_ms, within_days * DAY_MS)
    return json_response(
        {
            "now_ms": now_ms,
            "within_days": within_days,
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


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/entities/{id}", handle_entity)
    app.router.add_get("/v1/zones", handle_zones)
    app.router.add_get("/v1/zones/{id}", handle_zone)
    app.router.add_get("/v1/validators", handle_validators)
    app.router.add_get("/v1/proposals", handle_proposals)
    app.router.add_get("/v1/proposals/{id}", handle_proposal)
    app.router.add_get("/v1/certificates/expiring", handle_expiring)
