"""The engine's effects and their I/O: drives the engine and carries out what it returns.

Theory of operation.  The consensus engine is a pure state machine; `EngineEffects.step` feeds
it an event and then executes the effects it returns, strictly in order, on the one asyncio loop
that owns the node.  The order is the safety argument (DESIGN.md section 7): a `PersistVote` is
written to the vote log (synced) before the `Broadcast` or `SendTo` that follows it, so a node
never sends a message it signed before that message survives a crash; a `CommitBlock` is the one
commit point, one atomic ledger batch (synced) before the next event runs.  What must be seen at
that instant happens there and nowhere else: the light client's validator-change proof is written
with the block, the commit-latency histograms are observed after the synced write, the mempool and
the replication waiters learn what committed, the API's event readers are woken, and a block that
changed the PKI or the chain parameters takes effect from the next height.  Our own proposal is
sent as transaction ids (`chainnode.node.proposals`), after the gossip we owe, so on each link
the bodies of our clients' transactions travel ahead of the ids that name them.

`restore_engine` is the same I/O read back: the engine resumes from the ledger's head, its
certificate's view and the vote log of the height in progress.

Failure model: a `StorageError` or `OSError` from the ledger propagates out of `step` and
`execute`; the caller, where its path enters the node, hands it to the node's fatal handler.  Once
that handler has run (`is_stopped`), `step` feeds the engine nothing more: its head is not on disk.
"""

from __future__ import annotations

import bisect
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence

from chainnode import light
from chainnode.api.events import CommitSignal
from chainnode.core import identity_records, quorum, types
from chainnode.core.crypto import SigningKey
from chainnode.core.errors import InvariantError
from chainnode.node import health, wire
from chainnode.node.admission import Admission
from chainnode.node.application import ChainApplication
from chainnode.node.clock import get_monotonic_ms, get_time_ms
from chainnode.node.config import NodeConfig
from chainnode.node.peers import PEER_AFFECTING_PREFIXES, PeerPolicy
from chainnode.node.proposals import ProposalRelay
from chainnode.node.replication import ReplicationWaiters
from chainnode.node.status import NodeMetrics
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
from consensus.events import ChainHead, EngineConfig, Event, Tick
from consensus.messages import Message, PrePrepare, compute_log_key, decode_log_record
from p2p.transport import Transport
from storage.ledger import Ledger

# The node's own lines keep the logger operators filter on, wherever in the shell they are made.
log = logging.getLogger("chainnode.node.runtime")

WARNING_INTERVAL_MS = 5_000  # consensus warnings: at most one a this often, the rest counted
PENDING_STEPS_MAX = 100_000


def compute_engine_config(application: ChainApplication, config: NodeConfig) -> EngineConfig:
    """The engine's parameters from the chain parameters in force (the last `set_params`,
    else genesis'); the node's own `view_timeout_ms` where the chain sets none."""
    params = application.get_chain_params()
    return EngineConfig(
        application.chain_id,
        proposal_delay_ms=config.proposal_delay_ms,
        timestamp_drift_ms_max=params.timestamp_drift_ms_max,
        view_timeout_ms=params.view_timeout_ms or config.view_timeout_ms,
    )


def _touches_prefixes(write_set: Mapping[bytes, bytes | None], prefixes: tuple[bytes, ...]) -> bool:
    """Whether a key of `write_set` starts with one of `prefixes`: a binary search per prefix,
    not a Python-level look at every key of the block (sorting an already ordered write set, as
    `ExecutionResult.write_set` is, is one linear pass in C)."""
    keys = sorted(write_set)
    for prefix in prefixes:
        index = bisect.bisect_left(keys, prefix)
        if index < len(keys) and keys[index].startswith(prefix):
            return True
    return False


def restore_engine(
    *,
    ledger: Ledger,
    application: ChainApplication,
    config: NodeConfig,
    key: SigningKey,
    validators: quorum.ValidatorSet,
    stable_checkpoint: int,
) -> Engine:
    """The engine, restored from the ledger's head and our vote log."""
    head = ledger.get_head()
    persisted = [decode_log_record(payload) for _, _, _, payload in ledger.get_votes(head.height + 1)]
    head_view = 0
    if head.height > 0:
        certificate_bytes = ledger.get_certificate(head.height)
        if certificate_bytes is None:
            raise InvariantError("a committed head has its certificate")
        head_view = quorum.decode_commit_certificate(certificate_bytes).view
    return Engine(
        compute_engine_config(application, config),
        validators=validators,
        own_id=config.node_id,
        key=key,
        app=application,
        head=ChainHead(head.height, head.block_hash, head.timestamp_ms, head_view),
        now_ms=get_monotonic_ms(),
        wall_ms=get_time_ms(),
        persisted=persisted,
        stable_checkpoint=stable_checkpoint,
        rng=random.Random(),
    )


