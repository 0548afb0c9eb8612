"""The `governance` module: council proposals, M-of-N votes, validator sets and chain parameters.

Theory of operation
-------------------
The council (members and threshold M of N written at genesis, see `chainnode.app.genesis`) changes
the network by proposals.  A member signs `governance.propose(kind, payload, expires_at_height)`
as `council:<member id>`; the proposal gets the next sequential id (1, 2, ...) and **the
proposer's own proposal counts as its approval**.  Members then sign
`governance.vote(proposal_id, approve)`.  The transaction that brings the approvals to M
executes the change in the same block; the change applies to the state from the next
transaction on, and a validator-set change certifies blocks from the next height on.  Rejections
that make M unreachable (more than N - M) close the proposal as `rejected`.  A proposal that has
not reached M by `expires_at_height` (inclusive) can no longer be voted on; it reads as `expired`.

Refusals (failed receipts, the block stays valid): an unknown proposal (`unknown_proposal`), a
vote after expiry (`proposal_expired`), on a closed proposal (`proposal_closed`), a second vote
by the same member (`duplicate_vote`), a change that breaks a rule when proposed
(`bad_proposal`), a signer that is not a council member (`wrong_signer_kind`; a `council:` id
that is not in state does not authenticate and refuses the whole block).  Too few votes is no
error: the proposal stays open.  A change that was valid when proposed but breaks a rule when M
is reached (say, the entity to add was revoked meanwhile) closes the proposal as `failed` with
the reason; the vote itself succeeds, so the outcome is final and recorded on chain.

Kinds and payloads (a tuple):

- `admit_zone (certificate_der, name)`: a zone CA certificate that chains to the network root and
  is valid at the block time; the zone id is the one the certificate carries.  An id that is
  admitted, suspended or was ever removed is refused (removed ids are never reused).
- `suspend_zone (zone_id)`, `reinstate_zone (zone_id)`, `remove_zone (zone_id)`: a suspended
  zone's authority cannot act and its entities' transactions fail (`zone_not_active`) until it
  is reinstated; removal is final.  Both are refused while a current validator belongs to the
  zone: remove those validators first, so that a zone decision never silently costs quorum.
- `add_validator (entity_id)`: a registered, unrevoked entity with the `validator` role, a valid
  certificate and an active zone; it joins at the end of the ordered set, with its certificate's
  key.  At most `VALIDATORS_MAX` validators.
- `remove_validator (entity_id)`: never below `VALIDATORS_MIN` (4, the smallest set that
  tolerates one Byzantine validator).
- `set_params (((name, value), ...))`: any of `PARAM_LIMITS`, each within its bounds.
- `register_chain (chain_id, genesis_hash, validators, genesis_state_root)`: a counterparty
  chain for cross-chain exchange (`chainnode.app.xchain`): its id, the hash of its genesis, its
  genesis validator set (`quorum.ValidatorSet.encode()`) and its genesis state root.  Approval
  starts the chain's on-chain light client at its genesis.  Refused: our own chain id, a chain
  that is registered, a set that does not decode.  A removed chain may be registered again: its
  client starts afresh, its imported facts and channel sequence numbers are kept.
- `remove_chain (chain_id)`: a registered chain; its client stops (updates, imports and sends
  fail with `unknown_chain`), what was imported stays readable.

State layout (this module owns `gov/` and `val/`):

- `gov/council` -> encode((M, member ids)); `gov/c/<member>` -> `identity_records.CouncilRecord` (genesis)
- `gov/params` -> `genesis.encode_chain_params` (genesis, then `set_params`)
- `gov/next` -> encode(next proposal id); `gov/p/<id:u64be>` -> `Proposal.encode()`
- `val/set` -> the validator set that certifies the next block (the lead's contract with consensus)
- `val/from/<h:u64be>` -> the set that certifies blocks from height h on; `val/changes` ->
  encode((h, ...)) of all such heights, so any height's set is found with point reads only.
  Genesis writes `val/from/1`; a state without `val/changes` has only that entry.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from chainnode.app import genesis, xchain_registry
from chainnode.app.state import (
    Action,
    Event,
    ExecutionContext,
    Overlay,
    SignerKind,
    StateReader,
    TransactionError,
)
from chainnode.core import codec, identity, identity_records, quorum, tags, types
from chainnode.core.codec import expect_int, expect_str, expect_tuple
from chainnode.core.errors import ChainError, DecodeError, StorageError
from chainnode.core.statuses import STORED_PROPOSAL_STATUSES, ProposalStatus, ZoneStatus

ErrorCode = types.ErrorCode
MODULE = "governance"
VALIDATORS_MIN = quorum.VALIDATORS_MIN
VALIDATORS_MAX = 100
PROPOSAL_LIFETIME_BLOCKS_MAX = 1_000_000
PROPOSAL_KINDS = (
    "admit_zone",
    "suspend_zone",
    "reinstate_zone",
    "remove_zone",
    "add_validator",
    "remove_validator",
    "set_params",
    "register_chain",
    "remove_chain",
)
# (minimum, maximum) of each parameter the council may set; view_timeout_ms 0 means "each
# node's configured timeout".
PARAM_LIMITS: dict[str, tuple[int, int]] = {
    "block_txs_max": (1, 100_000),
    "block_bytes_max": (64 * 1024, 64 * 1024 * 1024),
    "tx_bytes_max": (1024, types.TX_BYTES_MAX),
    "timestamp_drift_ms_max": (100, 3_600_000),
    "view_timeout_ms": (0, 600_000),
}
VIEW_TIMEOUT_MS_MIN = 100

_PROPOSAL_PREFIX = b"gov/p/"
_NEXT_PROPOSAL_KEY = b"gov/next"
_VALIDATOR_CHANGES_KEY = b"val/changes"
_NAME_CHARS_MAX = 128

_Record = TypeVar("_Record")


# ---------------------------------------------------------------- reading state


def _read(state: StateReader, key: bytes, decode: Callable[[bytes], _Record], what: str) -> _Record | None:
    stored = state.get_state(key)
    if stored is None:
        return None
    try:
        return decode(stored)
    except DecodeError as error:
        # Only genesis and the state machine write these keys: a bad value is a corrupt data directory.
        raise StorageError(f"corrupt {what} in state: {error.message}") from error


def get_entity_record(state: StateReader, entity_id: str) -> identity_records.EntityRecord | None:
    return _read(
        state,
        identity_records.entity_key(entity_id),
        identity_records.decode_entity_record,
        f"entity {entity_id!r}",
    )


def get_zone_record(state: StateReader, zone_id: str) -> identity_records.ZoneRecord | None:
    return _read(
        state, identity_records.zone_key(zone_id), identity_records.decode_zone_record, f"zone {zone_id!r}"
    )


def get_council_member(state: StateReader, member_id: str) -> identity_records.CouncilRecord | None:
    return _read(
        state,
        identity_records.council_key(member_id),
        identity_records.decode_council_record,
        "council member",
    )


def _decode_council(data: bytes) -> tuple[int, tuple[str, ...]]:
    value = expect_tuple(codec.decode(data), "council", 2)
    if len(value) != 2:
        raise DecodeError("council: expected (threshold, member ids)")
    members = tuple(expect_str(item, "council member id", 64) for item in expect_tuple(value[1], "members"))
    return expect_int(value[0], "council threshold", 1, max(1, len(members))), members


def get_council(state: StateReader) -> tuple[int, tuple[str, ...]] | None:
    """(threshold M, member ids) as written at genesis; None in a state without a council."""
    return _read(state, identity_records.COUNCIL_KEY, _decode_council, "council")


def get_validator_set(state: StateReader) -> quorum.ValidatorSet:
    """The set that certifies the next block (the one stored at `identity_records.VALIDATOR_SET_KEY`)."""
    validators = _read(
        state, identity_records.VALIDATOR_SET_KEY, quorum.decode_validator_set, "validator set"
    )
    if validators is None:
        raise StorageError("the state holds no validator set")
    return validators


def _decode_heights(data: bytes) -> tuple[int, ...]:
    return tuple(
        expect_int(item, "validator change height", 1) for item in expect_tuple(codec.decode(data), "heights")
    )


def get_validator_change_heights(state: StateReader) -> tuple[int, ...]:
    """Ascending heights from which a (new) validator set applies; always starts with 1."""
    return _read(state, _VALIDATOR_CHANGES_KEY, _decode_heights, "validator change heights") or (1,)


def get_validator_set_at(state: StateReader, height: int) -> quorum.ValidatorSet:
    """The validator set that certifies block `height` (heights below 1 read as 1).

    Exact for every height up to the next one to be committed; for later heights it is the
    latest known set, which a later change may still replace.
    """
    heights = get_validator_change_heights(state)
    start = heights[max(0, bisect.bisect_right(heights, max(height, 1)) - 1)]
    validators = _read(
        state, identity_records.validator_history_key(start), quorum.decode_validator_set, "validator history"
    )
    if validators is None:
        if heights == (1,):
            # A state written before the history existed (an older data directory): the set has
            # never changed, so the current one is the answer for every height.
            return get_validator_set(state)
        raise StorageError(f"the validator history has no entry for height {start}")
    return validators


def get_chain_params(state: StateReader, fallback: genesis.ChainParams | None = None) -> genesis.ChainParams:
    """The parameters in force: the last `set_params`, else genesis', else `fallback` or defaults."""
    params = _read(state, identity_records.CHAIN_PARAMS_KEY, genesis.decode_chain_params, "chain parameters")
    if params is not None:
        return params
    return fallback if fallback is not None else genesis.ChainParams()


