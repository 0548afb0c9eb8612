"""`chainnode status`: what an operator watches on a node, from its public API.

Theory of operation: a `StatusSample` is one reading of `GET /v1/status` and `GET /readyz`
with the local monotonic time it was taken at; `compute_view` turns two consecutive samples
into the view shown (rates need two readings: transactions and blocks per second are the
differences of the node's counters over the time between them).  A node restarted between two
readings has counters that went down: its rates are then unknown (None), never negative.
Pure apart from `take_sample`, so the view is tested without a node; the command renders the
same view as a JSON document, a readable view, or a live terminal view (`--watch`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from chainnode.sdk.client import Client
from chainnode.sdk.errors import ClientError


@dataclass(frozen=True, slots=True)
class StatusSample:
    """One reading of a node."""

    taken_s: float  # time.monotonic() when the status answered
    status: dict[str, Any]  # the /v1/status document
    ready: bool  # /readyz answered 200


def take_sample(client: Client) -> StatusSample:
    """Read the node's status and readiness; `ClientError` if the status cannot be read."""
    status = client.get_status()
    taken_s = time.monotonic()
    try:
        client.send("GET", "/readyz")
        ready = True
    except ClientError as error:
        if error.status is None:
            raise
        ready = False
    return StatusSample(taken_s, status, ready)


def compute_rate(previous: StatusSample | None, current: StatusSample, field: str) -> float | None:
    """Per second, of the counter `field` between the two samples; None without a previous
    sample, with no time between them, or when the counter went down (the node restarted)."""
    if previous is None:
        return None
    elapsed_s = current.taken_s - previous.taken_s
    before, after = previous.status.get(field), current.status.get(field)
    if elapsed_s <= 0 or not isinstance(before, int) or not isinstance(after, int) or after < before:
        return None
    return round((after - before) / elapsed_s, 1)


def compute_view(previous: StatusSample | None, current: StatusSample) -> dict[str, Any]:
    """The document `chainnode status` prints (stable field names)."""
    status = current.status
    peers = list(status.get("peers", []))
    return {
        "node_id": status.get("node_id"),
        "chain_id": status.get("chain_id"),
        "ready": current.ready,
        "height": status.get("height"),
        "view": status.get("view"),
        "changing_view": status.get("changing_view"),
        "validator_index": status.get("validator_index"),
        "peers_connected": len(peers),
        "peers": peers,
        "mempool_txs": status.get("mempool_txs"),
        "tx_per_s": compute_rate(previous, current, "committed_txs_since_start"),
        "blocks_per_s": compute_rate(previous, current, "height"),
        "timestamp_ms": status.get("timestamp_ms"),
        "clock_offset_ms": status.get("clock_offset_ms"),
        "certificate_warning_days": status.get("certificate_warning_days"),
        "expiring_certificates": [
            {
                "subject": item.get("subject"),
                "kind": item.get("kind"),
                "zone": item.get("zone"),
                "not_after_ms": item.get("not_after_ms"),
                "expires_in_days": round(int(item.get("expires_in_ms", 0)) / 86_400_000, 1),
            }
            for item in status.get("expiring_certificates", [])
        ],
    }
