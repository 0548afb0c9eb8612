"""A node that joins a running network: an observer its zone authority registers after genesis.

Theory of operation
-------------------
`network init` writes every node a network starts with.  A read-only node added later (an
organisation that wants its own copy of the chain and API) is written by `add_observer`, run
where the zone authority keeps its directory (`DIR/zones/<zone>/`, the CA key signs):

1. a fresh Ed25519 key, and a certificate the zone authority issues for it, with the `observer`
   role alone and the node's advertised host as a subject alternative name;
2. the node's `node.toml`, whose peer list is every node of `network.json` (it dials them all);
3. the node in `network.json`, with the role `observer`.

The node is not yet allowed in: peers decide who may connect from committed state (the on-chain
PKI, `chainnode.node.peers`), so the zone authority registers the certificate on chain
(`chainnode authority register --zone-dir DIR/zones/<zone> --cert DIR/nodes/<id>/cert.pem
--node URL --wait`, or `register_observer` here with a client).  Then the node is started; it
dials every validator, and the validators, which do not list it, answer it on its own
connection (`p2p.outbound.ReturnPath`): it catches up, follows the chain, verifies every
certificate, re-executes, serves the read API and forwards transactions.  No other node's
configuration changes and none restarts.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chainnode.core import crypto, identity
from chainnode.core.errors import ConfigError
from chainnode.node import config
from chainnode.tools import hosts


@dataclass(frozen=True, slots=True)
class JoinedNode:
    """What `add_observer` wrote; paths absolute."""

    node_id: str
    zone: str
    config_path: Path
    certificate_path: Path
    api_url: str
    p2p_address: str


def _read_network(network_dir: Path) -> dict[str, Any]:
    path = network_dir / "network.json"
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ConfigError(f"cannot read {path}: {error}") from error
    if not isinstance(document, dict) or not isinstance(document.get("nodes"), list):
        raise ConfigError(f"{path} is not a network description (no nodes list)")
    return document


def _write_private(path: Path, data: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)


def _write_identity(
    zone_dir: Path, node_dir: Path, entry: hosts.HostEntry, zone: str, listen_host: str
) -> None:
    """A fresh key and the zone authority's certificate for it (role `observer`, the node's hosts
    as subject alternative names), written as `network init` writes a node's."""
    try:
        zone_certificate = identity.load_certificate(zone_dir / "ca.pem")
        zone_key = crypto.SigningKey.load(zone_dir / "ca.key.pem")
    except (OSError, ConfigError) as error:
        raise ConfigError(f"zone {zone!r}: cannot load its authority from {zone_dir}: {error}") from error
    try:
        node_dir.mkdir(parents=True)
    except FileExistsError as error:
        raise ConfigError(f"{node_dir} exists; choose another node name") from error
    names = [entry.host] + ([listen_host] if listen_host not in hosts.WILDCARD_HOSTS else [])
    if entry.host == "127.0.0.1":
        names.append("localhost")
    key = crypto.SigningKey.generate()
    claims = identity.EntityClaims(
        entity_id=entry.name,
        zone=zone,
        roles=("observer",),
        sectors=("government",),
        name=f"Observer node {entry.name}",
    )
    certificate = identity.issue_entity_certificate(
        zone_certificate, zone_key, claims, key.public_key, hosts=tuple(dict.fromkeys(names))
    )
    certificate_pem = identity.certificate_to_pem(certificate)
    (node_dir / "cert.pem").write_bytes(certificate_pem)
    (node_dir / "chain.pem").write_bytes(certificate_pem + identity.certificate_to_pem(zone_certificate))
    _write_private(node_dir / "key.pem", key.to_pem())


def add_observer(network_dir: Path, spec: str, *, zone: str, data_dir: str = "data") -> JoinedNode:
    """Write an observer node for the network in `network_dir` (see the module doc).

    `spec` is `NAME=HOST:P2P_PORT:API_PORT [listen=HOST]` (`chainnode.tools.hosts`); the ports are
    required, since the network's own port plan is not known here.
    """
    network_dir = network_dir.resolve()
    entry = hosts.parse_node_spec(spec, "--node")
    if entry.p2p_port is None or entry.api_port is None:
        raise ConfigError("--node: give both ports, NAME=HOST:P2P_PORT:API_PORT")
    document = _read_network(network_dir)
    nodes = [node for node in document["nodes"] if isinstance(node, dict)]
    if any(node.get("id") == entry.name for node in nodes):
        raise ConfigError(f"the network already has a node {entry.name!r}")
    node_dir = network_dir / "nodes" / entry.name
    listen_host = entry.listen_host or hosts.compute_listen_host(entry.host)
    _write_identity(network_dir / "zones" / zone, node_dir, entry, zone, listen_host)
    p2p_address = hosts.format_address(entry.host, entry.p2p_port)
    api_address = hosts.format_address(entry.host, entry.api_port)
    peers = [(str(node["id"]), str(node["p2p_address"])) for node in nodes]
    text = config.render_node_config(
        node_id=entry.name,
        p2p_address=hosts.format_address(listen_host, entry.p2p_port),
        api_address=hosts.format_address(listen_host, entry.api_port),
        p2p_advertise=p2p_address,
        api_advertise=api_address,
        peers=peers,
        data_dir=data_dir,
    )
    config_path = node_dir / "node.toml"
    config_path.write_text(text, encoding="utf-8")
    api_url = f"http://{api_address}"
    document["nodes"] = [
        *document["nodes"],
        {
            "id": entry.name,
            "config": f"nodes/{entry.name}/node.toml",
            "api_url": api_url,
            "p2p_address": p2p_address,
            "role": "observer",
        },
    ]
    temporary = network_dir / "network.json.tmp"
    temporary.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    os.replace(temporary, network_dir / "network.json")
    return JoinedNode(entry.name, zone, config_path, node_dir / "cert.pem", api_url, p2p_address)
