"""The traffic with peers: the transport, what arrives on it and what the node sends on its own.

Theory of operation.  `PeerTraffic` builds the node's `Transport` (authorisation is the peer
policy's) and is its receiver: each frame is decoded and dispatched in the transport's
callback, on the node's one asyncio loop.  Gossiped transactions go to admission, replication
acknowledgements to the replication waiters, block requests are served from the ledger, and what
concerns consensus (a peer's status, blocks for catch-up, protocol messages) is handed to the
engine through `step` (block responses through `chainnode.node.catch_up_verify` first, which
verifies their signatures on all cores); a compact proposal is rebuilt first
(`chainnode.node.proposals`, which also answers peers' fetches for bodies).  Outbound, it sends
what admission gathered since the last tick (gossip, gossip that asks for answers, the answers
owed) and re-offers the oldest pending transactions.
What the engine itself sends goes out through `chainnode.node.effects`, in the engine's order.

What a peer sends can be garbage: a frame that fails to decode is counted (`frames_malformed`)
and dropped; the engine refuses invalid messages itself.  A failing disk is not a peer's fault:
a `StorageError` or `OSError` raised while handling a frame is caught right where the frame
enters the node (`on_peer_frame`), before the transport could log it as a callback bug and go on
reading frames with a head that is not on disk, and handed to the node's fatal handler; after
that (`is_stopped`) frames are ignored until the transport closes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from chainnode.core.errors import DecodeError, StorageError
from chainnode.node import logs, wire
from chainnode.node.admission import Admission
from chainnode.node.catch_up_verify import CertifiedBlocks
from chainnode.node.clock import get_monotonic_ms, get_time_ms
from chainnode.node.config import NodeConfig
from chainnode.node.mempool import Mempool
from chainnode.node.peer_reports import PeerReports
from chainnode.node.peers import PeerPolicy
from chainnode.node.proposals import ProposalRelay
from chainnode.node.replication import ReplicationWaiters
from chainnode.node.status import NodeMetrics
from consensus.engine import Engine
from consensus.events import BlocksReceived, Event, MessageReceived, PeerStatus
from p2p.transport import PeerAddress, Transport, TransportConfig
from storage.ledger import Ledger

# The node's own lines keep the logger operators filter on, wherever in the shell they are made.
log = logging.getLogger("chainnode.node.runtime")

REGOSSIP_TXS_MAX = 500
RESPONSE_BYTES_MAX = 8 * 1024 * 1024


class PeerTraffic:
    """The node's transport and every frame in and out of it that is not the engine's own."""

    def __init__(
        self,
        *,
        config: NodeConfig,
        chain_id: str,
        genesis_hash: bytes,
        engine: Engine,
        ledger: Ledger,
        mempool: Mempool,
        admission: Admission,
        replication: ReplicationWaiters,
        peer_policy: PeerPolicy,
        peer_reports: PeerReports,
        node_metrics: NodeMetrics,
        step: Callable[[Event], None],
        is_stopped: Callable[[], bool],
        on_storage_failure: Callable[[Exception], None],
        receive_blocks: Callable[[str, CertifiedBlocks], None] | None = None,
        note_peer_height: Callable[[int], None] | None = None,
    ) -> None:
        self._frame_bytes_max = config.frame_bytes_max
        self._engine = engine
        self._ledger = ledger
        self._mempool = mempool
        self._admission = admission
        self._replication = replication
        self._peer_reports = peer_reports
        self._node_metrics = node_metrics
        self._step = step
        self._is_stopped = is_stopped
        self._on_storage_failure = on_storage_failure
        # Block responses go through the catch-up verifier when there is one (the node's).
        self._receive_blocks = receive_blocks or (lambda peer, blocks: step(BlocksReceived(peer, blocks)))
        # A peer's committed height, as its status gives it (the catch-up verifier warms up).
        self._note_peer_height = note_peer_height or (lambda height: None)
        self.frames_malformed = 0
        self.transport = Transport(
            TransportConfig(
                entity_id=config.node_id,
                chain_id=chain_id,
                genesis_hash=genesis_hash,
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
            authorize=peer_policy.authorize,
            on_message=self.on_peer_frame,
            on_connected=self.on_peer_connected,
        )
        self.proposals = ProposalRelay(
            mempool=mempool,
            admission=admission,
            send=self.transport.send,
            get_head_height=lambda: ledger.get_head().height,
        )

    # ------------------------------------------------------------ outbound

    def send_gossip(self) -> None:
        """What clients submitted since the last tick, and the answers owed to peers' batches."""
        gossip = self._admission.take_gossip()
        if gossip:
            self.transport.broadcast(wire.encode_tx_batch(gossip))
        replicate = self._admission.take_replicate_gossip()
        if replicate:
            self.transport.broadcast(wire.encode_tx_batch(replicate, wants_ack=True))
        for peer_id, tx_hashes in self._admission.take_acks().items():
            self.transport.send(peer_id, wire.encode_tx_ack(tx_hashes))

    def regossip_oldest(self) -> None:
        """Offer our oldest pending transactions again.

        A transaction a peer dropped (its mempool was full, or the link was down)
        would otherwise wait here forever and keep our view timer running; peers
        that already hold it answer from their mempool index at no cost.
        """
        oldest = self._mempool.select(txs_max=REGOSSIP_TXS_MAX, bytes_max=wire.GOSSIP_BYTES_MAX)
        if oldest:
            self.transport.broadcast(wire.encode_tx_batch([tx.encoded for tx in oldest]))

    def send_status(self) -> None:
        """Our height and clock to the peers connected now only: queued for a peer that is away,
        each second's status would reach it late and stale (see `PeerReports.note`)."""
        status = self._encode_status()
        for peer_id in self.transport.connected_peers():
            self.transport.send(peer_id, status)

    def _encode_status(self) -> bytes:
        return wire.encode_status(self._engine.head.height, get_time_ms())

    # ------------------------------------------------------------ inbound

    def on_peer_connected(self, peer_id: str) -> None:
        # Ahead of what waited for the peer: a status kept from before it went away is older,
        # and the peer ignores it once it has this one (`PeerReports.note`).
        self.transport.send(peer_id, self._encode_status(), first=True)

    def on_peer_frame(self, peer_id: str, data: bytes) -> None:
        """The transport's receiver; where a storage failure on a frame's path is caught."""
        if self._is_stopped():
            return  # stopping: the transport closes soon
        try:
            with logs.handling_peer(peer_id):
                self._handle_peer_frame(peer_id, data)
        except (StorageError, OSError) as error:
            # Caught here, where the frame enters the node: the transport would log it as
            # a callback bug and go on reading frames with a head that is not on disk.
            self._on_storage_failure(error)

    def _handle_peer_frame(self, peer_id: str, data: bytes) -> None:
        try:
            frame = wire.decode_frame(data, frame_bytes_max=self._frame_bytes_max)
        except DecodeError as error:
            self.frames_malformed += 1
            log.warning("malformed frame from %s: %s", peer_id, error.message)
            return
        self._node_metrics.note_message(frame)
        if isinstance(frame, wire.TxBatch):
            self._admission.receive_gossip(frame.transactions, peer_id=peer_id, wants_ack=frame.wants_ack)
        elif isinstance(frame, wire.TxAck):
            self._replication.note_ack(peer_id, frame.tx_hashes)
        elif isinstance(frame, wire.Status):
            taken = self._peer_reports.note(
                peer_id,
                height=frame.height,
                peer_wall_ms=frame.wall_ms,
                own_wall_ms=get_time_ms(),
                now_ms=get_monotonic_ms(),
            )
            if not taken:
                return  # older than a status already taken from this peer: stale
            self._note_peer_height(frame.height)
            self._step(PeerStatus(peer_id, frame.height))
        elif isinstance(frame, wire.BlockRequest):
            self._serve_blocks(peer_id, frame)
        elif isinstance(frame, wire.BlockResponse):
            self._receive_blocks(peer_id, frame.blocks)
        elif isinstance(frame, (wire.CompactPrePrepare, wire.TxFetch, wire.TxBodies)):
            self._handle_proposal_frame(peer_id, frame)
        else:
            self._step(MessageReceived(peer_id, frame))

    def _handle_proposal_frame(
        self, peer_id: str, frame: wire.CompactPrePrepare | wire.TxFetch | wire.TxBodies
    ) -> None:
        if isinstance(frame, wire.TxFetch):
            self.proposals.on_fetch(peer_id, frame)
            return
        if isinstance(frame, wire.CompactPrePrepare):
            message = self.proposals.on_compact(peer_id, frame)
        else:
            message = self.proposals.on_bodies(peer_id, frame)
        if message is not None:
            self._step(MessageReceived(peer_id, message))

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