def apply_validator_set(overlay: Overlay, height: int, validators: quorum.ValidatorSet) -> Event:
    """Make `validators` the set from `height + 1` on (the block at `height` is being executed)."""
    encoded = validators.encode()
    overlay.put(identity_records.VALIDATOR_SET_KEY, encoded)
    overlay.put(identity_records.validator_history_key(height + 1), encoded)
    heights = get_validator_change_heights(overlay)
    if heights[-1] != height + 1:
        assert heights[-1] < height + 1, "validator changes are recorded in height order"
        overlay.put(_VALIDATOR_CHANGES_KEY, codec.encode((*heights, height + 1)))
    return ("validators.changed", (height + 1, validators.size, validators.compute_hash()))


# ---------------------------------------------------------------- proposals


@dataclass(frozen=True, slots=True)
class Proposal:
    """A council proposal and its votes."""

    proposal_id: int
    kind: str  # one of PROPOSAL_KINDS
    payload: tuple[Any, ...]
    proposer: str  # council member id
    created_height: int
    expires_at_height: int  # last height at which a vote counts
    approvals: tuple[str, ...]  # member ids, in vote order; the proposer first
    rejections: tuple[str, ...]
    status: ProposalStatus  # one of STORED_PROPOSAL_STATUSES (never EXPIRED)
    outcome: str  # why it failed or was rejected; empty otherwise
    closed_height: int  # 0 while open

    def encode(self) -> bytes:
        return codec.encode(
            (
                tags.TAG_PROPOSAL,
                1,
                self.proposal_id,
                self.kind,
                self.payload,
                self.proposer,
                self.created_height,
                self.expires_at_height,
                self.approvals,
                self.rejections,
                self.status,
                self.outcome,
                self.closed_height,
            )
        )

    def get_status_at(self, height: int) -> ProposalStatus:
        """The status as seen by a vote at `height`: an open proposal past its expiry is EXPIRED."""
        if self.status == ProposalStatus.OPEN and height > self.expires_at_height:
            return ProposalStatus.EXPIRED
        return self.status


