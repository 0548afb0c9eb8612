"""`network init`: the full layout on disk, loadable configs and genesis, refusal to overwrite."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import pytest

from chainnode.app import genesis
from chainnode.core import identity
from chainnode.core.crypto import SigningKey, public_key_from_pem
from chainnode.core.errors import ConfigError
from chainnode.node import config
from chainnode.tools import network


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> network.NetworkLayout:
    out_dir = tmp_path_factory.mktemp("net")
    started = time.perf_counter()
    result = network.init_network(out_dir, validators=4, base_port=27600)
    assert time.perf_counter() - started < 5.0  # about 0.2 s on the reference machine
    return result


def test_pilot_definition() -> None:
    pilot = network.load_pilot()
    assert len(pilot.entities) == 164
    assert len(pilot.zones) == 15
    assert len(pilot.council) == 15 and pilot.council_threshold == 10
    zone_ids = {zone.zone_id for zone in pilot.zones}
    assert {"beijing", "shanghai", "guangdong", "sichuan"} <= zone_ids
    assert all(entity.zone in zone_ids for entity in pilot.entities)
    assert not any("validator" in entity.roles for entity in pilot.entities)
    assert {"pku-hospital-3", "icbc-beijing", "cnooc"} <= {e.entity_id for e in pilot.entities}
    # Every zone has entities, and the roles the modules rely on all occur.
    assert {entity.zone for entity in pilot.entities} == zone_ids
    assert {"issuer", "auditor", "observer", "submitter"} <= {r for e in pilot.entities for r in e.roles}


def test_pilot_refuses_bad_definitions(tmp_path: Path) -> None:
    base = (network.DEFAULT_PILOT_PATH).read_text()
    cases = {
        "unknown zone": base.replace(
            'zone = "beijing", sectors = ["education"]', 'zone = "atlantis", sectors = ["education"]', 1
        ),
        "validator role": base.replace('roles = ["submitter"] }', 'roles = ["validator"] }', 1),
        "unknown sector": base.replace('sectors = ["education"]', 'sectors = ["alchemy"]', 1),
        "threshold": base.replace("threshold = 10", "threshold = 16"),
        "bad toml": base + "\n[[[",
    }
    for name, text in cases.items():
        assert text != base, name
        path = tmp_path / f"{name.replace(' ', '-')}.toml"
        path.write_text(text)
        with pytest.raises(ConfigError):
            network.load_pilot(path)


def test_layout_files(layout: network.NetworkLayout) -> None:
    out = layout.out_dir
    pilot = network.load_pilot()
    assert (out / "root" / "ca.pem").is_file() and (out / "root" / "ca.key.pem").is_file()
    for zone in pilot.zones:
        assert (out / "zones" / zone.zone_id / "ca.pem").is_file()
        assert (out / "zones" / zone.zone_id / "ca.key.pem").is_file()
    for member in pilot.council:
        public = public_key_from_pem((out / "council" / member.member_id / "public.pem").read_bytes())
        key = SigningKey.load(out / "council" / member.member_id / "key.pem")
        assert key.public_key == public
    for entity in pilot.entities:
        directory = out / "entities" / entity.entity_id
        chain = identity.load_certificates(directory / "chain.pem")
        assert chain[0] == identity.load_certificate(directory / "cert.pem")
        assert identity.read_zone_id(chain[1]) == entity.zone
        assert identity.read_claims(chain[0]) == entity
        assert SigningKey.load(directory / "key.pem").public_key == identity.public_key_of(chain[0])
    private_keys = list(out.rglob("*key.pem"))
    assert len(private_keys) == 1 + 15 + 15 + 164 + 4
    for path in private_keys:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_node_configs_load(layout: network.NetworkLayout) -> None:
    assert layout.node_ids == ("validator-01", "validator-02", "validator-03", "validator-04")
    root = identity.load_certificate(layout.out_dir / "root" / "ca.pem")
    expected_zones = ["beijing", "shanghai", "guangdong", "sichuan"]
    for index, path in enumerate(layout.node_config_paths):
        node = config.load_node_config(path)
        assert node.node_id == layout.node_ids[index]
        assert node.p2p_port == 27600 + 2 * index and node.api_port == 27601 + 2 * index
        assert node.p2p_host == node.api_host == "127.0.0.1"
        assert {peer.entity_id for peer in node.peers} == set(layout.node_ids) - {node.node_id}
        assert node.data_dir == path.parent / "data"
        assert node.genesis_path == layout.genesis_path
        assert node.root_ca_path == layout.out_dir / "root" / "ca.pem"
        assert node.proposal_delay_ms == 20 and node.tick_ms == 10
        assert node.mempool_capacity_txs == 100_000 and node.frame_bytes_max == 16 * 1024 * 1024
        certificate, zone_ca = identity.load_certificates(node.chain_path)
        claims = identity.verify_entity_certificate(certificate, zone_ca, root)
        assert claims.zone == expected_zones[index]
        assert claims.roles == ("validator",) and claims.sectors == ("government",)
        assert SigningKey.load(node.key_path).public_key == identity.public_key_of(certificate)
        assert identity.load_certificate(node.certificate_path) == certificate


def test_genesis_and_network_json(layout: network.NetworkLayout) -> None:
    chain_genesis = genesis.load_genesis(layout.genesis_path)
    assert chain_genesis.compute_hash() == layout.genesis_hash
    assert [v.entity_id for v in chain_genesis.validators.validators] == list(layout.node_ids)
    assert len(chain_genesis.entities) == 164 + 4 and len(chain_genesis.zones) == 15
    assert len(chain_genesis.council) == 15 and chain_genesis.council_threshold == 10
    summary = json.loads((layout.out_dir / "network.json").read_text())
    assert summary["chain_id"] == "pilot-net"
    assert summary["genesis_hash"] == layout.genesis_hash.hex()
    assert len(summary["entities"]) == 164
    assert [node["id"] for node in summary["nodes"]] == list(layout.node_ids)
    first = summary["nodes"][0]
    assert first["api_url"] == "http://127.0.0.1:27601" and first["p2p_address"] == "127.0.0.1:27600"
    assert (layout.out_dir / first["config"]).resolve() == layout.node_config_paths[0]


def test_second_init_is_refused(layout: network.NetworkLayout) -> None:
    before = layout.genesis_path.read_bytes()
    with pytest.raises(ConfigError, match="already holds a network"):
        network.init_network(layout.out_dir)
    assert layout.genesis_path.read_bytes() == before


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        network.init_network(tmp_path / "a", validators=0)
    with pytest.raises(ConfigError):
        network.init_network(tmp_path / "b", chain_id="bad chain id")
    with pytest.raises(ConfigError):
        network.init_network(tmp_path / "c", base_port=65530, validators=4)
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("validators", [1, 2, 3])
def test_fewer_than_four_validators_are_refused(tmp_path: Path, validators: int) -> None:
    with pytest.raises(ConfigError, match=r"within 4\.\.") as refused:
        network.init_network(tmp_path / "small", validators=validators)
    assert "tolerate no faulty validator" in str(refused.value)
    assert not (tmp_path / "small").exists()
