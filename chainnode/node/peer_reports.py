"""What peers tell us about themselves once a second (their height and their wall clock), and
what the node concludes: whether it is catching up, whether its own clock is wrong.

Both feed `/readyz` (`catching_up`, `clock_skew`); a wrong clock is also logged at WARNING, at
once and then once a minute while it lasts (see `chainnode.node.peer_clocks` for how our clock
is judged against the median of our peers').
"""

from __future__ import annotations

import logging

from chainnode.node.peer_clocks import PeerClocks

log = logging.getLogger("chainnode.node.peer_reports")

# `catching_up` while a peer reported (within PEER_HEIGHT_FRESH_MS) a height this far above
# our head.  Peers report once a second, so a node that keeps up is rarely more than the
# blocks of that second behind a report, and usually ahead of it.
CATCHING_UP_BLOCKS_MIN = 10
PEER_HEIGHT_FRESH_MS = 10_000
CLOCK_WARNING_INTERVAL_MS = 60_000  # while our clock stays wrong, say so this often


class PeerReports:
    def __init__(self, drift_ms_max: int) -> None:
        self.clocks = PeerClocks(drift_ms_max)
        self._heights: dict[str, tuple[int, int]] = {}  # peer -> (reported height, monotonic ms)
        self._newest_wall_ms: dict[str, int] = {}  # peer -> its clock in the newest status taken
        self._clock_warned_ms: int | None = None  # monotonic ms of the last clock warning

    def note(self, peer: str, *, height: int, peer_wall_ms: int, own_wall_ms: int, now_ms: int) -> bool:
        """Take a peer's status; False (ignored) when it is older than one already taken.

        A status can arrive late: one whose write failed when the connection to us dropped is
        sent again on the next connection, after the fresh one the peer sends first on
        connecting (`Traffic.on_peer_connected`).  Dated by the peer's own clock, it is older
        than that one, and taken it would tell a node just restarted behind its peers that they
        are where it is (ready while blocks behind) and skew its clock reading by the time it
        was away.  A peer whose clock steps back is not heard until it passes its last status
        again (its height report expires meanwhile: the node is then not ready, never wrongly
        ready)."""
        newest = self._newest_wall_ms.get(peer)
        if newest is not None and peer_wall_ms < newest:
            return False
        self._newest_wall_ms[peer] = peer_wall_ms
        self._heights[peer] = (height, now_ms)
        self.clocks.note(peer, peer_wall_ms=peer_wall_ms, own_wall_ms=own_wall_ms, now_ms=now_ms)
        return True

    def find_catch_up_problem(self, own_height: int, now_ms: int) -> str | None:
        heights = [
            height for height, heard_ms in self._heights.values() if now_ms - heard_ms <= PEER_HEIGHT_FRESH_MS
        ]
        if not heights:
            # Not one peer has said its height yet (at start, or cut off): nothing says we are
            # caught up, so a node started late is never ready before its first peer report.
            return f"catching up: at height {own_height}, no peer has reported its height yet"
        if max(heights) - own_height < CATCHING_UP_BLOCKS_MIN:
            return None
        return f"catching up: at height {own_height}, a peer reported height {max(heights)}"

    def find_clock_problem(self, now_ms: int) -> str | None:
        report = self.clocks.report(now_ms)
        return report.describe() if report.is_skewed else None

    def warn_about_clock(self, now_ms: int) -> None:
        """Warn while our clock disagrees with our peers' (at once, then once a minute)."""
        report = self.clocks.report(now_ms)
        if not report.is_skewed:
            if self._clock_warned_ms is not None:
                log.info("our clock agrees with our peers' again (offset %s ms)", report.offset_ms)
            self._clock_warned_ms = None
            return
        if self._clock_warned_ms is None or now_ms - self._clock_warned_ms >= CLOCK_WARNING_INTERVAL_MS:
            self._clock_warned_ms = now_ms
            log.warning("clock: %s; our blocks will be refused and we refuse theirs", report.describe())
