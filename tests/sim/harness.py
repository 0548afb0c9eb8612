"""A seeded, in-memory network of real consensus engines.

The application is a toy but honest state machine: a block's transactions
are opaque signed records and its state root chains the previous root with
the tx root, so a replica that re-executes a block can tell a wrong root.

The network delivers encoded messages after a random delay (so they are
reordered), may drop or duplicate them, and may cut links (partitions).
Replicas can crash (losing everything they did not persist) and restart from
their vote log and committed chain, exactly like the node shell does.  A
Byzantine replica runs a real engine but its outgoing messages pass through a
`Behavior` that lies.  Everything is driven by one `random.Random(seed)` and
logical time, so a seed replays exactly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from chainnode.core import crypto, quorum, types
from chainnode.core.errors import DecodeError
from chainnode.node import wire
from consensus.effects import (
    Broadcast,
    CommitBlock,
    Diagnostic,
    Effect,
    PersistVote,
    RecordEvidence,
    RequestBlocks,
    SendTo,
    StableCheckpoint,
)
from consensus.engine import Engine
from consensus.events import (
    BlocksReceived,
    ChainHead,
    EngineConfig,
    MessageReceived,
    PeerStatus,
    Tick,
)
from consensus.messages import (
    LogRecord,
    Message,
    NewView,
    PrePrepare,
    ViewChange,
    Vote,
    sign_pre_prepare,
    sign_view_change,
    sign_vote,
)
from tests.factories import make_tx

CHAIN_ID = "sim-chain"
GENESIS_HASH = crypto.hash_tagged("genesis", b"sim")
STATUS_INTERVAL_MS = 1_000  # as chainnode.node.runtime.STATUS_INTERVAL_MS
BLOCK_TXS_MAX = 10
FRAME_BYTES_MAX = 16 * 1024 * 1024
WALL_EPOCH_MS = 1_700_000_000_000  # the wall clock when logical time is 0


@dataclass
class ToyApp:
    """Chains state roots over tx roots; keeps a queue of pending payload transactions.

    `schedule` maps a first height to the validator set from that height on (as a
    committed validator-set change does on the real chain).
    """

    schedule: dict[int, quorum.ValidatorSet]
    pending: list[types.Transaction] = field(default_factory=list)
    roots: dict[bytes, bytes] = field(default_factory=lambda: {GENESIS_HASH: types.ZERO_HASH})
    corrupt_roots: bool = False

    def compute_root(self, parent: bytes, tx_root: bytes) -> bytes:
        return crypto.hash_tagged("state", self.roots[parent] + tx_root)

    def propose_block(
        self, *, height: int, view: int, proposer: int, timestamp_ms: int, parent_hash: bytes
    ) -> types.Block | None:
        if not self.pending:
            return None
        return self.build_block(
            height, view, proposer, timestamp_ms, parent_hash, self.pending[:BLOCK_TXS_MAX]
        )

    def build_block(
        self,
        height: int,
        view: int,
        proposer: int,
        timestamp_ms: int,
        parent_hash: bytes,
        txs: list[types.Transaction],
    ) -> types.Block:
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
            self.get_validator_set(height).compute_hash(),
            len(txs),
        )
        return types.Block.create(header, txs)

    def has_pending_transactions(self) -> bool:
        return bool(self.pending)

    def get_validator_set(self, height: int) -> quorum.ValidatorSet:
        return self.schedule[max(first for first in self.schedule if first <= height)]

    def find_block_problem(self, block: types.Block) -> str | None:
        header = block.header
        if header.parent_hash not in self.roots:
            return "unknown parent"
        if header.state_root != self.compute_root(header.parent_hash, header.tx_root):
            return "state root mismatch"
        return None

    def apply_commit(self, block: types.Block) -> None:
        self.roots[block.hash] = block.header.state_root
        committed = {tx.hash for tx in block.transactions}
        self.pending = [tx for tx in self.pending if tx.hash not in committed]


def make_transaction(key: crypto.SigningKey, nonce: int) -> types.Transaction:
    """An opaque payload transaction of the simulated client, distinct per nonce."""
    return make_tx(key, chain_id=CHAIN_ID, signer="client", nonce=nonce, args=("k", nonce.to_bytes(8, "big")))


# ---------------------------------------------------------------- Byzantine behaviors


class Behavior:
    """Rewrites a Byzantine replica's outgoing messages: (destination, encoded) pairs."""

    name = "honest"

    def rewrite(self, sim: SimNetwork, index: int, message: Message, destination: int) -> list[bytes]:
        return [message.encode()]


