"""`network init`: generate a complete pilot network directory from the pilot definition.

Theory of operation
-------------------
`load_pilot` reads `config/pilot.toml` (council, zones, entities) and checks it: lowercase ids,
known roles and sectors, entities in known zones, no entity claiming the `validator` role (the
validator nodes are generated here, not listed in the pilot), a council threshold within 1..N.

`init_network` then plays every authority once, offline:

1. the council's root key signs the network root CA;
2. the root signs one zone authority CA per zone;
3. each zone authority issues the certificates of its own zone's entities, and of the validator
   nodes it hosts (validators are assigned to zones round-robin, starting with beijing,
   shanghai, guangdong, sichuan);
4. the genesis (council keys, zones, entities, validator set) is written and re-read through
   `genesis.load_genesis`, so a layout that would not load is never reported as a success.

Layout of `DIR`::

    root/ca.pem, root/ca.key.pem
    zones/<zone>/ca.pem, ca.key.pem
    council/<member>/key.pem, public.pem
    entities/<entity>/cert.pem, key.pem, chain.pem        (chain = cert + zone CA)
    nodes/validator-NN/node.toml, cert.pem, chain.pem, key.pem
    genesis.json
    network.json      {"chain_id", "genesis_hash", "nodes": [...], "entities": [...]}

Paths inside `network.json` are relative to `DIR`.  Private keys are written with mode 0600.
The private keys of the root, the zones and the council are left in `DIR` because this is a
local or test network; a real deployment would generate each of them at its owner.
"""

from __future__ import annotations

import json
import os
import re
import time
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from cryptography import x509

from chainnode.app import genesis
from chainnode.core import identity, types
from chainnode.core.crypto import SigningKey, public_key_to_pem
from chainnode.core.errors import ChainError, ConfigError
from chainnode.core.fields import Fields
from chainnode.node import config

# Shipped as package data of the top-level `config` package, so a plain `pip install .` has it.
DEFAULT_PILOT_PATH = Path(str(resources.files("config") / "pilot.toml"))
VALIDATOR_ZONES_FIRST = ("beijing", "shanghai", "guangdong", "sichuan")
VALIDATORS_MAX = 100
_CHAIN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True, slots=True)
class PilotZone:
    zone_id: str
    name: str


@dataclass(frozen=True, slots=True)
class PilotCouncilMember:
    member_id: str
    name: str


@dataclass(frozen=True, slots=True)
class PilotDefinition:
    """The parsed `pilot.toml`."""

    name: str  # display name of the network; names the root CA
    zones: tuple[PilotZone, ...]
    entities: tuple[identity.EntityClaims, ...]
    council: tuple[PilotCouncilMember, ...]
    council_threshold: int


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
    p2p_addresses: tuple[str, ...]  # host:port, in node_ids order
    entity_ids: tuple[str, ...]  # the pilot entities (validators not included)


# ---------------------------------------------------------------- the pilot definition


def _parse_entity(item: Fields, zone_ids: set[str]) -> identity.EntityClaims:
    claims = identity.EntityClaims(
        entity_id=item.get_str("id"),
        zone=item.get_str("zone"),
        roles=item.get_strings("roles"),
        sectors=item.get_strings("sectors"),
        name=item.get_str("name"),
    )
    where = f"entity {claims.entity_id!r}"
    if not identity.is_valid_id(claims.entity_id):
        raise ConfigError(f"pilot {where}: id must be lowercase [a-z0-9-]")
    if claims.zone not in zone_ids:
        raise ConfigError(f"pilot {where}: unknown zone {claims.zone!r}")
    if set(claims.roles) - types.ROLES or not claims.roles:
        raise ConfigError(f"pilot {where}: roles {list(claims.roles)} are empty or unknown")
    if set(claims.sectors) - types.SECTORS or not claims.sectors:
        raise ConfigError(f"pilot {where}: sectors {list(claims.sectors)} are empty or unknown")
    if "validator" in claims.roles or claims.entity_id.startswith("validator-"):
        raise ConfigError(f"pilot {where}: validator nodes are generated, not listed")
    return claims


