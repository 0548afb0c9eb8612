"""A node's once-a-second status goes to the peers connected now: none waits for a peer away.

Queued for an absent peer, those statuses would reach it when it comes back, before the fresh
one, and tell a node that was down the heights it had (it would look caught up while blocks
behind) and a clock off by the outage (see `chainnode.node.peer_reports`).  A lone validator
of a four-validator network has three absent peers; what waits for them is read off the
transport's queues.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from chainnode.node import wire
from chainnode.node.config import load_node_config
from chainnode.node.runtime import STATUS_INTERVAL_MS, Node
from chainnode.tools.devnet import LocalNetwork
from chainnode.tools.network import init_network
from tests.factories import get_free_port
from tests.integration.test_node_limits import set_key


def _queued_statuses(node: Node, peer_id: str) -> int:
    queue = node.transport._outbound[peer_id].queue
    frames = [wire.decode_frame(data, frame_bytes_max=1 << 24) for data in list(queue._queue)]  # type: ignore[attr-defined]
    return sum(isinstance(frame, wire.Status) for frame in frames)


async def test_no_status_waits_for_a_peer_that_is_away(tmp_path: Path) -> None:
    init_network(tmp_path, validators=4, chain_id="status-chain", base_port=29960)
    network = LocalNetwork(tmp_path)
    config_path = network.nodes[0].config_path
    text = config_path.read_text()
    text = set_key(text, "p2p", "listen", f'"127.0.0.1:{get_free_port()}"')
    text = set_key(text, "api", "listen", f'"127.0.0.1:{get_free_port()}"')
    config_path.write_text(text)
    node = Node(load_node_config(config_path))
    await node.start()
    try:
        await asyncio.sleep(3 * STATUS_INTERVAL_MS / 1000 + 0.5)  # three statuses at least
        peers = [other.node_id for other in network.nodes[1:]]
        assert node.transport.connected_peers() == []
        assert {peer: _queued_statuses(node, peer) for peer in peers} == dict.fromkeys(peers, 0)
    finally:
        await node.stop()
