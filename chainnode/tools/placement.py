"""Node placement: where each node of a new network binds and what its peers dial.

Theory of operation: `place_nodes` gives each node its addresses before anything is written:
its entry of the operator's hosts file (`chainnode.tools.hosts`) or 127.0.0.1, and ports
base+2i (p2p) and base+2i+1 (API) unless the entry gives them.  It refuses, with `ConfigError`,
an entry naming no node, a node without an entry when any is given, and two nodes on one host
and port.  `find_ephemeral_port_warnings` notes ports inside the kernel's ephemeral range,
which a restart can find taken by an outgoing connection.  `chainnode.tools.network` writes
the network from the placements.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from chainnode.core.errors import ConfigError
from chainnode.tools import hosts


@dataclass(frozen=True, slots=True)
class NodePlacement:
    """Where one node runs: what it binds and what its peers dial (see `chainnode.tools.hosts`)."""

    node_id: str
    role: str  # validator, spare or observer
    host: str  # advertised
    listen_host: str
    p2p_port: int
    api_port: int

    @property
    def p2p_address(self) -> str:
        return hosts.format_address(self.host, self.p2p_port)

    @property
    def api_address(self) -> str:
        return hosts.format_address(self.host, self.api_port)


def place_nodes(
    node_ids: list[str],
    roles: list[str],
    entries: Sequence[hosts.HostEntry],
    *,
    base_port: int,
    listen_host: str | None,
) -> list[NodePlacement]:
    """Each node's addresses: its hosts entry (or 127.0.0.1), ports base+2i and base+2i+1 unless
    given; ConfigError for an entry naming no node, a node without an entry (when any is given)
    and two nodes on one host and port."""
    by_name = {entry.name: entry for entry in entries}
    unknown = sorted(set(by_name) - set(node_ids))
    if unknown:
        raise ConfigError(f"hosts name nodes this network does not have: {unknown} (it has {node_ids})")
    missing = [node_id for node_id in node_ids if entries and node_id not in by_name]
    if missing:
        raise ConfigError(f"hosts give no address for {missing}: name every node or none")
    placements = []
    for index, node_id in enumerate(node_ids):
        entry = by_name.get(node_id, hosts.HostEntry(node_id, "127.0.0.1", None, None, None))
        own_listen = entry.listen_host or listen_host or hosts.compute_listen_host(entry.host)
        placements.append(
            NodePlacement(
                node_id=node_id,
                role=roles[index],
                host=entry.host,
                listen_host=own_listen,
                p2p_port=entry.p2p_port if entry.p2p_port is not None else base_port + 2 * index,
                api_port=entry.api_port if entry.api_port is not None else base_port + 2 * index + 1,
            )
        )
    taken: dict[tuple[str, int], str] = {}
    for placement in placements:
        for port in (placement.p2p_port, placement.api_port):
            other = taken.setdefault((placement.host, port), placement.node_id)
            if other != placement.node_id or placement.p2p_port == placement.api_port:
                raise ConfigError(f"{placement.node_id} and {other} both use {placement.host} port {port}")
    return placements


def find_ephemeral_port_warnings(
    placements: Sequence[NodePlacement], port_range: tuple[int, int] | None
) -> list[str]:
    """A warning per node with a port in the kernel's ephemeral range: an outgoing connection
    may hold that port when the node (re)starts, which then fails to listen."""
    if port_range is None:
        return []
    low, high = port_range
    warnings = []
    for placement in placements:
        inside = [port for port in (placement.p2p_port, placement.api_port) if low <= port <= high]
        if inside:
            warnings.append(
                f"{placement.node_id}: port {', '.join(map(str, inside))} lies in this machine's "
                f"ephemeral port range {low}-{high}; a restart can fail with 'address already in "
                f"use' while an outgoing connection holds it (choose ports below {low})"
            )
    return warnings
