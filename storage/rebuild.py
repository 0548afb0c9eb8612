"""Rebuilding from the peers: a damaged data directory set aside, the node's vote log kept.

Theory of operation: see `set_aside_for_rebuild`.  The node then starts on an empty ledger and
catches up from its peers; only its vote log, which no peer can give back, crosses over, and
only when it reads back whole.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import plyvel

from chainnode.core.errors import StorageCorruptError, StorageError
from storage.layout import VOTES_DIRECTORY
from storage.leveldb import (
    check_iteration_end,
    claim_path,
    classify_storage_error,
    open_database,
    release_path,
)

# Files of a LevelDB directory that are not data: the lock and LevelDB's own info logs.
_NOT_DATA_FILES = frozenset({"LOCK", "LOG", "LOG.old"})


def set_aside_for_rebuild(data_dir: Path, *, now_s: float) -> Path | None:
    """Move a node's damaged data directory to `<data_dir>.corrupt-<UTC time>` and give the new,
    empty one the node's vote log; where the old one went (None: there was no data directory).

    The node then starts on an empty ledger and catches up from its peers, which verifies each
    block's commit certificate.  The vote log is carried over because a validator that forgot
    its votes could sign a different block at a height and view where it already voted; so it
    must read back whole first (paranoid open, every checksum), or nothing moves and
    `StorageCorruptError` says so.  A data directory in use (a node running on it) is refused
    with `StorageLockedError`, by the ledger's claim in this process and LevelDB's lock in another.
    """
    data_dir = Path(data_dir)
    if not data_dir.exists():
        return None
    ledger_dir = data_dir / "ledger"
    votes_dir = ledger_dir / VOTES_DIRECTORY
    claimed = claim_path(ledger_dir)
    try:
        has_votes = votes_dir.is_dir()
        if has_votes:
            _check_vote_log_reads_back(votes_dir)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now_s))
        aside = data_dir.with_name(f"{data_dir.name}.corrupt-{stamp}")
        if aside.exists():
            raise StorageError(f"cannot set {data_dir} aside: {aside} already exists")
        data_dir.rename(aside)
        data_dir.mkdir()
        if has_votes:
            shutil.copytree(
                aside / "ledger" / VOTES_DIRECTORY,
                votes_dir,
                ignore=lambda _, names: _NOT_DATA_FILES & set(names),
            )
    finally:
        release_path(claimed)
    return aside


def _check_vote_log_reads_back(votes_dir: Path) -> None:
    try:
        database = open_database(votes_dir, create=False)
        try:
            votes = 0
            with database.iterator(verify_checksums=True) as iterator:
                for _ in iterator:
                    votes += 1
            check_iteration_end(database, yielded=votes > 0)
        except plyvel.Error as error:
            raise classify_storage_error(error, votes_dir, "read from") from error
        finally:
            database.close()
    except StorageCorruptError as error:
        raise StorageCorruptError(
            f"cannot rebuild: the vote log at {votes_dir} is damaged too, and a validator that forgot "
            f"its votes could sign twice at a height it already voted at [{error.message}]"
        ) from error
