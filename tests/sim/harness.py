"""An in-memory, seeded network of real consensus engines.

The application is a toy but honest state machine: a block's transactions
are opaque signed records and its state root chains the previous root with
the tx root, so a replica that re-executes a block can tell a wrong root.
Delivery order is decided by a seeded `random.Random`; nothing reads a clock.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from chainnode import crypto, types
from consensus.effects import Broadcast, CommitBlock, Diagnostic, Effect, PersistVote, RequestBlocks
from consensus.engine import (
    BlocksReceived,
    ChainHead,
    Engine,
    EngineConfig,
    MessageReceived,
    PeerStatus,
    Tick,
)
from consensus.messages import Message, Vote, decode_message

CHAIN_ID = "sim-chain"
STATUS_INTERVAL_MS = 1_000  # as chainnode.node.STATUS_INTERVAL_MS
GENESIS_HASH = crypto.hash_tagged("genesis", b"sim")


@dataclass
class ToyApp:
    """Chains state roots over tx roots; keeps a queue of pending payload transactions."""

    key: crypto.SigningKey
    validators: types.ValidatorSet
    pending: list[types.Transaction] = field(default_factory=list)
    roots: dict[bytes, bytes] = field(default_factory=lambda: {GENESIS_HASH: types.ZERO_HASH})
    head_hash: bytes = GENESIS_HASH
    corrupt_roots: bool = False

    def compute_root(self, parent: bytes, tx_root: bytes) -> bytes:
        return crypto.hash_tagged("state", self.roots[parent] + tx_root)

    def propose_block(
        self, *, height: int, view: int, proposer: int, timestamp_ms: int, parent_hash: bytes
    ) -> types.Block | None:
        if not self.pending:
            return None
        txs = self.pending[:10]
        tx_root = types.compute_tx_root(txs)
        state_root = self.compute_root(parent_hash, tx_root)
        if self.corrupt_roots:
            state_root = crypto.sha256(state_root)
        header = types.BlockHeader(
            CHAIN_ID,
            height,
            view,
            proposer,
            timestamp_ms,
            parent_hash,
            tx_root,
            types.compute_receipts_root([]),
            state_root,
            self.validators.compute_hash(),
            len(txs),
        )
        return types.Block.create(header, txs)

    def find_block_problem(self, block: types.Block) -> str | None:
        header = block.header
        if header.tx_root != types.compute_tx_root(block.transactions):
            return "tx root mismatch"
        if header.state_root != self.compute_root(header.parent_hash, header.tx_root):
            return "state root mismatch"
        return None

    def apply_commit(self, block: types.Block) -> None:
        self.roots[block.hash] = block.header.state_root
        committed = {tx.hash for tx in block.transactions}
        self.pending = [tx for tx in self.pending if tx.hash not in committed]


def make_transaction(key: crypto.SigningKey, nonce: int) -> types.Transaction:
    return types.Transaction.create(
        key,
        chain_id=CHAIN_ID,
        signer="client",
        nonce=nonce,
        valid_until=10**6,
        module="records",
        action="put",
        args=("k", nonce.to_bytes(8, "big")),
    )


@dataclass
class Replica:
    name: str
    key: crypto.SigningKey
    app: ToyApp
    engine: Engine
    log: list[Vote] = field(default_factory=list)  # the persisted vote log
    chain: list[tuple[types.Block, types.CommitCertificate]] = field(default_factory=list)
    diagnostics: list[str] = field(default_factory=list)
    alive: bool = True


class SimNetwork:
    """Replicas exchanging encoded messages through a seeded in-memory queue."""

    def __init__(
        self,
        size: int,
        seed: int,
        *,
        config: EngineConfig | None = None,
        drop_probability: float = 0.0,
        duplicate_probability: float = 0.0,
    ) -> None:
        self.rng = random.Random(seed)
        self.drop_probability = drop_probability
        self.duplicate_probability = duplicate_probability
        self.now_ms = 0
        self.config = config or EngineConfig(CHAIN_ID, proposal_delay_ms=0)
        self.keys = [crypto.SigningKey(self.rng.randbytes(32)) for _ in range(size)]
        self.validators = types.ValidatorSet(
            tuple(types.Validator(f"v{i}", key.public_key) for i, key in enumerate(self.keys))
        )
        self.replicas = [self._new_replica(i, persisted=[]) for i in range(size)]
        self.queue: list[tuple[int, str, bytes]] = []  # (to index, sender name, encoded message)
        self.dropped_links: set[tuple[int, int]] = set()

    def _new_replica(self, index: int, persisted: list[Vote], chain=None) -> Replica:
        key = self.keys[index]
        app = ToyApp(key, self.validators)
        head = ChainHead(0, GENESIS_HASH, 0)
        for block, _ in chain or []:
            app.apply_commit(block)
            head = ChainHead(block.height, block.hash, block.header.timestamp_ms)
        engine = Engine(
            self.config,
            validators=self.validators,
            own_index=index,
            key=key,
            app=app,
            head=head,
            now_ms=self.now_ms,
            persisted=persisted,
            rng=random.Random(self.rng.random()),
        )
        return Replica(f"v{index}", key, app, engine)

    def submit(self, count: int, client_key: crypto.SigningKey, nonce_base: int = 0) -> None:
        txs = [make_transaction(client_key, nonce_base + i) for i in range(count)]
        for replica in self.replicas:
            replica.app.pending.extend(txs)

    def run_effects(self, index: int, effects: list[Effect]) -> None:
        replica = self.replicas[index]
        for effect in effects:
            if isinstance(effect, PersistVote):
                replica.log.append(effect.message)  # type: ignore[arg-type]
            elif isinstance(effect, Broadcast):
                data = effect.message.encode()
                for other in range(len(self.replicas)):
                    if other == index or (index, other) in self.dropped_links:
                        continue
                    if self.rng.random() < self.drop_probability:
                        continue
                    self.queue.append((other, replica.name, data))
                    if self.rng.random() < self.duplicate_probability:
                        self.queue.append((other, replica.name, data))
            elif isinstance(effect, CommitBlock):
                replica.app.apply_commit(effect.block)
                replica.chain.append((effect.block, effect.certificate))
            elif isinstance(effect, RequestBlocks):
                self._serve_blocks(index, effect)
            elif isinstance(effect, Diagnostic):
                replica.diagnostics.append(effect.message)

    def _serve_blocks(self, index: int, request: RequestBlocks) -> None:
        server = self.replicas[int(request.peer[1:])]
        items = tuple(
            (block, cert)
            for block, cert in server.chain
            if request.height_min <= block.height <= request.height_max
        )
        if items and server.alive:
            self.step(index, BlocksReceived(server.name, items))

    def step(self, index: int, event) -> None:
        replica = self.replicas[index]
        if not replica.alive:
            return
        self.run_effects(index, replica.engine.step(event))
        for _ in range(10_000):
            if not replica.engine.has_pending_work:
                return
            self.run_effects(index, replica.engine.step(Tick(self.now_ms)))
        raise AssertionError("engine kept pending work")

    def deliver_all(self, steps_max: int = 100_000) -> None:
        for _ in range(steps_max):
            if not self.queue:
                return
            position = self.rng.randrange(len(self.queue))
            to, sender, data = self.queue.pop(position)
            message: Message = decode_message(data)
            self.step(to, MessageReceived(sender, message))
        raise AssertionError("message queue did not drain")

    def tick(self, ms: int = 10, rounds: int = 1) -> None:
        for _ in range(rounds):
            self.now_ms += ms
            for index in range(len(self.replicas)):
                self.step(index, Tick(self.now_ms))
            if self.now_ms % STATUS_INTERVAL_MS == 0:
                self.tell_heights()
            self.deliver_all()

    def crash_and_restart(self, index: int) -> None:
        """Restart from what a replica persisted: its committed chain and its vote log."""
        old = self.replicas[index]
        fresh = self._new_replica(index, persisted=list(old.log), chain=old.chain)
        fresh.log = list(old.log)
        fresh.chain = list(old.chain)
        fresh.app.pending = list(old.app.pending)
        self.replicas[index] = fresh
        self.run_effects(index, fresh.engine.start())

    def tell_heights(self) -> None:
        """What the node shell does every second: tell each peer our committed height (lossy too)."""
        for i in range(len(self.replicas)):
            for j, b in enumerate(self.replicas):
                if i != j and b.alive and self.rng.random() >= self.drop_probability:
                    self.step(i, PeerStatus(b.name, b.engine.head.height))

    def check_safety(self, *, verify_certificates: bool = True) -> None:
        """No two replicas committed different blocks at a height; every certificate verifies."""
        by_height: dict[int, bytes] = {}
        for replica in self.replicas:
            for position, (block, certificate) in enumerate(replica.chain):
                assert block.height == position + 1, f"{replica.name} has a gap at {position + 1}"
                known = by_height.setdefault(block.height, block.hash)
                assert known == block.hash, f"fork at height {block.height}"
                if verify_certificates:
                    assert certificate.find_problem(CHAIN_ID, self.validators) is None
