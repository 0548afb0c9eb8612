"""Compact proposals (chainnode.node.proposals): the primary sends ids, replicas rebuild the block.

Two real nodes of one real network (LevelDB, keys, mempools, admission), not started: frames
go between them through their own `PeerTraffic.on_peer_frame`, as the transport would hand them
over.  Each case checks that the replica's engine receives the primary's very block (same hash,
same bytes), and what it cost in fetched bodies.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from chainnode.core import quorum, types
from chainnode.core.errors import DecodeError
from chainnode.node import wire
from chainnode.node.config import load_node_config
from chainnode.node.runtime import Node
from chainnode.tools.devnet import LocalNetwork
from chainnode.tools.network import init_network
from consensus.events import Event, MessageReceived
from consensus.messages import PrePrepare
from tests.factories import build_put, load_entity, propose_next_block

CHAIN_ID = "compact-test"


@dataclass
class Pair:
    primary: Node
    replica: Node
    primary_id: str
    replica_id: str
    delivered: list[PrePrepare] = field(default_factory=list)  # what reached the replica's engine
    sent: list[tuple[str, str, bytes]] = field(default_factory=list)  # (from, to, frame)

    def link(self) -> None:
        """Frames each node sends reach the other's `on_peer_frame`, in order."""
        nodes = {self.primary_id: self.primary, self.replica_id: self.replica}

        def sender(own: str):  # type: ignore[no-untyped-def]
            def send(peer: str, data: bytes) -> bool:
                self.sent.append((own, peer, data))
                nodes[peer].traffic.on_peer_frame(own, data)
                return True

            return send

        self.primary.traffic.proposals._send = sender(self.primary_id)
        self.replica.traffic.proposals._send = sender(self.replica_id)

        def step(event: Event) -> None:
            if isinstance(event, MessageReceived) and isinstance(event.message, PrePrepare):
                self.delivered.append(event.message)

        self.replica.traffic._step = step

    def propose(self, transactions: list[types.Transaction]) -> PrePrepare:
        for tx in transactions:
            assert self.primary.admission.admit(tx.encoded, gossip=False).accepted
        block = propose_next_block(self.primary)
        return PrePrepare(0, block.height, 0, block, bytes(64))  # the engine checks signatures

    def send_compact(self, message: PrePrepare) -> None:
        frame = self.primary.traffic.proposals.encode(message)
        self.replica.traffic.on_peer_frame(self.primary_id, frame)

    def kinds_sent(self) -> list[str]:
        kinds = []
        for _, _, data in self.sent:
            kinds.append(type(wire.decode_frame(data, frame_bytes_max=1 << 26)).__name__)
        return kinds


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    init_network(tmp_path, validators=4, chain_id=CHAIN_ID, base_port=29900)
    network = LocalNetwork(tmp_path)
    primary = Node(load_node_config(network.nodes[0].config_path))
    replica = Node(load_node_config(network.nodes[1].config_path))
    linked = Pair(primary, replica, network.nodes[0].node_id, network.nodes[1].node_id)
    linked.link()
    try:
        yield linked
    finally:
        primary.ledger.close()
        replica.ledger.close()


def _puts(directory: Path, count: int, start: int = 0) -> list[types.Transaction]:
    signer = load_entity(directory)
    return [
        build_put(signer, f"k{i}", b"v", chain_id=CHAIN_ID, valid_until=1000, nonce=i)
        for i in range(start, start + count)
    ]


def _directory(pair: Pair) -> Path:
    return pair.primary.config.data_dir.parent.parent.parent


def test_a_proposal_of_pooled_transactions_is_rebuilt_without_a_fetch(pair: Pair) -> None:
    txs = _puts(_directory(pair), 40)
    for tx in txs:
        assert pair.replica.admission.admit(tx.encoded, gossip=False).accepted
    message = pair.propose(txs)
    pair.send_compact(message)
    assert [m.block.hash for m in pair.delivered] == [message.block.hash]
    assert pair.delivered[0].block.encoded == message.block.encoded
    assert pair.delivered[0].signature == message.signature
    assert pair.replica.traffic.proposals.rebuilt_from_pool == 1
    assert pair.kinds_sent() == []  # nothing fetched


def test_gossip_still_waiting_for_admission_fills_the_proposal(pair: Pair) -> None:
    txs = _puts(_directory(pair), 30)
    pair.replica.admission.receive_gossip([tx.encoded for tx in txs], peer_id=pair.primary_id)
    message = pair.propose(txs)
    pair.send_compact(message)
    assert [m.block.hash for m in pair.delivered] == [message.block.hash]
    assert pair.kinds_sent() == []