def decode_proposal(data: bytes) -> Proposal:
    fields = codec.decode_struct(data, tags.TAG_PROPOSAL, 1, 13, "proposal")
    return Proposal(
        proposal_id=expect_int(fields[2], "proposal id", 1),
        kind=expect_str(fields[3], "proposal kind", 32),
        payload=expect_tuple(fields[4], "proposal payload", 64),
        proposer=expect_str(fields[5], "proposer", 64),
        created_height=expect_int(fields[6], "created height"),
        expires_at_height=expect_int(fields[7], "expires at height"),
        approvals=tuple(expect_str(item, "approval", 64) for item in expect_tuple(fields[8], "approvals")),
        rejections=tuple(expect_str(item, "rejection", 64) for item in expect_tuple(fields[9], "rejections")),
        status=_decode_proposal_status(expect_str(fields[10], "proposal status", 16)),
        outcome=expect_str(fields[11], "proposal outcome", 1024, allow_empty=True),
        closed_height=expect_int(fields[12], "closed height"),
    )


def _decode_proposal_status(text: str) -> ProposalStatus:
    if text not in STORED_PROPOSAL_STATUSES:
        raise DecodeError(f"proposal status {text!r} is not one a proposal is stored with")
    return ProposalStatus(text)


def compute_proposal_key(proposal_id: int) -> bytes:
    return _PROPOSAL_PREFIX + proposal_id.to_bytes(8, "big")


