"""Statuses are string enums: what the API answers and the state stores stays the same strings."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from chainnode.app import governance
from chainnode.core import codec
from chainnode.core.errors import DecodeError
from chainnode.core.statuses import ProposalStatus, TxStatus, ZoneStatus


@pytest.mark.parametrize(
    ("status", "text"),
    [
        (TxStatus.PENDING, "pending"),
        (TxStatus.COMMITTED, "committed"),
        (TxStatus.REJECTED, "rejected"),
        (TxStatus.UNKNOWN, "unknown"),
        (ZoneStatus.ACTIVE, "active"),
        (ZoneStatus.SUSPENDED, "suspended"),
        (ZoneStatus.REMOVED, "removed"),
        (ProposalStatus.OPEN, "open"),
        (ProposalStatus.EXECUTED, "executed"),
        (ProposalStatus.REJECTED, "rejected"),
        (ProposalStatus.FAILED, "failed"),
        (ProposalStatus.EXPIRED, "expired"),
    ],
)
def test_a_status_is_written_as_its_string(status: str, text: str) -> None:
    assert status == text and f"{status}" == text and str(status) == text
    assert json.dumps({"status": status}) == json.dumps({"status": text})
    assert codec.encode((1, status)) == codec.encode((1, text))


PROPOSAL = governance.Proposal(
    proposal_id=1,
    kind="suspend_zone",
    payload=("beijing",),
    proposer="m1",
    created_height=3,
    expires_at_height=10,
    approvals=("m1",),
    rejections=(),
    status=ProposalStatus.OPEN,
    outcome="",
    closed_height=0,
)


def test_a_proposal_keeps_its_bytes_and_reads_its_status_back_as_the_enum() -> None:
    encoded = PROPOSAL.encode()
    assert encoded == replace(PROPOSAL, status="open").encode()  # type: ignore[arg-type]
    decoded = governance.decode_proposal(encoded)
    assert decoded == PROPOSAL and type(decoded.status) is ProposalStatus
    assert PROPOSAL.get_status_at(10) is ProposalStatus.OPEN
    assert PROPOSAL.get_status_at(11) is ProposalStatus.EXPIRED


@pytest.mark.parametrize("status", ["expired", "closed", "OPEN"])
def test_a_proposal_stored_with_another_status_is_refused(status: str) -> None:
    encoded = replace(PROPOSAL, status=status).encode()  # type: ignore[arg-type]
    with pytest.raises(DecodeError, match="proposal status"):
        governance.decode_proposal(encoded)
