"""Catch-up on all cores: the signatures of fetched blocks are verified in a process pool first.

Theory of operation.  A node that is behind fetches committed blocks (`wire.BlockResponse`) and
the engine commits them one by one; executing a block verifies each transaction's signature
on the node's one thread (`Executor._authenticate`) unless the executor's `SignatureCache`
already holds that (tx hash, public key, signature).  `CatchUpVerifier.receive` takes each
response first: it resolves every signer in the committed state (`authority.get_signer`), sends
the (key, tx hash, signature) items to a spawn-started process pool (one worker per core, made
at the first response that needs it, shut down by `close`), awaits the flags through asyncio so
the loop goes on handling frames, marks each transaction that verified in the cache, and then
steps the engine with `BlocksReceived` as the traffic did before.

Nothing is skipped: a transaction whose signature failed is not marked, so execution verifies
it again and refuses its block; a signer the committed state does not know (registered in the
same response, say) is not sent at all and is checked at execution as before; and the cache key
holds the key, so a key that changed by the block's height misses and is verified again.  The
cache only saves work, it decides nothing.

The cache is first in, first out and holds `SIGNATURE_CACHE_ENTRIES_MAX` entries (40,000), and a
response may carry 64 full blocks (64 x `block_txs_max`, 128,000 transactions with the default
2,000): marked at once, the first blocks' entries would be gone before they execute.  So a
response is handed over in chunks of whole blocks of at most `CHUNK_TXS_MAX` transactions (4,096,
a tenth of the cache; a bigger block goes alone): a chunk is marked and stepped in one synchronous
stretch (the engine commits every block of it before the loop runs anything else), so only its
own entries, and the few its execution adds, are in the cache's way.  Every chunk of a response
is sent to the pool at once, so the workers verify the next chunks while this thread executes
one; small chunks let execution start after little verification.

One response is verified at a time; one more may wait (a response that arrives while one is in
flight), and any beyond that is dropped and counted (`responses_dropped`): the engine's
catch-up tracker asks again when its request times out.  A response of fewer than
`POOL_TXS_MIN` transactions (in blocks the node has not committed yet) goes straight to the
engine when nothing is in flight, as before.  A pool that fails (a worker killed) is logged and
the response is stepped unmarked: execution verifies it as it always did.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import multiprocessing
import os
from collections.abc import Callable, Sequence

from chainnode.app import authority
from chainnode.app.execution import SIGNATURE_CACHE_ENTRIES_MAX, SignatureCache
from chainnode.app.state import StateReader
from chainnode.core import quorum, types
from chainnode.core.crypto import SIGNATURE_ITEM_BYTES, verify_signature_batch
from chainnode.core.errors import StorageError
from chainnode.node import logs
from chainnode.node.signature_worker import watch_parent
from consensus.events import BlocksReceived, Event

log = logging.getLogger("chainnode.node.runtime")

BATCH_ITEMS = 512  # items per pool task
POOL_TXS_MIN = 256  # fewer transactions than this go to the engine without the pool
CHUNK_TXS_MAX = min(4_096, SIGNATURE_CACHE_ENTRIES_MAX // 2)  # marked ahead of execution at most
# A peer this many blocks ahead starts the pool's workers before the blocks arrive.
WARM_BLOCKS_BEHIND = 4
WORKERS_ENV = "CHAINNODE_CATCH_UP_WORKERS"  # 0 turns the pool off; unset: one worker per core

CertifiedBlocks = tuple[tuple[types.Block, quorum.CommitCertificate], ...]


def get_workers_setting() -> int:
    """The pool's size: `CHAINNODE_CATCH_UP_WORKERS` when set (0: no pool), else the core count."""
    value = os.environ.get(WORKERS_ENV, "").strip()
    if value:
        return max(0, int(value))
    return os.cpu_count() or 1


def split_into_chunks(blocks: CertifiedBlocks, txs_max: int = CHUNK_TXS_MAX) -> list[CertifiedBlocks]:
    """Consecutive runs of whole blocks of at most `txs_max` transactions (a bigger block alone)."""
    chunks: list[CertifiedBlocks] = []
    current: list[tuple[types.Block, quorum.CommitCertificate]] = []
    count = 0
    for item in blocks:
        size = len(item[0].transactions)
        if current and count + size > txs_max:
            chunks.append(tuple(current))
            current, count = [], 0
        current.append(item)
        count += size
    if current:
        chunks.append(tuple(current))
    return chunks


class Chunk:
    """One chunk's transactions that were sent to the pool, and the flags that come back."""

    def __init__(self, blocks: CertifiedBlocks, state: StateReader, signers: dict[str, bytes | None]) -> None:
        self.blocks = blocks
        self.sent: list[tuple[bytes, bytes, bytes]] = []  # (tx hash, public key, signature)
        items = bytearray()
        for block, _ in blocks:
            for tx in block.transactions:
                try:
                    public_key = signers[tx.signer]
                except KeyError:
                    signer = authority.get_signer(state, tx.signer)
                    public_key = signers[tx.signer] = None if signer is None else signer.public_key
                if public_key is None or len(tx.signature) != 64:
                    continue  # unknown here (or malformed): execution checks it as before
                self.sent.append((tx.hash, public_key, tx.signature))
                items += public_key + tx.hash + tx.signature
        self.items = bytes(items)
        self.flags: list[asyncio.Future[bytes]] = []

    def submit(self, pool: concurrent.futures.Executor, loop: asyncio.AbstractEventLoop) -> None:
        step = BATCH_ITEMS * SIGNATURE_ITEM_BYTES
        for start in range(0, len(self.items), step):
            batch = self.items[start : start + step]
            self.flags.append(loop.run_in_executor(pool, verify_signature_batch, batch))

    async def mark(self, cache: SignatureCache) -> int:
        """Await the flags and mark what verified; returns how many did."""
        flags = b"".join(await asyncio.gather(*self.flags))
        marked = 0
        for (tx_hash, public_key, signature), flag in zip(self.sent, flags, strict=True):
            if flag == 1:
                cache.mark_verified(tx_hash, public_key, signature)
                marked += 1
        return marked


