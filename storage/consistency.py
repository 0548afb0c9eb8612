"""The ledger's consistency check at open: do the head, the block store and the indexes agree?

Theory of operation (see "Consistency at open" in `storage.ledger`): checksums catch damaged
bytes, not lost ones, so a writable open asks `_find_consistency_problem` whether the parts of
the ledger agree: the block store holds nothing more than one height above the head (one is a
crash between a commit's two batches); the head block is in the block store with the head's
hash and state root; and for the head and the `CONSISTENCY_CHECK_BLOCKS - 1` blocks below it,
each names the next one down as its parent, has a commit certificate for its hash, its
receipts, and block-hash and tx-index entries that point at it.  The answer is a description
of the first disagreement, which the ledger turns into `StorageCorruptError`.
"""

from __future__ import annotations

from chainnode.core import quorum, types
from chainnode.core.errors import DecodeError
from storage.layout import (
    BLOCK_HASH_PREFIX,
    BLOCK_STORE,
    BLOCK_SUFFIX,
    CERTIFICATE_SUFFIX,
    GENESIS_KEY,
    RECEIPT_SUFFIX,
    U32,
    U64,
    Head,
)
from storage.tx_index import TxIndex

# Blocks below the head whose certificate, indexes and parent link are checked at open.
CONSISTENCY_CHECK_BLOCKS = 16


class ConsistencyChecks(TxIndex):
    """What a writable open checks before the node may serve the ledger."""

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
            is_genesis = self._get(GENESIS_KEY) == head.block_hash
            return None if is_genesis else "the head at height 0 is not the genesis"
        later: types.BlockHeader | None = None
        for height in range(head.height, max(head.height - CONSISTENCY_CHECK_BLOCKS, 0), -1):
            stored = self._get_stored(height, BLOCK_SUFFIX)
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
        encoded = self._get_stored(height, CERTIFICATE_SUFFIX)
        if encoded is None:
            return f"the commit certificate of block {height} is missing"
        try:
            certificate = quorum.decode_commit_certificate(encoded)
        except DecodeError as error:
            return f"the commit certificate of block {height} does not decode: {error.message}"
        if (certificate.height, certificate.block_hash) != (height, block_hash):
            return f"the commit certificate stored at height {height} certifies another block"
        if self._get(BLOCK_HASH_PREFIX + block_hash) != U64.pack(height):
            return f"the block-hash index does not place block {height} at its height"
        if tx_hashes and self._get_stored(height, RECEIPT_SUFFIX + U32.pack(len(tx_hashes) - 1)) is None:
            return f"the receipts of block {height} are missing"
        for index, tx_hash in enumerate(tx_hashes):
            if not self.is_tx_at(tx_hash, height, index):
                return (
                    f"the tx index does not place transaction {tx_hash.hex()} "
                    f"at height {height}, index {index}"
                )
        return None

    def _get_stored_height_max(self) -> int | None:
        """The highest height with an entry in the block store (committed or not)."""
        for key in self._iterate(BLOCK_STORE, include_value=False, reverse=True):
            return int(U64.unpack(key[:8])[0])
        return None
