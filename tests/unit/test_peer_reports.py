"""`PeerReports`: a peer's status that arrives after a newer one is stale and is not taken."""

from __future__ import annotations

from chainnode.node.peer_reports import CATCHING_UP_BLOCKS_MIN, PeerReports

DRIFT_MS = 10_000


def test_a_status_older_than_one_taken_changes_neither_height_nor_clock() -> None:
    # A node restarted at height 38 while its peers went on to 50.  The peer's status of
    # before (38, kept from a write that failed when the connection dropped) comes after the
    # fresh one it sends first on connecting.
    reports = PeerReports(DRIFT_MS)
    own_height = 38
    assert reports.note("a", height=50, peer_wall_ms=2_000_000, own_wall_ms=2_000_000, now_ms=500)
    assert not reports.note("a", height=38, peer_wall_ms=1_990_000, own_wall_ms=2_000_010, now_ms=510)
    problem = reports.find_catch_up_problem(own_height, now_ms=520)
    assert problem == "catching up: at height 38, a peer reported height 50"
    assert reports.clocks.report(now_ms=520).peers == {"a": 0}  # not -10,010: the stale one
    # The next fresh status is taken; a caught-up node is ready.
    assert reports.note("a", height=51, peer_wall_ms=2_001_000, own_wall_ms=2_001_000, now_ms=1_500)
    assert reports.find_catch_up_problem(51 - CATCHING_UP_BLOCKS_MIN + 1, now_ms=1_510) is None


def test_reports_of_each_peer_are_ordered_by_that_peer_s_clock_alone() -> None:
    reports = PeerReports(DRIFT_MS)
    assert reports.note("a", height=10, peer_wall_ms=5_000, own_wall_ms=5_000, now_ms=0)
    # Another peer's clock is its own: an earlier wall time there is not stale.
    assert reports.note("b", height=12, peer_wall_ms=4_000, own_wall_ms=5_000, now_ms=0)
    assert reports.note("a", height=11, peer_wall_ms=5_000, own_wall_ms=5_000, now_ms=1)  # same time: taken
    assert reports.find_catch_up_problem(12, now_ms=2) is None