def _require_distinct(values: list[str], what: str) -> None:
    if len(set(values)) != len(values):
        duplicates = sorted({value for value in values if values.count(value) > 1})
        raise ConfigError(f"pilot lists {what} {duplicates} more than once")


def parse_pilot(document: dict[str, Any]) -> PilotDefinition:
    """Check and convert a parsed pilot TOML document."""
    fields = Fields(document, "pilot")
    zones = tuple(PilotZone(item.get_str("id"), item.get_str("name")) for item in fields.get_tables("zones"))
    for zone in zones:
        if not identity.is_valid_id(zone.zone_id):
            raise ConfigError(f"pilot zone {zone.zone_id!r}: id must be lowercase [a-z0-9-]")
    _require_distinct([zone.zone_id for zone in zones], "zones")
    zone_ids = {zone.zone_id for zone in zones}
    entities = tuple(_parse_entity(item, zone_ids) for item in fields.get_tables("entities"))
    _require_distinct([entity.entity_id for entity in entities], "entities")
    council_table = fields.get_table("council")
    council = tuple(
        PilotCouncilMember(item.get_str("id"), item.get_str("name"))
        for item in council_table.get_tables("members")
    )
    _require_distinct([member.member_id for member in council], "council members")
    for member in council:
        if not identity.is_valid_id(member.member_id):
            raise ConfigError(f"pilot council member {member.member_id!r}: id must be [a-z0-9-]")
    if not zones:
        raise ConfigError("pilot defines no zones")
    return PilotDefinition(
        name=fields.get_str("name"),
        zones=zones,
        entities=entities,
        council=council,
        council_threshold=council_table.get_int("threshold", minimum=1, maximum=len(council)),
    )


def load_pilot(path: Path | None = None) -> PilotDefinition:
    """Read and check `pilot.toml` (by default the one shipped in `config/`)."""
    pilot_path = DEFAULT_PILOT_PATH if path is None else Path(path)
    try:
        with pilot_path.open("rb") as file:
            document = tomllib.load(file)
    except OSError as error:
        raise ConfigError(f"cannot read pilot definition {pilot_path}: {error}") from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"pilot definition {pilot_path} is not valid TOML: {error}") from error
    return parse_pilot(document)


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


def _issue(authorities: _Authorities, claims: identity.EntityClaims, directory: Path) -> types.EntityRecord:
    key = SigningKey.generate()
    zone_certificate = authorities.zone_certificates[claims.zone]
    certificate = identity.issue_entity_certificate(
        zone_certificate, authorities.zone_keys[claims.zone], claims, key.public_key
    )
    _write_identity(directory, certificate, key, zone_certificate)
    return identity.entity_record_from_certificate(certificate)


def _validator_claims(pilot: PilotDefinition, count: int) -> list[identity.EntityClaims]:
    zone_names = {zone.zone_id: zone.name for zone in pilot.zones}
    claims = []
    for index, zone_id in enumerate(compute_validator_zones(pilot, count)):
        node_id = f"validator-{index + 1:02d}"
        claims.append(
            identity.EntityClaims(
                entity_id=node_id,
                zone=zone_id,
                # Not `observer`: a validator removed from the set must lose its connections.
                roles=("validator",),
                sectors=("government",),
                name=f"Validator node {index + 1:02d} ({zone_names[zone_id]})",
            )
        )
    return claims


def _write_node_configs(out_dir: Path, node_ids: list[str], addresses: list[tuple[str, str]]) -> list[Path]:
    paths = []
    for index, node_id in enumerate(node_ids):
        p2p_address, api_address = addresses[index]
        peers = [
            (peer_id, addresses[peer_index][0])
            for peer_index, peer_id in enumerate(node_ids)
            if peer_index != index
        ]
        text = config.render_node_config(
            node_id=node_id, p2p_address=p2p_address, api_address=api_address, peers=peers
        )
        path = out_dir / "nodes" / node_id / "node.toml"
        _write_file(path, text.encode("utf-8"))
        paths.append(path)
    return paths