class Silent(Behavior):
    name = "silent"

    def rewrite(self, sim: SimNetwork, index: int, message: Message, destination: int) -> list[bytes]:
        return []


class Equivocate(Behavior):
    """As primary, sends a different (valid) block to every other destination."""

    name = "equivocate"

    def rewrite(self, sim: SimNetwork, index: int, message: Message, destination: int) -> list[bytes]:
        if not isinstance(message, PrePrepare) or destination % 2 == 0:
            return [message.encode()]
        header = message.block.header
        app = sim.replicas[index].app
        other = app.build_block(
            header.height,
            header.view,
            header.proposer,
            header.timestamp_ms + 1 + destination,
            header.parent_hash,
            list(message.block.transactions[:-1]) or list(message.block.transactions),
        )
        forged = sign_pre_prepare(sim.keys[index], CHAIN_ID, message.view, message.proposer, other)
        # Validator 1 gets both, so it holds the two signed proposals as evidence.
        return [message.encode(), forged.encode()] if destination == 1 else [forged.encode()]


class ConflictingVotes(Behavior):
    """Votes for the real block to some, for a random block to others; adds a second vote too."""

    name = "conflicting-votes"

    def rewrite(self, sim: SimNetwork, index: int, message: Message, destination: int) -> list[bytes]:
        if not isinstance(message, Vote) or message.kind not in (
            types.VoteKind.PREPARE,
            types.VoteKind.COMMIT,
        ):
            return [message.encode()]
        fake = crypto.sha256(sim.rng.randbytes(8))
        lie = sign_vote(sim.keys[index], CHAIN_ID, message.kind, message.view, message.height, fake, index)
        return [lie.encode()] if destination % 2 else [message.encode(), lie.encode()]


class Garbage(Behavior):
    """Sends random bytes and view changes for absurd views besides its honest messages."""

    name = "garbage"

    def rewrite(self, sim: SimNetwork, index: int, message: Message, destination: int) -> list[bytes]:
        storm = sign_view_change(
            sim.keys[index], CHAIN_ID, 10**9 + sim.rng.randrange(1000), message.height, index, None
        )
        return [message.encode(), sim.rng.randbytes(sim.rng.randrange(1, 64)), storm.encode()]


class SplitBrainPrimary(Behavior):
    """As primary, shows one half of the other validators one block and the other half another.

    The real proposal X goes to the first half of the others (`SimNetwork.halves`); the second
    half receives a twin block Y for the same (view, height), and every PREPARE and COMMIT the
    primary signs for X reaches that half as a vote for Y.  Each half sees one consistent
    primary: no replica holds both proposals, so nobody can record evidence, and only quorum
    intersection keeps the halves from committing different blocks.
    """

    name = "split-brain-primary"

    def rewrite(self, sim: SimNetwork, index: int, message: Message, destination: int) -> list[bytes]:
        if destination not in sim.halves(index)[1]:
            return [message.encode()]
        if isinstance(message, PrePrepare) and message.proposer == index:
            twin = sim.make_twin(index, message.block)
            return [sign_pre_prepare(sim.keys[index], CHAIN_ID, message.view, index, twin).encode()]
        if isinstance(message, Vote) and message.block_hash in sim.twins:
            twin_hash = sim.twins[message.block_hash]
            key = sim.keys[index]
            lie = sign_vote(key, CHAIN_ID, message.kind, message.view, message.height, twin_hash, index)
            return [lie.encode()]
        return [message.encode()]


