"""Opening a LevelDB database (plyvel) and typing what LevelDB reports.

Theory of operation
-------------------
LevelDB reports a failure as a status with a message; plyvel raises `IOError`
for every OS error and `CorruptionError` for a checksum or format failure.
`classify_storage_error` reads the message and returns the typed error of
`chainnode.core.errors` for what it is: `StorageLockedError`, `DiskFullError`,
`StoragePermissionError`, `StorageCorruptError` (or plain `StorageError`), with
the database's path and LevelDB's message, which names the OS error.  The
ledger calls it at every open, read and write.

`open_database` opens with `paranoid_checks` and then compares the size of
every table file with the size the manifest recorded: LevelDB opens a table
file only when something first reads it, so a truncated one would open fine and
fail at some later read.

`claim_path` keeps one handle per ledger in a process (LevelDB's own check for a
second handle drops the process's lock; see the comment on `_open_paths`).
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

import plyvel

from chainnode.core.errors import (
    DiskFullError,
    StorageCorruptError,
    StorageError,
    StorageLockedError,
    StoragePermissionError,
)


def classify_storage_error(error: plyvel.Error, path: Path, action: str) -> StorageError:
    """The typed error for a LevelDB failure at `path`, by what it is.

    LevelDB reports a status with a message (plyvel raises `IOError` for every OS error,
    `CorruptionError` for a checksum or format failure), so the kind is read from the
    message: the strerror text of the OS error, or LevelDB's "Corruption:".  The order
    matters: an OS error on the LOCK file names that file, so "Permission denied" and "No
    space left" are recognized before the lock.  `action` says what failed ("open", "read
    from", "write to").
    """
    detail = _describe_error(error)
    lowered = detail.lower()
    where = f"the ledger database at {path}"
    if isinstance(error, plyvel.CorruptionError) or _is_corruption(lowered):
        return StorageCorruptError(
            f"cannot {action} {where}: its files are damaged (a disk or filesystem fault, or files "
            f"changed behind the node's back); the node must not serve it: rebuild it from the "
            f"peers (`chainnode node run --rebuild`) [{detail}]"
        )
    if "no space left on device" in lowered:
        return DiskFullError(f"cannot {action} {where}: the disk is full [{detail}]")
    if "permission denied" in lowered or "read-only file system" in lowered:
        return StoragePermissionError(f"cannot {action} {where}: permission denied [{detail}]")
    if _MENTIONS_LOCK.search(detail) or "resource temporarily unavailable" in lowered:
        return StorageLockedError(
            f"cannot {action} {where}: it is locked by another process or handle "
            f"(is a node already running on it?) [{detail}]"
        )
    return StorageError(f"cannot {action} {where} [{detail}]")


# LevelDB's lock failure reads "lock /path/LOCK: <OS error>".  Not "block" (a damaged block,
# the `blocks` directory), and not any error about the LOCK file: a missing directory gives
# "NotFound: /path/LOCK: No such file or directory".
_MENTIONS_LOCK = re.compile(r"\block |already held by process")


def _describe_error(error: plyvel.Error) -> str:
    """LevelDB's message (plyvel passes it as bytes)."""
    detail = error.args[0] if error.args else ""
    return detail.decode(errors="replace") if isinstance(detail, bytes) else str(detail)


def _is_corruption(lowered: str) -> bool:
    # A table file that vanished from under an open database is damage too, not an OS mishap.
    missing_table = "no such file or directory" in lowered and (".ldb" in lowered or ".sst" in lowered)
    return "corruption" in lowered or "checksum mismatch" in lowered or missing_table


def open_database(path: Path, *, create: bool, **options: int | str | None) -> plyvel.DB:
    try:
        # `paranoid_checks`: a damaged write-ahead log fails the open instead of being
        # skipped (LevelDB would otherwise drop every batch in the rest of the damaged 32 KB
        # block, acknowledged ones included); table index blocks are checksummed when a
        # table is opened; and a compaction that meets damage stops every later write.
        database = plyvel.DB(str(path), create_if_missing=create, paranoid_checks=True, **options)
    except plyvel.Error as error:
        raise classify_storage_error(error, path, "open") from error
    problem = _find_table_file_problem(database, path)
    if problem is not None:
        database.close()
        raise StorageCorruptError(f"cannot open the ledger database at {path}: {problem}")
    return database


_TABLE_FILE = re.compile(rb"^ (\d+):(\d+)\[", re.MULTILINE)  # " number:size[" in leveldb.sstables