def test_missing_bodies_are_fetched_from_the_proposer(pair: Pair) -> None:
    txs = _puts(_directory(pair), 50)
    for tx in txs[::2]:  # the replica holds half of them
        assert pair.replica.admission.admit(tx.encoded, gossip=False).accepted
    message = pair.propose(txs)
    pair.send_compact(message)
    assert [m.block.hash for m in pair.delivered] == [message.block.hash]
    assert pair.delivered[0].block.encoded == message.block.encoded
    assert pair.kinds_sent() == ["TxFetch", "TxBodies"]
    relay = pair.replica.traffic.proposals
    assert (relay.rebuilt_with_fetch, relay.bodies_fetched) == (1, 25)
    assert pair.primary.traffic.proposals.bodies_served == 25


def test_a_pooled_transaction_with_other_signature_bytes_makes_the_replica_fetch_every_body(
    pair: Pair,
) -> None:
    """The id does not cover the signature: the root of the pooled bodies differs from the
    header's, and the replica rebuilds from the proposer's own bodies."""
    txs = _puts(_directory(pair), 10)
    for tx in txs[1:]:
        assert pair.replica.admission.admit(tx.encoded, gossip=False).accepted
    forged = types.decode_transaction(txs[0].encoded[: -len(txs[0].signature)] + bytes(64))
    assert forged.hash == txs[0].hash and forged.signature != txs[0].signature
    pair.replica.mempool.add(forged)  # as if pooled by a path that did not verify it
    message = pair.propose(txs)
    pair.send_compact(message)
    assert [m.block.hash for m in pair.delivered] == [message.block.hash]
    assert pair.delivered[0].block.encoded == message.block.encoded
    assert pair.replica.traffic.proposals.bodies_fetched == 10  # every body, once


def test_a_body_that_is_not_the_named_transaction_drops_the_proposal(pair: Pair) -> None:
    txs = _puts(_directory(pair), 5)
    message = pair.propose(txs)
    relay = pair.replica.traffic.proposals
    relay._send = lambda peer, data: True  # the fetch goes nowhere; the answer is forged below
    pair.send_compact(message)
    impostor = _puts(_directory(pair), 1, start=99)[0]
    answer = wire.encode_tx_bodies(message.block.hash, [0], [impostor.encoded])
    pair.replica.traffic.on_peer_frame(pair.primary_id, answer)
    assert pair.delivered == []
    assert relay.dropped == 1
    # The real bodies afterwards are not asked for any more: nothing is delivered.
    bodies = [tx.encoded for tx in message.block.transactions]
    pair.replica.traffic.on_peer_frame(
        pair.primary_id, wire.encode_tx_bodies(message.block.hash, list(range(5)), bodies)
    )
    assert pair.delivered == []


def test_a_fetch_for_an_unknown_block_is_not_answered(pair: Pair) -> None:
    pair.replica.traffic.on_peer_frame(pair.primary_id, wire.encode_tx_fetch(bytes(32), [0, 1]))
    assert pair.kinds_sent() == []


def test_compact_frames_decode_strictly(pair: Pair) -> None:
    message = pair.propose(_puts(_directory(pair), 3))
    frame = wire.decode_frame(wire.encode_compact_pre_prepare(message), frame_bytes_max=1 << 20)
    assert isinstance(frame, wire.CompactPrePrepare)
    assert frame.header == message.block.header
    assert frame.tx_ids == tuple(tx.hash for tx in message.block.transactions)
    short = replace(message, block=replace(message.block, transactions=message.block.transactions[:2]))
    with pytest.raises(DecodeError, match="header counts 3 transactions, not 2"):
        wire.decode_frame(wire.encode_compact_pre_prepare(short), frame_bytes_max=1 << 20)
    uneven = wire.codec.encode((wire.TAG_TX_BODIES, wire.VERSION, bytes(32), (0, 1), (b"x",)))
    with pytest.raises(DecodeError, match="2 indexes for 1 bodies"):
        wire.decode_frame(uneven, frame_bytes_max=1 << 20)


def test_a_proposal_for_a_height_already_committed_is_dropped_unread(pair: Pair) -> None:
    txs = _puts(_directory(pair), 6)
    for tx in txs:
        assert pair.replica.admission.admit(tx.encoded, gossip=False).accepted
    message = pair.propose(txs)
    pair.send_compact(message)
    assert [m.block.hash for m in pair.delivered] == [message.block.hash]
    certificate = quorum.CommitCertificate(message.height, 0, message.block.hash, ((0, bytes(64)),))
    assert pair.replica.application.find_block_problem(pair.delivered[0].block) is None
    pair.replica.effects._commit(pair.delivered[0].block, certificate)  # the replica commits it
    pair.send_compact(message)  # the primary re-sends it: nothing fetched, nothing delivered
    assert len(pair.delivered) == 1
    assert pair.kinds_sent() == []
    assert pair.replica.traffic.proposals.stale == 1
