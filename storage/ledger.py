"""The node's ledger: three LevelDB (plyvel) databases in one directory per node.

Theory of operation
-------------------
The ledger directory holds the main database (state, indexes, metadata); in
its `blocks/` subdirectory, the block store (blocks, certificates, receipts);
in `votes/`, the node's vote log.  The first two are kept apart because of how
LevelDB compacts: the state and the tx index have random keys, so every table
file LevelDB writes for them overlaps the whole key range and is merged again
at every level; blocks and receipts (two thirds of the bytes) stored with them
were rewritten about ten times over as the chain grew (a 1M-transaction run
spent as much CPU in compaction as in the node at the end).  Keys of the block
store start with the height, so each file it writes lies after every earlier
one and LevelDB moves files down the levels without rewriting them.

Main database keys (a one-byte prefix, then fixed-width big-endian integers,
a fixed-width hash, or a raw state key, so byte order is height order):

    h  block_hash:32                   -> height:u64
    t  tx_hash:32                      -> height:u64 index:u32
    s  state key                       -> state value
    e  height:u64 validator:u32 kind:u32 view:u64 -> encoded Evidence (equivocation proof)
    k  height:u64                      -> stable checkpoint: encoded (height, block hash, signatures)
    m  name                            -> metadata: b"mhead" (Head), b"mgenesis" (genesis hash),
                                          b"mformat" (this layout's version)

Block store keys (height first):

    height:u64 b                       -> encoded Block
    height:u64 c                       -> encoded CommitCertificate
    height:u64 r index:u32             -> encoded Receipt

Vote log keys:

    height:u64 view:u64 kind:u32       -> vote payload (this node's consensus log)

Atomicity.  `commit_block` writes the block, its certificate and receipts to
the block store in one synced batch, then the tx index, the state write set,
the hash index and the new head to the main database in ONE
`WriteBatch(sync=True)`.  The head in the main database is the commit point:
after a crash (process or power) the node is at the old head or at the new
one, never between.  Block-store entries above the head (a crash between the
two batches) are never served, and are deleted when the ledger is next opened
for writing.  The head is cached in memory and replaced only after the batch
is written.

Crash model.  We rely on LevelDB's guarantees for synced batches; we do not
defend against a disk that loses synced data.  Votes (`put_vote`) are synced one
by one because a validator must persist a vote before it sends it.  They live in
a third, small database (`data/ledger/votes`): a prepared certificate carries a
whole block, and in the main database those short-lived blocks were a quarter
of what its compactions merged (a paced replay of a 1M run: 807 -> 586 MB).
The votes of a height are deleted once the batch that commits it is written
(nothing is ever voted at a committed height again); that deletion and pruning
at checkpoints are not synced: losing one in a crash only keeps old votes
longer, and `get_votes` is only ever asked for heights above the head.

Observing writes.  Durability cannot be seen in a test that does not cut the
power: a batch written with `sync=False` reads back just the same.  So every
write of the ledger goes through one method (`_write_batch`), and a
`write_observer` given to the ledger is told of each one after LevelDB returned:
the database, the sync flag and the keys, in order.  The tests of the node and
of this module check with it that votes are synced before they are sent, and
that a commit syncs the block store before the head.  Without an observer the
cost is one `is None` test per batch.

Invariants of `commit_block` are the program's own (the caller executed and
certified the block against this head), so they are asserted, with checks that
stay on under `python -O`.  That a transaction was never committed before is
checked by execution (`is_committed`), not again here: it would cost one more
LevelDB read per transaction.  Reads of data we wrote ourselves that fail to
decode raise `StorageError` (a corrupt data directory).

Committed-transaction filter.  Replay protection asks "was this id ever
committed?" for every transaction, at admission and again in execution, and
the answer is almost always no.  LevelDB's per-file Bloom filters make such a
miss cheap, but every miss that consults two or more table files is charged to
the first as a "seek", and a file charged about a hundred times is compacted
into the next level: with two misses per transaction, those seek compactions
doubled the compaction work.  So the ledger keeps its own Bloom filter of the
committed ids in memory (12 bits per transaction, built from the tx index when
the ledger opens, grown by adding a filter four times larger when one is full)
and reads LevelDB only when the filter says "maybe".  It has no false
negatives: an id is added when its block's batch is written.

Locking.  LevelDB locks its directory; a second handle, in this or another
process, gets `StorageLockedError`.  A second handle in this process is refused
before LevelDB is asked (`storage.leveldb.claim_path`: LevelDB's own refusal
drops the process's lock).  plyvel has no read-only mode, so a `read_only`
ledger still takes the lock: it only refuses writes and never creates a
database.

Integrity (a bad disk).  What LevelDB reports is turned into a typed error by
what it is (`storage.leveldb.classify_storage_error`): `StorageLockedError`,
`DiskFullError`, `StoragePermissionError`, `StorageCorruptError`, each naming
the database's path and LevelDB's message with the OS error; at open, at every
read and at every write.  Every database is opened with `paranoid_checks` (a
damaged write-ahead log fails the open instead of silently losing the batches
in the rest of its 32 KB block; compactions verify what they read), and every
read verifies the checksums of the table blocks it loads: the tables are not
compressed, so without it one flipped byte in a stored value would be served as
the value.  At open, the size of every table file is compared with the size the
manifest recorded (LevelDB itself would find a truncated table only at the
first read of it).  And every iteration is checked at its end: plyvel ends one
that stopped on a damaged block as if it were complete (see
`storage.leveldb.check_iteration_end`), which would hand out a vote log, a tx
filter or a state listing without its tail.  Cost, measured with `python -m tests.perf.pipeline --txs
30000` (three alternating runs each way, on a shared 2-core machine where runs
vary by ~10%): commit 11.4 -> 10.7 and execute 24.6 -> 24.8 CPU us per
transaction, that is no difference within the noise; with `--txs 100000` (two
runs each way) commit 12.8 -> 11.4, execute 26.1 -> 22.8, noise again.  In such
runs a read seldom loads a table block (the hot state is cached, the tx filter
answers the misses); where one does, verifying the block costs ~1 us (random
reads of 60 MB of tables with a 16 MB block cache: 3.6 -> 4.7 us per read).

Consistency at open.  Checksums catch damaged bytes, not lost ones: a file
restored from an older copy, or a log that LevelDB skipped, leaves a ledger
whose parts disagree.  So a writable open (a node's) checks that they agree,
and refuses with `StorageCorruptError` naming what does not: the block store
holds nothing more than one height above the head (one is a crash between a
commit's two batches); the head block is in the block store, its hash is the
head's, its header's state root is the head's state root (the state commitment
is chained over write sets, see `chainnode.app.state`: it is kept in the head and
the headers only, and the stored state itself cannot be checked against it
without replaying the chain, which `chainnode audit` does); and for the head and
the `CONSISTENCY_CHECK_BLOCKS - 1` blocks below it, each names the next one
down as its parent, has a commit certificate for its hash, its receipts, and
block-hash and tx-index entries that point at it (height, index).  That costs
~0.2 s at open with 2,000-transaction blocks.  A read-only open (an audit of a
copy, an export) does not check: an audit makes every one of these checks on
every block and names the height and the check that failed, which a refused
open would hide.
"""

