"""What the node tells about itself: the `/v1/status` document and the `/metrics` exposition.

Theory of operation.  Both read the node's parts (ledger head, engine, mempool, transport,
admission, health, clocks, certificates) and change nothing; they live here so the node's runtime
only wires and drives.  `/metrics` is a prometheus-client `CollectorRegistry` of the node's own
(never the library's global one: a test process runs several nodes).  Its `NodeCollector` reads
the parts at each scrape, so a gauge is never stale and nothing is counted twice; what cannot be
read afterwards is observed as it happens: the two commit-latency histograms at the commit point
(`NodeMetrics.observe_commit`, called by `chainnode.node.effects` after the synced write) and the
peers' messages by kind.  Every series carries the labels `chain_id` and `node`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from chainnode.api.events import HUB_KEY, compute_subscriber_samples
from chainnode.api.service import ReadinessProblem
from chainnode.app import authority
from chainnode.core import metrics
from chainnode.core.metrics import Sample
from chainnode.node.admission import Admission
from chainnode.node.clock import get_monotonic_ms, get_time_ms
from chainnode.node.config import NodeConfig
from chainnode.node.health import DiskSpaceWatch
from chainnode.node.mempool import Mempool
from chainnode.node.peer_reports import PeerReports
from consensus.engine import Engine
from consensus.messages import Vote
from p2p.http_guard import GuardedAppRunner
from p2p.transport import Transport
from storage.ledger import BLOCKS_DIRECTORY, VOTES_DIRECTORY, Ledger


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

    @property
    def committed_txs(self) -> int: ...
    @property
    def evidence_total(self) -> int: ...
    @property
    def stable_checkpoint(self) -> int: ...
    @property
    def frames_malformed(self) -> int: ...
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


# Seconds from taking the execution result to the synced head write: what a commit costs the disk.
BLOCK_COMMIT_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# Seconds from the block's timestamp (the proposer's wall clock when it proposed) to our commit.
PROPOSE_TO_COMMIT_BUCKETS_S = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
COMMON_LABELS = ("chain_id", "node")


class NodeMetrics:
    """The node's Prometheus registry: a collector that reads the node's parts at each scrape,
    and what must be observed as it happens (commit latencies, peer messages by kind).

    One registry per node, not the library's global one: tests run several nodes in one
    process, and a node exports only its own series."""

    def __init__(self, node: NodeView) -> None:
        # No `<name>_created` series beside each counter and histogram: they tell a scraper
        # when the process started, which `/v1/status` and the logs already do.  The switch is
        # the library's, for the process; a node process has no other registry.
        disable_created_metrics()  # type: ignore[no-untyped-call]  # the library leaves it unannotated
        self.registry = CollectorRegistry(auto_describe=False)
        labels = (node.chain_id, node.node_id)
        self._block_commit = Histogram(
            "chainnode_block_commit_seconds",
            "Time to write a committed block: execution result taken to the synced head write.",
            COMMON_LABELS,
            registry=self.registry,
            buckets=BLOCK_COMMIT_BUCKETS_S,
        ).labels(*labels)
        self._propose_to_commit = Histogram(
            "chainnode_propose_to_commit_seconds",
            "Block timestamp (the proposer's clock at proposal) to this node's commit; a block "
            "applied by catch-up counts its whole wait.",
            COMMON_LABELS,
            registry=self.registry,
            buckets=PROPOSE_TO_COMMIT_BUCKETS_S,
        ).labels(*labels)
        self._messages = Counter(
            "chainnode_peer_messages_received_total",
            "Frames from peers decoded, by kind (consensus messages, gossip, status, blocks).",
            (*COMMON_LABELS, "kind"),
            registry=self.registry,
        )
        self._labels = labels
        self.registry.register(NodeCollector(node, get_node_certificate_expiry_s(node.config.chain_path)))

    def observe_commit(self, *, block_timestamp_ms: int, commit_seconds: float) -> None:
        """At the commit point: how long the write took, and how long since the proposal."""
        self._block_commit.observe(commit_seconds)
        self._propose_to_commit.observe(max(0.0, (get_time_ms() - block_timestamp_ms) / 1000))

    def note_message(self, message: object) -> None:
        """A decoded frame from a peer."""
        self._messages.labels(*self._labels, get_message_kind(message)).inc()

    def render(self) -> str:
        """The text exposition (format 0.0.4) of every series."""
        return generate_latest(self.registry).decode()


def get_message_kind(message: object) -> str:
    """`prepare`, `commit` for votes; the snake-cased class name for the rest (`pre_prepare`)."""
    if isinstance(message, Vote):
        return message.kind.name.lower()
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(message).__name__).lower()


class NodeCollector:
    """Reads the node's parts at each scrape (a prometheus-client custom collector)."""

    def __init__(self, node: NodeView, certificate_expiry_s: float | None) -> None:
        self._node = node
        self._certificate_expiry_s = certificate_expiry_s

    def collect(self) -> Iterator[Metric]:
        node = self._node
        common = {"chain_id": node.chain_id, "node": node.node_id}
        yield from compute_families(get_consensus_samples(node), common)
        yield from compute_families(get_transaction_samples(node), common)
        yield from compute_families(get_peer_samples(node), common)
        yield from compute_families(get_storage_samples(node), common)
        yield from compute_families(get_certificate_samples(node, self._certificate_expiry_s), common)
        yield from compute_families(get_api_connection_samples(node), common)
        yield from compute_families(get_event_subscriber_samples(node), common)
        yield from compute_families(node.gc_timer.samples(), common)
        ready = int(not node.get_readiness_problems())
        yield from compute_families(
            [Sample("chainnode_ready", "gauge", "1 when /readyz finds no problem.", ready)], common
        )


