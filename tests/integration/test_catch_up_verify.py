"""Catch-up verification (chainnode.node.catch_up_verify): fetched blocks' signatures on all cores.

A real chain (`audit_chain.build_chain`: the pilot network's entities sign, the real executor
over a real LevelDB, certificates signed with the validators' keys), plus one more certified
block whose one transaction carries a corrupted signature (as a Byzantine quorum would certify
it).  A real node of that network on an empty data directory, not started, receives the blocks
as the transport would hand over a `BlockResponse` (its `PeerTraffic.on_peer_frame`); its
verifier uses a real spawn-started process pool.  Each `BlocksReceived` the engine gets is
recorded with what the executor's signature cache held at that moment, then stepped for real.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from chainnode.app import authority
from chainnode.app.execution import SIGNATURE_CACHE_ENTRIES_MAX, Executor, SignatureCache
from chainnode.app.genesis import ChainParams, load_genesis
from chainnode.core import types
from chainnode.node import catch_up_verify, wire
from chainnode.node.catch_up_verify import WARM_BLOCKS_BEHIND
from chainnode.node.clock import get_time_ms
from chainnode.node.config import load_node_config
from chainnode.node.runtime import Node
from chainnode.tools.devnet import LocalNetwork
from consensus.events import BlocksReceived, Event
from storage.ledger import Ledger
from tests.factories import load_validator_keys
from tests.integration import audit_chain

GOOD_HEIGHTS = 6
TXS_PER_BLOCK = 100  # 600 good transactions: above the pool's threshold
SOURCE = "validator-01"


@dataclasses.dataclass
class Setup:
    node: Node
    frames: list[bytes]  # block responses: heights 1-7, the corrupted block last
    bad_tx: types.Transaction
    # Per BlocksReceived the engine got: (height, tx hash, signature cached at that moment).
    seen: list[tuple[int, bytes, bool]] = dataclasses.field(default_factory=list)
    chunks: list[int] = dataclasses.field(default_factory=list)  # blocks per BlocksReceived

    def record_steps(self) -> None:
        verifier = self.node.catch_up
        real_step: Callable[[Event], None] = verifier._step
        cache = self.node.executor.signatures

        def step(event: Event) -> None:
            if isinstance(event, BlocksReceived):
                self.chunks.append(len(event.blocks))
                for block, _ in event.blocks:
                    for tx in block.transactions:
                        signer = authority.get_signer(self.node.ledger, tx.signer)
                        assert signer is not None
                        cached = cache.is_verified(tx.hash, signer.public_key, tx.signature)
                        self.seen.append((block.height, tx.hash, cached))
            real_step(event)

        verifier._step = step

    async def deliver(self, frame: bytes) -> None:
        self.node.traffic.on_peer_frame(SOURCE, frame)
        while self.node.catch_up.is_busy:
            await asyncio.sleep(0.01)


def _corrupt(tx: types.Transaction) -> types.Transaction:
    signature = bytes([tx.signature[0] ^ 1]) + tx.signature[1:]
    corrupted = types.decode_transaction(tx.encoded[: -len(tx.signature)] + signature)
    assert corrupted.hash == tx.hash and corrupted.signature == signature
    return corrupted


def _append_corrupted_block(chain: audit_chain.BuiltChain) -> types.Transaction:
    """Height 7, certified by all four validators, one of whose transactions does not verify."""
    genesis = load_genesis(chain.genesis_path)
    submitters, outsider = audit_chain.load_identities(chain.network_dir)
    txs = audit_chain.build_transactions(GOOD_HEIGHTS + 1, TXS_PER_BLOCK, submitters, outsider)
    txs[5] = bad = _corrupt(txs[5])
    ledger = Ledger(chain.ledger_dir)
    try:
        # The executor that built it took the bad signature as verified (what a planted cache does).
        cache = SignatureCache()
        signer = authority.get_signer(ledger, bad.signer)
        assert signer is not None
        cache.mark_verified(bad.hash, signer.public_key, bad.signature)
        keys = load_validator_keys(chain.network_dir, genesis.validators)
        audit_chain.commit_block(ledger, Executor(audit_chain.CHAIN_ID, cache), genesis, keys, txs)
    finally:
        ledger.close()
    return bad


def _block_response(chain: audit_chain.BuiltChain, heights: range) -> bytes:
    ledger = Ledger(chain.ledger_dir, read_only=True)
    try:
        items = []
        for height in heights:
            block, certificate = ledger.get_block(height), ledger.get_certificate(height)
            assert block is not None and certificate is not None
            items.append((block, certificate))
    finally:
        ledger.close()
    return wire.encode_block_response(items)


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    chain = audit_chain.build_chain(tmp_path, heights=GOOD_HEIGHTS, txs_per_block=TXS_PER_BLOCK)
    bad_tx = _append_corrupted_block(chain)
    frames = [_block_response(chain, range(1, GOOD_HEIGHTS + 2))]
    network = LocalNetwork(chain.network_dir)
    node = Node(load_node_config(network.get_node("validator-02").config_path))
    node.catch_up.workers = 2  # a real pool, whatever this machine's core count
    node.catch_up.chunk_txs_max = 250  # two blocks a chunk: the response goes in four chunks
    setup = Setup(node, frames, bad_tx)
    setup.record_steps()
    try:
        yield setup
    finally:
        node.ledger.close()  # each test closes the verifier (and its pool) on its own loop


async def test_the_pool_marks_exactly_the_valid_signatures_and_execution_refuses_the_bad_block(
    setup: Setup,
) -> None:
    try:
        await setup.deliver(setup.frames[0])
    finally:
        await setup.node.catch_up.close()
    # Execution verified the corrupted signature itself and refused the block.
    assert setup.node.ledger.get_head().height == GOOD_HEIGHTS
    assert not setup.node.ledger.is_committed(setup.bad_tx.hash)
    signer = authority.get_signer(setup.node.ledger, setup.bad_tx.signer)
    assert signer is not None
    assert not setup.node.executor.signatures.is_verified(
        setup.bad_tx.hash, signer.public_key, setup.bad_tx.signature
    )
    verifier = setup.node.catch_up
    assert verifier._pool is None  # closed: its workers are gone
    assert verifier.responses_verified == 1
    assert setup.chunks == [2, 2, 2, 1]  # whole blocks, at most 250 transactions a chunk
    # Every transaction of heights 1-6 was in the cache when the engine got its block: the pool
    # verified it, execution did not (it runs after the step, not before).
    good = [(height, tx_hash, cached) for height, tx_hash, cached in setup.seen if height <= GOOD_HEIGHTS]
    assert len(good) == GOOD_HEIGHTS * TXS_PER_BLOCK
    assert all(cached for _, _, cached in good)
    # Height 7: its 99 good transactions marked, the corrupted one not.
    last = {tx_hash: cached for height, tx_hash, cached in setup.seen if height == GOOD_HEIGHTS + 1}
    assert len(last) == TXS_PER_BLOCK
    assert last.pop(setup.bad_tx.hash) is False
    assert all(last.values())
    assert verifier.txs_marked == GOOD_HEIGHTS * TXS_PER_BLOCK + TXS_PER_BLOCK - 1


async def test_without_the_pool_execution_verifies_every_signature_itself(setup: Setup) -> None:
    setup.node.catch_up.workers = 0  # CHAINNODE_CATCH_UP_WORKERS=0
    await setup.deliver(setup.frames[0])
    assert setup.chunks == [GOOD_HEIGHTS + 1]  # the whole response in one step, as before the pool
    assert not any(cached for _, _, cached in setup.seen)  # nothing verified ahead
    assert setup.node.ledger.get_head().height == GOOD_HEIGHTS  # the same outcome
    assert setup.node.catch_up.responses_verified == 0


async def test_one_response_waits_and_a_third_is_dropped(setup: Setup) -> None:
    node = setup.node
    try:
        for _ in range(3):  # all three arrive before the first one's flags come back
            node.traffic.on_peer_frame(SOURCE, setup.frames[0])
        assert node.catch_up.is_busy
        while node.catch_up.is_busy:
            await asyncio.sleep(0.01)
    finally:
        await node.catch_up.close()
    assert node.catch_up.responses_dropped == 1
    # The waiting copy found heights 1-6 committed and only height 7 new: under the pool's
    # threshold, it went to the engine directly, and height 7 was refused again.
    assert node.catch_up.responses_verified == 1
    assert node.ledger.get_head().height == GOOD_HEIGHTS


def test_a_response_of_full_blocks_is_handed_over_in_chunks_the_cache_holds() -> None:
    """64 blocks of `block_txs_max` transactions would overrun the cache if marked at once."""
    block_txs_max = ChainParams().block_txs_max  # the default; a network's genesis may set another
    full_response_txs = wire.BLOCKS_PER_RESPONSE_MAX * block_txs_max
    assert full_response_txs > SIGNATURE_CACHE_ENTRIES_MAX  # so the chunks are needed
    # A chunk, and what executing its last block adds, fit in the cache.
    assert catch_up_verify.CHUNK_TXS_MAX + block_txs_max <= SIGNATURE_CACHE_ENTRIES_MAX


async def test_a_peer_far_enough_ahead_starts_the_workers_before_any_block_arrives(setup: Setup) -> None:
    node = setup.node
    try:
        # One block behind is normal for a moment (the commit votes are in flight): no pool.
        node.traffic.on_peer_frame(SOURCE, wire.encode_status(1, get_time_ms()))
        assert node.catch_up._pool is None
        node.traffic.on_peer_frame(SOURCE, wire.encode_status(WARM_BLOCKS_BEHIND, get_time_ms()))
        pool = node.catch_up._pool
        assert pool is not None
        deadline = time.monotonic() + 30
        while len(pool._processes) < 2 and time.monotonic() < deadline:  # spawned, not on demand
            await asyncio.sleep(0.05)
        assert len(pool._processes) == 2
        await setup.deliver(setup.frames[0])  # the response then uses the running pool
        assert node.catch_up._pool is pool
        assert node.ledger.get_head().height == GOOD_HEIGHTS
        assert node.catch_up.responses_verified == 1
    finally:
        await node.catch_up.close()
