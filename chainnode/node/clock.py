"""The node's two clocks: the wall clock dates blocks and checks certificates' validity; the
monotonic clock drives every timer (see `consensus.engine`, Time)."""

from __future__ import annotations

import time


def get_time_ms() -> int:
    """Wall-clock Unix milliseconds: may step either way."""
    return time.time_ns() // 1_000_000


def get_monotonic_ms() -> int:
    """Monotonic milliseconds: never steps; only differences mean anything."""
    return time.monotonic_ns() // 1_000_000
