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

Where it lives: this module checks the arguments and carries out `propose` and `vote`; the
`Proposal` record, its keys and readers are in `chainnode.app.governance_proposals`, the
readers of the identity records, the validator set and the chain parameters (and the validator
set's writer) in `chainnode.app.governance_state`, the changes an approved proposal makes in
`chainnode.app.governance_changes`.  Every public name of those modules that callers use is
re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from chainnode.app import xchain_registry
from chainnode.app.governance_changes import VALIDATORS_MAX, VALIDATORS_MIN, apply_change
from chainnode.app.governance_proposals import (
    NEXT_PROPOSAL_KEY,
    PROPOSAL_KINDS,
    Proposal,
    compute_proposal_key,
    decode_proposal,
    get_proposal,
    get_proposal_count,
)
from chainnode.app.governance_state import (
    apply_validator_set,
    get_chain_params,
    get_council,
    get_council_member,
    get_entity_record,
    get_validator_change_heights,
    get_validator_set,
    get_validator_set_at,
    get_zone_record,
)
from chainnode.app.state import Action, Event, ExecutionContext, Overlay, SignerKind, TransactionError
from chainnode.core import codec, identity, types
from chainnode.core.statuses import ProposalStatus

# What callers import from here, the names now in governance_state, governance_proposals and
# governance_changes included.
__all__ = [
    "ACTIONS",
    "MODULE",
    "PARAM_LIMITS",
    "PROPOSAL_KINDS",
    "PROPOSAL_LIFETIME_BLOCKS_MAX",
    "VALIDATORS_MAX",
    "VALIDATORS_MIN",
    "VIEW_TIMEOUT_MS_MIN",
    "Proposal",
    "apply_change",
    "apply_propose",
    "apply_validator_set",
    "apply_vote",
    "check_payload",
    "check_propose_args",
    "check_vote_args",
    "compute_proposal_key",
    "decode_proposal",
    "get_chain_params",
    "get_council",
    "get_council_member",
    "get_entity_record",
    "get_proposal",
    "get_proposal_count",
    "get_validator_change_heights",
    "get_validator_set",
    "get_validator_set_at",
    "get_zone_record",
]

ErrorCode = types.ErrorCode
MODULE = "governance"
PROPOSAL_LIFETIME_BLOCKS_MAX = 1_000_000
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

_NAME_CHARS_MAX = 128


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
    overlay.put(NEXT_PROPOSAL_KEY, codec.encode(proposal_id + 1))
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