class CatchUpVerifier:
    """Takes every block response from the traffic and steps the engine with it, verified ahead."""

    def __init__(
        self,
        *,
        signatures: SignatureCache,
        state: StateReader,
        get_head_height: Callable[[], int],
        step: Callable[[Event], None],
        on_storage_failure: Callable[[Exception], None],
        workers: int,
        chunk_txs_max: int = CHUNK_TXS_MAX,
    ) -> None:
        self._signatures = signatures
        self._state = state
        self._get_head_height = get_head_height
        self._step = step
        self._on_storage_failure = on_storage_failure
        self.workers = workers
        self.chunk_txs_max = chunk_txs_max
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._task: asyncio.Task[None] | None = None
        self._waiting: tuple[str, CertifiedBlocks] | None = None
        self.responses_verified = 0
        self.responses_dropped = 0
        self.txs_marked = 0

    @property
    def is_busy(self) -> bool:
        return self._task is not None

    def note_peer_height(self, height: int) -> None:
        """A peer's committed height (its status): when it is `WARM_BLOCKS_BEHIND` or more above
        ours, start the pool's workers now, so that their start-up (~0.4 s each for a spawned
        interpreter) overlaps the block request instead of delaying the first response."""
        if self.workers <= 0 or self._pool is not None:
            return
        if height - self._get_head_height() < WARM_BLOCKS_BEHIND:
            return
        try:
            pool = self._get_pool()
            for _ in range(self.workers):
                pool.submit(verify_signature_batch, b"")  # spawns the workers; verifies nothing
        except (OSError, RuntimeError) as error:
            log.warning("catch-up pool unavailable, blocks are verified at execution: %s", error)

    def receive(self, peer_id: str, blocks: CertifiedBlocks) -> None:
        """A peer's block response, on the loop (from `PeerTraffic`)."""
        if self._task is not None:
            if self._waiting is None:
                self._waiting = (peer_id, blocks)
            else:
                self.responses_dropped += 1
                log.debug("block response from %s dropped: one is verified and one waits", peer_id)
            return
        if self.workers <= 0 or count_new_txs(blocks, self._get_head_height()) < POOL_TXS_MIN:
            self._step(BlocksReceived(peer_id, blocks))
            return
        self._task = asyncio.get_running_loop().create_task(self._verify_and_step(peer_id, blocks))

    async def _verify_and_step(self, peer_id: str, blocks: CertifiedBlocks) -> None:
        try:
            while True:
                try:
                    await self._hand_over(peer_id, blocks)
                except (StorageError, OSError) as error:
                    self._on_storage_failure(error)
                    self._waiting = None
                except Exception:  # a bug here must not stop catch-up: the next response goes on
                    log.exception("catch-up: handing over the blocks from %s failed", peer_id)
                if self._waiting is None:
                    return
                peer_id, blocks = self._waiting
                self._waiting = None
                if count_new_txs(blocks, self._get_head_height()) < POOL_TXS_MIN:
                    self._step_from(peer_id, blocks)
                    return
        finally:
            self._task = None

    async def _hand_over(self, peer_id: str, blocks: CertifiedBlocks) -> None:
        """Verify `blocks` chunk by chunk in the pool, mark what verified, step the engine."""
        head_height = self._get_head_height()
        committed = tuple(itertools.takewhile(lambda item: item[0].height <= head_height, blocks))
        chunks = split_into_chunks(blocks[len(committed) :], self.chunk_txs_max)
        signers: dict[str, bytes | None] = {}
        pending = [Chunk(chunk, self._state, signers) for chunk in chunks]
        if not pending:
            self._step_from(peer_id, blocks)
            return
        try:
            pool = self._get_pool()
            loop = asyncio.get_running_loop()
            for chunk in pending:
                chunk.submit(pool, loop)
        except (OSError, RuntimeError) as error:
            log.warning("catch-up pool unavailable, blocks are verified at execution: %s", error)
            self._step_from(peer_id, blocks)
            return
        self.responses_verified += 1
        for position, chunk in enumerate(pending):
            try:
                self.txs_marked += await chunk.mark(self._signatures)
            except (concurrent.futures.BrokenExecutor, OSError) as error:
                log.warning("catch-up pool failed, blocks are verified at execution: %s", error)
                self._close_pool()
            # The committed prefix goes with the first chunk: the engine skips it, as before.
            self._step_from(peer_id, committed + chunk.blocks if position == 0 else chunk.blocks)
            if self._get_head_height() < chunk.blocks[-1][0].height:
                break  # a block was refused (or the node stops): the rest cannot follow it
        for chunk in pending:
            for future in chunk.flags:
                future.cancel()

    def _step_from(self, peer_id: str, blocks: CertifiedBlocks) -> None:
        with logs.handling_peer(peer_id):
            self._step(BlocksReceived(peer_id, blocks))

    def _get_pool(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._pool is None:
            self._pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=watch_parent,
                initargs=(os.getpid(),),
            )
            log.info("catch-up: verifying fetched blocks' signatures in %d worker processes", self.workers)
        return self._pool

    def _close_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    async def close(self) -> None:
        """Stop verifying (the node stops): cancel what is in flight and shut the pool down."""
        self._waiting = None
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self._close_pool()


def count_new_txs(blocks: Sequence[tuple[types.Block, quorum.CommitCertificate]], head_height: int) -> int:
    return sum(len(block.transactions) for block, _ in blocks if block.height > head_height)
