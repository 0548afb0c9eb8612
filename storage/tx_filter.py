"""The ledger's in-memory filter of committed transaction ids.

Why the ledger keeps one, and what it costs: `storage.ledger`, "Committed-transaction filter".
"""

from __future__ import annotations

import struct
from collections.abc import Sequence


class TxFilter:
    """A scalable Bloom filter of transaction ids (SHA-256 outputs): no false negatives,
    well under 1% false positives.  The id's four 64-bit words are its four bit positions
    (12 bits per id).  A full layer is kept and a new, larger one takes the additions, so
    growing never rescans anything."""

    BITS_PER_ENTRY = 12
    # A miss (the common case) reads every layer, so layers are few: the first holds a
    # million ids (1.5 MB) and each next one four times the last.
    CAPACITY_MIN = 1 << 20
    GROWTH = 4
    _WORDS = struct.Struct("<4Q")

    def __init__(self) -> None:
        self._layers: list[tuple[bytearray, int]] = []  # (bits, mask), the last takes additions
        self._capacity = 0
        self._filled = 0
        self._add_layer(self.CAPACITY_MIN)

    def _add_layer(self, capacity: int) -> None:
        bits = 1 << max(capacity * self.BITS_PER_ENTRY - 1, 1).bit_length()  # a power of two
        self._layers.append((bytearray(bits // 8), bits - 1))
        self._capacity = capacity
        self._filled = 0

    def add(self, tx_hash: bytes) -> None:
        self.add_many((tx_hash,))

    def add_many(self, tx_hashes: Sequence[bytes]) -> None:
        """Add each of `tx_hashes` (a block's, or a chunk of the index at start-up), with the
        lookups done once; the four bit positions unrolled (this and `might_contain` run for
        every transaction)."""
        unpack = self._WORDS.unpack
        start = 0
        while start < len(tx_hashes):
            if self._filled >= self._capacity:
                self._add_layer(self.GROWTH * self._capacity)
            bits, mask = self._layers[-1]
            chunk = tx_hashes[start : start + self._capacity - self._filled]
            for tx_hash in chunk:
                assert len(tx_hash) == 32, "transaction ids are SHA-256 hashes"
                a, b, c, d = unpack(tx_hash)
                a &= mask
                b &= mask
                c &= mask
                d &= mask
                bits[a >> 3] |= 1 << (a & 7)
                bits[b >> 3] |= 1 << (b & 7)
                bits[c >> 3] |= 1 << (c & 7)
                bits[d >> 3] |= 1 << (d & 7)
            self._filled += len(chunk)
            start += len(chunk)

    def might_contain(self, tx_hash: bytes) -> bool:
        if len(tx_hash) != 32:
            return True  # not an id we could have added: let the index answer
        a, b, c, d = self._WORDS.unpack(tx_hash)
        # The low three bits of a position are the word's own (every mask ends in ...111).
        for bits, mask in self._layers:
            if (
                bits[(a & mask) >> 3] >> (a & 7) & 1
                and bits[(b & mask) >> 3] >> (b & 7) & 1
                and bits[(c & mask) >> 3] >> (c & 7) & 1
                and bits[(d & mask) >> 3] >> (d & 7) & 1
            ):
                return True
        return False

    @property
    def layers(self) -> int:
        return len(self._layers)
