"""What a node writes to disk, and in which order, before anything leaves it.

Four real `Node`s of a network written by `chainnode.tools.network.init_network`, each over
its own real LevelDB ledger, not started: no sockets and no timers.  Their frames go
through a small in-memory network (`send` of each node's transport, which `broadcast`
also calls, is replaced by a recorder that queues the frame for its peer); the test
delivers the frames in order until a block is committed everywhere.  Each ledger's
`write_observer` puts its writes in the same list as the frames, so the list is the
order in which the nodes did things.

The properties (DESIGN.md section 7, CometBFT's rule): a node never sends a message
it signed before that message is in its vote log, written with `sync=True`; the
prepared certificate is synced before the COMMIT it enables is sent; a committed
block is synced to the block store before the head moves, and the head's batch is
synced too.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from chainnode.core import types
from chainnode.node import wire
from chainnode.node.clock import get_monotonic_ms, get_time_ms
from chainnode.node.config import load_node_config
from chainnode.node.runtime import Node
from chainnode.sdk.client import AuthoritySigner, build_transaction
from chainnode.tools.devnet import LocalNetwork
from chainnode.tools.network import init_network
from consensus.events import Tick
from consensus.messages import LOG_KIND_PREPARED, PrePrepare, ViewChange, Vote
from storage.layout import VOTE_KEY
from storage.ledger import BLOCK_STORE, MAIN_DATABASE, VOTE_LOG, Write
from tests.factories import build_put, load_entity

CHAIN_ID = "durability-net"


@dataclass(frozen=True, slots=True)
class Sent:
    sender: str
    peer: str
    frame: bytes


@dataclass(frozen=True, slots=True)
class Written:
    node: str
    write: Write


@dataclass
class InMemoryNetwork:
    """Frames between unstarted nodes, delivered in the order they were sent."""

    nodes: dict[str, Node]
    history: list[Sent | Written] = field(default_factory=list)
    in_flight: deque[Sent] = field(default_factory=deque)

    def attach(self, node: Node) -> None:
        node_id = node.node_id

        def send(peer: str, frame: bytes) -> bool:
            sent = Sent(node_id, peer, frame)
            self.history.append(sent)
            self.in_flight.append(sent)
            return True

        def observe(write: Write) -> None:
            self.history.append(Written(node_id, write))

        node.transport.send = send  # type: ignore[method-assign]
        node.ledger.write_observer = observe

    def deliver_all(self, frames_max: int = 10_000) -> None:
        for _ in range(frames_max):
            if not self.in_flight:
                return
            sent = self.in_flight.popleft()
            self.nodes[sent.peer].traffic.on_peer_frame(sent.sender, sent.frame)
        raise AssertionError("the nodes kept sending")


@pytest.fixture
def network(tmp_path: Path) -> Iterator[InMemoryNetwork]:
    init_network(tmp_path, validators=4, chain_id=CHAIN_ID, base_port=29700)
    layout = LocalNetwork(tmp_path)
    nodes = {info.node_id: Node(load_node_config(info.config_path)) for info in layout.nodes}
    memory = InMemoryNetwork(nodes)
    for node in nodes.values():
        memory.attach(node)
    yield memory
    for node in nodes.values():
        node.ledger.close()


def _signed_log_keys(frame: bytes) -> list[tuple[int, int, int]]:
    """The vote-log keys the sender must have synced before sending `frame`."""
    message = wire.decode_frame(frame, frame_bytes_max=1 << 26)
    if isinstance(message, PrePrepare):
        return [(message.height, message.view, int(types.VoteKind.PRE_PREPARE))]
    if isinstance(message, Vote):
        keys = [(message.height, message.view, int(message.kind))]
        if message.kind == types.VoteKind.COMMIT:
            # The prepared certificate must outlive a crash before the COMMIT can.
            keys.append((message.height, message.view, LOG_KIND_PREPARED))
        return keys
    if isinstance(message, ViewChange):
        return [(message.height, message.new_view, int(types.VoteKind.VIEW_CHANGE))]
    return []  # status, transactions, blocks: nothing the sender signed as a vote


def test_votes_are_synced_before_they_are_sent_and_blocks_before_the_head(
    network: InMemoryNetwork, tmp_path: Path
) -> None:
    tx = build_put(load_entity(tmp_path), "meter-1", b"reading", chain_id=CHAIN_ID, valid_until=100)
    nodes = list(network.nodes.values())
    primary = nodes[0]
    assert primary.engine.validators.primary(0) == primary.engine.own_index
    assert primary.submit_transactions([tx.encoded])[0].accepted
    network.deliver_all()  # not gossip (the tick loop sends that): the others learn it from the block
    # One tick, past the primary's proposal delay, at the same time on every node.
    now_ms = get_monotonic_ms() + primary.config.proposal_delay_ms + 1
    for node in nodes:
        node._step(Tick(now_ms, get_time_ms()))
    network.deliver_all()

    assert all(node.ledger.get_head().height == 1 for node in nodes), "the block was not committed"
    assert all(node.ledger.get_tx_location(tx.hash) == (1, 0) for node in nodes)
    checked = 0
    for position, event in enumerate(network.history):
        if not isinstance(event, Sent):
            continue
        synced = {
            VOTE_KEY.unpack(key)
            for earlier in network.history[:position]
            if isinstance(earlier, Written)
            and earlier.node == event.sender
            and earlier.write.database == VOTE_LOG
            and earlier.write.sync
            for key in earlier.write.keys
        }
        for log_key in _signed_log_keys(event.frame):
            assert log_key in synced, f"{event.sender} sent {log_key} before syncing it to its vote log"
            checked += 1
    # Each validator signs a prepare and a commit (and the primary its pre-prepare), to 3 peers.
    assert checked >= 4 * 3 * 2
    # The prepared certificate and the COMMIT it enables share one synced batch (one sync).
    for node in nodes:
        vote_writes = [
            [VOTE_KEY.unpack(key)[2] for key in event.write.keys]
            for event in network.history
            if isinstance(event, Written)
            and event.node == node.node_id
            and event.write.database == VOTE_LOG
            and event.write.sync
        ]
        assert [LOG_KIND_PREPARED, int(types.VoteKind.COMMIT)] in vote_writes, (node.node_id, vote_writes)

    for node in nodes:
        commit_writes = [
            event.write
            for event in network.history
            if isinstance(event, Written)
            and event.node == node.node_id
            and event.write.database in (BLOCK_STORE, MAIN_DATABASE)
        ]
        assert [(write.database, write.sync) for write in commit_writes] == [
            (BLOCK_STORE, True),
            (MAIN_DATABASE, True),
        ], f"{node.node_id}: the block store and then the head, both synced"
        assert b"mhead" in commit_writes[1].keys


def _commit_block(network: InMemoryNetwork, txs: list[bytes]) -> None:
    """Submit `txs` to the primary of view 0 and run one height to its commit everywhere."""
    nodes = list(network.nodes.values())
    height = nodes[0].ledger.get_head().height
    assert all(result.accepted for result in nodes[0].submit_transactions(txs))
    network.deliver_all()
    now_ms = get_monotonic_ms() + nodes[0].config.proposal_delay_ms + 1
    for node in nodes:
        node._step(Tick(now_ms, get_time_ms()))
    network.deliver_all()
    assert all(node.ledger.get_head().height == height + 1 for node in nodes), "not committed"


def test_a_committed_set_params_reaches_the_engine_at_the_next_height(
    network: InMemoryNetwork, tmp_path: Path
) -> None:
    # The council (10 of 15) sets a 3 s timestamp drift and a 900 ms view timeout; every node's
    # engine and clock judgement use them from the next height, without a restart.
    members = sorted(path for path in (tmp_path / "council").iterdir())
    signers = [AuthoritySigner.load_council(path) for path in members]
    nodes = list(network.nodes.values())
    assert nodes[0].engine.config.timestamp_drift_ms_max == 10_000
    payload = ((("timestamp_drift_ms_max", 3_000), ("view_timeout_ms", 900)),)
    txs = [
        build_transaction(
            signers[0],
            chain_id=CHAIN_ID,
            module="governance",
            action="propose",
            args=("set_params", payload, 50),
            valid_until=50,
        )
    ]
    txs += [
        build_transaction(
            signer, chain_id=CHAIN_ID, module="governance", action="vote", args=(1, True), valid_until=50
        )
        for signer in signers[1:10]
    ]
    _commit_block(network, [tx.encoded for tx in txs])
    for node in nodes:
        assert node.application.get_chain_params().timestamp_drift_ms_max == 3_000
        assert (node.engine.config.timestamp_drift_ms_max, node.engine.config.view_timeout_ms) == (3_000, 900)
        assert node.peer_reports.clocks.drift_ms_max == 3_000
