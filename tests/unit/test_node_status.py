"""`chainnode status`'s view from two readings (`chainnode.tools.node_status`), without a node."""

from __future__ import annotations

from typing import Any

import pytest

from chainnode.tools.node_status import StatusSample, compute_rate, compute_view


def sample(taken_s: float, height: int, committed: int, **status: Any) -> StatusSample:
    return StatusSample(taken_s, {"height": height, "committed_txs_since_start": committed, **status}, True)


@pytest.mark.parametrize(
    ("previous", "current", "rate"),
    [
        (None, sample(1.0, 5, 100), None),  # one reading: no rate
        (sample(1.0, 5, 100), sample(3.0, 9, 500), 200.0),
        (sample(1.0, 5, 100), sample(1.0, 5, 100), None),  # no time between them
        (sample(1.0, 5, 900), sample(2.0, 6, 10), None),  # the node restarted: its counter went down
        (sample(1.0, 5, 100), sample(4.0, 9, 101), 0.3),  # rounded to a tenth
    ],
)
def test_transactions_per_second(
    previous: StatusSample | None, current: StatusSample, rate: float | None
) -> None:
    assert compute_rate(previous, current, "committed_txs_since_start") == rate


def test_the_view_counts_peers_and_gives_certificates_in_days() -> None:
    expiring = {
        "subject": "bank-01",
        "kind": "entity",
        "zone": "beijing",
        "not_after_ms": 5,
        "expires_in_ms": 86_400_000 * 3,
    }
    view = compute_view(
        sample(0.0, 1, 0),
        sample(2.0, 5, 10, peers=["validator-02", "validator-03"], expiring_certificates=[expiring]),
    )
    assert (view["peers_connected"], view["tx_per_s"], view["blocks_per_s"]) == (2, 5.0, 2.0)
    assert view["expiring_certificates"] == [
        {"subject": "bank-01", "kind": "entity", "zone": "beijing", "not_after_ms": 5, "expires_in_days": 3.0}
    ]
