"""History values: the ledger keeps the values of the state's history keyspaces in the block store.

Theory of operation: Records' versions and assets' provenance entries
(`chainnode.core.keyspaces.APPEND_ONLY_PREFIXES`) are written once and never
again, but their keys name a record or an asset, so in the main database they
land all over the key range, and LevelDB merged every one of them again at
each level as the chain grew: they were 60% of that database's bytes, and what
its compactions wrote per 100k transactions grew from 74 MB over the first 100k
of a 1M-transaction chain to 214-274 MB over the last ones
(`python -m tests.perf.storage_growth`, the realistic mix).
So their values go to the block store, under the height of the block that
wrote them (height order: written once, never merged, Snappy-compressed), and
the main database keeps a 12-byte pointer under the key.  `get_state` and
`iter_state` follow the pointer; what they return is unchanged, as are the
state root and everything the application sees.  A history key written again
(the application promises it never is) would only leave its old value behind.
Measured with that tool over 1M transactions: the main database's compactions wrote
802 MB instead of 1,743 (15 MB over the first 100k, 118 over the last), the ledger is
386 bytes per transaction instead of 422, and the node's thread costs the same (the
pointer costs one more block-store read only when a history value is read).
The block store's entries above the head are deleted at open (`storage.ledger`), those of
history values with the rest.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import plyvel

from chainnode.core.errors import StorageCorruptError
from chainnode.core.keyspaces import APPEND_ONLY_PREFIXES
from storage.databases import Batch, LedgerDatabases
from storage.layout import BLOCK_STORE, HISTORY_SUFFIX, LOCATION, MAIN_DATABASE, STATE_PREFIX, U32, U64

__all__ = ["APPEND_ONLY_PREFIXES", "HistoryValues"]


class HistoryValues(LedgerDatabases):
    """Writing history values to the block store and following their pointers back."""

    def _put_history_values(self, height: int, state: Mapping[bytes, bytes | None]) -> dict[bytes, bytes]:
        """`_add_history_values` in a synced block-store batch of its own (genesis), if any."""
        if not any(key.startswith(APPEND_ONLY_PREFIXES) for key in state):
            return {}
        with self._write_batch(BLOCK_STORE, sync=True) as batch:
            return self._add_history_values(batch, height, state)

    @staticmethod
    def _add_history_values(
        batch: Batch, height: int, state: Mapping[bytes, bytes | None]
    ) -> dict[bytes, bytes]:
        """Put the history values of `state` into a block-store batch; their pointers by key."""
        pointers: dict[bytes, bytes] = {}
        prefix = U64.pack(height) + HISTORY_SUFFIX
        for key, value in state.items():
            if value is not None and key.startswith(APPEND_ONLY_PREFIXES):
                seq = len(pointers)
                batch.put(prefix + U32.pack(seq), value)
                pointers[key] = LOCATION.pack(height, seq)
        return pointers

    def _get_history_value(self, key: bytes, pointer: bytes) -> bytes:
        """The value a history key's pointer names in the block store (see "History values")."""
        if len(pointer) != LOCATION.size:
            raise StorageCorruptError(
                f"the ledger at {self.path}: the pointer of history key {key!r} is {len(pointer)} bytes, "
                f"not {LOCATION.size}"
            )
        height, seq = LOCATION.unpack(pointer)
        try:
            value = self._blocks.get(U64.pack(height) + HISTORY_SUFFIX + U32.pack(seq), verify_checksums=True)
        except plyvel.Error as error:
            raise self._classify(error, BLOCK_STORE, "read from") from error
        if value is None or height > self._committed_height():
            raise StorageCorruptError(
                f"the ledger at {self.path}: the value of history key {key!r} (height {height}, "
                f"entry {seq}) is missing from the block store"
            )
        return bytes(value)

    def get_state_items(self) -> list[tuple[bytes, bytes]]:
        """The whole state in key order, as `iter_state(b"")` yields it, with the history values
        read in one pass over the block store in height order instead of one random read each
        (an auditor compares a node's whole state: at a million history values, ~8 s of reads)."""
        items: list[list[bytes]] = []
        waiting: dict[bytes, int] = {}  # pointer -> position in items
        for key, value in self._iterate(MAIN_DATABASE, prefix=STATE_PREFIX):
            state_key = bytes(key[1:])
            if state_key.startswith(APPEND_ONLY_PREFIXES):
                pointer = bytes(value)
                if len(pointer) != LOCATION.size or pointer in waiting:
                    return list(self._resolve(self._iterate(MAIN_DATABASE, prefix=STATE_PREFIX)))
                waiting[pointer] = len(items)
            items.append([state_key, bytes(value)])
        committed = self._committed_height()
        for height_bytes in sorted({pointer[:8] for pointer in waiting}):
            if int(U64.unpack(height_bytes)[0]) > committed:
                break
            prefix = height_bytes + HISTORY_SUFFIX
            for key, value in self._iterate(BLOCK_STORE, prefix=prefix):
                position = waiting.pop(height_bytes + bytes(key[len(prefix) :]), None)
                if position is not None:
                    items[position][1] = bytes(value)
        if waiting:
            # The first missing one, named as a point read names it.
            position = min(waiting.values())
            self._get_history_value(items[position][0], items[position][1])
        return [(key, value) for key, value in items]

    def _resolve(self, iterated: Iterator[tuple[bytes, bytes]]) -> Iterator[tuple[bytes, bytes]]:
        """State entries of the main database (`s` + key, stored value) as (key, value), each
        history pointer followed by a point read (a damaged pointer raises there, named)."""
        for key, value in iterated:
            state_key = bytes(key[1:])
            if state_key.startswith(APPEND_ONLY_PREFIXES):
                yield state_key, self._get_history_value(state_key, bytes(value))
            else:
                yield state_key, bytes(value)
