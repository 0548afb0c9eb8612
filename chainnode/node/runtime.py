"""The node shell: wires consensus, storage, p2p, the mempool and the API.

Theory of operation.  One asyncio loop owns everything.  The consensus engine
is a pure state machine; `_step` feeds it an event and then carries out the
effects it returns, strictly in order: a vote is written to LevelDB (synced)
before it is broadcast, a committed block is one atomic batch before the next
event runs.  The node is also the engine's `Application`: it builds proposals
from the mempool and re-executes proposed blocks, caching each execution
result by block hash so that committing the block only writes what was
already computed.

Transactions enter through the API (and are then gossiped to every peer in
batches, once per tick) or through gossip from a peer.  Either way each one
is decoded, checked against the committed state and signature-verified
exactly once before it enters the bounded mempool; the signature cache lets
block execution skip verifying it again.

What a peer sends can be garbage: frames that fail to decode are counted and
dropped; the engine refuses invalid messages itself.  Nothing a peer or a
client sends can stop the loop.

A failing disk does stop it.  The engine moves its head when it emits
`CommitBlock` (and counts a vote as cast when it emits `PersistVote`), so once a
ledger write fails the engine believes what the disk does not hold: a node that
went on would re-execute proposals on a stale state ("state root differs"),
answer healthy and take transactions it can never commit.  So a `StorageError`
(or an `OSError` from LevelDB) raised anywhere on the paths that drive the
engine -- a peer's frame, the timer loop, start-up -- is caught right where
that path enters the node (`_on_peer_frame`, `_run_ticks`, `start`), before
the transport's or asyncio's generic handlers could swallow it, and handed to
`_stop_on_storage_failure`: one CRITICAL line naming the data directory and the
OS error, no further event reaches the engine, health and readiness fail and
submissions are refused at once, and `run_node` closes the API and p2p and
raises the error, so `chainnode node run` exits non-zero with that one line.
What the node acknowledged was persisted before (a vote is synced before it is
sent, a transaction is reported committed only from the ledger).  Readiness is
a registry of named checks (`chainnode.node.health`); the disk's free space is
measured on the timer loop.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import logging
import random
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography import x509

from chainnode.api.server import create_app
from chainnode.api.service import ReadinessProblem, SubmitResult, TransactionStatus
from chainnode.app import authority, governance
from chainnode.app.execution import ExecutionResult, Executor, InvalidBlockError, SignatureCache, StateMemo
from chainnode.app.genesis import Genesis, load_genesis
from chainnode.app.state import compute_genesis_state_root
from chainnode.core import identity, metrics, types
from chainnode.core.crypto import SigningKey
from chainnode.core.errors import ChainError, ConfigError, DecodeError, StorageError
from chainnode.node import health, wire
from chainnode.node.config import NodeConfig, load_node_config
from chainnode.node.mempool import Mempool, MempoolFullError
from chainnode.node.peer_clocks import PeerClocks
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
from consensus.engine import (
    BlocksReceived,
    ChainHead,
    Engine,
    EngineConfig,
    Event,
    MessageReceived,
    PeerStatus,
    Tick,
)
from consensus.messages import compute_log_key, decode_log_record
from p2p.http_guard import ConnectionGuard, ConnectionLimits, GuardedAppRunner
from p2p.transport import PeerAddress, Transport, TransportConfig
from storage.ledger import Ledger

log = logging.getLogger("chainnode.node.runtime")

REJECTED_REMEMBERED_MAX = 100_000
STATUS_INTERVAL_MS = 1_000
# State keys whose change can take a peer's right to connect away.
PEER_AFFECTING_PREFIXES = (b"id/e/", b"id/z/", types.VALIDATOR_SET_KEY)
REGOSSIP_INTERVAL_MS = 3_000
REGOSSIP_TXS_MAX = 500
# Gossiped transactions wait in an inbox and are admitted in slices between other
# events, so a consensus message never waits behind a backlog of signature checks.
GOSSIP_INBOX_TXS_MAX = 50_000
ADMIT_SLICE_TXS = 256
# While this many gossiped transactions wait, the API refuses new ones (503): the
# node is saturated and more submissions would only deepen the backlog.
SUBMIT_BACKLOG_TXS_MAX = 10_000
# The API also refuses new transactions (503) while the mempool already holds this
# many full blocks: a deeper queue adds only latency, and admitting into it takes
# the CPU that consensus needs to commit what is already pending.
SUBMIT_PENDING_BLOCKS_MAX = 8
RESPONSE_BYTES_MAX = 8 * 1024 * 1024
# /readyz says `catching_up` while a peer reported (within PEER_HEIGHT_FRESH_MS) a height this
# far above our head.  Peers report once a second, so a node that keeps up is rarely more
# than the blocks of that second behind a report, and usually ahead of it.
CATCHING_UP_BLOCKS_MIN = 10
PEER_HEIGHT_FRESH_MS = 10_000
CLOCK_WARNING_INTERVAL_MS = 60_000  # while our clock stays wrong, say so this often


def get_time_ms() -> int:
    return time.time_ns() // 1_000_000


def get_monotonic_ms() -> int:
    return time.monotonic_ns() // 1_000_000


class Node:
    """A validator (or observer) node; implements `api.NodeService` and `consensus.engine.Application`."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.genesis: Genesis = load_genesis(config.genesis_path)
        self.chain_id = self.genesis.chain_id
        self.node_id = config.node_id
        self.genesis_hash = self.genesis.compute_hash()
        config.data_dir.mkdir(parents=True, exist_ok=True)
        health.check_disk_writable(config.data_dir)
        self._ledger = Ledger(config.data_dir / "ledger")
        self._initialize_ledger()
        self._key = SigningKey.load(config.key_path)
        self._validators_cache: tuple[bytes, types.ValidatorSet] | None = None  # (head hash, next set)
        self._expiring_cache: tuple[bytes, int, list[authority.ExpiringCertificate]] | None = None
        current = self.get_validator_set(self._ledger.get_head().height + 1)
        own_index = current.index_of(config.node_id)
        if own_index is not None and current.validators[own_index].public_key != self._key.public_key:
            raise ConfigError(f"{config.key_path} is not the key registered for validator {config.node_id}")
        self._root_certificate = x509.load_der_x509_certificate(self.genesis.root_certificate)
        self.executor = Executor(self.chain_id, SignatureCache())
        # What admission looked up in the committed state; emptied at every commit.
        self._admission_memo = StateMemo()
        self.mempool = Mempool(capacity_txs=config.mempool_capacity_txs, capacity_bytes=512 * 1024 * 1024)
        self._results: dict[bytes, ExecutionResult] = {}
        self._rejected: collections.OrderedDict[bytes, tuple[str, str]] = collections.OrderedDict()
        self._gossip: list[bytes] = []
        self._gossip_inbox: collections.deque[bytes] = collections.deque()
        self._gossip_arrived = asyncio.Event()
        self._frames_malformed = 0
        self._gc_timer = metrics.GcTimer()
        self._gossip_dropped = 0
        self.committed_txs = 0
        self.evidence_total = sum(1 for _ in self._ledger.iter_evidence())
        latest_checkpoint = self._ledger.get_latest_checkpoint()
        self.stable_checkpoint = (
            0 if latest_checkpoint is None else types.decode_checkpoint_certificate(latest_checkpoint).height
        )
        head = self._ledger.get_head()
        persisted = [
            decode_log_record(payload) for _, _, _, payload in self._ledger.get_votes(head.height + 1)
        ]
        head_view = 0
        if head.height > 0:
            certificate_bytes = self._ledger.get_certificate(head.height)
            assert certificate_bytes is not None, "a committed head has its certificate"
            head_view = types.decode_commit_certificate(certificate_bytes).view
        self.engine = Engine(
            EngineConfig(
                self.chain_id,
                proposal_delay_ms=config.proposal_delay_ms,
                timestamp_drift_ms_max=self.genesis.params.timestamp_drift_ms_max,
                view_timeout_ms=self.genesis.params.view_timeout_ms or config.view_timeout_ms,
            ),
            validators=current,
            own_id=config.node_id,
            key=self._key,
            app=self,
            head=ChainHead(head.height, head.block_hash, head.timestamp_ms, head_view),
            now_ms=get_monotonic_ms(),
            wall_ms=get_time_ms(),
            persisted=persisted,
            stable_checkpoint=self.stable_checkpoint,
            rng=random.Random(),
        )
        self.transport = Transport(
            TransportConfig(
                entity_id=config.node_id,
                chain_id=self.chain_id,
                genesis_hash=self.genesis_hash,
                listen_host=config.p2p_host,
                listen_port=config.p2p_port,
                peers=tuple(PeerAddress(p.entity_id, p.host, p.port) for p in config.peers),
                chain_path=config.chain_path,
                key_path=config.key_path,
                root_ca_path=config.root_ca_path,
                frame_bytes_max=config.frame_bytes_max,
                inbound_connections_max=config.p2p_inbound_connections_max,
                inbound_unauthenticated_max=config.p2p_inbound_unauthenticated_max,
            ),
            authorize=self.authorize_peer,
            on_message=self._on_peer_frame,
            on_connected=self._on_peer_connected,
        )
        self._api_runner: GuardedAppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        # Set once, by `_stop_on_storage_failure`; `failed` wakes `run_node`.
        self.failure: StorageError | None = None
        self.failed = asyncio.Event()
        self._peer_heights: dict[str, tuple[int, int]] = {}  # peer -> (reported height, monotonic ms)
        self._peer_clocks = PeerClocks(self.genesis.params.timestamp_drift_ms_max)
        self._clock_warned_ms: int | None = None  # monotonic ms of the last clock warning
        self._disk = health.DiskSpaceWatch(config.data_dir, free_bytes_min=config.disk_free_bytes_min)
        self.readiness = self._create_readiness()

    @property
    def ledger(self) -> Ledger:
        return self._ledger

    def _initialize_ledger(self) -> None:
        if not self._ledger.is_initialized():
            initial_state = self.genesis.initial_state()
            self._ledger.initialize(
                genesis_hash=self.genesis_hash,
                genesis_time_ms=self.genesis.genesis_time_ms,
                initial_state=initial_state,
                state_root=compute_genesis_state_root(initial_state),
            )
        elif self._ledger.get_genesis_hash() != self.genesis_hash:
            raise ConfigError(f"the data in {self.config.data_dir} belongs to another genesis")

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._gc_timer.install()
        await self.transport.start()
        app = create_app(self)
        limits = ConnectionLimits(
            connections_max=self.config.api_connections_max,
            request_head_timeout_ms=self.config.api_request_head_timeout_ms,
            keepalive_timeout_ms=self.config.api_keepalive_timeout_ms,
        )
        self._api_runner = GuardedAppRunner(app, ConnectionGuard(limits, name="api"), access_log=None)
        await self._api_runner.setup()
        site = web.TCPSite(self._api_runner, self.config.api_host, self.config.api_port)
        await site.start()
        self._disk.check()
        try:
            self._execute(self.engine.start())
        except (StorageError, OSError) as error:
            self._stop_on_storage_failure(error)
        self._tasks.append(asyncio.create_task(self._run_ticks()))
        self._tasks.append(asyncio.create_task(self._run_gossip_admission()))
        head = self._ledger.get_head()
        log.info(
            "node %s started: chain %s height %d, p2p %s:%d, api %s:%d",
            self.node_id,
            self.chain_id,
            head.height,
            self.config.p2p_host,
            self.config.p2p_port,
            self.config.api_host,
            self.config.api_port,
        )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._api_runner is not None:
            await self._api_runner.cleanup()
        await self.transport.stop()
        self._ledger.close()
        self._gc_timer.uninstall()
        log.info("node %s stopped", self.node_id)

    async def _run_ticks(self) -> None:
        tick_s = self.config.tick_ms / 1000
        status_sent_ms = 0
        regossip_ms = get_monotonic_ms()
        disk_checked_ms = get_monotonic_ms()
        while self.failure is None:
            await asyncio.sleep(tick_s)
            # Timers run on the monotonic clock: a wall clock stepped back (or forward) must
            # neither freeze nor rush them.  The wall clock only dates blocks.
            now_ms = get_monotonic_ms()
            try:
                self._step(Tick(now_ms, get_time_ms()))
            except (StorageError, OSError) as error:
                # Caught here, not left to end the task: asyncio would keep the exception
                # unseen until shutdown, and the engine would never tick again.
                self._stop_on_storage_failure(error)
                return
            if self._gossip:
                self.transport.broadcast(wire.encode_tx_batch(self._gossip))
                self._gossip = []
            if now_ms - status_sent_ms >= STATUS_INTERVAL_MS:
                status_sent_ms = now_ms
                self.transport.broadcast(wire.encode_status(self.engine.head.height, get_time_ms()))
                self._check_clock(now_ms)
            if now_ms - regossip_ms >= REGOSSIP_INTERVAL_MS:
                regossip_ms = now_ms
                self._regossip_oldest()
            if get_monotonic_ms() - disk_checked_ms >= health.DISK_CHECK_INTERVAL_MS:
                disk_checked_ms = get_monotonic_ms()
                self._disk.check()

    def _regossip_oldest(self) -> None:
        """Offer our oldest pending transactions again.

        A transaction a peer dropped (its mempool was full, or the link was down)
        would otherwise wait here forever and keep our view timer running; peers
        that already hold it answer from their mempool index at no cost.
        """
        oldest = self.mempool.select(txs_max=REGOSSIP_TXS_MAX, bytes_max=wire.GOSSIP_BYTES_MAX)
        if oldest:
            self.transport.broadcast(wire.encode_tx_batch([tx.encoded for tx in oldest]))

    # ------------------------------------------------------------ engine driving

    def _step(self, event: Event) -> None:
        if self.failure is not None:
            return  # a ledger write failed: the engine's head is not on disk, so it decides nothing more
        self._execute(self.engine.step(event))
        for _ in range(100_000):
            if not self.engine.has_pending_work:
                return
            self._execute(self.engine.step(Tick(get_monotonic_ms(), get_time_ms())))
        raise AssertionError("the engine kept asking for more work")

    def _execute(self, effects: Sequence[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, PersistVote):
                height, view, kind = compute_log_key(effect.message)
                self._ledger.put_vote(height, view, kind, effect.message.encode())
            elif isinstance(effect, Broadcast):
                self.transport.broadcast(effect.message.encode())
            elif isinstance(effect, SendTo):
                self.transport.send(effect.peer, effect.message.encode())
            elif isinstance(effect, CommitBlock):
                self._commit(effect.block, effect.certificate)
            elif isinstance(effect, RequestBlocks):
                self.transport.send(
                    effect.peer, wire.encode_block_request(effect.height_min, effect.height_max)
                )
            elif isinstance(effect, RecordEvidence):
                self._record_evidence(effect)
            elif isinstance(effect, StableCheckpoint):
                checkpoint = effect.certificate
                self._ledger.put_checkpoint(checkpoint.height, checkpoint.encode())
                self._ledger.prune_votes(checkpoint.height + 1)
                self.stable_checkpoint = checkpoint.height
            elif isinstance(effect, Diagnostic):
                log.log(logging.WARNING if effect.warning else logging.INFO, "consensus: %s", effect.message)

    def _commit(self, block: types.Block, certificate: types.CommitCertificate) -> None:
        result = self._results.pop(block.hash)
        head = self._ledger.commit_block(block, certificate, result.receipts, result.write_set)
        self._admission_memo.clear()  # it describes the previous state
        assert head.state_root == block.header.state_root
        # Every other cached result was computed on the previous head.
        self._results.clear()
        self.mempool.remove(tx.hash for tx in block.transactions)
        self.committed_txs += len(block.transactions)
        if any(key.startswith(PEER_AFFECTING_PREFIXES) for key in result.write_set):
            self._disconnect_unauthorized_peers()
        log.debug("committed block %d with %d transactions", block.height, len(block.transactions))

    # ------------------------------------------------------------ Application (for the engine)

    def propose_block(
        self, *, height: int, view: int, proposer: int, timestamp_ms: int, parent_hash: bytes
    ) -> types.Block | None:
        params = governance.get_chain_params(self._ledger, self.genesis.params)
        self.mempool.remove_expired(height)
        for _ in range(3):
            transactions = self.mempool.select(txs_max=params.block_txs_max, bytes_max=params.block_bytes_max)
            if not transactions:
                return None
            head = self._ledger.get_head()
            try:
                result = self._execute_block(height, timestamp_ms, transactions, head.state_root)
            except InvalidBlockError as error:
                # Admitted earlier, refused now (for instance committed through another
                # node's block): drop it and build again.
                log.info("dropping transaction from the mempool: %s", error.message)
                self.mempool.remove([transactions[error.tx_index].hash])
                continue
            header = types.BlockHeader(
                chain_id=self.chain_id,
                height=height,
                view=view,
                proposer=proposer,
                timestamp_ms=timestamp_ms,
                parent_hash=parent_hash,
                tx_root=types.compute_tx_root(transactions),
                receipts_root=result.receipts_root,
                state_root=result.state_root,
                validator_set_hash=self.engine.validators.compute_hash(),
                tx_count=len(transactions),
            )
            block = types.Block.create(header, transactions)
            self._results[block.hash] = result
            return block
        return None

    def has_pending_transactions(self) -> bool:
        return len(self.mempool) > 0

    def find_block_problem(self, block: types.Block) -> str | None:
        if block.hash in self._results:
            return None
        header = block.header
        head = self._ledger.get_head()
        try:
            result = self._execute_block(
                header.height, header.timestamp_ms, block.transactions, head.state_root
            )
        except InvalidBlockError as error:
            return error.message
        if result.state_root != header.state_root:
            return "state root differs from our re-execution"
        if result.receipts_root != header.receipts_root:
            return "receipts root differs from our re-execution"
        self._results[block.hash] = result
        return None

    def _execute_block(
        self, height: int, timestamp_ms: int, transactions: Sequence[types.Transaction], state_root: bytes
    ) -> ExecutionResult:
        return self.executor.execute_block(
            self._ledger,
            previous_state_root=state_root,
            height=height,
            timestamp_ms=timestamp_ms,
            transactions=transactions,
            is_committed=self._is_committed_unless_pooled,
        )

    def _is_committed_unless_pooled(self, tx_hash: bytes) -> bool:
        """The ledger's answer, skipped for pooled transactions, which are never committed:
        admission asked the ledger before pooling, and each commit removes its block's
        transactions from the pool before anything else runs.  A proposal is mostly
        pooled transactions, so execution rarely needs the committed-id filter."""
        return not self.mempool.contains(tx_hash) and self._ledger.is_committed(tx_hash)

    # ------------------------------------------------------------ p2p

    def authorize_peer(self, entity_id: str, certificate_der: bytes) -> str | None:
        """None when `entity_id` may connect with this certificate, judged on committed state.

        A peer must be a registered entity whose certificate is not revoked for the
        next height, is the registered one, and verifies against its own zone's
        authority (which must be admitted and active) and the network root; and it
        must be in the current validator set or hold the `observer` role.
        """
        try:
            certificate = identity.certificate_from_der(certificate_der)
            problem = self._find_peer_problem(entity_id)
            if problem is not None:
                return problem
            record = types.decode_entity_record(self._ledger.get_state(types.entity_key(entity_id)) or b"")
            if identity.public_key_of(certificate) != record.public_key:
                return f"the certificate is not the one registered for {entity_id}"
            zone = types.decode_zone_record(self._ledger.get_state(types.zone_key(record.zone)) or b"")
            zone_certificate = identity.certificate_from_der(zone.certificate)
            identity.verify_entity_certificate(
                certificate, zone_certificate, self._root_certificate, at_ms=get_time_ms()
            )
        except StorageError as error:
            # Our disk failed, not the peer: stop rather than refuse peers one by one.
            self._stop_on_storage_failure(error)
            return "the node is stopping"
        except ChainError as error:
            return error.message
        return None

    def _find_peer_problem(self, entity_id: str) -> str | None:
        """What in committed state keeps `entity_id` out (the certificate aside), or None."""
        record_bytes = self._ledger.get_state(types.entity_key(entity_id))
        if record_bytes is None:
            return f"{entity_id} is not a registered entity"
        record = types.decode_entity_record(record_bytes)
        next_height = self._ledger.get_head().height + 1
        if record.is_revoked_at(next_height):
            return f"the certificate of {entity_id} is revoked"
        if self.get_validator_set(next_height).index_of(entity_id) is None and not record.has_role(
            "observer"
        ):
            return f"{entity_id} is not a current validator and lacks the observer role"
        zone_bytes = self._ledger.get_state(types.zone_key(record.zone))
        if zone_bytes is None:
            return f"zone {record.zone} is not admitted"
        zone = types.decode_zone_record(zone_bytes)
        if not zone.active:
            return f"zone {record.zone} is suspended or removed"
        return None

    def _disconnect_unauthorized_peers(self) -> None:
        """After a block that touched identities, zones or the validator set: drop who may no longer stay."""
        for peer_id in sorted(set(self.transport.connected_peers()) | set(self.transport.inbound_peers())):
            problem = self._find_peer_problem(peer_id)
            if problem is not None:
                log.warning("disconnecting %s: %s", peer_id, problem)
                self.transport.disconnect(peer_id)

    def _record_evidence(self, effect: RecordEvidence) -> None:
        evidence = effect.evidence
        validator = self.get_validator_set(evidence.height).validators[evidence.validator].entity_id
        is_new = self._ledger.put_evidence(
            evidence.height, evidence.validator, int(evidence.kind), evidence.view, evidence.encode()
        )
        if not is_new:
            return
        self.evidence_total += 1
        log.warning(
            "evidence: validator %s signed two %s messages at height %d view %d",
            validator,
            evidence.kind.name,
            evidence.height,
            evidence.view,
        )

    def _on_peer_connected(self, peer_id: str) -> None:
        self.transport.send(peer_id, wire.encode_status(self.engine.head.height, get_time_ms()))

    def _on_peer_frame(self, peer_id: str, data: bytes) -> None:
        if self.failure is not None:
            return  # stopping: the transport closes soon
        try:
            self._handle_peer_frame(peer_id, data)
        except (StorageError, OSError) as error:
            # Caught here, where the frame enters the node: the transport would log it as
            # a callback bug and go on reading frames with a head that is not on disk.
            self._stop_on_storage_failure(error)

    def _handle_peer_frame(self, peer_id: str, data: bytes) -> None:
        try:
            frame = wire.decode_frame(data, frame_bytes_max=self.config.frame_bytes_max)
        except DecodeError as error:
            self._frames_malformed += 1
            log.warning("malformed frame from %s: %s", peer_id, error.message)
            return
        if isinstance(frame, wire.TxBatch):
            if len(self._gossip_inbox) + len(frame.transactions) > GOSSIP_INBOX_TXS_MAX:
                # Back-pressure, not the peer's fault: the batch reaches us again in
                # the primary's proposal (or the sender's re-gossip).
                self._gossip_dropped += 1
            else:
                self._gossip_inbox.extend(frame.transactions)
                self._gossip_arrived.set()
        elif isinstance(frame, wire.Status):
            self._peer_heights[peer_id] = (frame.height, get_monotonic_ms())
            self._peer_clocks.note(
                peer_id, peer_wall_ms=frame.wall_ms, own_wall_ms=get_time_ms(), now_ms=get_monotonic_ms()
            )
            self._step(PeerStatus(peer_id, frame.height))
        elif isinstance(frame, wire.BlockRequest):
            self._serve_blocks(peer_id, frame)
        elif isinstance(frame, wire.BlockResponse):
            self._step(BlocksReceived(peer_id, frame.blocks))
        else:
            self._step(MessageReceived(peer_id, frame))

    def _serve_blocks(self, peer_id: str, request: wire.BlockRequest) -> None:
        items: list[tuple[bytes, bytes]] = []
        size = 0
        height_max = min(request.height_max, request.height_min + wire.BLOCKS_PER_RESPONSE_MAX - 1)
        for height in range(request.height_min, height_max + 1):
            block = self._ledger.get_block(height)
            certificate = self._ledger.get_certificate(height)
            if block is None or certificate is None:
                break
            size += len(block) + len(certificate)
            if items and size > RESPONSE_BYTES_MAX:
                break
            items.append((block, certificate))
        if items:
            self.transport.send(peer_id, wire.encode_block_response(items))

    # ------------------------------------------------------------ transactions

    def _admit(self, encoded: bytes, *, gossip: bool) -> SubmitResult:
        """Decode, check and pool one transaction; `MempoolFullError` propagates."""
        try:
            tx = types.decode_transaction(encoded)
        except DecodeError as error:
            return SubmitResult(None, False, "malformed", error.message)
        pooled = self.mempool.get(tx.hash)
        if pooled is not None and pooled.signature == tx.signature:
            # The same bytes as the pooled transaction (the id covers the body, and the
            # signature is the rest), which passed every check: nothing to check again.
            return SubmitResult(tx.hash, True, "ok", "already pending")
        if pooled is None:
            # Refuse before the signature check: a full pool must not cost CPU per item.
            self.mempool.check_room(len(tx.encoded))
        # A pooled id with other signature bytes is checked like a new transaction: the id
        # does not cover the signature, so answering "pending" would vouch for a forgery.
        # Refusing it outright would be wrong the other way: Ed25519 signing is deterministic,
        # but a signer with randomised nonces makes another valid signature of the same body.
        head = self._ledger.get_head()
        code, message = self.executor.check_transaction(
            self._ledger,
            tx,
            height=head.height + 1,
            timestamp_ms=get_time_ms(),
            is_committed=self._ledger.is_committed,
            memo=self._admission_memo,
        )
        if code != types.ErrorCode.OK:
            # Not remembered for a pooled id: the id names the valid pooled transaction, whose
            # status must not read "rejected" once it leaves the pool.
            if code != types.ErrorCode.DUPLICATE and pooled is None:
                self._remember_rejection(tx.hash, code.label, message)
            return SubmitResult(tx.hash, False, code.label, message)
        if pooled is not None:
            return SubmitResult(tx.hash, True, "ok", "already pending")
        self.mempool.add(tx)
        if gossip:
            self._gossip.append(tx.encoded)
        return SubmitResult(tx.hash, True, "ok", "")

    async def _run_gossip_admission(self) -> None:
        """Admit gossiped transactions a slice at a time, yielding to the loop in between."""
        while True:
            await self._gossip_arrived.wait()
            self._gossip_arrived.clear()
            while self._gossip_inbox:
                self._admit_gossip_slice()
                await asyncio.sleep(0)

    def _admit_gossip_slice(self) -> None:
        inbox = self._gossip_inbox
        try:
            for _ in range(min(ADMIT_SLICE_TXS, len(inbox))):
                self._admit(inbox.popleft(), gossip=False)
        except MempoolFullError:
            # The rest would be refused as well; it reaches us again in proposals.
            self._gossip_dropped += 1
            inbox.clear()

    def _remember_rejection(self, tx_hash: bytes, code: str, message: str) -> None:
        self._rejected[tx_hash] = (code, message)
        if len(self._rejected) > REJECTED_REMEMBERED_MAX:
            self._rejected.popitem(last=False)

    # ------------------------------------------------------------ failure and readiness

    def _stop_on_storage_failure(self, error: Exception) -> None:
        """The fatal handler (see the module docstring): say it once, feed the engine nothing
        more, and wake `run_node`, which closes the API and p2p and exits non-zero."""
        if self.failure is not None:
            return
        self.failure = health.describe_storage_failure(error, self.config.data_dir)
        log.critical(
            "node %s stops, its ledger cannot be written: %s: %s",
            self.node_id,
            self.failure.code,
            " ".join(self.failure.message.split()),
        )
        self.failed.set()

    def _create_readiness(self) -> health.Readiness:
        """The node's named readiness checks; another condition is one more `add_check`."""
        readiness = health.Readiness()
        readiness.add_check(health.STORAGE_FAILED, self._find_storage_failure, blocks_writes=True)
        readiness.add_check(health.DISK_FULL, self._disk.find_full_problem, blocks_writes=True)
        readiness.add_check(health.DISK_SPACE_LOW, self._disk.find_low_problem)
        readiness.add_check(health.DISK_SPACE_UNKNOWN, self._disk.find_unknown_problem)
        readiness.add_check(health.CATCHING_UP, self._find_catch_up_problem)
        readiness.add_check(health.CLOCK_SKEW, self._find_clock_problem)
        return readiness

    def _find_storage_failure(self) -> str | None:
        if self.failure is None:
            return None
        return f"a ledger write failed, the node is stopping: {self.failure.message}"

    def _find_catch_up_problem(self) -> str | None:
        now_ms = get_monotonic_ms()
        heights = [
            height
            for height, heard_ms in self._peer_heights.values()
            if now_ms - heard_ms <= PEER_HEIGHT_FRESH_MS
        ]
        own = self._ledger.get_head().height
        if not heights or max(heights) - own < CATCHING_UP_BLOCKS_MIN:
            return None
        return f"catching up: at height {own}, a peer reported height {max(heights)}"

    def _find_clock_problem(self) -> str | None:
        report = self._peer_clocks.report(get_monotonic_ms())
        return report.describe() if report.is_skewed else None

    def _check_clock(self, now_ms: int) -> None:
        """Warn while our clock disagrees with our peers' (at once, then once a minute)."""
        report = self._peer_clocks.report(now_ms)
        if not report.is_skewed:
            if self._clock_warned_ms is not None:
                log.info("our clock agrees with our peers' again (offset %s ms)", report.offset_ms)
            self._clock_warned_ms = None
            return
        if self._clock_warned_ms is None or now_ms - self._clock_warned_ms >= CLOCK_WARNING_INTERVAL_MS:
            self._clock_warned_ms = now_ms
            log.warning("clock: %s; our blocks will be refused and we refuse theirs", report.describe())

    # ------------------------------------------------------------ NodeService (for the API)

    def get_readiness_problems(self) -> list[ReadinessProblem]:
        return self.readiness.find_problems()

    def get_busy_reason(self) -> str | None:
        backlog = len(self._gossip_inbox)
        block_txs_max = governance.get_chain_params(self._ledger, self.genesis.params).block_txs_max
        pending = len(self.mempool)
        if backlog > SUBMIT_BACKLOG_TXS_MAX or pending >= SUBMIT_PENDING_BLOCKS_MAX * block_txs_max:
            return (
                f"the node is busy ({pending} transactions pending, {backlog} gossiped ones waiting "
                "for admission); retry later"
            )
        return None

    def submit_transactions(self, encoded: Sequence[bytes]) -> list[SubmitResult]:
        busy = self.get_busy_reason()
        if busy is not None:
            if len(encoded) == 1:
                raise MempoolFullError(busy)
            return [SubmitResult(None, False, "mempool_full", busy) for _ in encoded]
        results = []
        for item in encoded:
            try:
                results.append(self._admit(item, gossip=True))
            except MempoolFullError:
                if len(encoded) == 1:
                    raise
                results.append(SubmitResult(None, False, "mempool_full", "the mempool is full; retry later"))
        return results

    def get_transaction_status(self, tx_hash: bytes) -> TransactionStatus:
        location = self._ledger.get_tx_location(tx_hash)
        if location is not None:
            height, index = location
            receipt_bytes = self._ledger.get_receipt(height, index)
            receipt = types.decode_receipt(receipt_bytes) if receipt_bytes is not None else None
            return TransactionStatus("committed", height=height, index=index, receipt=receipt)
        if self.mempool.contains(tx_hash):
            return TransactionStatus("pending")
        rejected = self._rejected.get(tx_hash)
        if rejected is not None:
            return TransactionStatus("rejected", code=rejected[0], message=rejected[1])
        return TransactionStatus("unknown")

    def get_validator_set(self, height: int) -> types.ValidatorSet:
        """The validators that certify `height`: the set in state after block height-1."""
        head = self._ledger.get_head()
        if height != head.height + 1:
            return governance.get_validator_set_at(self._ledger, height)
        if self._validators_cache is not None and self._validators_cache[0] == head.block_hash:
            return self._validators_cache[1]
        validators = governance.get_validator_set(self._ledger)
        self._validators_cache = (head.block_hash, validators)
        return validators

    def get_evidence(self) -> list[bytes]:
        return list(self._ledger.iter_evidence())

    def render_metrics(self) -> str:
        head = self._ledger.get_head()
        sample = metrics.Sample
        samples = [
            sample("chainnode_height", "gauge", "Committed height.", head.height),
            sample("chainnode_view", "gauge", "Current consensus view.", self.engine.view),
            sample(
                "chainnode_changing_view",
                "gauge",
                "1 while a view change is under way.",
                int(self.engine.is_changing_view),
            ),
            sample(
                "chainnode_view_changes_total",
                "counter",
                "View changes this node asked for.",
                self.engine.view_changes_started,
            ),
            sample(
                "chainnode_committed_blocks_total",
                "counter",
                "Blocks committed since start.",
                self.engine.committed_blocks,
            ),
            sample(
                "chainnode_committed_transactions_total",
                "counter",
                "Transactions committed since start.",
                self.committed_txs,
            ),
            sample(
                "chainnode_mempool_transactions",
                "gauge",
                "Transactions waiting in the mempool.",
                len(self.mempool),
            ),
            sample(
                "chainnode_stable_checkpoint_height",
                "gauge",
                "Height of the latest stable checkpoint.",
                self.stable_checkpoint,
            ),
            sample(
                "chainnode_evidence_total",
                "counter",
                "Proofs of validator equivocation kept.",
                self.evidence_total,
            ),
            sample(
                "chainnode_peers_connected",
                "gauge",
                "Peers with a live outbound connection.",
                len(self.transport.connected_peers()),
            ),
            sample(
                "chainnode_frames_malformed_total",
                "counter",
                "Peer frames that failed to decode.",
                self._frames_malformed,
            ),
        ]
        samples += [
            sample(
                f"chainnode_p2p_{name}_total", "counter", f"p2p transport: {name.replace('_', ' ')}.", value
            )
            for name, value in sorted(self.transport.metrics.items())
        ]
        clock = self._peer_clocks.report(get_monotonic_ms())
        samples.append(
            sample(
                "chainnode_clock_offset_milliseconds",
                "gauge",
                "Median of (peer wall clock - ours) over peers heard in the last 10 s; 0 with no peer.",
                clock.offset_ms or 0,
            )
        )
        samples += self._get_api_connection_samples()
        samples += self._gc_timer.samples()
        samples += self._disk.samples()
        samples.append(
            sample(
                "chainnode_ready",
                "gauge",
                "1 when /readyz finds no problem.",
                int(not self.get_readiness_problems()),
            )
        )
        return metrics.render(samples, {"chain_id": self.chain_id, "node": self.node_id})

    def _get_api_connection_samples(self) -> list[metrics.Sample]:
        """The API's connection limits at work (`p2p.http_guard`); zeros before `start`."""
        guard = None if self._api_runner is None else self._api_runner.guard
        samples = [
            metrics.Sample(
                "chainnode_api_connections_open",
                "gauge",
                "API connections open (at most [api] connections_max).",
                0 if guard is None else guard.connections_open,
            )
        ]
        samples += [
            metrics.Sample(
                f"chainnode_api_{name}_total",
                "counter",
                f"API connections closed: {name.replace('_', ' ')}.",
                0 if guard is None else guard.counters[name],
            )
            for name in ("connections_refused", "request_heads_timed_out")
        ]
        return samples

    def get_status(self) -> dict[str, Any]:
        head = self._ledger.get_head()
        return {
            "chain_id": self.chain_id,
            "node_id": self.node_id,
            "validator_index": self.engine.own_index,
            "height": head.height,
            "head_hash": head.block_hash.hex(),
            "state_root": head.state_root.hex(),
            "timestamp_ms": head.timestamp_ms,
            "clock_offset_ms": self._peer_clocks.report(get_monotonic_ms()).offset_ms,
            "view": self.engine.view,
            "changing_view": self.engine.is_changing_view,
            "view_changes_started": self.engine.view_changes_started,
            "stable_checkpoint": self.stable_checkpoint,
            "evidence": self.evidence_total,
            "peers": sorted(self.transport.connected_peers()),
            "mempool_txs": len(self.mempool),
            "genesis_hash": self.genesis_hash.hex(),
            "committed_txs_since_start": self.committed_txs,
            "frames_malformed": self._frames_malformed,
            "gossip_batches_dropped": self._gossip_dropped,
            "gossip_inbox_txs": len(self._gossip_inbox),
            "p2p": dict(self.transport.metrics),
            "expiring_certificates": [
                {
                    "kind": item.kind,
                    "subject": item.subject,
                    "zone": item.zone,
                    "not_after_ms": item.not_after_ms,
                    "expires_in_ms": item.expires_in_ms,
                }
                for item in self._get_expiring_certificates()
            ],
            "certificate_warning_days": self.config.certificate_warning_days,
        }

    def _get_expiring_certificates(self) -> list[authority.ExpiringCertificate]:
        """Certificates expiring within the configured window; recomputed at most once a minute
        or when the head moves (a scan over every registered certificate)."""
        head = self._ledger.get_head()
        now_ms = get_time_ms()
        cached = self._expiring_cache
        if cached is not None and cached[0] == head.block_hash and now_ms - cached[1] < 60_000:
            return cached[2]
        window_ms = self.config.certificate_warning_days * 86_400_000
        items = authority.find_expiring_certificates(self._ledger, now_ms, window_ms)
        self._expiring_cache = (head.block_hash, now_ms, items)
        return items


# The cyclic collector's thresholds for a running node (CPython's defaults: 700, 10, 10).
# A node holds a few hundred thousand long-lived objects (pooled and memoised
# transactions, caches), almost none of them in reference cycles; with the defaults
# a full collection (~0.1 s) ran every few seconds under load, and all collections
# together took ~13% of a validator's CPU (`chainnode_gc_seconds_total`).  Measured
# on a validator over the first 100k transactions of a bench run: (5000, 20, 100)
# 0.67 s, most of it in a generation-1 collection (~50 ms, walking every pooled
# transaction) every ~15k transactions; (5000, 200, 100) 0.41 s; (20000, 50, 100)
# 0.53 s (large young generations are walked cold); (2000, 500, 100) 0.32 s.  Young
# cycles (asyncio, exceptions) still go at the next young collection; older ones at
# a generation-1 collection, about every 100k transactions.
GC_THRESHOLDS = (2_000, 500, 100)


def configure_gc() -> None:
    """Collect less often, and never scan what start-up built (genesis, modules, config)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def run_node(config_path: Path) -> None:
    """Run one node until SIGINT or SIGTERM; raise the `StorageError` it stopped on, if any
    (the CLI prints it as one line and exits non-zero)."""
    config = load_node_config(config_path)
    node = Node(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await node.start()
    configure_gc()
    waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(node.failed.wait())]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await node.stop()
    if node.failure is not None:
        raise node.failure
