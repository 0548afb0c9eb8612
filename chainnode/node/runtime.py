"""The node shell: wires consensus, storage, p2p, admission and the API, and drives the engine.

Theory of operation.  One asyncio loop owns everything.  The consensus engine
is a pure state machine; `_step` feeds it an event and then carries out the
effects it returns, strictly in order: a vote is written to LevelDB (synced)
before it is broadcast, a committed block is one atomic batch before the next
event runs.  The parts each have one job and a module of their own:
`ChainApplication` (the engine's Application: proposals and re-execution),
`Admission` (the mempool's gate and the gossip in and out), `PeerPolicy` (who
may connect), `chainnode.node.status` (the status document and metrics) and
`chainnode.node.health` (readiness).  `Node` builds them, runs the loop's
tasks and implements the API's `NodeService` by delegation.

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

from chainnode import light
from chainnode.api.events import CommitSignal
from chainnode.api.server import create_app
from chainnode.api.service import ReadinessProblem, SubmitResult, TransactionStatus
from chainnode.app.execution import Executor, SignatureCache
from chainnode.app.genesis import Genesis, load_genesis
from chainnode.app.state import compute_genesis_state_root
from chainnode.core import identity_records, metrics, quorum, types
from chainnode.core.crypto import SigningKey
from chainnode.core.errors import ConfigError, DecodeError, InvariantError, StorageError
from chainnode.node import health, logs, status, wire
from chainnode.node.admission import Admission
from chainnode.node.application import ChainApplication
from chainnode.node.clock import get_monotonic_ms, get_time_ms
from chainnode.node.config import NodeConfig, load_node_config
from chainnode.node.mempool import Mempool
from chainnode.node.peer_reports import PeerReports
from chainnode.node.peers import PEER_AFFECTING_PREFIXES, PeerPolicy
from chainnode.node.replication import ReplicationWaiters
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

STATUS_INTERVAL_MS = 1_000
WARNING_INTERVAL_MS = 5_000  # consensus warnings: at most one a this often, the rest counted
REGOSSIP_INTERVAL_MS = 3_000
REGOSSIP_TXS_MAX = 500
RESPONSE_BYTES_MAX = 8 * 1024 * 1024


class Node:
    """A validator (or observer) node: builds its parts, drives the engine, implements `NodeService`."""

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
        self.executor = Executor(self.chain_id, SignatureCache())
        self.mempool = Mempool(capacity_txs=config.mempool_capacity_txs, capacity_bytes=512 * 1024 * 1024)
        self.application = ChainApplication(
            chain_id=self.chain_id,
            ledger=self._ledger,
            mempool=self.mempool,
            executor=self.executor,
            params=self.genesis.params,
        )
        self.admission = Admission(ledger=self._ledger, mempool=self.mempool, executor=self.executor)
        self.peer_policy = PeerPolicy(
            ledger=self._ledger,
            root_certificate=x509.load_der_x509_certificate(self.genesis.root_certificate),
            get_validator_set=self.get_validator_set,
            on_storage_failure=self._stop_on_storage_failure,
        )
        current = self.get_validator_set(self._ledger.get_head().height + 1)
        own_index = current.index_of(config.node_id)
        if own_index is not None and current.validators[own_index].public_key != self._key.public_key:
            raise ConfigError(f"{config.key_path} is not the key registered for validator {config.node_id}")
        self.certificate_watch = status.CertificateWatch(config.certificate_warning_days)
        self.frames_malformed = 0
        self.gc_timer = metrics.GcTimer()
        self.committed_txs = 0
        self.evidence_total = sum(1 for _ in self._ledger.iter_evidence())
        latest_checkpoint = self._ledger.get_latest_checkpoint()
        self.stable_checkpoint = (
            0 if latest_checkpoint is None else quorum.decode_checkpoint_certificate(latest_checkpoint).height
        )
        self.engine = self._create_engine(current)
        self.transport = self._create_transport()
        self.api_runner: GuardedAppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        # Set once, by `_stop_on_storage_failure`; `failed` wakes `run_node`.
        self.failure: StorageError | None = None
        self.failed = asyncio.Event()
        self.peer_reports = PeerReports(self.application.get_chain_params().timestamp_drift_ms_max)
        self._warning_gate = health.WarningGate(WARNING_INTERVAL_MS)
        self.disk = health.DiskSpaceWatch(config.data_dir, free_bytes_min=config.disk_free_bytes_min)
        self.readiness = self._create_readiness()
        self.commit_signal = CommitSignal()  # wakes the API's event readers after each commit
        self.replication = ReplicationWaiters(
            lambda: self.get_validator_set(self._ledger.get_head().height + 1), self.node_id
        )
        self.node_metrics = status.NodeMetrics(self)  # /metrics; reads the parts above at each scrape
        logs.bind_node_context(lambda: (self._ledger.get_head().height, self.engine.view))

    def _create_engine(self, validators: quorum.ValidatorSet) -> Engine:
        """The engine, restored from the ledger's head and our vote log."""
        head = self._ledger.get_head()
        persisted = [
            decode_log_record(payload) for _, _, _, payload in self._ledger.get_votes(head.height + 1)
        ]
        head_view = 0
        if head.height > 0:
            certificate_bytes = self._ledger.get_certificate(head.height)
            if certificate_bytes is None:
                raise InvariantError("a committed head has its certificate")
            head_view = quorum.decode_commit_certificate(certificate_bytes).view
        return Engine(
            self._compute_engine_config(),
            validators=validators,
            own_id=self.config.node_id,
            key=self._key,
            app=self.application,
            head=ChainHead(head.height, head.block_hash, head.timestamp_ms, head_view),
            now_ms=get_monotonic_ms(),
            wall_ms=get_time_ms(),
            persisted=persisted,
            stable_checkpoint=self.stable_checkpoint,
            rng=random.Random(),
        )

    def _compute_engine_config(self) -> EngineConfig:
        """The engine's parameters from the chain parameters in force (the last `set_params`,
        else genesis'); the node's own `view_timeout_ms` where the chain sets none."""
        params = self.application.get_chain_params()
        return EngineConfig(
            self.chain_id,
            proposal_delay_ms=self.config.proposal_delay_ms,
            timestamp_drift_ms_max=params.timestamp_drift_ms_max,
            view_timeout_ms=params.view_timeout_ms or self.config.view_timeout_ms,
        )

    def _apply_chain_params(self) -> None:
        """A committed `set_params` applies from the next height, as every rule of a block does."""
        self.engine.config = self._compute_engine_config()
        self.peer_reports.clocks.drift_ms_max = self.engine.config.timestamp_drift_ms_max
        log.info(
            "chain parameters changed: timestamp drift %d ms, view timeout %d ms",
            self.engine.config.timestamp_drift_ms_max,
            self.engine.config.view_timeout_ms,
        )

    def _create_transport(self) -> Transport:
        config = self.config
        return Transport(
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
            authorize=self.peer_policy.authorize,
            on_message=self._on_peer_frame,
            on_connected=self._on_peer_connected,
        )

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
        self.gc_timer.install()
        await self.transport.start()
        app = create_app(self)
        limits = ConnectionLimits(
            connections_max=self.config.api_connections_max,
            request_head_timeout_ms=self.config.api_request_head_timeout_ms,
            keepalive_timeout_ms=self.config.api_keepalive_timeout_ms,
        )
        self.api_runner = GuardedAppRunner(app, ConnectionGuard(limits, name="api"), access_log=None)
        await self.api_runner.setup()
        site = web.TCPSite(self.api_runner, self.config.api_host, self.config.api_port)
        await site.start()
        self.disk.check()
        try:
            self._execute(self.engine.start())
        except (StorageError, OSError) as error:
            self._stop_on_storage_failure(error)
        self._tasks.append(asyncio.create_task(self._run_ticks()))
        self._tasks.append(asyncio.create_task(self.admission.run_gossip_admission()))
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
        if self.api_runner is not None:
            await self.api_runner.cleanup()
        await self.transport.stop()
        self._ledger.close()
        self.gc_timer.uninstall()
        log.info("node %s stopped", self.node_id)
        logs.bind_node_context(None)

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
            self._send_gossip()
            if now_ms - status_sent_ms >= STATUS_INTERVAL_MS:
                status_sent_ms = now_ms
                self.transport.broadcast(wire.encode_status(self.engine.head.height, get_time_ms()))
                self.peer_reports.warn_about_clock(now_ms)
            if now_ms - regossip_ms >= REGOSSIP_INTERVAL_MS:
                regossip_ms = now_ms
                self._regossip_oldest()
            if get_monotonic_ms() - disk_checked_ms >= health.DISK_CHECK_INTERVAL_MS:
                disk_checked_ms = get_monotonic_ms()
                self.disk.check()

    def _send_gossip(self) -> None:
        """What clients submitted since the last tick, and the answers owed to peers' batches."""
        gossip = self.admission.take_gossip()
        if gossip:
            self.transport.broadcast(wire.encode_tx_batch(gossip))
        replicate = self.admission.take_replicate_gossip()
        if replicate:
            self.transport.broadcast(wire.encode_tx_batch(replicate, wants_ack=True))
        for peer_id, tx_hashes in self.admission.take_acks().items():
            self.transport.send(peer_id, wire.encode_tx_ack(tx_hashes))

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
                self._log_diagnostic(effect)

    def _log_diagnostic(self, diagnostic: Diagnostic) -> None:
        """News at INFO; warnings (a proposer's clock, say) at WARNING at most once per interval,
        the rest at DEBUG and counted: a wrong clock is refused once per block, many a second."""
        if not diagnostic.warning:
            log.info("consensus: %s", diagnostic.message)
            return
        suppressed = self._warning_gate.admit(get_monotonic_ms())
        if suppressed is None:
            log.debug("consensus: %s", diagnostic.message)
        elif suppressed:
            log.warning("consensus: %s (and %d more warnings since the last)", diagnostic.message, suppressed)
        else:
            log.warning("consensus: %s", diagnostic.message)

    def _commit(self, block: types.Block, certificate: quorum.CommitCertificate) -> None:
        started_s = time.perf_counter()
        result = self.application.take_result(block)
        change = light.compute_validator_change_proof(
            block.height, self._ledger.get_head().state_root, result.write_set
        )
        head = self._ledger.commit_block(
            block,
            certificate,
            result.receipts,
            result.write_set,
            validator_change=None if change is None else change.encode(),
        )
        self.node_metrics.observe_commit(
            block_timestamp_ms=block.header.timestamp_ms, commit_seconds=time.perf_counter() - started_s
        )
        if head.state_root != block.header.state_root:
            raise InvariantError(f"block {block.height} committed with another state root than executed")
        self.admission.note_commit(block)
        self.replication.note_committed(tx.hash for tx in block.transactions)
        self.committed_txs += len(block.transactions)
        self.commit_signal.notify()
        if any(key.startswith(PEER_AFFECTING_PREFIXES) for key in result.write_set):
            self.peer_policy.disconnect_unauthorized(self.transport)
        if any(key == identity_records.CHAIN_PARAMS_KEY for key in result.write_set):
            self._apply_chain_params()
        log.debug("committed block %d with %d transactions", block.height, len(block.transactions))

    # ------------------------------------------------------------ p2p

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
            with logs.handling_peer(peer_id):
                self._handle_peer_frame(peer_id, data)
        except (StorageError, OSError) as error:
            # Caught here, where the frame enters the node: the transport would log it as
            # a callback bug and go on reading frames with a head that is not on disk.
            self._stop_on_storage_failure(error)

    def _handle_peer_frame(self, peer_id: str, data: bytes) -> None:
        try:
            frame = wire.decode_frame(data, frame_bytes_max=self.config.frame_bytes_max)
        except DecodeError as error:
            self.frames_malformed += 1
            log.warning("malformed frame from %s: %s", peer_id, error.message)
            return
        self.node_metrics.note_message(frame)
        if isinstance(frame, wire.TxBatch):
            self.admission.receive_gossip(frame.transactions, peer_id=peer_id, wants_ack=frame.wants_ack)
        elif isinstance(frame, wire.TxAck):
            self.replication.note_ack(peer_id, frame.tx_hashes)
        elif isinstance(frame, wire.Status):
            self.peer_reports.note(
                peer_id,
                height=frame.height,
                peer_wall_ms=frame.wall_ms,
                own_wall_ms=get_time_ms(),
                now_ms=get_monotonic_ms(),
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
        readiness.add_check(health.DISK_FULL, self.disk.find_full_problem, blocks_writes=True)
        readiness.add_check(health.DISK_SPACE_LOW, self.disk.find_low_problem)
        readiness.add_check(health.DISK_SPACE_UNKNOWN, self.disk.find_unknown_problem)
        reports = self.peer_reports
        readiness.add_check(
            health.CATCHING_UP,
            lambda: reports.find_catch_up_problem(self._ledger.get_head().height, get_monotonic_ms()),
        )
        readiness.add_check(health.CLOCK_SKEW, lambda: reports.find_clock_problem(get_monotonic_ms()))
        readiness.add_check(
            health.NO_QUORUM,
            lambda: health.find_quorum_problem(
                self.transport.connected_peers(), self.engine.validators, self.node_id
            ),
        )
        return readiness

    def _find_storage_failure(self) -> str | None:
        if self.failure is None:
            return None
        return f"a ledger write failed, the node is stopping: {self.failure.message}"

    # ------------------------------------------------------------ NodeService (for the API)

    def get_readiness_problems(self) -> list[ReadinessProblem]:
        return self.readiness.find_problems()

    def get_busy_reason(self) -> str | None:
        return self.admission.get_busy_reason(self.application.get_chain_params().block_txs_max)

    def submit_transactions(self, encoded: Sequence[bytes], *, replicate: bool = False) -> list[SubmitResult]:
        block_txs_max = self.application.get_chain_params().block_txs_max
        return self.admission.submit(encoded, block_txs_max=block_txs_max, replicate=replicate)

    async def wait_for_replication(self, tx_hash: bytes, timeout_s: float) -> int | None:
        return await self.replication.wait(tx_hash, timeout_s)

    def get_transaction_status(self, tx_hash: bytes) -> TransactionStatus:
        return self.admission.get_transaction_status(tx_hash)

    def get_validator_set(self, height: int) -> quorum.ValidatorSet:
        return self.application.get_validator_set(height)

    def get_evidence(self) -> list[bytes]:
        return list(self._ledger.iter_evidence())

    def render_metrics(self) -> str:
        return self.node_metrics.render()

    def get_status(self) -> dict[str, Any]:
        return status.compute_status(self)

    async def wait_for_commit(self, height: int, timeout_s: float) -> None:
        if self._ledger.get_head().height <= height:
            await self.commit_signal.wait(timeout_s)


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