def _find_table_file_problem(database: plyvel.DB, path: Path) -> str | None:
    """A table file the manifest lists whose size on disk is not the size LevelDB wrote, described.

    LevelDB opens a table file only when a read or compaction first needs it, so a truncated
    one would otherwise open fine and fail at some later read.  One `stat` per file.
    """
    listing = database.get_property(b"leveldb.sstables") or b""
    for number, size in _TABLE_FILE.findall(listing):
        candidates = [path / f"{int(number):06d}.{suffix}" for suffix in ("ldb", "sst")]
        found = next((candidate for candidate in candidates if candidate.exists()), None)
        if found is None:
            return f"its table file {candidates[0].name} is missing"
        size_bytes = found.stat().st_size
        if size_bytes != int(size):
            return (
                f"its table file {found.name} holds {size_bytes} bytes where LevelDB wrote {int(size)} "
                "(truncated or overwritten)"
            )
    return None


# LevelDB refuses a second handle on a database in the same process, but to find out it
# opens the LOCK file and then closes it, and closing any descriptor of a file drops every
# POSIX lock the process holds on that file: after one refused second open, another process
# can open the database too, and two nodes write one ledger (LevelDB 1.22, plyvel 1.5.1).
# So a process never asks LevelDB twice: it keeps the paths of the ledgers it holds open.
_open_paths: set[Path] = set()
_open_paths_lock = threading.Lock()


def claim_path(path: Path) -> Path:
    claimed = path.resolve()
    with _open_paths_lock:
        if claimed in _open_paths:
            raise StorageLockedError(
                f"cannot open the ledger at {path}: it is already open in this process "
                "(is a node already running on it?)"
            )
        _open_paths.add(claimed)
    return claimed


def release_path(claimed: Path) -> None:
    """The ledger at `claimed` (as `claim_path` returned it) is closed."""
    with _open_paths_lock:
        _open_paths.discard(claimed)


def check_iteration_end(
    database: plyvel.DB,
    *,
    yielded: bool,
    reverse: bool = False,
    prefix: bytes | None = None,
    start: bytes | None = None,
    stop: bytes | None = None,
    **_: object,
) -> None:
    """Raise the error an iteration of `database` over (prefix | start..stop) may have ended on.

    plyvel ends an iteration when LevelDB's iterator is no longer valid, and asks for its
    status only while it is: an iteration that stopped on an error reads as a complete one.
    LevelDB skips a table block that fails its checksum and keeps the error, so it is reported
    as soon as a valid entry follows; the silent case is a damaged block with nothing valid
    after it, the end of the database.  So one step of an iterator from the other end of the
    range (which steps back over that block, then reports it), and when the iteration found
    nothing, one read where it began (which loads the block, unless a Bloom filter answers).
    """
    if prefix is not None:
        start, stop = prefix, compute_prefix_end(prefix)
    if reverse:
        probe = database.iterator(start=start, include_value=False, verify_checksums=True)
    else:
        probe = database.iterator(reverse=True, stop=stop, include_value=False, verify_checksums=True)
    with probe:
        next(probe, None)
    if not yielded:
        # Nothing before and nothing after: a damaged block can still hide entries of the range
        # if it is all of its table file.  Reading each overlapping file's first key loads it.
        for smallest, largest in _list_table_key_ranges(database):
            if (stop is None or smallest < stop) and (start is None or largest >= start):
                database.get(smallest, verify_checksums=True)


# In leveldb.sstables: " number:size['smallest' @ sequence : type .. 'largest' @ sequence : type]",
# the keys escaped as "\xNN" where not printable.
_TABLE_KEY_RANGE = re.compile(rb"^ \d+:\d+\['(.*?)' @ \d+ : \d+ \.\. '(.*)' @ \d+ : \d+\]$", re.MULTILINE)
_ESCAPED_BYTE = re.compile(rb"\\x([0-9a-f]{2})")


def _list_table_key_ranges(database: plyvel.DB) -> list[tuple[bytes, bytes]]:
    """(smallest, largest) user key of every table file.  A key holding the printable text of
    an escape or of the separators could be read wrong; then a probe reads another key, no harm."""
    listing = database.get_property(b"leveldb.sstables") or b""
    return [
        (_unescape(smallest), _unescape(largest)) for smallest, largest in _TABLE_KEY_RANGE.findall(listing)
    ]


def _unescape(escaped: bytes) -> bytes:
    return _ESCAPED_BYTE.sub(lambda match: bytes([int(match.group(1), 16)]), escaped)


def compute_prefix_end(prefix: bytes) -> bytes | None:
    """The first key after every key that starts with `prefix` (None: there is none)."""
    stripped = prefix.rstrip(b"\xff")
    return stripped[:-1] + bytes([stripped[-1] + 1]) if stripped else None
