"""`network init` across machines: hosts, listen and advertise addresses, certificate names and
observer nodes, read back through the node config loader and the genesis."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest
from cryptography import x509

from chainnode.app import genesis
from chainnode.core import identity
from chainnode.core.errors import ConfigError
from chainnode.node import config
from chainnode.tools import hosts, network

HOSTS_TEXT = """\
# four validators and an observer, one machine each
validator-01=10.213.7.11
validator-02=10.213.7.12:7000:7001
validator-03=[2001:db8::13]:26604:26605
validator-04=node-4.example.org  listen=0.0.0.0
observer-01=observer.example.org:40000:40001 listen=10.213.7.21
"""


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> network.NetworkLayout:
    directory = tmp_path_factory.mktemp("hosts")
    hosts_path = directory / "hosts"
    hosts_path.write_text(HOSTS_TEXT)
    return network.init_network(
        directory / "net",
        validators=4,
        observers=1,
        host_entries=hosts.load_hosts_file(hosts_path),
        ephemeral_port_range=(32768, 60999),
    )


def _names(certificate: x509.Certificate) -> tuple[set[str], set[str]]:
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return (
        set(names.get_values_for_type(x509.DNSName)),
        {str(address) for address in names.get_values_for_type(x509.IPAddress)},
    )


def test_node_configs_listen_and_advertise(layout: network.NetworkLayout) -> None:
    nodes = {
        node_id: config.load_node_config(path)
        for node_id, path in zip(layout.node_ids, layout.node_config_paths, strict=True)
    }
    assert list(nodes) == ["validator-01", "validator-02", "validator-03", "validator-04", "observer-01"]
    expected = {
        "validator-01": ("10.213.7.11", 26600, "10.213.7.11:26600", "10.213.7.11:26601"),
        "validator-02": ("10.213.7.12", 7000, "10.213.7.12:7000", "10.213.7.12:7001"),
        "validator-03": ("2001:db8::13", 26604, "[2001:db8::13]:26604", "[2001:db8::13]:26605"),
        "validator-04": ("0.0.0.0", 26606, "node-4.example.org:26606", "node-4.example.org:26607"),
        "observer-01": ("10.213.7.21", 40000, "observer.example.org:40000", "observer.example.org:40001"),
    }
    for node_id, node in nodes.items():
        listen_host, p2p_port, p2p_advertise, api_advertise = expected[node_id]
        assert (node.p2p_host, node.p2p_port, node.api_host) == (listen_host, p2p_port, listen_host)
        assert (node.p2p_advertise, node.api_advertise) == (p2p_advertise, api_advertise)
        # Every node dials every other at the address that one advertises.
        dialed = {peer.entity_id: config.format_address(peer.host, peer.port) for peer in node.peers}
        assert dialed == {other: expected[other][2] for other in nodes if other != node_id}
    assert layout.api_urls[3] == "http://node-4.example.org:26607"
    assert layout.p2p_addresses[2] == "[2001:db8::13]:26604"
    assert "advertise" not in (layout.out_dir / "nodes" / "validator-01" / "node.toml").read_text()
    # The observer's ports lie in the ephemeral range given: said, not refused.
    assert len(layout.warnings) == 1 and layout.warnings[0].startswith("observer-01: port 40000, 40001 lies")


def test_certificates_name_each_node_s_addresses(layout: network.NetworkLayout) -> None:
    expected = {
        "validator-01": (set(), {"10.213.7.11"}),
        "validator-02": (set(), {"10.213.7.12"}),
        "validator-03": (set(), {"2001:db8::13"}),
        "validator-04": ({"node-4.example.org"}, set()),
        "observer-01": ({"observer.example.org"}, {"10.213.7.21"}),
    }
    for node_id in layout.node_ids:
        certificate = identity.load_certificate(layout.out_dir / "nodes" / node_id / "cert.pem")
        assert _names(certificate) == expected[node_id], node_id
    entity = identity.load_certificate(layout.out_dir / "entities" / "cnooc" / "cert.pem")
    assert _names(entity) == ({"localhost"}, {"127.0.0.1"})


def test_observer_is_registered_and_not_a_validator(layout: network.NetworkLayout) -> None:
    chain_genesis = genesis.load_genesis(layout.genesis_path)
    assert [v.entity_id for v in chain_genesis.validators.validators] == list(layout.node_ids[:4])
    observer = next(e for e in chain_genesis.entities if e.entity_id == "observer-01")
    assert observer.roles == ("observer",)
    claims = identity.read_claims(
        identity.load_certificate(layout.out_dir / "nodes" / "observer-01" / "cert.pem")
    )
    # Zones round-robin over all nodes, the validators first.
    assert claims.roles == ("observer",)
    assert claims.zone == network.compute_validator_zones(network.load_pilot(), 5)[4]
    summary = json.loads((layout.out_dir / "network.json").read_text())
    assert [node["role"] for node in summary["nodes"]] == ["validator"] * 4 + ["observer"]


def test_default_network_stays_on_loopback_with_default_names(tmp_path: Path) -> None:
    placed = network.place_nodes(["validator-01"], ["validator"], [], base_port=26600, listen_host=None)
    assert network._compute_certificate_hosts(placed[0]) == ("127.0.0.1", "localhost")
    sans = identity.compute_host_names(())
    assert sans == [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]


@pytest.mark.parametrize(
    ("table", "line", "complaint"),
    [
        ("p2p", 'advertise = "0.0.0.0:26600"', "p2p.advertise: 0.0.0.0 is a wildcard"),
        ("api", 'advertise = "[::]:26601"', "api.advertise: :: is a wildcard"),
        ("api", 'advertise = "nohost"', "api.advertise: expected host:port"),
    ],
)
def test_bad_advertise_addresses_are_refused(tmp_path: Path, table: str, line: str, complaint: str) -> None:
    text = config.render_node_config(
        node_id="validator-01", p2p_address="0.0.0.0:26600", api_address="0.0.0.0:26601", peers=[]
    )
    path = tmp_path / "node.toml"
    path.write_text(text.replace(f"\n[{table}]\n", f"\n[{table}]\n{line}\n"))
    with pytest.raises(ConfigError, match=complaint):
        config.load_node_config(path)


def test_init_refuses_bad_hosts_before_writing(tmp_path: Path) -> None:
    entries = [hosts.parse_node_spec("validator-01=10.0.0.1")]
    with pytest.raises(ConfigError, match="no address for"):
        network.init_network(tmp_path / "net", validators=4, host_entries=entries)
    assert not (tmp_path / "net").exists()
    with pytest.raises(ConfigError, match="must not be negative"):
        network.init_network(tmp_path / "net", validators=4, observers=-1)
