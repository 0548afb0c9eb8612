"""What the node knows about its own health: named readiness problems and the disk-space watch.

Theory of operation
-------------------
A node is *ready* when nothing keeps it from serving: `Readiness` is a registry of named
checks, each a function that returns None or a sentence saying what is wrong.  Every part
of the node that can make it unfit registers its own check once, under a stable name
(`STORAGE_FAILED`, `DISK_FULL`, `DISK_SPACE_LOW`, `CATCHING_UP`, ...); `/readyz` answers 503
with every problem found, by name, and a new condition is one more `add_check` call.  A check
registered with `blocks_writes` means the node cannot write its ledger: then `/v1/health`
(`/healthz`) fails too and submissions are refused, because a node that cannot persist a
block must not look alive to an operator nor take transactions it could never commit.
Checks run when asked (each API call), so they read state the node keeps anyway and do no
I/O; what needs I/O (the free space) is measured on the node's timer and read from there.

`DiskSpaceWatch` measures the free space of the filesystem under the data directory with
`os.statvfs` (the bytes an unprivileged writer may still use: `f_bavail`), every
`DISK_CHECK_INTERVAL_MS` on the node's timer loop.  It logs once per change of state (a
WARNING when the free space falls below the configured `[storage] disk_free_bytes_min`, an
ERROR when the disk is full, INFO when it recovers), never once per check.  Below
`DISK_FREE_BYTES_WRITABLE_MIN` the disk counts as full: the next commit would fail, and an
idle node would otherwise not learn that until then.

Being current is two checks: `NO_QUORUM` (`find_quorum_problem`: this node, if it votes, and the
validators it is connected to are fewer than a quorum, so it could neither help commit a block
nor learn that one committed) and `CATCHING_UP` (`chainnode.node.peer_reports`: a peer reported a
height well above ours, or no peer has reported one yet, as at start), so a node started late is
ready only once it has heard its peers and caught up with them.

A write that actually fails is not this module's business: the node stops on it at once
(see `chainnode.node.runtime`); `describe_storage_failure` only words the error for its one log line
and its exit message.
"""

from __future__ import annotations

import enum
import logging
import os
from collections.abc import Callable, Collection
from pathlib import Path

from chainnode.api.service import ReadinessProblem
from chainnode.core import metrics, quorum
from chainnode.core.errors import DiskFullError, StorageError

log = logging.getLogger("chainnode.node.health")

# The names of the node's readiness problems, as `/readyz` reports them (stable across releases).
STORAGE_FAILED = "storage_failed"  # a ledger write failed: the node is stopping
DISK_FULL = "disk_full"  # less than DISK_FREE_BYTES_WRITABLE_MIN free under the data directory
DISK_SPACE_LOW = "disk_space_low"  # less than `[storage] disk_free_bytes_min` free
DISK_SPACE_UNKNOWN = "disk_space_unknown"  # statvfs failed on the data directory
CATCHING_UP = "catching_up"  # peers report heights well above ours
CLOCK_SKEW = "clock_skew"  # our wall clock is further from our peers' than a block's time may drift
NO_QUORUM = "no_quorum"  # this node and the validators it is connected to are fewer than a quorum

DISK_CHECK_INTERVAL_MS = 5_000
# Below this the next block might not fit (a block may hold 4 MiB of transactions by default,
# and its receipts and index entries come on top): the disk counts as full, and the node
# refuses to start on it.
DISK_FREE_BYTES_WRITABLE_MIN = 8 * 1024 * 1024

FindProblem = Callable[[], str | None]


class Readiness:
    """A registry of named readiness checks; each part of the node registers its own."""

    def __init__(self) -> None:
        self._checks: dict[str, tuple[FindProblem, bool]] = {}

    def add_check(self, name: str, find_problem: FindProblem, *, blocks_writes: bool = False) -> None:
        """Register `find_problem` (None when all is well) under `name`, once."""
        if name in self._checks:
            raise AssertionError(f"a readiness check named {name!r} is registered twice")
        self._checks[name] = (find_problem, blocks_writes)

    def find_problems(self) -> list[ReadinessProblem]:
        """Every problem found now, in registration order; empty when the node is ready."""
        problems = []
        for name, (find_problem, blocks_writes) in self._checks.items():
            message = find_problem()
            if message is not None:
                problems.append(ReadinessProblem(name, message, blocks_writes))
        return problems


def find_quorum_problem(
    connected: Collection[str], validators: quorum.ValidatorSet, own_id: str
) -> str | None:
    """Not ready while this node (if it votes) and the validators it has a live connection to
    are fewer than a quorum: it could neither help commit a block nor learn that one committed,
    so what it serves may be stale however recent its last block looks."""
    reachable = sum(1 for entity_id in connected if validators.index_of(entity_id) is not None)
    voting = 1 if validators.index_of(own_id) is not None else 0
    if reachable + voting >= validators.quorum:
        return None
    return (
        f"connected to {reachable} of {validators.size} validators (a quorum is {validators.quorum}"
        f"{', this node included' if voting else ''})"
    )


def get_free_bytes(path: Path) -> int:
    """Bytes an unprivileged process may still write on the filesystem that holds `path`."""
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