def _check_arguments(validators: int, chain_id: str, base_port: int) -> None:
    if not types.VALIDATORS_MIN <= validators <= VALIDATORS_MAX:
        raise ConfigError(
            f"validators must be within {types.VALIDATORS_MIN}..{VALIDATORS_MAX}, got {validators}: "
            f"fewer than {types.VALIDATORS_MIN} tolerate no faulty validator"
        )
    if not _CHAIN_ID_PATTERN.match(chain_id):
        raise ConfigError(f"chain id {chain_id!r} must be 1..64 characters of [A-Za-z0-9._-]")
    if base_port < 1024 or base_port + 2 * validators - 1 > 65535:
        raise ConfigError(f"base port {base_port} leaves no room for {validators} nodes")


def init_network(
    out_dir: Path,
    *,
    validators: int = 4,
    chain_id: str = "pilot-net",
    base_port: int = 26600,
    host: str = "127.0.0.1",
    pilot_path: Path | None = None,
    spare_nodes: int = 0,
) -> NetworkLayout:
    """Generate keys, certificates, genesis and node configs for a new network in `out_dir`.

    `spare_nodes` more nodes get a node directory, a registered certificate with the
    `validator` role and a place in every node's peer list, but are not in the genesis
    validator set: the council can add them later (they are refused by their peers
    until then).
    """
    out_dir = Path(out_dir).resolve()
    if (out_dir / "genesis.json").exists():
        raise ConfigError(f"{out_dir} already holds a network (genesis.json exists)")
    _check_arguments(validators + spare_nodes, chain_id, base_port)
    if spare_nodes < 0:
        raise ConfigError(f"spare nodes must not be negative, got {spare_nodes}")
    pilot = load_pilot(pilot_path)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        return _generate(out_dir, pilot, validators, chain_id, base_port, host, spare_nodes)
    except OSError as error:
        raise ConfigError(f"cannot write the network to {out_dir}: {error}") from error


def _generate(
    out_dir: Path,
    pilot: PilotDefinition,
    validators: int,
    chain_id: str,
    base_port: int,
    host: str,
    spare_nodes: int,
) -> NetworkLayout:
    authorities = _create_authorities(out_dir, pilot)
    council = _create_council(out_dir, pilot)
    records = [
        _issue(authorities, claims, out_dir / "entities" / claims.entity_id) for claims in pilot.entities
    ]
    node_claims = _validator_claims(pilot, validators + spare_nodes)
    node_records = [
        _issue(authorities, claims, out_dir / "nodes" / claims.entity_id) for claims in node_claims
    ]
    node_ids = [claims.entity_id for claims in node_claims]
    address_host = f"[{host}]" if ":" in host else host
    addresses = [
        (f"{address_host}:{base_port + 2 * i}", f"{address_host}:{base_port + 2 * i + 1}")
        for i in range(validators + spare_nodes)
    ]
    config_paths = _write_node_configs(out_dir, node_ids, addresses)
    zone_names = {zone.zone_id: zone.name for zone in pilot.zones}
    chain_genesis = genesis.Genesis(
        chain_id=chain_id,
        genesis_time_ms=int(time.time() * 1000),
        root_certificate=identity.certificate_der(authorities.root_certificate),
        council=council,
        council_threshold=pilot.council_threshold,
        zones=tuple(
            types.ZoneRecord(zone_id, zone_names[zone_id], identity.certificate_der(cert), True)
            for zone_id, cert in authorities.zone_certificates.items()
        ),
        entities=(*records, *node_records),
        validators=types.ValidatorSet(
            tuple(types.Validator(r.entity_id, r.public_key) for r in node_records[:validators])
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
        api_urls=tuple(f"http://{api}" for _, api in addresses),
        p2p_addresses=tuple(p2p for p2p, _ in addresses),
        entity_ids=tuple(claims.entity_id for claims in pilot.entities),
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
            }
            for i, node_id in enumerate(layout.node_ids)
        ],
        "entities": list(layout.entity_ids),
    }
    return json.dumps(document, indent=1) + "\n"
