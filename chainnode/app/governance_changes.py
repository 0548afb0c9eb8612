"""The changes an approved council proposal makes: zones admitted, suspended, reinstated or
removed, validators added or removed, chain parameters set, counterparty chains registered or
removed (`chainnode.app.xchain_registry`).

Theory of operation: `apply_change` checks every rule of its kind against the state it is given
and writes the change there, or raises `TransactionError(BAD_PROPOSAL, ...)` (or
`BAD_CERTIFICATE`) naming the rule; governance runs it on a child overlay when a proposal is made
(to refuse a change that breaks a rule already) and again when approvals reach M (to execute it,
or close the proposal as failed).  The rules are listed in `chainnode.app.governance`'s theory of
operation.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from chainnode.app import genesis, xchain_registry
from chainnode.app.governance_proposals import Proposal
from chainnode.app.governance_state import (
    apply_validator_set,
    get_chain_params,
    get_entity_record,
    get_validator_set,
    get_zone_record,
)
from chainnode.app.state import Event, ExecutionContext, Overlay, StateReader, TransactionError
from chainnode.core import identity, identity_records, quorum, types
from chainnode.core.errors import ChainError
from chainnode.core.statuses import ZoneStatus

ErrorCode = types.ErrorCode
VALIDATORS_MIN = quorum.VALIDATORS_MIN
VALIDATORS_MAX = 100


def _fail(code: ErrorCode, message: str) -> TransactionError:
    return TransactionError(code, message)


def _require_zone(state: StateReader, zone_id: str) -> identity_records.ZoneRecord:
    zone = get_zone_record(state, zone_id)
    if zone is None:
        raise _fail(ErrorCode.BAD_PROPOSAL, f"zone {zone_id!r} is not admitted")
    return zone


def _require_no_validators_in(state: StateReader, zone_id: str, kind: str) -> None:
    for validator in get_validator_set(state).validators:
        entity = get_entity_record(state, validator.entity_id)
        if entity is not None and entity.zone == zone_id:
            raise _fail(
                ErrorCode.BAD_PROPOSAL,
                f"{kind}: validator {validator.entity_id} belongs to zone {zone_id}; remove it first",
            )


def _change_admit_zone(overlay: Overlay, payload: tuple[Any, ...], context: ExecutionContext) -> list[Event]:
    certificate_der, name = payload
    root_der = overlay.get_state(identity_records.ROOT_CERTIFICATE_KEY)
    if root_der is None:
        raise _fail(ErrorCode.BAD_PROPOSAL, "the state holds no root certificate")
    try:
        certificate = identity.certificate_from_der(certificate_der)
        root = identity.certificate_from_der(root_der)
        zone_id = identity.verify_zone_certificate(certificate, root, at_ms=context.timestamp_ms)
    except ChainError as error:
        raise _fail(ErrorCode.BAD_CERTIFICATE, f"admit_zone: {error.message}") from error
    existing = get_zone_record(overlay, zone_id)
    if existing is not None:
        advice = {
            ZoneStatus.ACTIVE: "it is already admitted",
            ZoneStatus.SUSPENDED: "reinstate it instead",
            ZoneStatus.REMOVED: "a removed zone id is never reused",
        }[existing.status]
        raise _fail(ErrorCode.BAD_PROPOSAL, f"admit_zone: zone {zone_id!r} is {existing.status}; {advice}")
    overlay.put(
        identity_records.zone_key(zone_id),
        identity_records.ZoneRecord(zone_id, name, certificate_der, True).encode(),
    )
    return [("governance.zone_admitted", (zone_id, name))]


def _change_zone_status(overlay: Overlay, kind: str, zone_id: str) -> list[Event]:
    zone = _require_zone(overlay, zone_id)
    expected = {
        "suspend_zone": (ZoneStatus.ACTIVE,),
        "reinstate_zone": (ZoneStatus.SUSPENDED,),
        "remove_zone": (ZoneStatus.ACTIVE, ZoneStatus.SUSPENDED),
    }[kind]
    if zone.status not in expected:
        raise _fail(ErrorCode.BAD_PROPOSAL, f"{kind}: zone {zone_id!r} is {zone.status}")
    if kind != "reinstate_zone":
        _require_no_validators_in(overlay, zone_id, kind)
    changed = {
        "suspend_zone": replace(zone, active=False),
        "reinstate_zone": replace(zone, active=True),
        "remove_zone": replace(zone, active=False, removed=True),
    }[kind]
    overlay.put(identity_records.zone_key(zone_id), changed.encode())
    return [("governance.zone_" + changed.status, (zone_id,))]


def _change_add_validator(overlay: Overlay, entity_id: str, context: ExecutionContext) -> list[Event]:
    entity = get_entity_record(overlay, entity_id)
    if entity is None:
        raise _fail(ErrorCode.BAD_PROPOSAL, f"add_validator: {entity_id!r} is not a registered entity")
    problem = None
    if entity.revoked:
        problem = "its certificate is revoked"
    elif not entity.has_role("validator"):
        problem = "its certificate lacks the validator role"
    elif not entity.not_before_ms <= context.timestamp_ms <= entity.not_after_ms:
        problem = "its certificate is not valid at the block time"
    elif (zone := get_zone_record(overlay, entity.zone)) is None or zone.status != ZoneStatus.ACTIVE:
        problem = f"its zone {entity.zone!r} is not active"
    validators = get_validator_set(overlay)
    if validators.index_of(entity_id) is not None:
        problem = "it is already a validator"
    elif validators.size >= VALIDATORS_MAX:
        problem = f"the set already has the maximum of {VALIDATORS_MAX} validators"
    if problem is not None:
        raise _fail(ErrorCode.BAD_PROPOSAL, f"add_validator {entity_id}: {problem}")
    grown = quorum.ValidatorSet((*validators.validators, quorum.Validator(entity_id, entity.public_key)))
    return [apply_validator_set(overlay, context.height, grown)]


def _change_remove_validator(overlay: Overlay, entity_id: str, context: ExecutionContext) -> list[Event]:
    validators = get_validator_set(overlay)
    if validators.index_of(entity_id) is None:
        raise _fail(ErrorCode.BAD_PROPOSAL, f"remove_validator: {entity_id!r} is not a validator")
    if validators.size - 1 < VALIDATORS_MIN:
        raise _fail(
            ErrorCode.BAD_PROPOSAL,
            f"remove_validator {entity_id}: the set may not shrink below {VALIDATORS_MIN} validators",
        )
    shrunk = quorum.ValidatorSet(tuple(v for v in validators.validators if v.entity_id != entity_id))
    return [apply_validator_set(overlay, context.height, shrunk)]


def _change_params(overlay: Overlay, payload: tuple[Any, ...]) -> list[Event]:
    params = get_chain_params(overlay)
    changed = replace(params, **dict(payload[0]))
    if changed.block_bytes_max < changed.tx_bytes_max:
        raise _fail(ErrorCode.BAD_PROPOSAL, "block_bytes_max must be at least tx_bytes_max")
    overlay.put(identity_records.CHAIN_PARAMS_KEY, genesis.encode_chain_params(changed))
    return [("governance.params_changed", tuple(payload[0]))]


def apply_change(
    overlay: Overlay, proposal: Proposal, context: ExecutionContext, *, chain_id: str = ""
) -> list[Event]:
    """Carry out an approved proposal; `TransactionError` if it breaks a rule now.
    `chain_id` is this chain's (a counterparty may not take it)."""
    kind, payload = proposal.kind, proposal.payload
    if kind == "register_chain":
        return xchain_registry.apply_register_chain(overlay, payload, context.height, own_chain_id=chain_id)
    if kind == "remove_chain":
        return xchain_registry.apply_remove_chain(overlay, payload[0], context.height)
    if kind == "admit_zone":
        return _change_admit_zone(overlay, payload, context)
    if kind in ("suspend_zone", "reinstate_zone", "remove_zone"):
        return _change_zone_status(overlay, kind, payload[0])
    if kind == "add_validator":
        return _change_add_validator(overlay, payload[0], context)
    if kind == "remove_validator":
        return _change_remove_validator(overlay, payload[0], context)
    assert kind == "set_params", "proposal kinds are checked when proposed"
    return _change_params(overlay, payload)