from __future__ import annotations

import contextlib
import shutil
import struct
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import plyvel

from chainnode.core import codec, quorum, types
from chainnode.core.errors import DecodeError, StorageCorruptError, StorageError
from storage.leveldb import (
    check_iteration_end,
    claim_path,
    classify_storage_error,
    open_database,
    release_path,
)
from storage.tx_filter import TxFilter

_BLOCK_HASH = b"h"
_TX = b"t"
_STATE = b"s"
_EVIDENCE = b"e"
_CHECKPOINT = b"k"
_VALIDATOR_CHANGE = b"v"  # + height: the proof that the block changed the validator set (chainnode.light)
_HEAD = b"mhead"
_GENESIS = b"mgenesis"
_FORMAT = b"mformat"
FORMAT_VERSION = b"3"  # 1: blocks, certificates and receipts in the main database; 2: votes there
BLOCKS_DIRECTORY = "blocks"
VOTES_DIRECTORY = "votes"  # keys: _VOTE_KEY
# The databases by name, as a `Write` names them.
MAIN_DATABASE = "main"
BLOCK_STORE = "blocks"
VOTE_LOG = "votes"
# In the block store, after the height:
_BLOCK = b"b"
_CERTIFICATE = b"c"
_RECEIPT = b"r"

BLOOM_FILTER_BITS = 10  # per key: about 1% false positives
BLOCK_CACHE_BYTES = 16 * 1024 * 1024
BLOCK_STORE_CACHE_BYTES = 4 * 1024 * 1024
# The main database's memtable: each flush is merged into level 1 and on down, so a larger
# one means fewer, larger merges (paced replay of a 1M run: 1,531 -> 1,077 MB compacted).
WRITE_BUFFER_BYTES = 32 * 1024 * 1024
# The block store writes each file once; a small memtable keeps its memory low.
BLOCK_STORE_WRITE_BUFFER_BYTES = 8 * 1024 * 1024
# The vote log holds a few live entries; what it flushes is almost all deleted already.
VOTE_LOG_WRITE_BUFFER_BYTES = 4 * 1024 * 1024
STATE_CACHE_ENTRIES_MAX = 20_000  # state reads cached in memory, first in first out
# Blocks below the head whose certificate, indexes and parent link are checked at open.
CONSISTENCY_CHECK_BLOCKS = 16

