"""How far our wall clock is from our peers': the node's view of its own clock's health.

Every peer sends its wall clock in its status frame once a second (`wire.Status.wall_ms`).  The
offset of a peer is its clock minus ours when the frame arrives; on the networks this node runs
on, the frame's transit time (milliseconds) is small against the drift a block timestamp may
have (`timestamp_drift_ms_max`, seconds), so it is not estimated.  Our clock is judged against
the majority of the fresh peers, never against any one: it is wrong when at least two peers
are heard and more than half of them each differ from it by more than the drift, in the same
direction.  A single peer with a wrong clock is outvoted (also when only two peers are heard,
one of them wrong: an average of the two would blame us for half its error), while our own
wrong clock moves every offset by the same amount.  The node reports the median offset (the
lower middle one, never an average: status, metric), refuses readiness while its clock is
judged wrong, and logs at WARNING when it is, naming the peers and their offsets.  Pure: time
arrives as arguments.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

PEER_CLOCK_FRESH_MS = 10_000  # an offset older than this (monotonic) is not counted


@dataclass(frozen=True, slots=True)
class ClockReport:
    """Our clock against our peers' at one moment."""

    offset_ms: int | None  # the lower median of (peer clock - our clock) over fresh peers; None: no peer
    peers: dict[str, int]  # each fresh peer's offset
    drift_ms_max: int

    @property
    def is_skewed(self) -> bool:
        """More than half of at least two fresh peers are off by more than the drift, one way."""
        ahead = sum(1 for offset in self.peers.values() if offset > self.drift_ms_max)
        behind = sum(1 for offset in self.peers.values() if offset < -self.drift_ms_max)
        return len(self.peers) >= 2 and 2 * max(ahead, behind) > len(self.peers)

    def describe(self) -> str:
        """One line for an operator: which way our clock is off, by how much, against whom."""
        assert self.offset_ms is not None
        direction = "behind" if self.offset_ms > 0 else "ahead of"
        peers = ", ".join(f"{peer} {offset:+d} ms" for peer, offset in sorted(self.peers.items()))
        return (
            f"our clock is {abs(self.offset_ms)} ms {direction} the median of {len(self.peers)} peers' "
            f"clocks (at most {self.drift_ms_max} ms allowed; peer minus ours: {peers})"
        )


class PeerClocks:
    """The latest clock offset of each peer, with the monotonic time it was heard."""

    def __init__(self, drift_ms_max: int) -> None:
        self.drift_ms_max = drift_ms_max
        self._offsets: dict[str, tuple[int, int]] = {}  # peer -> (offset ms, heard at monotonic ms)

    def note(self, peer: str, *, peer_wall_ms: int, own_wall_ms: int, now_ms: int) -> None:
        self._offsets[peer] = (peer_wall_ms - own_wall_ms, now_ms)

    def forget(self, peer: str) -> None:
        self._offsets.pop(peer, None)

    def report(self, now_ms: int) -> ClockReport:
        fresh = {
            peer: offset
            for peer, (offset, heard_ms) in self._offsets.items()
            if now_ms - heard_ms <= PEER_CLOCK_FRESH_MS
        }
        median = statistics.median_low(fresh.values()) if fresh else None
        return ClockReport(median, fresh, self.drift_ms_max)