def compute_families(samples: Iterable[Sample], common: Mapping[str, str]) -> Iterator[Metric]:
    """prometheus-client families from samples; a name's samples are one family, in order."""
    families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}
    for sample in samples:
        labels = {**common, **sample.labels}
        family = families.get(sample.name)
        if family is None:
            kind = GaugeMetricFamily if sample.kind == "gauge" else CounterMetricFamily
            family = kind(sample.name, sample.help, labels=list(labels))
            families[sample.name] = family
        family.add_metric(list(labels.values()), sample.value)
    yield from families.values()


def get_consensus_samples(node: NodeView) -> list[Sample]:
    engine = node.engine
    return [
        Sample("chainnode_height", "gauge", "Committed height.", node.ledger.get_head().height),
        Sample("chainnode_view", "gauge", "Current consensus view.", engine.view),
        Sample(
            "chainnode_changing_view",
            "gauge",
            "1 while a view change is under way.",
            int(engine.is_changing_view),
        ),
        Sample(
            "chainnode_view_changes_total",
            "counter",
            "View changes this node asked for.",
            engine.view_changes_started,
        ),
        Sample(
            "chainnode_committed_blocks_total",
            "counter",
            "Blocks committed since start.",
            engine.committed_blocks,
        ),
        Sample(
            "chainnode_stable_checkpoint_height",
            "gauge",
            "Height of the latest stable checkpoint.",
            node.stable_checkpoint,
        ),
        Sample(
            "chainnode_evidence_total",
            "counter",
            "Proofs of validator equivocation kept.",
            node.evidence_total,
        ),
    ]


def get_transaction_samples(node: NodeView) -> list[Sample]:
    admission = node.admission
    samples = [
        Sample(
            "chainnode_committed_transactions_total",
            "counter",
            "Transactions committed since start.",
            node.committed_txs,
        ),
        Sample(
            "chainnode_mempool_transactions",
            "gauge",
            "Transactions waiting in the mempool.",
            len(node.mempool),
        ),
        Sample(
            "chainnode_gossip_inbox_transactions",
            "gauge",
            "Gossiped transactions waiting for admission.",
            len(admission.gossip_inbox),
        ),
        Sample(
            "chainnode_gossip_batches_dropped_total",
            "counter",
            "Gossip batches dropped for back-pressure.",
            admission.gossip_dropped,
        ),
    ]
    samples += [
        Sample(
            "chainnode_transactions_admitted_total",
            "counter",
            "Transactions that entered the mempool, by source (api: a client; peer: gossip).",
            count,
            {"source": source},
        )
        for source, count in sorted(({"api": 0, "peer": 0} | dict(admission.admitted)).items())
    ]
    samples += [
        Sample(
            "chainnode_transactions_rejected_total",
            "counter",
            "Transactions refused at admission, by reason (the stable rejection code).",
            count,
            {"reason": reason},
        )
        for reason, count in sorted(admission.rejected.items())
    ]
    return samples


