"""The ledger's plumbing: its three databases, the one way it writes, and its checked reads.

Theory of operation: `LedgerDatabases` is the base of `storage.ledger.Ledger` and of the parts
it is made of.  It names the databases (`MAIN_DATABASE`, `BLOCK_STORE`, `VOTE_LOG`), writes
every batch through `_write_batch` (so a `write_observer` sees each write with its database and
sync flag, see "Observing writes" in `storage.ledger`), reads every value with its checksums
verified, checks every iteration at its end (`storage.leveldb.check_iteration_end`), and turns
what LevelDB reports into typed errors (`storage.leveldb.classify_storage_error`).  The block
store serves committed heights only: an entry above the head is never read.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import plyvel

from chainnode.core.errors import StorageError
from storage.layout import (
    BLOCK_STORE,
    BLOCKS_DIRECTORY,
    MAIN_DATABASE,
    U64,
    VOTE_LOG,
    VOTES_DIRECTORY,
    Head,
    Write,
    WriteObserver,
    check_invariant,
)
from storage.leveldb import check_iteration_end, classify_storage_error, release_path


class Batch(Protocol):
    """What a caller of `Ledger._write_batch` fills: plyvel's WriteBatch, or a recording one."""

    def put(self, key: bytes, value: bytes) -> None: ...

    def delete(self, key: bytes) -> None: ...


class _RecordingBatch:
    """A write batch that also keeps the keys it was given, for the write observer."""

    __slots__ = ("_batch", "keys")

    def __init__(self, batch: Any) -> None:
        self._batch = batch
        self.keys: list[bytes] = []

    def put(self, key: bytes, value: bytes) -> None:
        self.keys.append(key)
        self._batch.put(key, value)

    def delete(self, key: bytes) -> None:
        self.keys.append(key)
        self._batch.delete(key)


class LedgerDatabases:
    """The open databases of one ledger and the checked ways to read and write them."""

    path: Path
    read_only: bool
    write_observer: WriteObserver | None
    _head: Head | None
    _claimed: Path | None
    _db: plyvel.DB
    _blocks: plyvel.DB
    _votes: plyvel.DB | None

    def close(self) -> None:
        # Also on a half-opened ledger (`__init__` failed): only what was opened is there.
        for name in ("_votes", "_blocks", "_db"):
            database = getattr(self, name, None)
            if database is not None and not database.closed:
                database.close()
        if self._claimed is not None:
            release_path(self._claimed)
            self._claimed = None

    def _get_database_path(self, name: str) -> Path:
        if name == BLOCK_STORE:
            return self.path / BLOCKS_DIRECTORY
        return self.path / VOTES_DIRECTORY if name == VOTE_LOG else self.path

    def _classify(self, error: plyvel.Error, database_name: str, action: str) -> StorageError:
        return classify_storage_error(error, self._get_database_path(database_name), action)

    def _get_database(self, name: str) -> plyvel.DB:
        if name == MAIN_DATABASE:
            return self._db
        if name == BLOCK_STORE:
            return self._blocks
        check_invariant(name == VOTE_LOG, f"no database {name!r}")
        return self._get_vote_log()

    @contextlib.contextmanager
    def _write_batch(self, database_name: str, *, sync: bool) -> Iterator[Batch]:
        """The one way the ledger writes: fill the batch in the `with` block; it is written
        (all or nothing) when the block ends without an exception, then the observer is told.

        Every write goes through here, so a test that watches the observer sees each one with
        the database it went to and whether it was synced: a write that skipped this function,
        or one made with `sync=False` where durability is claimed, fails such a test.
        """
        batch = self._get_database(database_name).write_batch(sync=sync)
        observer = self.write_observer
        recording = None if observer is None else _RecordingBatch(batch)
        yield batch if recording is None else recording
        try:
            batch.write()
        except plyvel.Error as error:
            raise self._classify(error, database_name, "write to") from error
        if observer is not None:
            assert recording is not None
            observer(Write(database_name, sync, tuple(recording.keys)))

    def _iterate(self, database_name: str, **options: Any) -> Iterator[Any]:
        """A plyvel iterator over one database, checksummed, with its errors typed, and checked
        at its end: plyvel can end an iteration on an error without a word (see
        `storage.leveldb.check_iteration_end`), and a vote log, tx filter or state listing that
        silently lost its tail is worse than one that fails."""
        database = self._get_database(database_name)
        yielded = False
        try:
            with database.iterator(verify_checksums=True, **options) as iterator:
                for item in iterator:
                    yielded = True
                    yield item
            check_iteration_end(database, yielded=yielded, **options)
        except plyvel.Error as error:
            raise self._classify(error, database_name, "read from") from error

    def _delete_range(
        self, database_name: str, *, start: bytes | None = None, stop: bytes | None = None, sync: bool
    ) -> None:
        """Delete the keys in [start, stop) (None: unbounded) in one batch."""
        with self._write_batch(database_name, sync=sync) as batch:
            for key in self._iterate(database_name, start=start, stop=stop, include_value=False):
                batch.delete(key)

    def _compact_range(self, database_name: str, *, stop: bytes) -> None:
        """Compact the keys below `stop` now (in this thread), so deleted entries leave the disk."""
        try:
            self._get_database(database_name).compact_range(stop=stop)
        except plyvel.Error as error:
            raise self._classify(error, database_name, "compact") from error

    def _check_writable(self) -> None:
        if self.read_only:
            raise StorageError(f"the ledger at {self.path} is open read-only")

    def _committed_height(self) -> int:
        return -1 if self._head is None else self._head.height

    def _get_stored(self, height: int, suffix: bytes) -> bytes | None:
        """A block-store entry of a committed height (entries above the head are not committed)."""
        if not 0 < height <= self._committed_height():
            return None
        try:
            value = self._blocks.get(U64.pack(height) + suffix, verify_checksums=True)
        except plyvel.Error as error:
            raise self._classify(error, BLOCK_STORE, "read from") from error
        return None if value is None else bytes(value)

    def _get(self, key: bytes) -> bytes | None:
        """A value of the main database.  Checksummed: a damaged table block raises rather than
        hands out altered bytes (the tables are not compressed, so a flipped byte in a value
        would otherwise come back as a value)."""
        try:
            value = self._db.get(key, verify_checksums=True)
        except plyvel.Error as error:
            raise self._classify(error, MAIN_DATABASE, "read from") from error
        return None if value is None else bytes(value)

    def _get_vote_log(self) -> plyvel.DB:
        self._check_writable()
        assert self._votes is not None, "a writable ledger has its vote log open"
        return self._votes
