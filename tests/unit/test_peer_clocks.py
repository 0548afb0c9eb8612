"""`PeerClocks`: our clock is judged against the median of our peers', not against any one."""

from __future__ import annotations

from chainnode.node.health import WarningGate
from chainnode.node.peer_clocks import PEER_CLOCK_FRESH_MS, PeerClocks

DRIFT_MS = 10_000


def clocks_with(offsets: dict[str, int], *, heard_ms: int = 0) -> PeerClocks:
    clocks = PeerClocks(DRIFT_MS)
    for peer, offset in offsets.items():
        clocks.note(peer, peer_wall_ms=1_000_000 + offset, own_wall_ms=1_000_000, now_ms=heard_ms)
    return clocks


def test_one_peer_with_a_wrong_clock_does_not_make_ours_wrong() -> None:
    report = clocks_with({"a": 3, "b": -2, "c": 600_000}).report(now_ms=100)
    assert report.offset_ms == 3 and not report.is_skewed
    assert report.peers == {"a": 3, "b": -2, "c": 600_000}


def test_our_slow_clock_moves_every_offset() -> None:
    report = clocks_with({"a": 600_010, "b": 599_990, "c": 600_000}).report(now_ms=100)
    assert report.is_skewed and report.offset_ms == 600_000
    line = report.describe()
    assert "our clock is 600000 ms behind the median of 3 peers' clocks" in line
    assert "a +600010 ms" in line and "at most 10000 ms" in line


def test_our_fast_clock_and_the_drift_boundary() -> None:
    assert clocks_with({"a": -DRIFT_MS, "b": -DRIFT_MS}).report(now_ms=0).is_skewed is False
    report = clocks_with({"a": -DRIFT_MS - 1, "b": -DRIFT_MS - 1}).report(now_ms=0)
    assert report.is_skewed and "ahead of" in report.describe()


def test_stale_and_forgotten_peers_do_not_count() -> None:
    clocks = clocks_with({"a": 600_000, "b": 600_000})
    assert clocks.report(now_ms=PEER_CLOCK_FRESH_MS).is_skewed
    assert clocks.report(now_ms=PEER_CLOCK_FRESH_MS + 1).offset_ms is None
    clocks.forget("a")
    assert clocks.report(now_ms=0).peers == {"b": 600_000}


def test_two_peers_one_of_them_wrong_do_not_blame_our_clock() -> None:
    # With one validator down and another's clock 10 minutes fast, an honest node hears two
    # peers: an average of their offsets would say our clock is 5 minutes slow.
    report = clocks_with({"a": 3, "b": 600_000}).report(now_ms=0)
    assert not report.is_skewed
    assert report.offset_ms == 3  # the lower median, never an average


def test_one_peer_alone_cannot_tell_whose_clock_is_wrong() -> None:
    assert not clocks_with({"a": 600_000}).report(now_ms=0).is_skewed


def test_a_split_majority_is_no_verdict() -> None:
    # Two peers ahead, two behind: no direction has more than half.
    report = clocks_with({"a": 600_000, "b": 600_000, "c": -600_000, "d": -600_000}).report(now_ms=0)
    assert not report.is_skewed


def test_the_warning_gate_lets_one_through_per_interval_and_counts_the_rest() -> None:
    gate = WarningGate(5_000)
    assert gate.admit(0) == 0
    assert [gate.admit(ms) for ms in (1, 2_000, 4_999)] == [None, None, None]
    assert gate.admit(5_000) == 3
    assert gate.admit(9_999) is None and gate.admit(10_000) == 1
