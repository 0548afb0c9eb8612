"""`network init`: generate a complete pilot network directory from the pilot definition.

Theory of operation
-------------------
`load_pilot` (chainnode.tools.pilot) reads `config/pilot.toml` (council, zones, entities) and
checks it: lowercase ids, known roles and sectors, entities in known zones, no entity claiming
the `validator` role (the validator nodes are generated here, not listed in the pilot), a
council threshold within 1..N.

`init_network` first places every node (`place_nodes`, chainnode.tools.placement: its hosts
entry, see `chainnode.tools.hosts`, or 127.0.0.1; ports base+2i and base+2i+1 unless given),
refusing unknown or missing nodes and two nodes on one host and port before anything is
written, and notes ports inside the kernel's ephemeral range as warnings.  It then plays every authority
once, offline:

1. the council's root key signs the network root CA;
2. the root signs one zone authority CA per zone;
3. each zone authority issues the certificates of its own zone's entities, and of the nodes it
   hosts (nodes are assigned to zones round-robin, validators first, starting with beijing,
   shanghai, guangdong, sichuan); a node's certificate names its addresses as subject
   alternative names; observers hold the `observer` role and no other;
4. each node's node.toml gets its listen addresses, its advertised ones where they differ, and
   every other node's advertised p2p address (observers are in every peer list: messages
   travel on the dialer's connection, so a validator that did not dial an observer would
   never send it a block);
5. the genesis (council keys, zones, entities, validator set) is written and re-read through
   `genesis.load_genesis`, so a layout that would not load is never reported as a success.

Layout of `DIR`::

    root/ca.pem, root/ca.key.pem
    zones/<zone>/ca.pem, ca.key.pem
    council/<member>/key.pem, public.pem
    entities/<entity>/cert.pem, key.pem, chain.pem        (chain = cert + zone CA)
    nodes/validator-NN/node.toml, cert.pem, chain.pem, key.pem
    nodes/observer-NN/node.toml, cert.pem, chain.pem, key.pem
    genesis.json
    network.json      {"chain_id", "genesis_hash", "nodes": [{"id", "config", "api_url",
                       "p2p_address", "role"}, ...], "entities": [...]}

Paths inside `network.json` are relative to `DIR`.  Private keys are written with mode 0600.
The private keys of the root, the zones and the council are left in `DIR` because this is a
local or test network; a real deployment would generate each of them at its owner.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from chainnode.app import genesis
from chainnode.core import identity, identity_records, quorum
from chainnode.core.crypto import SigningKey, public_key_to_pem
from chainnode.core.errors import ChainError, ConfigError
from chainnode.node import config
from chainnode.tools import hosts
from chainnode.tools.pilot import (
    DEFAULT_PILOT_PATH,
    PilotCouncilMember,
    PilotDefinition,
    PilotZone,
    load_pilot,
    parse_pilot,
)
from chainnode.tools.placement import NodePlacement, find_ephemeral_port_warnings, place_nodes

# What callers and tests import from here, the pilot's and the placement's names included.
__all__ = [
    "DEFAULT_PILOT_PATH",
    "NODES_MAX",
    "VALIDATORS_MAX",
    "VALIDATOR_ZONES_FIRST",
    "NetworkLayout",
    "NodePlacement",
    "PilotCouncilMember",
    "PilotDefinition",
    "PilotZone",
    "compute_node_ids",
    "compute_validator_zones",
    "find_ephemeral_port_warnings",
    "init_network",
    "load_pilot",
    "parse_pilot",
    "place_nodes",
]

VALIDATOR_ZONES_FIRST = ("beijing", "shanghai", "guangdong", "sichuan")
VALIDATORS_MAX = 100
NODES_MAX = 200  # validators, spares and observers: every node dials every other
_CHAIN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True, slots=True)
class NetworkLayout:
    """What `init_network` wrote; all paths absolute."""

    out_dir: Path
    chain_id: str
    genesis_hash: bytes
    genesis_path: Path
    node_ids: tuple[str, ...]  # validator-01, ...
    node_config_paths: tuple[Path, ...]  # in node_ids order
    api_urls: tuple[str, ...]  # in node_ids order
    p2p_addresses: tuple[str, ...]  # host:port, advertised, in node_ids order
    entity_ids: tuple[str, ...]  # the pilot entities (validators not included)
    node_roles: tuple[str, ...] = ()  # validator, spare or observer, in node_ids order
    warnings: tuple[str, ...] = ()  # what the operator should know (ports in the ephemeral range)


# ---------------------------------------------------------------- writing files


def _write_file(path: Path, data: bytes, *, private: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = 0o600 if private else 0o644
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)
    # O_CREAT's mode does not apply to a file that already existed.
    os.chmod(path, mode)


def _write_identity(
    directory: Path,
    certificate: x509.Certificate,
    key: SigningKey,
    zone_certificate: x509.Certificate,
) -> None:
    certificate_pem = identity.certificate_to_pem(certificate)
    _write_file(directory / "cert.pem", certificate_pem)
    _write_file(directory / "chain.pem", certificate_pem + identity.certificate_to_pem(zone_certificate))
    _write_file(directory / "key.pem", key.to_pem(), private=True)


def compute_validator_zones(pilot: PilotDefinition, count: int) -> list[str]:
    """The zone hosting each validator: round-robin, the four named pilot zones first."""
    pilot_ids = [zone.zone_id for zone in pilot.zones]
    order = [zone for zone in VALIDATOR_ZONES_FIRST if zone in pilot_ids]
    order += [zone for zone in pilot_ids if zone not in order]
    return [order[index % len(order)] for index in range(count)]


@dataclass(frozen=True, slots=True)
class _Authorities:
    root_certificate: x509.Certificate
    zone_certificates: dict[str, x509.Certificate]
    zone_keys: dict[str, SigningKey]


def _create_authorities(out_dir: Path, pilot: PilotDefinition) -> _Authorities:
    root_key = SigningKey.generate()
    root_certificate = identity.create_root_ca(pilot.name, root_key)
    _write_file(out_dir / "root" / "ca.pem", identity.certificate_to_pem(root_certificate))
    _write_file(out_dir / "root" / "ca.key.pem", root_key.to_pem(), private=True)
    zone_certificates: dict[str, x509.Certificate] = {}
    zone_keys: dict[str, SigningKey] = {}
    for zone in pilot.zones:
        zone_key = SigningKey.generate()
        certificate = identity.create_zone_ca(
            root_certificate, root_key, zone_id=zone.zone_id, zone_name=zone.name, key=zone_key
        )
        zone_dir = out_dir / "zones" / zone.zone_id
        _write_file(zone_dir / "ca.pem", identity.certificate_to_pem(certificate))
        _write_file(zone_dir / "ca.key.pem", zone_key.to_pem(), private=True)
        zone_certificates[zone.zone_id] = certificate
        zone_keys[zone.zone_id] = zone_key
    return _Authorities(root_certificate, zone_certificates, zone_keys)


def _create_council(out_dir: Path, pilot: PilotDefinition) -> tuple[genesis.CouncilMember, ...]:
    members = []
    for member in pilot.council:
        key = SigningKey.generate()
        member_dir = out_dir / "council" / member.member_id
        _write_file(member_dir / "key.pem", key.to_pem(), private=True)
        _write_file(member_dir / "public.pem", public_key_to_pem(key.public_key))
        members.append(genesis.CouncilMember(member.member_id, member.name, key.public_key))
    return tuple(members)


def _issue(
    authorities: _Authorities,
    claims: identity.EntityClaims,
    directory: Path,
    *,
    hosts: Sequence[str] = (),
) -> identity_records.EntityRecord:
    key = SigningKey.generate()
    zone_certificate = authorities.zone_certificates[claims.zone]
    certificate = identity.issue_entity_certificate(
        zone_certificate, authorities.zone_keys[claims.zone], claims, key.public_key, hosts=hosts
    )
    _write_identity(directory, certificate, key, zone_certificate)
    return identity.entity_record_from_certificate(certificate)


def _compute_certificate_hosts(placement: NodePlacement) -> tuple[str, ...]:
    """The names a node's certificate carries: its advertised host, the host it binds unless
    that is a wildcard, and for a node on loopback `localhost` as well."""
    names = [placement.host]
    if placement.listen_host not in hosts.WILDCARD_HOSTS:
        names.append(placement.listen_host)
    if placement.host == "127.0.0.1":
        names.append("localhost")
    return tuple(dict.fromkeys(names))


def compute_node_ids(validators: int, observers: int) -> list[str]:
    """validator-01 .. (the genesis set, then the spares), then observer-01 .."""
    return [f"validator-{i + 1:02d}" for i in range(validators)] + [
        f"observer-{i + 1:02d}" for i in range(observers)
    ]


def _node_claims(pilot: PilotDefinition, validators: int, observers: int) -> list[identity.EntityClaims]:
    """Validators' and observers' claims; zones round-robin over all nodes, validators first."""
    zone_names = {zone.zone_id: zone.name for zone in pilot.zones}
    zones = compute_validator_zones(pilot, validators + observers)
    claims = []
    for index, node_id in enumerate(compute_node_ids(validators, observers)):
        is_validator = index < validators
        number = index + 1 if is_validator else index - validators + 1
        kind = "Validator" if is_validator else "Observer"
        claims.append(
            identity.EntityClaims(
                entity_id=node_id,
                zone=zones[index],
                # A validator is not also an `observer`: one removed from the set must lose its
                # connections.  An observer connects, follows and reads, and never votes.
                roles=("validator",) if is_validator else ("observer",),
                sectors=("government",),
                name=f"{kind} node {number:02d} ({zone_names[zones[index]]})",
            )
        )
    return claims


def _write_node_configs(out_dir: Path, placements: Sequence[NodePlacement], data_dir: str) -> list[Path]:
    paths = []
    for placement in placements:
        peers = [(peer.node_id, peer.p2p_address) for peer in placements if peer is not placement]
        text = config.render_node_config(
            node_id=placement.node_id,
            p2p_address=hosts.format_address(placement.listen_host, placement.p2p_port),
            api_address=hosts.format_address(placement.listen_host, placement.api_port),
            p2p_advertise=placement.p2p_address,
            api_advertise=placement.api_address,
            peers=peers,
            data_dir=data_dir,
        )
        path = out_dir / "nodes" / placement.node_id / "node.toml"
        _write_file(path, text.encode("utf-8"))
        paths.append(path)
    return paths


def _check_arguments(validators: int, nodes: int, chain_id: str, base_port: int) -> None:
    """`validators` in the genesis set and spare (as the code has always counted them); `nodes`
    all of them, observers included."""
    if not quorum.VALIDATORS_MIN <= validators <= VALIDATORS_MAX:
        raise ConfigError(
            f"validators must be within {quorum.VALIDATORS_MIN}..{VALIDATORS_MAX}, got {validators}: "
            f"fewer than {quorum.VALIDATORS_MIN} tolerate no faulty validator"
        )
    if nodes > NODES_MAX:
        raise ConfigError(f"a network of at most {NODES_MAX} nodes, got {nodes}")
    if not _CHAIN_ID_PATTERN.match(chain_id):
        raise ConfigError(f"chain id {chain_id!r} must be 1..64 characters of [A-Za-z0-9._-]")
    if base_port < 1024 or base_port + 2 * nodes - 1 > 65535:
        raise ConfigError(f"base port {base_port} leaves no room for {nodes} nodes")


def init_network(
    out_dir: Path,
    *,
    validators: int = 4,
    chain_id: str = "pilot-net",
    base_port: int = 26600,
    pilot_path: Path | None = None,
    spare_nodes: int = 0,
    observers: int = 0,
    host_entries: Sequence[hosts.HostEntry] = (),
    listen_host: str | None = None,
    ephemeral_port_range: tuple[int, int] | None = None,
    data_dir: str = "data",
) -> NetworkLayout:
    """Generate keys, certificates, genesis and node configs for a new network in `out_dir`.

    `spare_nodes` more nodes get a node directory, a registered certificate with the
    `validator` role and a place in every node's peer list, but are not in the genesis
    validator set: the council can add them later (they are refused by their peers
    until then).  `observers` nodes (observer-01, ...) hold the `observer` role: they are
    in every peer list, follow and serve the chain and never vote.

    `host_entries` place the nodes (see `chainnode.tools.hosts`); without them every node is on
    127.0.0.1.  `listen_host` is what a node binds when its entry does not say (by default its
    own address, or the wildcard for a DNS name).  Ports inside `ephemeral_port_range` (by
    default this machine's) are reported in `NetworkLayout.warnings`.  `data_dir` is every node's
    data directory as node.toml names it (relative to the node's directory, or absolute: a
    container's data volume).
    """
    out_dir = Path(out_dir).resolve()
    if (out_dir / "genesis.json").exists():
        raise ConfigError(f"{out_dir} already holds a network (genesis.json exists)")
    if spare_nodes < 0 or observers < 0:
        raise ConfigError(f"spare nodes and observers must not be negative, got {spare_nodes}, {observers}")
    _check_arguments(validators + spare_nodes, validators + spare_nodes + observers, chain_id, base_port)
    if not data_dir or "\n" in data_dir:
        raise ConfigError(f"data directory {data_dir!r} must be a non-empty path")
    listen_problem = None if listen_host is None else hosts.find_host_problem(listen_host)
    if listen_host is not None and not hosts.is_ip_address(listen_host) and listen_problem is not None:
        raise ConfigError(f"--listen: {listen_host!r} is neither an IP address nor a DNS name")
    node_ids = compute_node_ids(validators + spare_nodes, observers)
    roles = ["validator"] * validators + ["spare"] * spare_nodes + ["observer"] * observers
    placements = place_nodes(node_ids, roles, host_entries, base_port=base_port, listen_host=listen_host)
    port_range = ephemeral_port_range or hosts.read_ephemeral_port_range()
    warnings = find_ephemeral_port_warnings(placements, port_range)
    pilot = load_pilot(pilot_path)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        layout = _generate(out_dir, pilot, validators, chain_id, placements, spare_nodes, data_dir)
    except OSError as error:
        raise ConfigError(f"cannot write the network to {out_dir}: {error}") from error
    return dataclasses.replace(layout, warnings=tuple(warnings))


def _generate(
    out_dir: Path,
    pilot: PilotDefinition,
    validators: int,
    chain_id: str,
    placements: Sequence[NodePlacement],
    spare_nodes: int,
    data_dir: str,
) -> NetworkLayout:
    authorities = _create_authorities(out_dir, pilot)
    council = _create_council(out_dir, pilot)
    records = [
        _issue(authorities, claims, out_dir / "entities" / claims.entity_id) for claims in pilot.entities
    ]
    observers = sum(1 for placement in placements if placement.role == "observer")
    node_claims = _node_claims(pilot, validators + spare_nodes, observers)
    node_records = [
        _issue(
            authorities,
            claims,
            out_dir / "nodes" / claims.entity_id,
            hosts=_compute_certificate_hosts(placement),
        )
        for claims, placement in zip(node_claims, placements, strict=True)
    ]
    node_ids = [claims.entity_id for claims in node_claims]
    config_paths = _write_node_configs(out_dir, placements, data_dir)
    zone_names = {zone.zone_id: zone.name for zone in pilot.zones}
    chain_genesis = genesis.Genesis(
        chain_id=chain_id,
        genesis_time_ms=int(time.time() * 1000),
        root_certificate=identity.certificate_der(authorities.root_certificate),
        council=council,
        council_threshold=pilot.council_threshold,
        zones=tuple(
            identity_records.ZoneRecord(zone_id, zone_names[zone_id], identity.certificate_der(cert), True)
            for zone_id, cert in authorities.zone_certificates.items()
        ),
        entities=(*records, *node_records),
        validators=quorum.ValidatorSet(
            tuple(quorum.Validator(r.entity_id, r.public_key) for r in node_records[:validators])
        ),
        params=genesis.ChainParams(),
    )
    genesis_path = out_dir / "genesis.json"
    temporary_path = out_dir / "genesis.json.tmp"
    _write_file(temporary_path, chain_genesis.to_json().encode("utf-8"))
    try:
        genesis_hash = genesis.load_genesis(temporary_path).compute_hash()
    except ChainError:
        temporary_path.unlink()
        raise
    os.replace(temporary_path, genesis_path)
    layout = NetworkLayout(
        out_dir=out_dir,
        chain_id=chain_id,
        genesis_hash=genesis_hash,
        genesis_path=genesis_path,
        node_ids=tuple(node_ids),
        node_config_paths=tuple(config_paths),
        api_urls=tuple(f"http://{placement.api_address}" for placement in placements),
        p2p_addresses=tuple(placement.p2p_address for placement in placements),
        entity_ids=tuple(claims.entity_id for claims in pilot.entities),
        node_roles=tuple(placement.role for placement in placements),
    )
    _write_file(out_dir / "network.json", _render_network_json(layout).encode("utf-8"))
    return layout


def _render_network_json(layout: NetworkLayout) -> str:
    document = {
        "chain_id": layout.chain_id,
        "genesis_hash": layout.genesis_hash.hex(),
        "nodes": [
            {
                "id": node_id,
                "config": str(layout.node_config_paths[i].relative_to(layout.out_dir)),
                "api_url": layout.api_urls[i],
                "p2p_address": layout.p2p_addresses[i],
                "role": layout.node_roles[i],
            }
            for i, node_id in enumerate(layout.node_ids)
        ],
        "entities": list(layout.entity_ids),
    }
    return json.dumps(document, indent=1) + "\n"