_U64 = struct.Struct(">Q")
_LOCATION = struct.Struct(">QI")  # height, index
_U32 = struct.Struct(">I")
_VOTE_KEY = struct.Struct(">QQI")  # height, view, kind
_EVIDENCE_KEY = struct.Struct(">QIIQ")  # height, validator, kind, view


@dataclass(frozen=True, slots=True)
class Head:
    """The last committed block; height 0 is genesis."""

    height: int
    block_hash: bytes  # at height 0, the genesis hash
    state_root: bytes  # state commitment after this block
    timestamp_ms: int  # the block's timestamp (genesis time at height 0)

    def encode(self) -> bytes:
        return codec.encode((self.height, self.block_hash, self.state_root, self.timestamp_ms))


def _decode_head(data: bytes) -> Head:
    fields = codec.expect_tuple(codec.decode(data), "head", 4)
    if len(fields) != 4:
        raise DecodeError("head: expected 4 fields")
    return Head(
        codec.expect_int(fields[0], "head height"),
        codec.expect_bytes(fields[1], "head block hash", 32),
        codec.expect_bytes(fields[2], "head state root", 32),
        codec.expect_int(fields[3], "head timestamp"),
    )


@dataclass(frozen=True, slots=True)
class Write:
    """One batch the ledger wrote, as its `write_observer` sees it once LevelDB has returned."""

    database: str  # MAIN_DATABASE, BLOCK_STORE or VOTE_LOG
    sync: bool  # written with `sync=True`: on disk before the write returned
    keys: tuple[bytes, ...]  # the keys put or deleted, in the batch's order


# Called after each write (see `Ledger._write_batch`); for tests of durability and order.
WriteObserver = Callable[[Write], None]


class _Batch(Protocol):
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


def _invariant(condition: bool, message: str) -> None:
    """An assertion about our own state that stays on in production."""
    if not condition:
        raise AssertionError(message)


