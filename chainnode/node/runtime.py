"""The node shell: wires consensus, storage, p2p, admission and the API, and drives the engine.

Theory of operation.  One asyncio loop owns everything.  The consensus engine
is a pure state machine; `chainnode.node.effects` (`EngineEffects`) feeds it an
event and then carries out the effects it returns, strictly in order: a vote is
written to LevelDB (synced) before it is broadcast, a committed block is one
atomic batch before the next event runs.  The parts each have one job and a
module of their own: `EngineEffects` (driving the engine, its effects and the
one commit point), `PeerTraffic` (`chainnode.node.traffic`: the transport, the
frames peers send, gossip out and block sync), `CatchUpVerifier`
(`chainnode.node.catch_up_verify`: fetched blocks' signatures verified in a
process pool before the engine commits them), `ChainApplication` (the engine's
Application: proposals and re-execution), `Admission` (the mempool's gate and
the gossip in and out), `PeerPolicy` (who may connect), `chainnode.node.status`
(the status document and metrics) and `chainnode.node.health` (readiness).
`Node` builds them, runs the loop's tasks (the timer loop: ticks, gossip,
status, the disk check) and implements the API's `NodeService` by delegation;
`chainnode.node.process` runs one node as a process.

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
that path enters the node (`PeerTraffic.on_peer_frame`, `_run_ticks`, `start`),
before the transport's or asyncio's generic handlers could swallow it, and
handed to `_stop_on_storage_failure`: one CRITICAL line naming the data
directory and the OS error, no further event reaches the engine
(`EngineEffects.step` and `PeerTraffic.on_peer_frame` ask `_is_stopped`),
health and readiness fail and submissions are refused at once, and `run_node`
closes the API and p2p and raises the error, so `chainnode node run` exits
non-zero with that one line.  What the node acknowledged was persisted before
(a vote is synced before it is sent, a transaction is reported committed only
from the ledger).  Readiness is a registry of named checks
(`chainnode.node.health`); the disk's free space is measured on the timer loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography import x509

from chainnode.api.events import CommitSignal
from chainnode.api.server import create_app
from chainnode.api.service import ReadinessProblem, SubmitResult, TransactionStatus
from chainnode.app.execution import Executor, SignatureCache
from chainnode.app.genesis import Genesis, load_genesis
from chainnode.app.state import compute_genesis_state_root
from chainnode.core import metrics, quorum
from chainnode.core.crypto import SigningKey
from chainnode.core.errors import ConfigError, StorageError
from chainnode.node import effects, health, logs, status
from chainnode.node.admission import Admission
from chainnode.node.application import ChainApplication
from chainnode.node.catch_up_verify import CatchUpVerifier, get_workers_setting
from chainnode.node.clock import get_monotonic_ms, get_time_ms
from chainnode.node.config import NodeConfig
from chainnode.node.mempool import Mempool
from chainnode.node.peer_reports import PeerReports
from chainnode.node.peers import PeerPolicy
from chainnode.node.replication import ReplicationWaiters
from chainnode.node.traffic import PeerTraffic
from consensus.events import Event, Tick
from p2p.http_guard import ConnectionGuard, ConnectionLimits, GuardedAppRunner
from storage.ledger import Ledger

log = logging.getLogger("chainnode.node.runtime")

STATUS_INTERVAL_MS = 1_000
REGOSSIP_INTERVAL_MS = 3_000


class Node:
    """A validator (or observer) node: builds its parts, drives the engine, implements `NodeService`."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.genesis: Genesis = load_genesis(config.genesis_path)
        self.chain_id = self.genesis.chain_id
        self.node_id = config.node_id
        self.genesis_hash = self.genesis.compute_hash()
        self._ledger = open_ledger(config.data_dir, self.genesis, self.genesis_hash)
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
        self.gc_timer = metrics.GcTimer()
        latest_checkpoint = self._ledger.get_latest_checkpoint()
        stable_checkpoint = (
            0 if latest_checkpoint is None else quorum.decode_checkpoint_certificate(latest_checkpoint).height
        )
        self.engine = effects.restore_engine(
            ledger=self._ledger,
            application=self.application,
            config=config,
            key=self._key,
            validators=current,
            stable_checkpoint=stable_checkpoint,
        )
        self.api_runner: GuardedAppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        # Set once, by `_stop_on_storage_failure`; `failed` wakes `run_node`.
        self.failure: StorageError | None = None
        self.failed = asyncio.Event()
        self.peer_reports = PeerReports(self.application.get_chain_params().timestamp_drift_ms_max)
        self.disk = health.DiskSpaceWatch(config.data_dir, free_bytes_min=config.disk_free_bytes_min)
        self.commit_signal = CommitSignal()  # wakes the API's event readers after each commit
        self.replication = ReplicationWaiters(
            lambda: self.get_validator_set(self._ledger.get_head().height + 1), self.node_id
        )
        self.node_metrics = status.NodeMetrics(self)  # /metrics; reads the parts at each scrape
        self.catch_up = CatchUpVerifier(
            signatures=self.executor.signatures,
            state=self._ledger,
            get_head_height=lambda: self._ledger.get_head().height,
            step=self._step,
            on_storage_failure=self._stop_on_storage_failure,
            workers=get_workers_setting(),
        )
        self.traffic = self._create_traffic()
        self.transport = self.traffic.transport
        self.effects = self._create_effects(stable_checkpoint)
        self.readiness = self._create_readiness()
        logs.bind_node_context(lambda: (self._ledger.get_head().height, self.engine.view))

    def _create_traffic(self) -> PeerTraffic:
        return PeerTraffic(
            config=self.config,
            chain_id=self.chain_id,
            genesis_hash=self.genesis_hash,
            engine=self.engine,
            ledger=self._ledger,
            mempool=self.mempool,
            admission=self.admission,
            replication=self.replication,
            peer_policy=self.peer_policy,
            peer_reports=self.peer_reports,
            node_metrics=self.node_metrics,
            step=self._step,  # `effects` is built next: it sends through this transport
            is_stopped=self._is_stopped,
            on_storage_failure=self._stop_on_storage_failure,
            receive_blocks=self.catch_up.receive,
            note_peer_height=self.catch_up.note_peer_height,
        )

    def _create_effects(self, stable_checkpoint: int) -> effects.EngineEffects:
        return effects.EngineEffects(
            engine=self.engine,
            ledger=self._ledger,
            transport=self.transport,
            application=self.application,
            admission=self.admission,
            replication=self.replication,
            peer_policy=self.peer_policy,
            node_metrics=self.node_metrics,
            commit_signal=self.commit_signal,
            get_validator_set=self.get_validator_set,
            on_chain_params=self._apply_chain_params,
            is_stopped=self._is_stopped,
            stable_checkpoint=stable_checkpoint,
            proposals=self.traffic.proposals,
            flush_gossip=self.traffic.send_gossip,
        )

    def _step(self, event: Event) -> None:
        """Feed the engine one event and execute its effects (see `chainnode.node.effects`)."""
        self.effects.step(event)

    def _apply_chain_params(self) -> None:
        """A committed `set_params` applies from the next height, as every rule of a block does."""
        self.engine.config = effects.compute_engine_config(self.application, self.config)
        self.peer_reports.clocks.drift_ms_max = self.engine.config.timestamp_drift_ms_max
        log.info(
            "chain parameters changed: timestamp drift %d ms, view timeout %d ms",
            self.engine.config.timestamp_drift_ms_max,
            self.engine.config.view_timeout_ms,
        )

    @property
    def ledger(self) -> Ledger:
        return self._ledger

    # What the effects and the traffic did, for the status document and /metrics.
    @property
    def stable_checkpoint(self) -> int:
        return self.effects.stable_checkpoint

    @property
    def evidence_total(self) -> int:
        return self.effects.evidence_total

    @property
    def committed_txs(self) -> int:
        return self.effects.committed_txs

    @property
    def frames_malformed(self) -> int:
        return self.traffic.frames_malformed

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
            self.effects.execute(self.engine.start())
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
        await self.catch_up.close()  # before the ledger closes: it steps the engine
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
            self.traffic.send_gossip()
            if now_ms - status_sent_ms >= STATUS_INTERVAL_MS:
                status_sent_ms = now_ms
                self.traffic.send_status()
                self.peer_reports.warn_about_clock(now_ms)
            if now_ms - regossip_ms >= REGOSSIP_INTERVAL_MS:
                regossip_ms = now_ms
                self.traffic.regossip_oldest()
            if get_monotonic_ms() - disk_checked_ms >= health.DISK_CHECK_INTERVAL_MS:
                disk_checked_ms = get_monotonic_ms()
                self.disk.check()

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

    def _is_stopped(self) -> bool:
        return self.failure is not None

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


def open_ledger(data_dir: Path, genesis: Genesis, genesis_hash: bytes) -> Ledger:
    """The node's ledger: created from `genesis` on first start, else checked to belong to it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    health.check_disk_writable(data_dir)
    ledger = Ledger(data_dir / "ledger")
    if not ledger.is_initialized():
        initial_state = genesis.initial_state()
        ledger.initialize(
            genesis_hash=genesis_hash,
            genesis_time_ms=genesis.genesis_time_ms,
            initial_state=initial_state,
            state_root=compute_genesis_state_root(initial_state),
        )
    elif ledger.get_genesis_hash() != genesis_hash:
        raise ConfigError(f"the data in {data_dir} belongs to another genesis")
    return ledger