class EngineEffects:
    """Steps the engine and executes its effects in order; owns the one commit point.

    `stable_checkpoint`, `evidence_total` and `committed_txs` are what the effects did, read by
    the status document and `/metrics`."""

    def __init__(
        self,
        *,
        engine: Engine,
        ledger: Ledger,
        transport: Transport,
        application: ChainApplication,
        admission: Admission,
        replication: ReplicationWaiters,
        peer_policy: PeerPolicy,
        node_metrics: NodeMetrics,
        commit_signal: CommitSignal,
        get_validator_set: Callable[[int], quorum.ValidatorSet],
        on_chain_params: Callable[[], None],
        is_stopped: Callable[[], bool],
        stable_checkpoint: int,
        proposals: ProposalRelay,
        flush_gossip: Callable[[], None],
    ) -> None:
        self.engine = engine
        self._proposals = proposals
        self._flush_gossip = flush_gossip
        self._ledger = ledger
        self._transport = transport
        self._application = application
        self._admission = admission
        self._replication = replication
        self._peer_policy = peer_policy
        self._node_metrics = node_metrics
        self._commit_signal = commit_signal
        self._get_validator_set = get_validator_set
        self._on_chain_params = on_chain_params
        self._is_stopped = is_stopped
        self._warning_gate = health.WarningGate(WARNING_INTERVAL_MS)
        self.stable_checkpoint = stable_checkpoint
        self.evidence_total = sum(1 for _ in ledger.iter_evidence())
        self.committed_txs = 0

    def step(self, event: Event) -> None:
        """Feed `event`, execute the effects, and tick again while the engine has work pending."""
        if self._is_stopped():
            return  # a ledger write failed: the engine's head is not on disk, so it decides nothing more
        self.execute(self.engine.step(event))
        for _ in range(PENDING_STEPS_MAX):
            if not self.engine.has_pending_work:
                return
            self.execute(self.engine.step(Tick(get_monotonic_ms(), get_time_ms())))
        raise AssertionError("the engine kept asking for more work")

    def execute(self, effects: Sequence[Effect]) -> None:
        """Carry out `effects` strictly in order: a vote is synced before what follows it is sent.

        Consecutive `PersistVote`s (a prepared certificate and the COMMIT it enables) go to the
        vote log in one synced batch: both are on disk before the effect after them runs, with
        one sync instead of two.
        """
        votes: list[tuple[int, int, int, bytes]] = []
        for position, effect in enumerate(effects):
            if isinstance(effect, PersistVote):
                height, view, kind = compute_log_key(effect.message)
                votes.append((height, view, kind, effect.message.encode()))
                if position + 1 < len(effects) and isinstance(effects[position + 1], PersistVote):
                    continue
                self._ledger.put_votes(votes)
                votes = []
            elif isinstance(effect, Broadcast):
                self._transport.broadcast(self._encode(effect.message))
            elif isinstance(effect, SendTo):
                self._transport.send(effect.peer, self._encode(effect.message))
            elif isinstance(effect, CommitBlock):
                self._commit(effect.block, effect.certificate)
            elif isinstance(effect, RequestBlocks):
                self._transport.send(
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

    def _encode(self, message: Message) -> bytes:
        """A message's frame; our own proposal goes as ids, behind the gossip we owe."""
        if isinstance(message, PrePrepare):
            self._flush_gossip()
            return self._proposals.encode(message)
        return message.encode()

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
        """The one commit point (see the module docstring)."""
        started_s = time.perf_counter()
        result = self._application.take_result(block)
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
        self._node_metrics.observe_commit(
            block_timestamp_ms=block.header.timestamp_ms, commit_seconds=time.perf_counter() - started_s
        )
        if head.state_root != block.header.state_root:
            raise InvariantError(f"block {block.height} committed with another state root than executed")
        self._admission.note_commit(block)
        self._replication.note_committed(tx.hash for tx in block.transactions)
        self.committed_txs += len(block.transactions)
        self._commit_signal.notify()
        if _touches_prefixes(result.write_set, PEER_AFFECTING_PREFIXES):
            self._peer_policy.disconnect_unauthorized(self._transport)
        if identity_records.CHAIN_PARAMS_KEY in result.write_set:
            self._on_chain_params()
        log.debug("committed block %d with %d transactions", block.height, len(block.transactions))

    def _record_evidence(self, effect: RecordEvidence) -> None:
        evidence = effect.evidence
        validator = self._get_validator_set(evidence.height).validators[evidence.validator].entity_id
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
