"""The statuses the house reports and compares: of a transaction, a zone and a council proposal.

Each is an `enum.StrEnum`, so a member is the very string the API answers, the CLI prints and
the state stores (`ProposalStatus` is encoded in a proposal's record; `json.dumps` and msgpack
write a member as its value), and a string read back from JSON compares equal to its member.
Code compares against the members, never against bare strings, so a misspelt status is an
`AttributeError` at once instead of a comparison that is silently never true.
"""

from __future__ import annotations

import enum


class TxStatus(enum.StrEnum):
    """Where a transaction is, as `GET /v1/transactions/{hash}` answers."""

    PENDING = "pending"  # admitted to the mempool, not yet in a block
    COMMITTED = "committed"  # in a committed block (its receipt may still report a failure)
    REJECTED = "rejected"  # refused at admission; this node remembers why for a while
    UNKNOWN = "unknown"  # never seen by this node, or forgotten


class ZoneStatus(enum.StrEnum):
    """A zone's standing (`identity_records.ZoneRecord.status`); only an active zone's entities may sign."""

    ACTIVE = "active"
    SUSPENDED = "suspended"  # the council may reinstate it
    REMOVED = "removed"  # permanently; its id is never admitted again


class ProposalStatus(enum.StrEnum):
    """A council proposal's status.  `EXPIRED` is never stored: it is how an open proposal past its
    expiry height reads (`governance.Proposal.get_status_at`)."""

    OPEN = "open"
    EXECUTED = "executed"
    REJECTED = "rejected"
    FAILED = "failed"  # approved, but its change no longer held when it was applied
    EXPIRED = "expired"


STORED_PROPOSAL_STATUSES = frozenset(
    {ProposalStatus.OPEN, ProposalStatus.EXECUTED, ProposalStatus.REJECTED, ProposalStatus.FAILED}
)
