"""What the node tells about itself: the `/v1/status` document and the `/metrics` exposition.

Both read the node's parts (ledger head, engine, mempool, transport, admission, health, clocks)
and change nothing; they live here so the node's runtime only wires and drives.
"""

from __future__ import annotations

from typing import Any, Protocol

from chainnode.api.service import ReadinessProblem
from chainnode.app import authority
from chainnode.core import metrics
from chainnode.node.admission import Admission
from chainnode.node.clock import get_monotonic_ms, get_time_ms
from chainnode.node.config import NodeConfig
from chainnode.node.health import DiskSpaceWatch
from chainnode.node.mempool import Mempool
from chainnode.node.peer_reports import PeerReports
from consensus.engine import Engine
from p2p.http_guard import GuardedAppRunner
from p2p.transport import Transport
from storage.ledger import Ledger


class NodeView(Protocol):
    """The parts of `chainnode.node.runtime.Node` these views read (declared here, their user)."""

    chain_id: str
    node_id: str
    genesis_hash: bytes
    config: NodeConfig
    engine: Engine
    mempool: Mempool
    transport: Transport
    admission: Admission
    peer_reports: PeerReports
    api_runner: GuardedAppRunner | None
    gc_timer: metrics.GcTimer
    disk: DiskSpaceWatch
    certificate_watch: CertificateWatch
    committed_txs: int
    evidence_total: int
    stable_checkpoint: int
    frames_malformed: int

    @property
    def ledger(self) -> Ledger: ...

    def get_readiness_problems(self) -> list[ReadinessProblem]: ...


EXPIRING_RECOMPUTE_MS = 60_000


class CertificateWatch:
    """Certificates expiring within the configured window; recomputed at most once a minute
    or when the head moves (a scan over every registered certificate)."""

    def __init__(self, warning_days: int) -> None:
        self.warning_days = warning_days
        self._cache: tuple[bytes, int, list[authority.ExpiringCertificate]] | None = None

    def get(self, ledger: Ledger) -> list[authority.ExpiringCertificate]:
        head = ledger.get_head()
        now_ms = get_time_ms()
        cached = self._cache
        if cached is not None and cached[0] == head.block_hash and now_ms - cached[1] < EXPIRING_RECOMPUTE_MS:
            return cached[2]
        items = authority.find_expiring_certificates(ledger, now_ms, self.warning_days * 86_400_000)
        self._cache = (head.block_hash, now_ms, items)
        return items


def render_metrics(node: NodeView) -> str:
    """The node's metrics in Prometheus text format."""
    head = node.ledger.get_head()
    sample = metrics.Sample
    samples = [
        sample("chainnode_height", "gauge", "Committed height.", head.height),
        sample("chainnode_view", "gauge", "Current consensus view.", node.engine.view),
        sample(
            "chainnode_changing_view",
            "gauge",
            "1 while a view change is under way.",
            int(node.engine.is_changing_view),
        ),
        sample(
            "chainnode_view_changes_total",
            "counter",
            "View changes this node asked for.",
            node.engine.view_changes_started,
        ),
        sample(
            "chainnode_committed_blocks_total",
            "counter",
            "Blocks committed since start.",
            node.engine.committed_blocks,
        ),
        sample(
            "chainnode_committed_transactions_total",
            "counter",
            "Transactions committed since start.",
            node.committed_txs,
        ),
        sample(
            "chainnode_mempool_transactions",
            "gauge",
            "Transactions waiting in the mempool.",
            len(node.mempool),
        ),
        sample(
            "chainnode_stable_checkpoint_height",
            "gauge",
            "Height of the latest stable checkpoint.",
            node.stable_checkpoint,
        ),
        sample(
            "chainnode_evidence_total",
            "counter",
            "Proofs of validator equivocation kept.",
            node.evidence_total,
        ),
        sample(
            "chainnode_peers_connected",
            "gauge",
            "Peers with a live outbound connection.",
            len(node.transport.connected_peers()),
        ),
        sample(
            "chainnode_frames_malformed_total",
            "counter",
            "Peer frames that failed to decode.",
            node.frames_malformed,
        ),
    ]
    samples += [
        sample(f"chainnode_p2p_{name}_total", "counter", f"p2p transport: {name.replace('_', ' ')}.", value)
        for name, value in sorted(node.transport.metrics.items())
    ]
    clock = node.peer_reports.clocks.report(get_monotonic_ms())
    samples.append(
        sample(
            "chainnode_clock_offset_milliseconds",
            "gauge",
            "Median of (peer wall clock - ours) over peers heard in the last 10 s; 0 with no peer.",
            clock.offset_ms or 0,
        )
    )
    samples += _get_api_connection_samples(node)
    samples += node.gc_timer.samples()
    samples += node.disk.samples()
    samples.append(
        sample(
            "chainnode_ready",
            "gauge",
            "1 when /readyz finds no problem.",
            int(not node.get_readiness_problems()),
        )
    )
    return metrics.render(samples, {"chain_id": node.chain_id, "node": node.node_id})


def _get_api_connection_samples(node: NodeView) -> list[metrics.Sample]:
    """The API's connection limits at work (`p2p.http_guard`); zeros before `start`."""
    guard = None if node.api_runner is None else node.api_runner.guard
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


def compute_status(node: NodeView) -> dict[str, Any]:
    """The `/v1/status` document."""
    head = node.ledger.get_head()
    return {
        "chain_id": node.chain_id,
        "node_id": node.node_id,
        "validator_index": node.engine.own_index,
        "height": head.height,
        "head_hash": head.block_hash.hex(),
        "state_root": head.state_root.hex(),
        "timestamp_ms": head.timestamp_ms,
        "clock_offset_ms": node.peer_reports.clocks.report(get_monotonic_ms()).offset_ms,
        "view": node.engine.view,
        "changing_view": node.engine.is_changing_view,
        "view_changes_started": node.engine.view_changes_started,
        "stable_checkpoint": node.stable_checkpoint,
        "evidence": node.evidence_total,
        "peers": sorted(node.transport.connected_peers()),
        "mempool_txs": len(node.mempool),
        "genesis_hash": node.genesis_hash.hex(),
        "committed_txs_since_start": node.committed_txs,
        "frames_malformed": node.frames_malformed,
        "gossip_batches_dropped": node.admission.gossip_dropped,
        "gossip_inbox_txs": len(node.admission.gossip_inbox),
        "p2p": dict(node.transport.metrics),
        "expiring_certificates": [
            {
                "kind": item.kind,
                "subject": item.subject,
                "zone": item.zone,
                "not_after_ms": item.not_after_ms,
                "expires_in_ms": item.expires_in_ms,
            }
            for item in node.certificate_watch.get(node.ledger)
        ],
        "certificate_warning_days": node.config.certificate_warning_days,
    }
