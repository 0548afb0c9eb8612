"""`chainnode backup`: a consistent copy of a node's ledger, taken while the node runs.

Theory of operation
-------------------
A running node holds LevelDB's lock on each of its three databases (the main one, the block
store, the vote log), so no other process can open them; what can be done from outside is to
copy their files, as the audit does (`chainnode.tools.export.copy_ledger_directory`, whose
docstring gives the argument): table files never change once written, a file that vanishes
during the copy (a compaction deleted it) makes the attempt start again, and a batch half
written when the log was copied is dropped when LevelDB opens the copy.  The main database is
copied before the block store, so the copied block store holds every block up to the copied
head; the vote log is copied last, so it holds at least the votes of every height above that
head the node had voted at: a validator restored from the backup cannot sign a second block
where it already signed one.

The copy is then opened as a node would open it (`storage.ledger.Ledger`: LevelDB's recovery,
the ledger's own consistency check, block-store entries above the head deleted) and each
database is read through one LevelDB snapshot, every block checksum verified, and written into
a fresh database under `out/ledger`: the backup holds no log to replay, no stale file, and was
read back whole once.  Finally the result is opened read-only and its head compared with the
copy's.  The backup is a node data directory: a `node.toml` whose `data_dir` names it (or
`CHAINNODE_NODE_DATA_DIR`) starts a node on it, which catches up from its peers; `chainnode
audit --data-dir` verifies it.

Bounded: at most `COPY_ATTEMPTS_MAX` copies; the staging copy lives beside `out` (same
filesystem, removed on exit, whatever happens).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import plyvel

from chainnode.core.errors import ConfigError, StorageError
from chainnode.tools.export import copy_database, copy_ledger_directory, get_ledger_directory
from storage.ledger import BLOCKS_DIRECTORY, VOTES_DIRECTORY, Ledger
from storage.leveldb import classify_storage_error, open_database

COPY_ATTEMPTS_MAX = 8
WRITE_BATCH_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class BackupReport:
    """What `back_up` wrote."""

    out_dir: Path  # a node data directory: the ledger is in out_dir/ledger
    height: int  # the backup's head
    block_hash: bytes
    state_root: bytes
    keys: int  # entries written, over the three databases
    bytes_written: int  # size of the backup's files
    attempts: int  # copies taken until one opened (a file vanished, a manifest was newer)
    elapsed_s: float


def back_up(data_dir: Path, out_dir: Path) -> BackupReport:
    """Back up the ledger of the node data directory `data_dir` (running or not) into `out_dir`,
    which must not exist or be empty."""
    started_s = time.monotonic()
    source = get_ledger_directory(data_dir)
    out_dir = Path(out_dir).resolve()
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ConfigError(f"{out_dir} exists and is not an empty directory: back up into a new one")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".chainnode-backup-", dir=out_dir.parent) as staging:
        copy, attempts = _take_consistent_copy(source, Path(staging))
        with Ledger(copy) as ledger:  # recovery and the consistency check, as a node opens it
            head = ledger.get_head()
        target = out_dir / "ledger"
        keys = 0
        for relative in (Path(), Path(BLOCKS_DIRECTORY), Path(VOTES_DIRECTORY)):
            if (copy / relative / "CURRENT").is_file():
                keys += _rewrite_database(copy / relative, target / relative)
    with Ledger(target, read_only=True) as written:
        if written.get_head() != head:
            raise StorageError(f"the backup in {out_dir} does not read back the head it was given")
    return BackupReport(
        out_dir=out_dir,
        height=head.height,
        block_hash=head.block_hash,
        state_root=head.state_root,
        keys=keys,
        bytes_written=sum(path.stat().st_size for path in target.rglob("*") if path.is_file()),
        attempts=attempts,
        elapsed_s=time.monotonic() - started_s,
    )


def _take_consistent_copy(source: Path, staging: Path) -> tuple[Path, int]:
    """A copy of the live ledger at `source` that LevelDB opens; (its path, attempts taken)."""
    problem = ""
    for attempt in range(1, COPY_ATTEMPTS_MAX + 1):
        copy = staging / f"copy-{attempt}"
        try:
            copy_ledger_directory(source, copy)
            if (source / VOTES_DIRECTORY).is_dir():
                copy_database(source / VOTES_DIRECTORY, copy / VOTES_DIRECTORY)
            Ledger(copy).close()  # opens: the copy is usable (LevelDB replays its logs here)
        except FileNotFoundError as error:
            problem = f"a file vanished during the copy ({error.filename})"
        except StorageError as error:
            problem = error.message
        else:
            return copy, attempt
        shutil.rmtree(copy, ignore_errors=True)
        time.sleep(0.05 * attempt)
    raise StorageError(f"no consistent copy of {source} in {COPY_ATTEMPTS_MAX} attempts: {problem}")


def _rewrite_database(source: Path, target: Path) -> int:
    """Every entry of the database at `source`, read through one snapshot with checksums
    verified, written into a new database at `target`; how many entries."""
    database = open_database(source, create=False)
    try:
        target.mkdir(parents=True, exist_ok=True)
        fresh = open_database(target, create=True, compression=None)
        try:
            return _copy_entries(database, fresh, source)
        finally:
            fresh.close()
    finally:
        database.close()


def _copy_entries(database: plyvel.DB, fresh: plyvel.DB, source: Path) -> int:
    count = 0
    try:
        with database.snapshot() as snapshot:
            # Synced batches: the backup is on disk when `back_up` returns.
            batch = fresh.write_batch(sync=True)
            batch_bytes = 0
            for key, value in snapshot.iterator(verify_checksums=True, fill_cache=False):
                batch.put(key, value)
                batch_bytes += len(key) + len(value)
                count += 1
                if batch_bytes >= WRITE_BATCH_BYTES:
                    batch.write()
                    batch, batch_bytes = fresh.write_batch(sync=True), 0
            batch.write()
    except plyvel.Error as error:
        raise classify_storage_error(error, source, "read from") from error
    return count
