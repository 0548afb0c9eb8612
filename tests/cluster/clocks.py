"""Wrong wall clocks for cluster tests, and a watch on the chain's time against the real one.

`FileClock` gives one node process a wall clock with an offset that the test can change while
the process runs: libfaketime is preloaded (LD_PRELOAD) and reads the offset from a file on
every call (FAKETIME_TIMESTAMP_FILE, FAKETIME_NO_CACHE).  FAKETIME_DONT_FAKE_MONOTONIC keeps the
monotonic clock true, as a wrong NTP setting or a stepped clock would.  `check_file_clock` runs a
child Python under such a clock and makes sure the preload does what the tests assume.

A caveat of libfaketime 0.9.10 under FAKETIME_DONT_FAKE_MONOTONIC: Python's `time.sleep` fails
with EINVAL (its clock_nanosleep wrapper shifts a monotonic absolute deadline;
wolfcw/libfaketime#426).  The node never calls it (its waits are asyncio's), so it does not
matter here, but a process that sleeps cannot be run this way.

`ChainWatch` is a thread that notes the test's own wall clock when each height is first seen
committed at one node, so that every block's timestamp can be compared with real time.
"""

from __future__ import annotations

import bisect
import glob
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from chainnode.sdk.errors import ClientError
from tests.cluster.conftest import Cluster

FAKETIME_LIBRARY_GLOBS = (
    "/usr/lib/*/faketime/libfaketime.so.1",  # Debian and Ubuntu, by architecture
    "/usr/lib/faketime/libfaketime.so.1",
    "/usr/local/lib/faketime/libfaketime.so.1",
)
PROBE_OFFSET_S = 600
PROBE_TIMEOUT_S = 30.0
WATCH_POLL_S = 0.05
WATCH_POLLS_MAX = 10_000
WATCH_DURATION_S_MAX = 300.0


def find_faketime_library() -> Path | None:
    for pattern in FAKETIME_LIBRARY_GLOBS:
        for match in sorted(glob.glob(pattern)):
            return Path(match)
    return None


class FileClock:
    """The wall clock of one node process: `offset_s` away from the real one, changeable at run time."""

    def __init__(self, library: Path, path: Path) -> None:
        self.library = library
        self.path = path
        self.set_offset(0)

    @property
    def environment(self) -> dict[str, str]:
        """The variables to start the process with."""
        return {
            "LD_PRELOAD": str(self.library),
            "FAKETIME_TIMESTAMP_FILE": str(self.path),
            "FAKETIME_NO_CACHE": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        }

    def set_offset(self, offset_s: int) -> None:
        # Written aside and renamed: libfaketime opens the file on every call and must never
        # read half of it.
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(f"{offset_s:+d}\n")
        os.replace(temporary, self.path)


def check_file_clock(library: Path, directory: Path) -> None:
    """A child Python under a `FileClock` 600 s ahead sees its wall clock skewed, its monotonic clock not."""
    clock = FileClock(library, directory / "probe.faketime")
    clock.set_offset(PROBE_OFFSET_S)
    wall_before, monotonic_before = time.time(), time.monotonic()
    probe = subprocess.run(
        [sys.executable, "-c", "import time; print(time.time(), time.monotonic())"],
        env={**os.environ, **clock.environment},
        capture_output=True,
        text=True,
        timeout=PROBE_TIMEOUT_S,
        check=True,
    )
    wall_after, monotonic_after = time.time(), time.monotonic()
    child_wall, child_monotonic = (float(field) for field in probe.stdout.split())
    assert wall_before + PROBE_OFFSET_S - 1 <= child_wall <= wall_after + PROBE_OFFSET_S + 1, (
        f"{library} did not move the wall clock {PROBE_OFFSET_S} s: {wall_before} -> {child_wall} "
        f"({probe.stderr.strip()})"
    )
    assert monotonic_before <= child_monotonic <= monotonic_after, (
        f"{library} moved the monotonic clock: {child_monotonic} not in {monotonic_before}..{monotonic_after}"
    )


@dataclass(frozen=True, slots=True)
class Sighting:
    height: int
    head_timestamp_ms: int  # the head's block timestamp, as the watched node reported it
    seen_wall_ms: int  # the test's wall clock right after the answer


class ChainWatch:
    """A thread noting the test's wall clock when each height is first seen committed at `node_id`.

    A block's timestamp is checked against the first sighting at or above its height: the block
    was committed by then.  A block is dated at most `drift_ms` after an honest clock that accepted
    it, hence at most that (plus `ahead_allowance_ms`) after its sighting; and at most `drift_ms`
    before that clock when accepted, hence at most that plus the time from its acceptance to its
    sighting (`behind_allowance_ms`) before the sighting.
    """

    def __init__(
        self,
        cluster: Cluster,
        node_id: str,
        *,
        drift_ms: int,
        ahead_allowance_ms: int,
        behind_allowance_ms: int,
    ) -> None:
        self.cluster = cluster
        self.node_id = node_id
        self.ahead_ms_max = drift_ms + ahead_allowance_ms
        self.behind_ms_max = drift_ms + behind_allowance_ms
        self._sightings: list[Sighting] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chain-watch", daemon=True)

    def __enter__(self) -> ChainWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=10.0)
        assert not self._thread.is_alive(), "the chain watcher did not stop"

    def _run(self) -> None:
        client = self.cluster.client(self.node_id, timeout_s=5.0)
        deadline_s = time.monotonic() + WATCH_DURATION_S_MAX
        for _ in range(WATCH_POLLS_MAX):
            if self._stopping.is_set() or time.monotonic() > deadline_s:
                return
            try:
                status = client.get_status()
            except ClientError:
                status = None
            seen_wall_ms = time.time_ns() // 1_000_000
            if status is not None:
                height = int(status["height"])
                with self._lock:
                    if height > (self._sightings[-1].height if self._sightings else 0):
                        self._sightings.append(Sighting(height, int(status["timestamp_ms"]), seen_wall_ms))
            self._stopping.wait(WATCH_POLL_S)

    def get_sightings(self) -> list[Sighting]:
        with self._lock:
            return list(self._sightings)

    def get_first_seen_ms(self, height: int) -> int | None:
        sightings = self.get_sightings()
        position = bisect.bisect_left([sighting.height for sighting in sightings], height)
        return sightings[position].seen_wall_ms if position < len(sightings) else None

    def find_chain_time_problem(self, height: int, timestamp_ms: int) -> str | None:
        seen_wall_ms = self.get_first_seen_ms(height)
        if seen_wall_ms is None:
            return f"block {height} was never seen committed"
        ahead_ms = timestamp_ms - seen_wall_ms
        if ahead_ms > self.ahead_ms_max:
            return f"block {height} is dated {ahead_ms} ms after it was first seen committed"
        if -ahead_ms > self.behind_ms_max:
            return f"block {height} is dated {-ahead_ms} ms before it was first seen committed"
        return None

    def find_sighting_problem(self) -> str | None:
        """The chain time problem of the first head seen so far that has one (cheap; for waits)."""
        for sighting in self.get_sightings():
            problem = self.find_chain_time_problem(sighting.height, sighting.head_timestamp_ms)
            if problem is not None:
                return problem
        return None
