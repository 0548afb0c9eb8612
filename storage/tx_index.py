"""The tx index: where each committed transaction is, keyed so that recent entries stay together.

Theory of operation: the index maps a transaction's id to (height, index in block).  Keyed by
the id alone, its entries were spread over the whole key range, and LevelDB merged every one of
them again at each level as the chain grew: over a 1M-transaction chain, 59% of what the main
database's compactions wrote (`python -m tests.perf.storage_growth`, the realistic mix: 802 MB
with it, 329 without).  So the index is cut into epochs of `TX_EPOCH_TXS` transactions and keyed
epoch first:

    I  epoch:u32 tx_hash:32            -> height:u64 index:u32
    T  epoch:u32                       -> height:u64, the first height of the epoch

A block's transactions all go to the epoch open when it commits; a new epoch opens at the first
block committed after the open one holds `TX_EPOCH_TXS` or more, in the same batch as that
block's entries.  New entries land in the newest epoch's small key range, after every older one,
so the files of older epochs are not merged again.  For that the prefix `I` sorts below every
other key of the main database: LevelDB merges a new file with every older file whose key range
overlaps its range, from its smallest key to its largest, and a file of new entries under `t`
(after the state's `s`) spanned every older epoch.  Measured over 1M transactions of the
realistic mix: what the main database's compactions wrote went from 802 MB (keyed by id) to
693 MB, a seventh less; without any index it would have been 329 MB, so most of the index's
cost remains, in the merges of each epoch's own random keys and in the probes of older epochs
(every probe that consults two table files counts as a LevelDB "seek", and enough of them
compact a file); the compaction thread's CPU per transaction still grows with the chain
(6 us over the first 100k, 15 over the last).  The epochs' first heights are few (one per
65,536 transactions) and kept in memory; the open epoch's count is counted at open.

Reads.  The epoch of a known height is found by bisection (`_has_tx_at`, the open's consistency
check).  A lookup by id alone (`_find_tx_location`) asks the epochs newest first, one LevelDB read
each (Bloom-filtered per table file): a recent transaction is found at once; an id that was never
committed is answered by the ledger's in-memory filter before any read, except its ~1% false
positives, which read every epoch (16 reads at 1M transactions).
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence

from chainnode.core.errors import StorageCorruptError
from storage.databases import Batch, LedgerDatabases
from storage.layout import LOCATION, MAIN_DATABASE, TX_EPOCH_PREFIX, TX_PREFIX, U32, U64
from storage.tx_filter import TxFilter

TX_EPOCH_TXS = 65_536  # transactions an epoch holds before the next block opens a new one
TX_FILTER_LOAD_CHUNK = 4096  # committed ids read from the index per `TxFilter.add_many` at open


class TxIndex(LedgerDatabases):
    """The epoch-keyed tx index of one ledger and its in-memory filter (see the module docstring)."""

    _tx_epoch_starts: list[int]  # the first height of each epoch, ascending
    _tx_epoch_count: int  # transactions in the newest epoch
    _tx_entries: int  # entries in the index: counted at open, kept at each commit
    _tx_filter: TxFilter  # every committed id (see "Committed-transaction filter" in storage.ledger)

    def _load_tx_index(self) -> None:
        """Read the epochs' first heights, count the newest epoch's entries, and build the filter
        of every committed id from the index's keys (~1 s per million), counting them."""
        starts = [0]
        for key, value in self._iterate(MAIN_DATABASE, prefix=TX_EPOCH_PREFIX):
            epoch = int(U32.unpack(key[1:5])[0])
            if epoch != len(starts):
                raise StorageCorruptError(
                    f"the tx index of the ledger at {self.path} is damaged: "
                    f"epoch {epoch} follows epoch {len(starts) - 1}"
                )
            starts.append(int(U64.unpack(value)[0]))
        self._tx_epoch_starts = starts
        newest = TX_PREFIX + U32.pack(len(starts) - 1)
        self._tx_epoch_count = sum(
            1 for _ in self._iterate(MAIN_DATABASE, prefix=newest, include_value=False)
        )
        self._tx_filter = TxFilter()
        self._tx_entries = 0
        keys = self._iterate(MAIN_DATABASE, prefix=TX_PREFIX, include_value=False)
        while chunk := [bytes(key[5:]) for key in itertools.islice(keys, TX_FILTER_LOAD_CHUNK)]:
            self._tx_filter.add_many(chunk)
            self._tx_entries += len(chunk)

    def _add_tx_entries(self, batch: Batch, height: int, tx_hashes: Sequence[bytes]) -> bool:
        """Put the entries of block `height` into the main batch; whether they open a new epoch
        (for `_note_tx_entries`, once the batch is written)."""
        epoch = len(self._tx_epoch_starts) - 1
        opened = self._tx_epoch_count >= TX_EPOCH_TXS and bool(tx_hashes)
        if opened:
            epoch += 1
            batch.put(TX_EPOCH_PREFIX + U32.pack(epoch), U64.pack(height))
        prefix = TX_PREFIX + U32.pack(epoch)
        put = batch.put
        pack_location = LOCATION.pack
        for index, tx_hash in enumerate(tx_hashes):
            put(prefix + tx_hash, pack_location(height, index))
        return opened

    def _note_tx_entries(self, opened: bool, height: int, tx_hashes: Sequence[bytes]) -> None:
        """What `_add_tx_entries` wrote, in memory, after its batch was written."""
        if opened:
            self._tx_epoch_starts.append(height)
            self._tx_epoch_count = 0
        self._tx_epoch_count += len(tx_hashes)
        self._tx_entries += len(tx_hashes)
        self._tx_filter.add_many(tx_hashes)

    def get_tx_location(self, tx_hash: bytes) -> tuple[int, int] | None:
        """(height, index in block) of a committed transaction: the filter, then the epochs
        newest first."""
        if not self._tx_filter.might_contain(tx_hash):
            return None
        for epoch in range(len(self._tx_epoch_starts) - 1, -1, -1):
            stored = self._get(TX_PREFIX + U32.pack(epoch) + tx_hash)
            if stored is not None:
                height, index = LOCATION.unpack(stored)
                return int(height), int(index)
        return None

    def is_committed(self, tx_hash: bytes) -> bool:
        return self.get_tx_location(tx_hash) is not None

    def is_tx_at(self, tx_hash: bytes, height: int, index: int) -> bool:
        """Whether the index places `tx_hash` at (height, index): one read, in that height's epoch
        (the open's consistency check, an auditor's check)."""
        epoch = bisect.bisect_right(self._tx_epoch_starts, height) - 1
        return self._get(TX_PREFIX + U32.pack(epoch) + tx_hash) == LOCATION.pack(height, index)

    def count_tx_index(self) -> int:
        """Entries in the tx index: those its keys held at open, plus every commit's since (an
        auditor compares them with the transactions of the chain)."""
        return self._tx_entries