class SplitBrainVoter(Behavior):
    """Votes, to each validator, for the block that validator was shown.

    A PREPARE or COMMIT for a block with a twin (see `SplitBrainPrimary`) reaches those shown the
    twin as the same vote for the twin, so a split-brain primary and its voters add up on both
    halves; for a block without a twin, the second half of the others gets a vote for a random
    hash instead.
    """

    name = "split-brain-voter"

    def rewrite(self, sim: SimNetwork, index: int, message: Message, destination: int) -> list[bytes]:
        if not isinstance(message, Vote) or message.kind not in (
            types.VoteKind.PREPARE,
            types.VoteKind.COMMIT,
        ):
            return [message.encode()]
        twin_hash = sim.twins.get(message.block_hash)
        if twin_hash is not None:
            if destination not in sim.audiences[twin_hash]:
                return [message.encode()]
            other = twin_hash
        elif destination in sim.halves(index)[1]:
            other = crypto.sha256(sim.rng.randbytes(8))
        else:
            return [message.encode()]
        lie = sign_vote(sim.keys[index], CHAIN_ID, message.kind, message.view, message.height, other, index)
        return [lie.encode()]


BEHAVIORS: dict[str, type[Behavior]] = {
    cls.name: cls
    for cls in (
        Behavior,
        Silent,
        Equivocate,
        ConflictingVotes,
        Garbage,
        SplitBrainPrimary,
        SplitBrainVoter,
    )
}


# ---------------------------------------------------------------- the network


@dataclass
class Replica:
    name: str
    app: ToyApp
    engine: Engine
    behavior: Behavior = field(default_factory=Behavior)
    log: list[LogRecord] = field(default_factory=list)  # the persisted vote log
    chain: list[tuple[types.Block, quorum.CommitCertificate]] = field(default_factory=list)
    diagnostics: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # the diagnostics flagged as warnings
    evidence: list[Any] = field(default_factory=list)
    stable_checkpoints: list[int] = field(default_factory=list)
    alive: bool = True

    @property
    def is_honest(self) -> bool:
        return type(self.behavior) is Behavior