def get_proposal(state: StateReader, proposal_id: int) -> Proposal | None:
    if not 1 <= proposal_id < 2**64:
        return None
    return _read(state, compute_proposal_key(proposal_id), decode_proposal, f"proposal {proposal_id}")


def get_proposal_count(state: StateReader) -> int:
    """How many proposals were ever made; their ids are 1..count."""
    next_id = _read(
        state, _NEXT_PROPOSAL_KEY, lambda data: expect_int(codec.decode(data), "next id", 1), "next id"
    )
    return 0 if next_id is None else next_id - 1


# ---------------------------------------------------------------- argument checks


def _fail(code: ErrorCode, message: str) -> TransactionError:
    return TransactionError(code, message)


def _check_name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= _NAME_CHARS_MAX or not value.isprintable():
        raise _fail(ErrorCode.BAD_ARGUMENTS, f"{what} must be 1..{_NAME_CHARS_MAX} printable characters")
    return value


def _check_id(value: Any, what: str) -> str:
    if not isinstance(value, str) or not identity.is_valid_id(value):
        raise _fail(ErrorCode.BAD_ARGUMENTS, f"{what} must be a lowercase [a-z0-9-] id")
    return value


def _check_params_payload(payload: tuple[Any, ...]) -> None:
    if len(payload) != 1 or not isinstance(payload[0], tuple) or not payload[0]:
        raise _fail(ErrorCode.BAD_ARGUMENTS, "set_params takes ((name, value), ...)")
    names = set()
    for item in payload[0]:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
            raise _fail(ErrorCode.BAD_ARGUMENTS, "set_params takes ((name, value), ...)")
        name, value = item
        if name not in PARAM_LIMITS:
            raise _fail(ErrorCode.BAD_ARGUMENTS, f"unknown parameter {name!r}; known: {sorted(PARAM_LIMITS)}")
        if name in names:
            raise _fail(ErrorCode.BAD_ARGUMENTS, f"parameter {name!r} given twice")
        names.add(name)
        minimum, maximum = PARAM_LIMITS[name]
        if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= maximum:
            raise _fail(ErrorCode.BAD_ARGUMENTS, f"{name} must be an integer within [{minimum}, {maximum}]")
        if name == "view_timeout_ms" and 0 < value < VIEW_TIMEOUT_MS_MIN:
            raise _fail(ErrorCode.BAD_ARGUMENTS, f"view_timeout_ms is 0 or at least {VIEW_TIMEOUT_MS_MIN}")