class Ledger:
    """Blocks, certificates, receipts, the tx index, state and the vote log of one node."""

    def __init__(
        self, path: Path, *, read_only: bool = False, write_observer: WriteObserver | None = None
    ) -> None:
        self.path = Path(path)
        self.read_only = read_only
        # Told of every write, after LevelDB returned (see `_write_batch`); None costs nothing.
        self.write_observer = write_observer
        self._head: Head | None = None
        # First in, first out.  An OrderedDict: evicting the oldest key of a plain dict with
        # `next(iter(d))` walks over every slot already deleted at the front (~8 us per
        # eviction at 20k entries, against 0.7).
        self._state_cache: OrderedDict[bytes, bytes | None] = OrderedDict()
        self._claimed: Path | None = None
        if read_only and not self.path.is_dir():
            raise StorageError(f"no ledger at {self.path}")
        self._claimed = claim_path(self.path)
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    def _open(self) -> None:
        self._db = open_database(
            self.path,
            create=not self.read_only,
            # Replay protection looks up transaction ids that are almost always absent
            # (at admission and again in execution); without a filter each such miss
            # reads table blocks from every level (~100 us at 500k keys, ~10 us with it).
            bloom_filter_bits=BLOOM_FILTER_BITS,
            lru_cache_size=BLOCK_CACHE_BYTES,
            write_buffer_size=WRITE_BUFFER_BYTES,
            # No Snappy here: this database is merged and rewritten several times as
            # it grows, and compressing on every rewrite cost more CPU than the larger
            # files (replaying a 1M-transaction run's writes: 41 -> 17 us per tx).
            compression=None,
        )
        stored = self._get(_HEAD)
        if stored is not None:
            try:
                self._head = _decode_head(stored)
            except DecodeError as error:
                raise StorageCorruptError(
                    f"corrupt head in the ledger at {self.path}: {error.message}"
                ) from error
            stored_format = self._get(_FORMAT)
            if stored_format != FORMAT_VERSION:
                raise StorageError(
                    f"the ledger at {self.path} has layout version "
                    f"{'1' if stored_format is None else stored_format.decode(errors='replace')}, "
                    f"this node reads version {FORMAT_VERSION.decode()}: start the node on an empty data "
                    "directory and it catches up from its peers (when every node of the network has an "
                    "older ledger, there is nobody to catch up from: write the network anew)"
                )
        # Read by height (catch-up, the API, audits), rarely: a small cache, no filter.
        # No Snappy either: compressing every flushed block cost ~2% of a validator's
        # CPU, for data that is mostly signatures and hashes.
        self._blocks = open_database(
            self.path / BLOCKS_DIRECTORY,
            create=not self.read_only,
            lru_cache_size=BLOCK_STORE_CACHE_BYTES,
            write_buffer_size=BLOCK_STORE_WRITE_BUFFER_BYTES,
            compression=None,
        )
        # Only a node writes and reads its vote log: a read-only ledger (audits, exports,
        # copies of a data directory) does without it.
        self._votes: plyvel.DB | None = None
        if not self.read_only:
            self._votes = open_database(
                self.path / VOTES_DIRECTORY,
                create=True,
                write_buffer_size=VOTE_LOG_WRITE_BUFFER_BYTES,
                compression=None,
            )
        if self._head is not None and not self.read_only:
            problem = self._find_consistency_problem(self._head)
            if problem is not None:
                raise StorageCorruptError(
                    f"the ledger at {self.path} is inconsistent: {problem}; a node must not serve it: "
                    "rebuild it from the peers (`chainnode node run --rebuild`)"
                )
            self._delete_blocks_above(self._head.height)
            self.prune_votes(self._head.height + 1)
        self._tx_filter = self._load_tx_filter()

    def _find_consistency_problem(self, head: Head) -> str | None:
        """What disagrees with the head among what the ledger stores, described (see the module
        docstring, "Consistency at open"); None when all agrees."""
        height_max = self._get_stored_height_max()
        if height_max is not None and height_max > head.height + 1:
            # One height above the head is a crash between a commit's two batches; more is not.
            return (
                f"the block store holds blocks up to height {height_max}, the head is at {head.height}: "
                "the main database lost committed blocks"
            )
        if head.height == 0:
            is_genesis = self._get(_GENESIS) == head.block_hash
            return None if is_genesis else "the head at height 0 is not the genesis"
        later: types.BlockHeader | None = None
        for height in range(head.height, max(head.height - CONSISTENCY_CHECK_BLOCKS, 0), -1):
            stored = self._get_stored(height, _BLOCK)
            if stored is None:
                return f"block {height} is missing from the block store (the head is at {head.height})"
            try:
                header, tx_hashes = types.decode_block_summary(stored)
            except DecodeError as error:
                return f"the stored block {height} does not decode: {error.message}"
            block_hash = header.compute_hash()
            if header.height != height:
                return f"the block stored at height {height} is block {header.height}"
            if later is None:
                if block_hash != head.block_hash:
                    return (
                        f"the head names block {head.block_hash.hex()}, "
                        f"the block store holds {block_hash.hex()} at height {height}"
                    )
                if header.state_root != head.state_root:
                    return (
                        f"the stored state root {head.state_root.hex()} is not the head block's "
                        f"{header.state_root.hex()}"
                    )
            elif later.parent_hash != block_hash:
                return f"block {height + 1} does not name the stored block {height} as its parent"
            problem = self._find_block_entries_problem(height, block_hash, tx_hashes)
            if problem is not None:
                return problem
            later = header
        return None

    def _find_block_entries_problem(
        self, height: int, block_hash: bytes, tx_hashes: list[bytes]
    ) -> str | None:
        """The certificate, receipts and index entries of the committed block `height`, checked."""
        encoded = self._get_stored(height, _CERTIFICATE)
        if encoded is None:
            return f"the commit certificate of block {height} is missing"
        try:
            certificate = quorum.decode_commit_certificate(encoded)
        except DecodeError as error:
            return f"the commit certificate of block {height} does not decode: {error.message}"
        if (certificate.height, certificate.block_hash) != (height, block_hash):
            return f"the commit certificate stored at height {height} certifies another block"
        if self._get(_BLOCK_HASH + block_hash) != _U64.pack(height):
            return f"the block-hash index does not place block {height} at its height"
        if tx_hashes and self.get_receipt(height, len(tx_hashes) - 1) is None:
            return f"the receipts of block {height} are missing"
        for index, tx_hash in enumerate(tx_hashes):
            if self._get(_TX + tx_hash) != _LOCATION.pack(height, index):
                return (
                    f"the tx index does not place transaction {tx_hash.hex()} "
                    f"at height {height}, index {index}"
                )
        return None

    def _get_stored_height_max(self) -> int | None:
        """The highest height with an entry in the block store (committed or not)."""
        for key in self._iterate(BLOCK_STORE, include_value=False, reverse=True):
            return int(_U64.unpack(key[:8])[0])
        return None

    def _load_tx_filter(self) -> TxFilter:
        """The filter of every committed id, from the tx index (keys only; ~1 s per million)."""
        tx_filter = TxFilter()
        for key in self._iterate(MAIN_DATABASE, prefix=_TX, include_value=False):
            tx_filter.add(bytes(key[1:]))
        return tx_filter

    def close(self) -> None:
        # Also on a half-opened ledger (`__init__` failed): only what was opened is there.
        for name in ("_votes", "_blocks", "_db"):
            database = getattr(self, name, None)
            if database is not None and not database.closed:
                database.close()
        if self._claimed is not None:
            release_path(self._claimed)
            self._claimed = None

    def _delete_blocks_above(self, height: int) -> None:
        """Forget block-store entries above the head: a crash came between the two batches."""
        self._delete_range(BLOCK_STORE, start=_U64.pack(height + 1), sync=True)

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
        _invariant(name == VOTE_LOG, f"no database {name!r}")
        return self._get_vote_log()

    @contextlib.contextmanager
    def _write_batch(self, database_name: str, *, sync: bool) -> Iterator[_Batch]:
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

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _check_writable(self) -> None:
        if self.read_only:
            raise StorageError(f"the ledger at {self.path} is open read-only")

    # ------------------------------------------------------------ genesis and head

    def is_initialized(self) -> bool:
        return self._head is not None

    def initialize(
        self,
        *,
        genesis_hash: bytes,
        genesis_time_ms: int,
        initial_state: Mapping[bytes, bytes],
        state_root: bytes,
    ) -> None:
        """Write the genesis state and head (height 0) in one synced batch."""
        self._check_writable()
        if self._head is not None:
            raise StorageError(f"the ledger at {self.path} is already initialized")
        _invariant(len(genesis_hash) == 32 and len(state_root) == 32, "genesis hashes are 32 bytes")
        head = Head(0, genesis_hash, state_root, genesis_time_ms)
        with self._write_batch(MAIN_DATABASE, sync=True) as batch:
            for key, value in initial_state.items():
                batch.put(_STATE + key, value)
            batch.put(_GENESIS, genesis_hash)
            batch.put(_FORMAT, FORMAT_VERSION)
            batch.put(_HEAD, head.encode())
        self._head = head
        self._state_cache.clear()

    def get_genesis_hash(self) -> bytes:
        genesis_hash = self._get(_GENESIS)
        if genesis_hash is None:
            raise StorageError(f"the ledger at {self.path} is not initialized")
        return genesis_hash

    def get_head(self) -> Head:
        if self._head is None:
            raise StorageError(f"the ledger at {self.path} is not initialized")
        return self._head

    # ------------------------------------------------------------ reads

    def get_block(self, height: int) -> bytes | None:
        """The encoded block at `height` (none at genesis height 0)."""
        return self._get_stored(height, _BLOCK)

    def get_block_height(self, block_hash: bytes) -> int | None:
        stored = self._get(_BLOCK_HASH + block_hash)
        return None if stored is None else int(_U64.unpack(stored)[0])

    def get_certificate(self, height: int) -> bytes | None:
        return self._get_stored(height, _CERTIFICATE)

    def get_tx_location(self, tx_hash: bytes) -> tuple[int, int] | None:
        """(height, index in block) of a committed transaction."""
        if not self._tx_filter.might_contain(tx_hash):
            return None
        stored = self._get(_TX + tx_hash)
        if stored is None:
            return None
        height, index = _LOCATION.unpack(stored)
        return int(height), int(index)

    def is_committed(self, tx_hash: bytes) -> bool:
        return self._tx_filter.might_contain(tx_hash) and self._get(_TX + tx_hash) is not None

    def get_receipt(self, height: int, index: int) -> bytes | None:
        return self._get_stored(height, _RECEIPT + _U32.pack(index)) if 0 <= index < 2**32 else None

    def _committed_height(self) -> int:
        return -1 if self._head is None else self._head.height

    def _get_stored(self, height: int, suffix: bytes) -> bytes | None:
        """A block-store entry of a committed height (entries above the head are not committed)."""
        if not 0 < height <= self._committed_height():
            return None
        try:
            value = self._blocks.get(_U64.pack(height) + suffix, verify_checksums=True)
        except plyvel.Error as error:
            raise self._classify(error, BLOCK_STORE, "read from") from error
        return None if value is None else bytes(value)

    def iter_validator_changes(self) -> Iterator[tuple[int, bytes]]:
        """(height, encoded proof) of every committed validator-set change recorded, ascending."""
        committed = self._committed_height()
        for key, value in self._iterate(MAIN_DATABASE, prefix=_VALIDATOR_CHANGE):
            height = int(_U64.unpack(key[1:9])[0])
            if height > committed:
                break
            yield height, bytes(value)

    def get_state(self, key: bytes) -> bytes | None:
        # Hot keys (signers' entity records, the validator set, records being updated) are
        # read for almost every transaction; `commit_block` keeps this cache exact.
        try:
            return self._state_cache[key]
        except KeyError:
            pass
        value = self._get(_STATE + key)
        if len(self._state_cache) >= STATE_CACHE_ENTRIES_MAX:
            self._state_cache.popitem(last=False)
        self._state_cache[key] = value
        return value

    def iter_state(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """State entries whose key starts with `prefix`, in key order (keys without the keyspace byte)."""
        for key, value in self._iterate(MAIN_DATABASE, prefix=_STATE + prefix):
            yield bytes(key[1:]), bytes(value)

    def _get(self, key: bytes) -> bytes | None:
        """A value of the main database.  Checksummed: a damaged table block raises rather than
        hands out altered bytes (the tables are not compressed, so a flipped byte in a value
        would otherwise come back as a value)."""
        try:
            value = self._db.get(key, verify_checksums=True)
        except plyvel.Error as error:
            raise self._classify(error, MAIN_DATABASE, "read from") from error
        return None if value is None else bytes(value)

    # ------------------------------------------------------------ commit

    def commit_block(
        self,
        block: types.Block,
        certificate: quorum.CommitCertificate,
        receipts: Sequence[types.Receipt],
        write_set: Mapping[bytes, bytes | None],
        validator_change: bytes | None = None,
    ) -> Head:
        """Append `block` on top of the head in one synced batch; returns the new head.

        `validator_change` is the encoded proof that this block changed the validator set
        (`chainnode.light.ValidatorChangeProof`), kept beside the head to serve light clients.
        """
        self._check_writable()
        head = self.get_head()
        header = block.header
        _invariant(header.height == head.height + 1, f"block {header.height} on head {head.height}")
        _invariant(header.parent_hash == head.block_hash, f"block {header.height}: wrong parent hash")
        _invariant(certificate.block_hash == block.hash, "the certificate certifies another block")
        _invariant(certificate.height == header.height, "the certificate is for another height")
        _invariant(len(receipts) == len(block.transactions), "one receipt per transaction")
        tx_hashes = [tx.hash for tx in block.transactions]
        _invariant(
            [receipt.tx_hash for receipt in receipts] == tx_hashes,
            "the receipts are not for the block's transactions, in order",
        )
        _invariant(len(set(tx_hashes)) == len(tx_hashes), "a transaction appears twice in the block")
        height_bytes = _U64.pack(header.height)
        # The block store first: until the main batch moves the head, what this batch wrote
        # is above the head, never served, and deleted at the next open if a crash comes now.
        with self._write_batch(BLOCK_STORE, sync=True) as batch:
            batch.put(height_bytes + _BLOCK, block.encoded)
            batch.put(height_bytes + _CERTIFICATE, certificate.encode())
            receipt_prefix = height_bytes + _RECEIPT
            put = batch.put
            for index, receipt in enumerate(receipts):
                put(receipt_prefix + _U32.pack(index), receipt.encoded)
        with self._write_batch(MAIN_DATABASE, sync=True) as batch:
            batch.put(_BLOCK_HASH + block.hash, height_bytes)
            put = batch.put
            pack_location = _LOCATION.pack
            height = header.height
            for index, tx_hash in enumerate(tx_hashes):
                put(_TX + tx_hash, pack_location(height, index))
            for key, value in write_set.items():
                if value is None:
                    batch.delete(_STATE + key)
                else:
                    put(_STATE + key, value)
            if validator_change is not None:
                put(_VALIDATOR_CHANGE + height_bytes, validator_change)
            new_head = Head(header.height, block.hash, header.state_root, header.timestamp_ms)
            batch.put(_HEAD, new_head.encode())
        self._head = new_head
        add_to_filter = self._tx_filter.add
        for tx_hash in tx_hashes:
            add_to_filter(tx_hash)
        for key, value in write_set.items():
            if key in self._state_cache:
                self._state_cache[key] = value
        # Only now that the head is durable: the votes of the committed height are done with.
        self.prune_votes(header.height + 1)
        return new_head

    # ------------------------------------------------------------ consensus vote log

    def _get_vote_log(self) -> plyvel.DB:
        self._check_writable()
        assert self._votes is not None, "a writable ledger has its vote log open"
        return self._votes

    def put_vote(self, height: int, view: int, kind: int, payload: bytes) -> None:
        """Persist one of this node's votes durably, before it is sent."""
        with self._write_batch(VOTE_LOG, sync=True) as batch:
            batch.put(_VOTE_KEY.pack(height, view, kind), payload)

    def get_votes(self, height_min: int) -> list[tuple[int, int, int, bytes]]:
        """Logged votes at `height_min` and above, as (height, view, kind, payload) in key order."""
        votes: list[tuple[int, int, int, bytes]] = []
        for key, payload in self._iterate(VOTE_LOG, start=_U64.pack(max(height_min, 0))):
            height, view, kind = _VOTE_KEY.unpack(key)
            votes.append((int(height), int(view), int(kind), bytes(payload)))
        return votes

    def put_evidence(self, height: int, validator: int, kind: int, view: int, payload: bytes) -> bool:
        """Keep one proof of equivocation per (height, validator, kind, view); False if already kept."""
        self._check_writable()
        key = _EVIDENCE + _EVIDENCE_KEY.pack(height, validator, kind, view)
        if self._get(key) is not None:
            return False
        with self._write_batch(MAIN_DATABASE, sync=True) as batch:
            batch.put(key, payload)
        return True

    def iter_evidence(self) -> Iterator[bytes]:
        """Every kept proof of equivocation, by height."""
        for payload in self._iterate(MAIN_DATABASE, prefix=_EVIDENCE, include_key=False):
            yield bytes(payload)

    def put_checkpoint(self, height: int, payload: bytes) -> None:
        """Keep a stable checkpoint (2f+1 signatures over the block, hence the state root, at `height`)."""
        self._check_writable()
        with self._write_batch(MAIN_DATABASE, sync=True) as batch:
            batch.put(_CHECKPOINT + _U64.pack(height), payload)

    def get_latest_checkpoint(self) -> bytes | None:
        for payload in self._iterate(MAIN_DATABASE, prefix=_CHECKPOINT, include_key=False, reverse=True):
            return bytes(payload)
        return None

    def prune_votes(self, height_below: int) -> None:
        """Forget votes below `height_below` (at each commit, at a stable checkpoint, at open)."""
        self._delete_range(VOTE_LOG, stop=_U64.pack(max(height_below, 0)), sync=False)


# ------------------------------------------------------------ rebuilding from the peers

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