class SimNetwork:
    """Replicas exchanging encoded messages through a seeded, lossy, delaying network."""

    def __init__(
        self,
        size: int,
        seed: int,
        *,
        config: EngineConfig | None = None,
        drop_probability: float = 0.0,
        duplicate_probability: float = 0.0,
        delay_ms_max: int = 0,
        schedule: dict[int, tuple[int, ...]] | None = None,
    ) -> None:
        self.rng = random.Random(seed)
        self.now_ms = 0
        self.config = config or EngineConfig(CHAIN_ID, proposal_delay_ms=0)
        self.drop_probability = drop_probability
        self.duplicate_probability = duplicate_probability
        self.delay_ms_max = delay_ms_max
        self.keys = [crypto.SigningKey(self.rng.randbytes(32)) for _ in range(size)]
        self.validators = quorum.ValidatorSet(
            tuple(quorum.Validator(f"v{i}", key.public_key) for i, key in enumerate(self.keys))
        )
        # The validator set by first height; by default every replica validates from height 1.
        self.schedule = {
            first: quorum.ValidatorSet(tuple(self.validators.validators[i] for i in members))
            for first, members in (schedule or {1: tuple(range(size))}).items()
        }
        # Injected wall clocks: replica index -> how far its wall clock is from the true time.
        self.clock_offsets_ms: dict[int, int] = {}
        self.replicas = [self._new_replica(i, persisted=[]) for i in range(size)]
        # In flight: (deliver at ms, sequence, to index, sender name, encoded message)
        self.queue: list[tuple[int, int, int, str, bytes]] = []
        self._sequence = 0
        self.dropped_links: set[tuple[int, int]] = set()
        self.garbage_frames = 0
        # Split-brain behaviours: each proposal and its twin, and who was shown which.
        self.twins: dict[bytes, bytes] = {}
        self.audiences: dict[bytes, frozenset[int]] = {}

    def get_wall_ms(self, index: int) -> int:
        """Replica `index`'s wall clock: the true time plus its injected offset."""
        return WALL_EPOCH_MS + self.now_ms + self.clock_offsets_ms.get(index, 0)

    def halves(self, index: int) -> tuple[frozenset[int], frozenset[int]]:
        """The validators other than `index`, split into a first and a second half."""
        others = [other for other in range(len(self.replicas)) if other != index]
        middle = len(others) // 2
        return frozenset(others[:middle]), frozenset(others[middle:])

    def make_twin(self, index: int, block: types.Block) -> types.Block:
        """The second half's block for `block`'s (view, height): same parent, another timestamp.

        The same every time, so a rebroadcast shows each half the block it saw before."""
        header = block.header
        twin = self.replicas[index].app.build_block(
            header.height,
            header.view,
            header.proposer,
            header.timestamp_ms + 1,
            header.parent_hash,
            list(block.transactions),
        )
        first, second = self.halves(index)
        self.twins[block.hash], self.twins[twin.hash] = twin.hash, block.hash
        self.audiences[block.hash], self.audiences[twin.hash] = first | {index}, second
        return twin

    def _new_replica(self, index: int, persisted: list[LogRecord], chain: list[Any] | None = None) -> Replica:
        app = ToyApp(self.schedule)
        head = ChainHead(0, GENESIS_HASH, 0)
        for block, certificate in chain or []:
            app.apply_commit(block)
            head = ChainHead(block.height, block.hash, block.header.timestamp_ms, certificate.view)
        engine = Engine(
            self.config,
            validators=app.get_validator_set(head.height + 1),
            own_id=f"v{index}",
            key=self.keys[index],
            app=app,
            head=head,
            now_ms=self.now_ms,
            wall_ms=self.get_wall_ms(index),
            persisted=persisted,
            rng=random.Random(self.rng.random()),
        )
        return Replica(f"v{index}", app, engine)

    def submit(
        self, count: int, client_key: crypto.SigningKey, nonce_base: int = 0
    ) -> list[types.Transaction]:
        txs = [make_transaction(client_key, nonce_base + i) for i in range(count)]
        for replica in self.replicas:
            replica.app.pending.extend(txs)
        return txs

    def partition(self, group: set[int]) -> None:
        """Cut every link between `group` and the rest (both directions)."""
        others = set(range(len(self.replicas))) - group
        self.dropped_links = {(a, b) for a in group for b in others} | {(b, a) for a in group for b in others}

    def heal(self) -> None:
        self.dropped_links = set()

    def _send(self, index: int, destination: int, message: Message) -> None:
        replica = self.replicas[index]
        for data in replica.behavior.rewrite(self, index, message, destination):
            if (index, destination) in self.dropped_links or self.rng.random() < self.drop_probability:
                continue
            copies = 2 if self.rng.random() < self.duplicate_probability else 1
            for _ in range(copies):
                deliver_ms = self.now_ms + self.rng.randint(0, self.delay_ms_max)
                self._sequence += 1
                self.queue.append((deliver_ms, self._sequence, destination, replica.name, data))

    def run_effects(self, index: int, effects: list[Effect]) -> None:
        replica = self.replicas[index]
        for effect in effects:
            if isinstance(effect, PersistVote):
                replica.log.append(effect.message)
            elif isinstance(effect, Broadcast):
                for other in range(len(self.replicas)):
                    if other != index:
                        self._send(index, other, effect.message)
            elif isinstance(effect, SendTo):
                self._send(index, int(effect.peer[1:]), effect.message)
            elif isinstance(effect, CommitBlock):
                replica.app.apply_commit(effect.block)
                replica.chain.append((effect.block, effect.certificate))
            elif isinstance(effect, RequestBlocks):
                self._serve_blocks(index, effect)
            elif isinstance(effect, RecordEvidence):
                replica.evidence.append(effect.evidence)
            elif isinstance(effect, StableCheckpoint):
                assert effect.certificate.find_problem(CHAIN_ID, replica.engine.validators) is None
                replica.stable_checkpoints.append(effect.certificate.height)
            elif isinstance(effect, Diagnostic):
                replica.diagnostics.append(effect.message)
                if effect.warning:
                    replica.warnings.append(effect.message)

    def _serve_blocks(self, index: int, request: RequestBlocks) -> None:
        server_index = int(request.peer[1:])
        server = self.replicas[server_index]
        if not server.alive or (server_index, index) in self.dropped_links:
            return
        items = tuple(
            (block, cert)
            for block, cert in server.chain
            if request.height_min <= block.height <= request.height_max
        )
        if items:
            self.step(index, BlocksReceived(server.name, items))

    def step(self, index: int, event: Tick | MessageReceived | BlocksReceived | PeerStatus) -> None:
        replica = self.replicas[index]
        if not replica.alive:
            return
        self.run_effects(index, replica.engine.step(event))
        for _ in range(10_000):
            if not replica.engine.has_pending_work:
                return
            self.run_effects(index, replica.engine.step(Tick(self.now_ms, self.get_wall_ms(index))))
        raise AssertionError("engine kept pending work")

    def deliver_due(self, steps_max: int = 200_000) -> None:
        """Deliver every message due by now, in random order."""
        for _ in range(steps_max):
            due = [item for item in self.queue if item[0] <= self.now_ms]
            if not due:
                return
            item = due[self.rng.randrange(len(due))]
            self.queue.remove(item)
            _, _, to, sender, data = item
            try:
                # The node's own frame decoder, so the simulation covers the wire format too.
                message = wire.decode_frame(data, frame_bytes_max=FRAME_BYTES_MAX)
            except DecodeError:
                self.garbage_frames += 1  # the node shell drops such frames the same way
                continue
            if not isinstance(message, (PrePrepare, Vote, ViewChange, NewView)):
                self.garbage_frames += 1  # only consensus traffic is simulated
                continue
            self.step(to, MessageReceived(sender, message))
        raise AssertionError("message queue did not drain")

    def deliver_all(self) -> None:
        self.deliver_due()

    def tick(self, ms: int = 10, rounds: int = 1) -> None:
        for _ in range(rounds):
            self.now_ms += ms
            for index in range(len(self.replicas)):
                self.step(index, Tick(self.now_ms, self.get_wall_ms(index)))
            if self.now_ms % STATUS_INTERVAL_MS == 0:
                self.tell_heights()
            self.deliver_due()

    def crash(self, index: int) -> None:
        """Stop a replica: what it did not persist is gone, messages to it are lost."""
        self.replicas[index].alive = False
        self.queue = [item for item in self.queue if item[2] != index]

    def restart(self, index: int) -> None:
        """Restart from what a replica persisted: its committed chain and its vote log."""
        old = self.replicas[index]
        fresh = self._new_replica(index, persisted=list(old.log), chain=old.chain)
        fresh.log = list(old.log)
        fresh.chain = list(old.chain)
        fresh.behavior = old.behavior
        fresh.app.pending = list(old.app.pending)
        self.replicas[index] = fresh
        self.run_effects(index, fresh.engine.start())

    def crash_and_restart(self, index: int) -> None:
        self.crash(index)
        self.restart(index)

    def tell_heights(self) -> None:
        """What the node shell does every second: tell each peer our committed height (lossy too)."""
        for i in range(len(self.replicas)):
            for j, b in enumerate(self.replicas):
                if i == j or not b.alive or (j, i) in self.dropped_links:
                    continue
                if self.rng.random() >= self.drop_probability:
                    self.step(i, PeerStatus(b.name, b.engine.head.height))

    def honest(self) -> list[Replica]:
        return [replica for replica in self.replicas if replica.is_honest]

    def check_safety(self, *, verify_certificates: bool = True) -> None:
        """No two honest replicas committed different blocks at a height; heights are contiguous;
        every certificate verifies."""
        by_height: dict[int, bytes] = {}
        for replica in self.honest():
            for position, (block, certificate) in enumerate(replica.chain):
                assert block.height == position + 1, f"{replica.name} has a gap at {position + 1}"
                known = by_height.setdefault(block.height, block.hash)
                assert known == block.hash, f"fork at height {block.height}"
                if verify_certificates:
                    validators = self.schedule[max(first for first in self.schedule if first <= block.height)]
                    assert certificate.block_hash == block.hash
                    assert certificate.find_problem(CHAIN_ID, validators) is None
