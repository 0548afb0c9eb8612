"""Signature verification ahead of re-execution, spread over a process pool (PyNaCl holds the GIL)."""

from __future__ import annotations

import multiprocessing
from multiprocessing.pool import AsyncResult, Pool

from chainnode.core.crypto import SIGNATURE_ITEM_BYTES, verify_signature_batch

BATCH_ITEMS = 1024  # items per pool task
POOL_WAIT_S = 600.0


class Verified:
    """The flags of one submitted batch, from the pool or computed in this process."""

    def __init__(self, results: AsyncResult[list[bytes]] | None, flags: bytes = b"") -> None:
        self._results = results
        self._flags = flags

    def get(self) -> bytes:
        if self._results is not None:
            self._flags = b"".join(self._results.get(timeout=POOL_WAIT_S))
            self._results = None
        return self._flags


class SignatureVerifier:
    """A spawn-started process pool (or this process when `workers` is 0) verifying item batches."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: Pool | None = None
        if workers > 0:
            self._pool = multiprocessing.get_context("spawn").Pool(workers)

    def submit(self, items: bytes) -> Verified:
        if self._pool is None:
            return Verified(None, verify_signature_batch(items))
        step = BATCH_ITEMS * SIGNATURE_ITEM_BYTES
        batches = [items[start : start + step] for start in range(0, len(items), step)]
        return Verified(self._pool.map_async(verify_signature_batch, batches))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None
