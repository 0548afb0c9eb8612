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

The parts.  `Ledger` (here: open, genesis and head, reads, `commit_block`) is built from
`storage.databases.LedgerDatabases` (the databases, the one write path, checked reads and
iterations), `storage.consistency.ConsistencyChecks` (the check at open) and
`storage.consensus_log.ConsensusLog` (the vote log, evidence, checkpoints); the keys below
are named once, in `storage.layout`; `storage.rebuild` sets a damaged data directory aside.

Main database keys (a one-byte prefix, then fixed-width big-endian integers,
a fixed-width hash, or a raw state key, so byte order is height order):

    h  block_hash:32                   -> height:u64
    I  epoch:u32 tx_hash:32            -> height:u64 index:u32 (`storage.tx_index`)
    T  epoch:u32                       -> the epoch's first height:u64
    s  state key                       -> state value (a history key's: a pointer, `storage.history`)
    e  height:u64 validator:u32 kind:u32 view:u64 -> encoded Evidence (equivocation proof)
    k  height:u64                      -> stable checkpoint: encoded (height, block hash, signatures)
    m  name                            -> metadata: b"mhead" (Head), b"mgenesis" (genesis hash),
                                          b"mformat" (this layout's version)

Block store keys (height first):

    height:u64 b                       -> encoded Block
    height:u64 c                       -> encoded CommitCertificate
    height:u64 r index:u32             -> encoded Receipt
    height:u64 h seq:u32               -> a history value written by block `height` (`storage.history`)

Vote log keys:

    height:u64 view:u64 kind:u32       -> vote payload (this node's consensus log)

Atomicity.  `commit_block` writes the block, its certificate, receipts and
history values to the block store in one synced batch, then the tx index, the state write set,
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
read verifies the checksums of the table blocks it loads: the main database's
tables are not compressed, and Snappy (the block store's) keeps incompressible
runs such as signatures as they are and has no checksum of its own, so without
it one flipped byte in a stored value would be served as the value.  At open,
the size of every table file is compared with the size the manifest recorded
(LevelDB itself would find a truncated table only at the first read of it).
And every iteration is checked at its end: plyvel ends one that stopped on a damaged
block as if it were complete (see `storage.leveldb.check_iteration_end`), which
would hand out a vote log, a tx filter or a state listing without its tail. Cost,
measured with `python -m tests.perf.pipeline --txs 30000` (three alternating runs
each way, on a shared 2-core machine where runs vary by ~10%): commit 11.4 -> 10.7
and execute 24.6 -> 24.8 CPU us per transaction, that is no difference within the
noise; with `--txs 100000` (two runs each way) commit 12.8 -> 11.4, execute 26.1 ->
22.8, noise again. In such runs a read seldom loads a table block (the hot state is
cached, the tx filter answers the misses); where one does, verifying the block costs
~1 us (random reads of 60 MB of tables with a 16 MB block cache: 3.6 -> 4.7 us per
read).

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

from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import plyvel

from chainnode.core import quorum, types
from chainnode.core.errors import DecodeError, StorageCorruptError, StorageError
from storage.consensus_log import ConsensusLog
from storage.consistency import CONSISTENCY_CHECK_BLOCKS, ConsistencyChecks
from storage.history import APPEND_ONLY_PREFIXES, HistoryValues
from storage.layout import (
    BLOCK_HASH_PREFIX,
    BLOCK_STORE,
    BLOCK_SUFFIX,
    BLOCKS_DIRECTORY,
    CERTIFICATE_SUFFIX,
    FORMAT_KEY,
    FORMAT_VERSION,
    GENESIS_KEY,
    HEAD_KEY,
    MAIN_DATABASE,
    RECEIPT_SUFFIX,
    STATE_PREFIX,
    U32,
    U64,
    VALIDATOR_CHANGE_PREFIX,
    VOTE_LOG,
    VOTES_DIRECTORY,
    Head,
    Write,
    WriteObserver,
    check_invariant,
    decode_head,
)
from storage.leveldb import claim_path, compute_prefix_end, open_database
from storage.rebuild import set_aside_for_rebuild

# What the node, the tools and the tests import from here, the parts' names included.
__all__ = [
    "BLOCKS_DIRECTORY",
    "BLOCK_STORE",
    "CONSISTENCY_CHECK_BLOCKS",
    "FORMAT_VERSION",
    "MAIN_DATABASE",
    "VOTES_DIRECTORY",
    "VOTE_LOG",
    "Head",
    "Ledger",
    "Write",
    "WriteObserver",
    "set_aside_for_rebuild",
]

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


class Ledger(ConsensusLog, ConsistencyChecks, HistoryValues):
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
        stored = self._get(HEAD_KEY)
        if stored is not None:
            try:
                self._head = decode_head(stored)
            except DecodeError as error:
                raise StorageCorruptError(
                    f"corrupt head in the ledger at {self.path}: {error.message}"
                ) from error
            stored_format = self._get(FORMAT_KEY)
            if stored_format != FORMAT_VERSION:
                raise StorageError(
                    f"the ledger at {self.path} has layout version "
                    f"{'1' if stored_format is None else stored_format.decode(errors='replace')}, "
                    f"this node reads version {FORMAT_VERSION.decode()}: start the node on an empty data "
                    "directory and it catches up from its peers (when every node of the network has an "
                    "older ledger, there is nobody to catch up from: write the network anew)"
                )
        # Read by height (catch-up, the API, audits), rarely: a small cache, no filter.
        # Snappy: this database is written once and never merged (its keys start with the
        # height), so each byte is compressed once; blocks and receipts shrink by 42% (a
        # 100k-transaction bench: 347 -> 202 bytes per transaction).
        self._blocks = open_database(
            self.path / BLOCKS_DIRECTORY,
            create=not self.read_only,
            lru_cache_size=BLOCK_STORE_CACHE_BYTES,
            write_buffer_size=BLOCK_STORE_WRITE_BUFFER_BYTES,
            compression="snappy",
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
        self._load_tx_index()
        if self._head is not None and not self.read_only:
            problem = self._find_consistency_problem(self._head)
            if problem is not None:
                raise StorageCorruptError(
                    f"the ledger at {self.path} is inconsistent: {problem}; a node must not serve it: "
                    "rebuild it from the peers (`chainnode node run --rebuild`)"
                )
            self._delete_blocks_above(self._head.height)
            self.prune_votes(self._head.height + 1)

    def _delete_blocks_above(self, height: int) -> None:
        """Forget block-store entries above the head: a crash came between the two batches."""
        self._delete_range(BLOCK_STORE, start=U64.pack(height + 1), sync=True)

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

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
        check_invariant(len(genesis_hash) == 32 and len(state_root) == 32, "genesis hashes are 32 bytes")
        head = Head(0, genesis_hash, state_root, genesis_time_ms)
        pointers = self._put_history_values(0, initial_state)
        with self._write_batch(MAIN_DATABASE, sync=True) as batch:
            for key, value in initial_state.items():
                batch.put(STATE_PREFIX + key, pointers.get(key, value))
            batch.put(GENESIS_KEY, genesis_hash)
            batch.put(FORMAT_KEY, FORMAT_VERSION)
            batch.put(HEAD_KEY, head.encode())
        self._head = head
        self._state_cache.clear()

    def get_genesis_hash(self) -> bytes:
        genesis_hash = self._get(GENESIS_KEY)
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
        return self._get_stored(height, BLOCK_SUFFIX)

    def get_block_height(self, block_hash: bytes) -> int | None:
        stored = self._get(BLOCK_HASH_PREFIX + block_hash)
        return None if stored is None else int(U64.unpack(stored)[0])

    def get_certificate(self, height: int) -> bytes | None:
        return self._get_stored(height, CERTIFICATE_SUFFIX)

    def get_receipt(self, height: int, index: int) -> bytes | None:
        return self._get_stored(height, RECEIPT_SUFFIX + U32.pack(index)) if 0 <= index < 2**32 else None

    def iter_validator_changes(self) -> Iterator[tuple[int, bytes]]:
        """(height, encoded proof) of every committed validator-set change recorded, ascending."""
        committed = self._committed_height()
        for key, value in self._iterate(MAIN_DATABASE, prefix=VALIDATOR_CHANGE_PREFIX):
            height = int(U64.unpack(key[1:9])[0])
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
        value = self._get(STATE_PREFIX + key)
        if value is not None and key.startswith(APPEND_ONLY_PREFIXES):
            value = self._get_history_value(key, value)
        if len(self._state_cache) >= STATE_CACHE_ENTRIES_MAX:
            self._state_cache.popitem(last=False)
        self._state_cache[key] = value
        return value

    def iter_state(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """State entries whose key starts with `prefix`, in key order (keys without the keyspace
        byte), from the first key >= `start` when given: LevelDB seeks there, so a page that
        resumes after a cursor reads only its own entries, not every key before the cursor."""
        if start is None or start <= prefix:
            iterated = self._iterate(MAIN_DATABASE, prefix=STATE_PREFIX + prefix)
        else:
            iterated = self._iterate(
                MAIN_DATABASE, start=STATE_PREFIX + start, stop=compute_prefix_end(STATE_PREFIX + prefix)
            )
        return self._resolve(iterated)

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
        check_invariant(header.height == head.height + 1, f"block {header.height} on head {head.height}")
        check_invariant(header.parent_hash == head.block_hash, f"block {header.height}: wrong parent hash")
        check_invariant(certificate.block_hash == block.hash, "the certificate certifies another block")
        check_invariant(certificate.height == header.height, "the certificate is for another height")
        check_invariant(len(receipts) == len(block.transactions), "one receipt per transaction")
        tx_hashes = [tx.hash for tx in block.transactions]
        check_invariant(
            [receipt.tx_hash for receipt in receipts] == tx_hashes,
            "the receipts are not for the block's transactions, in order",
        )
        check_invariant(len(set(tx_hashes)) == len(tx_hashes), "a transaction appears twice in the block")
        height_bytes = U64.pack(header.height)
        # The block store first: until the main batch moves the head, what this batch wrote
        # is above the head, never served, and deleted at the next open if a crash comes now.
        with self._write_batch(BLOCK_STORE, sync=True) as batch:
            batch.put(height_bytes + BLOCK_SUFFIX, block.encoded)
            batch.put(height_bytes + CERTIFICATE_SUFFIX, certificate.encode())
            receipt_prefix = height_bytes + RECEIPT_SUFFIX
            put = batch.put
            for index, receipt in enumerate(receipts):
                put(receipt_prefix + U32.pack(index), receipt.encoded)
            pointers = self._add_history_values(batch, header.height, write_set)
        with self._write_batch(MAIN_DATABASE, sync=True) as batch:
            batch.put(BLOCK_HASH_PREFIX + block.hash, height_bytes)
            opened = self._add_tx_entries(batch, header.height, tx_hashes)
            put = batch.put
            get_pointer = pointers.get
            for key, value in write_set.items():
                if value is None:
                    batch.delete(STATE_PREFIX + key)
                else:
                    put(STATE_PREFIX + key, get_pointer(key, value))
            if validator_change is not None:
                put(VALIDATOR_CHANGE_PREFIX + height_bytes, validator_change)
            new_head = Head(header.height, block.hash, header.state_root, header.timestamp_ms)
            batch.put(HEAD_KEY, new_head.encode())
        self._head = new_head
        self._note_tx_entries(opened, header.height, tx_hashes)
        for key, value in write_set.items():
            if key in self._state_cache:
                self._state_cache[key] = value
        # Only now that the head is durable: the votes of the committed height are done with.
        self.prune_votes(header.height + 1)
        return new_head
