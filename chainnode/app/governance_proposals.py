"""The council's proposals as governance keeps them: the `Proposal` record, its encoding and
decoder, its keys and its readers.  Pure: no I/O.

Theory of operation: proposals get sequential ids from 1; `gov/next` holds the next id, so the
count is one point read, and `gov/p/<id:u64be>` holds `Proposal.encode()` (tag `TAG_PROPOSAL`,
version 1).  A stored proposal is open, executed, failed or rejected, never expired: expiry is
read from the height (`Proposal.get_status_at`).  The rules that create and close proposals are
in `chainnode.app.governance`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chainnode.app.governance_state import get_decoded
from chainnode.app.state import StateReader
from chainnode.core import codec, tags
from chainnode.core.codec import expect_int, expect_str, expect_tuple
from chainnode.core.errors import DecodeError
from chainnode.core.statuses import STORED_PROPOSAL_STATUSES, ProposalStatus

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
NEXT_PROPOSAL_KEY = b"gov/next"
_PROPOSAL_PREFIX = b"gov/p/"


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
    return get_decoded(state, compute_proposal_key(proposal_id), decode_proposal, f"proposal {proposal_id}")


def get_proposal_count(state: StateReader) -> int:
    """How many proposals were ever made; their ids are 1..count."""
    next_id = get_decoded(
        state, NEXT_PROPOSAL_KEY, lambda data: expect_int(codec.decode(data), "next id", 1), "next id"
    )
    return 0 if next_id is None else next_id - 1