def check_payload(kind: str, payload: tuple[Any, ...]) -> None:
    """The shape of a proposal's payload; `TransactionError(BAD_ARGUMENTS)` if wrong."""
    if kind == "admit_zone":
        if len(payload) != 2 or not isinstance(payload[0], bytes) or len(payload[0]) > 16384:
            raise _fail(ErrorCode.BAD_ARGUMENTS, "admit_zone takes (zone CA certificate DER, name)")
        _check_name(payload[1], "zone name")
    elif kind in ("suspend_zone", "reinstate_zone", "remove_zone"):
        if len(payload) != 1:
            raise _fail(ErrorCode.BAD_ARGUMENTS, f"{kind} takes (zone id,)")
        _check_id(payload[0], "zone id")
    elif kind in ("add_validator", "remove_validator"):
        if len(payload) != 1:
            raise _fail(ErrorCode.BAD_ARGUMENTS, f"{kind} takes (entity id,)")
        _check_id(payload[0], "entity id")
    elif kind == "set_params":
        _check_params_payload(payload)
    elif kind in ("register_chain", "remove_chain"):
        xchain_registry.check_chain_payload(kind, payload)
    else:
        raise _fail(ErrorCode.BAD_ARGUMENTS, f"unknown proposal kind {kind!r}; known: {list(PROPOSAL_KINDS)}")


def check_propose_args(args: tuple[Any, ...]) -> None:
    """`governance.propose(kind: str, payload: tuple, expires_at_height: int)`."""
    if len(args) != 3:
        raise _fail(
            ErrorCode.BAD_ARGUMENTS,
            f"governance.propose takes (kind, payload, expires_at_height), got {len(args)} arguments",
        )
    kind, payload, expires_at_height = args
    if not isinstance(kind, str) or not isinstance(payload, tuple):
        raise _fail(ErrorCode.BAD_ARGUMENTS, "governance.propose takes (kind: str, payload: tuple, height)")
    if not isinstance(expires_at_height, int) or isinstance(expires_at_height, bool) or expires_at_height < 1:
        raise _fail(ErrorCode.BAD_ARGUMENTS, "expires_at_height must be a positive integer")
    check_payload(kind, payload)


def check_vote_args(args: tuple[Any, ...]) -> None:
    """`governance.vote(proposal_id: int, approve: bool)`."""
    if len(args) != 2 or not isinstance(args[1], bool):
        raise _fail(ErrorCode.BAD_ARGUMENTS, "governance.vote takes (proposal_id, approve: bool)")
    if not isinstance(args[0], int) or isinstance(args[0], bool) or not 1 <= args[0] < 2**64:
        raise _fail(ErrorCode.BAD_ARGUMENTS, "proposal_id must be a positive integer")


# ---------------------------------------------------------------- the changes


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


# ---------------------------------------------------------------- actions


def _require_council(overlay: Overlay) -> tuple[int, tuple[str, ...]]:
    council = get_council(overlay)
    if council is None:
        raise _fail(ErrorCode.NOT_PERMITTED, "this chain has no council in its state")
    return council


def _close_if_decided(
    overlay: Overlay,
    proposal: Proposal,
    context: ExecutionContext,
    council: tuple[int, tuple[str, ...]],
    chain_id: str,
) -> tuple[Proposal, list[Event]]:
    threshold, members = council
    if len(proposal.approvals) >= threshold:
        # Try the change in a scratch overlay: a change that no longer holds closes the proposal
        # as failed without leaving half of its writes behind.
        scratch = overlay.child()
        try:
            events = apply_change(scratch, proposal, context, chain_id=chain_id)
        except TransactionError as error:
            failed = replace(
                proposal, status=ProposalStatus.FAILED, outcome=error.message, closed_height=context.height
            )
            return failed, [("governance.failed", (proposal.proposal_id, error.message))]
        scratch.merge_into_parent()
        executed = replace(proposal, status=ProposalStatus.EXECUTED, closed_height=context.height)
        return executed, [("governance.executed", (proposal.proposal_id, proposal.kind)), *events]
    if len(proposal.rejections) > len(members) - threshold:
        outcome = (
            f"{len(proposal.rejections)} of {len(members)} members rejected it; {threshold} approvals needed"
        )
        rejected = replace(
            proposal, status=ProposalStatus.REJECTED, outcome=outcome, closed_height=context.height
        )
        return rejected, [("governance.rejected", (proposal.proposal_id,))]
    return proposal, []