def get_peer_samples(node: NodeView) -> list[Sample]:
    transport = node.transport
    samples = [
        Sample(
            "chainnode_peers_connected",
            "gauge",
            "Peers with a live outbound connection.",
            len(transport.connected_peers()),
        ),
        Sample(
            "chainnode_frames_malformed_total",
            "counter",
            "Peer frames that failed to decode.",
            node.frames_malformed,
        ),
    ]
    samples += [
        Sample(f"chainnode_p2p_{name}_total", "counter", f"p2p transport: {name.replace('_', ' ')}.", value)
        for name, value in sorted(transport.metrics.items())
    ]
    clock = node.peer_reports.clocks.report(get_monotonic_ms())
    samples.append(
        Sample(
            "chainnode_clock_offset_milliseconds",
            "gauge",
            "Median of (peer wall clock - ours) over peers heard in the last 10 s; 0 with no peer.",
            clock.offset_ms or 0,
        )
    )
    return samples


def get_storage_samples(node: NodeView) -> list[Sample]:
    samples = [
        Sample(
            "chainnode_leveldb_bytes",
            "gauge",
            "Bytes of the files of each LevelDB database of the ledger (main, blocks, votes).",
            size,
            {"database": name},
        )
        for name, size in get_database_bytes(node.ledger.path).items()
    ]
    return samples + node.disk.samples()


def get_database_bytes(ledger_path: Path) -> dict[str, int]:
    """The size of each database's files: the main one at the ledger's root, the others below."""
    directories = {
        "main": ledger_path,
        "blocks": ledger_path / BLOCKS_DIRECTORY,
        "votes": ledger_path / VOTES_DIRECTORY,
    }
    sizes: dict[str, int] = {}
    for name, directory in directories.items():
        try:
            sizes[name] = sum(entry.stat().st_size for entry in directory.iterdir() if entry.is_file())
        except OSError:
            continue  # not there (a read-only ledger has no vote log) or going away: no sample
    return sizes


def get_certificate_samples(node: NodeView, node_certificate_expiry_s: float | None) -> list[Sample]:
    expiring = node.certificate_watch.get(node.ledger)
    samples = [
        Sample(
            "chainnode_certificates_expiring",
            "gauge",
            "Registered certificates expiring within [identity] certificate_warning_days (or expired).",
            len(expiring),
        )
    ]
    samples += [
        Sample(
            "chainnode_certificate_expires_in_seconds",
            "gauge",
            "Seconds until each expiring registered certificate's not-after (negative: expired).",
            item.expires_in_ms / 1000,
            {"kind": item.kind, "subject": item.subject, "zone": item.zone},
        )
        for item in expiring
    ]
    if node_certificate_expiry_s is not None:
        samples.append(
            Sample(
                "chainnode_node_certificate_expiry_timestamp_seconds",
                "gauge",
                "Not-after of this node's own TLS certificate, in Unix seconds.",
                node_certificate_expiry_s,
            )
        )
    return samples


def get_node_certificate_expiry_s(chain_path: Path) -> float | None:
    """The not-after of the first certificate of the node's TLS chain; None if it cannot be read
    (the transport refuses such a chain at start with its own message)."""
    try:
        certificates = x509.load_pem_x509_certificates(chain_path.read_bytes())
    except (OSError, ValueError):
        return None
    return certificates[0].not_valid_after_utc.timestamp() if certificates else None


def get_api_connection_samples(node: NodeView) -> list[Sample]:
    """The API's connection limits at work (`p2p.http_guard`); zeros before `start`."""
    guard = None if node.api_runner is None else node.api_runner.guard
    samples = [
        Sample(
            "chainnode_api_connections_open",
            "gauge",
            "API connections open (at most [api] connections_max).",
            0 if guard is None else guard.connections_open,
        )
    ]
    samples += [
        Sample(
            f"chainnode_api_{name}_total",
            "counter",
            f"API connections closed: {name.replace('_', ' ')}.",
            0 if guard is None else guard.counters[name],
        )
        for name in ("connections_refused", "request_heads_timed_out")
    ]
    return samples


def get_event_subscriber_samples(node: NodeView) -> list[Sample]:
    """The events websocket's subscribers (`chainnode.api.events.EventHub`); zeros before `start`."""
    app = None if node.api_runner is None else node.api_runner.app
    return compute_subscriber_samples(None if app is None else app.get(HUB_KEY))


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