def check_disk_writable(path: Path) -> None:
    """Raise `DiskFullError` naming `path` when its filesystem is full (checked before the
    ledger opens: opening LevelDB writes a new log and manifest, which would fail anyway)."""
    try:
        free_bytes = get_free_bytes(path)
    except OSError:
        return  # opening the ledger will say what is wrong with the directory
    if free_bytes < DISK_FREE_BYTES_WRITABLE_MIN:
        raise DiskFullError(
            f"the disk under {path} is full ({free_bytes} bytes free, the node needs at least "
            f"{DISK_FREE_BYTES_WRITABLE_MIN}): free some space there, then start the node again"
        )


class DiskState(enum.Enum):
    OK = "ok"
    LOW = "low"
    FULL = "full"
    UNKNOWN = "unknown"


class DiskSpaceWatch:
    """The free space under one directory, measured by `check` on the node's timer."""

    def __init__(self, path: Path, *, free_bytes_min: int) -> None:
        self.path = path
        self.free_bytes_min = free_bytes_min
        self.free_bytes: int | None = None  # the last measurement; None before the first
        self.state = DiskState.OK
        self._error = ""  # why the last measurement failed

    def check(self) -> None:
        """Measure once; log when the state changes (not at every check)."""
        try:
            self.free_bytes = get_free_bytes(self.path)
        except OSError as error:
            self.free_bytes = None
            self._error = str(error)
            self._set_state(DiskState.UNKNOWN)
            return
        if self.free_bytes < DISK_FREE_BYTES_WRITABLE_MIN:
            self._set_state(DiskState.FULL)
        elif self.free_bytes < self.free_bytes_min:
            self._set_state(DiskState.LOW)
        else:
            self._set_state(DiskState.OK)

    def _set_state(self, state: DiskState) -> None:
        if state is self.state:
            return
        self.state = state
        if state is DiskState.UNKNOWN:
            log.warning("cannot measure the free space under %s: %s", self.path, self._error)
        elif state is DiskState.FULL:
            log.error(
                "the disk under %s is full (%d bytes free): the node cannot write its ledger and "
                "refuses transactions",
                self.path,
                self.free_bytes,
            )
        elif state is DiskState.LOW:
            log.warning(
                "low disk space under %s: %d bytes free, below [storage] disk_free_bytes_min = %d",
                self.path,
                self.free_bytes,
                self.free_bytes_min,
            )
        else:
            log.info("disk space under %s is back to %d bytes free", self.path, self.free_bytes)

    def find_full_problem(self) -> str | None:
        if self.state is not DiskState.FULL:
            return None
        return f"the disk under {self.path} is full ({self.free_bytes} bytes free)"

    def find_low_problem(self) -> str | None:
        if self.state is not DiskState.LOW:
            return None
        return f"{self.free_bytes} bytes free under {self.path}, below the minimum of {self.free_bytes_min}"

    def find_unknown_problem(self) -> str | None:
        if self.state is not DiskState.UNKNOWN:
            return None
        return f"cannot measure the free space under {self.path}: {self._error}"

    def samples(self) -> list[metrics.Sample]:
        samples = [
            metrics.Sample(
                "chainnode_disk_free_bytes_min",
                "gauge",
                "Free space below which the node reports disk_space_low ([storage] disk_free_bytes_min).",
                self.free_bytes_min,
            )
        ]
        if self.free_bytes is not None:
            samples.append(
                metrics.Sample(
                    "chainnode_disk_free_bytes",
                    "gauge",
                    "Free space on the filesystem of the data directory, at the last check.",
                    self.free_bytes,
                )
            )
        return samples


def describe_storage_failure(error: Exception, data_dir: Path) -> StorageError:
    """The typed error a failed ledger write stops the node with; its message names the data
    directory and carries the operating system's words (LevelDB's: "IO error: <file>: No
    space left on device"), which a typed error from the ledger keeps as its cause."""
    if not isinstance(error, StorageError):
        return StorageError(f"a write to the ledger under {data_dir} failed: {_get_text(error)}")
    message = error.message
    if error.__cause__ is not None and _get_text(error.__cause__) not in message:
        message = f"{message} ({_get_text(error.__cause__)})"
    if str(data_dir) not in message:
        message = f"{message} (data directory {data_dir})"
    return error if message == error.message else StorageError(message, code=error.code)


def _get_text(error: BaseException) -> str:
    # plyvel puts LevelDB's status message into the exception as bytes.
    if len(error.args) == 1 and isinstance(error.args[0], bytes):
        return error.args[0].decode(errors="replace")
    return str(error)


class WarningGate:
    """Lets one warning through per interval and counts the ones it holds back.

    `admit(now_ms)` answers None for a warning to hold back, else how many were held back since
    the last one let through (0 for the first)."""

    def __init__(self, interval_ms: int) -> None:
        self.interval_ms = interval_ms
        self._passed_ms: int | None = None
        self._held = 0

    def admit(self, now_ms: int) -> int | None:
        if self._passed_ms is not None and now_ms - self._passed_ms < self.interval_ms:
            self._held += 1
            return None
        held, self._held, self._passed_ms = self._held, 0, now_ms
        return held