def apply_propose(overlay: Overlay, tx: types.Transaction, context: ExecutionContext) -> Sequence[Event]:
    kind, payload, expires_at_height = tx.args
    if expires_at_height < context.height:
        raise _fail(
            ErrorCode.PROPOSAL_EXPIRED,
            f"expires_at_height {expires_at_height} is before height {context.height}",
        )
    if expires_at_height > context.height + PROPOSAL_LIFETIME_BLOCKS_MAX:
        raise _fail(
            ErrorCode.BAD_ARGUMENTS, f"a proposal lives at most {PROPOSAL_LIFETIME_BLOCKS_MAX} blocks"
        )
    council = _require_council(overlay)
    proposal_id = get_proposal_count(overlay) + 1
    proposal = Proposal(
        proposal_id,
        kind,
        payload,
        context.signer.name,
        context.height,
        expires_at_height,
        approvals=(context.signer.name,),
        rejections=(),
        status=ProposalStatus.OPEN,
        outcome="",
        closed_height=0,
    )
    # A change that breaks a rule now is refused outright rather than left open to fail later.
    apply_change(overlay.child(), proposal, context, chain_id=tx.chain_id)
    proposal, events = _close_if_decided(overlay, proposal, context, council, tx.chain_id)
    overlay.put(_NEXT_PROPOSAL_KEY, codec.encode(proposal_id + 1))
    overlay.put(compute_proposal_key(proposal_id), proposal.encode())
    proposed: Event = ("governance.proposed", (proposal_id, kind, context.signer.name, expires_at_height))
    return [proposed, *events]


def apply_vote(overlay: Overlay, tx: types.Transaction, context: ExecutionContext) -> Sequence[Event]:
    proposal_id, approve = tx.args
    member = context.signer.name
    council = _require_council(overlay)
    proposal = get_proposal(overlay, proposal_id)
    if proposal is None:
        raise _fail(ErrorCode.UNKNOWN_PROPOSAL, f"there is no proposal {proposal_id}")
    status = proposal.get_status_at(context.height)
    if status == ProposalStatus.EXPIRED:
        raise _fail(
            ErrorCode.PROPOSAL_EXPIRED,
            f"proposal {proposal_id} expired at height {proposal.expires_at_height}",
        )
    if status != ProposalStatus.OPEN:
        raise _fail(ErrorCode.PROPOSAL_CLOSED, f"proposal {proposal_id} is already {status}")
    if member in proposal.approvals or member in proposal.rejections:
        raise _fail(ErrorCode.DUPLICATE_VOTE, f"{member} has already voted on proposal {proposal_id}")
    if approve:
        proposal = replace(proposal, approvals=(*proposal.approvals, member))
    else:
        proposal = replace(proposal, rejections=(*proposal.rejections, member))
    voted: Event = ("governance.voted", (proposal_id, member, approve, len(proposal.approvals), council[0]))
    proposal, events = _close_if_decided(overlay, proposal, context, council, tx.chain_id)
    overlay.put(compute_proposal_key(proposal_id), proposal.encode())
    return [voted, *events]


ACTIONS: dict[tuple[str, str], Action] = {
    (MODULE, "propose"): Action(
        role="", check_args=check_propose_args, apply=apply_propose, signer_kind=SignerKind.COUNCIL
    ),
    (MODULE, "vote"): Action(
        role="", check_args=check_vote_args, apply=apply_vote, signer_kind=SignerKind.COUNCIL
    ),
}
