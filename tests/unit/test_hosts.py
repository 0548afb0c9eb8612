"""Where nodes run: hosts entries, their refusals (naming the line), placement and port warnings."""

from __future__ import annotations

from pathlib import Path

import pytest

from chainnode.core.errors import ConfigError
from chainnode.tools import hosts, network
from chainnode.tools.hosts import HostEntry


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("validator-01=10.0.0.1", HostEntry("validator-01", "10.0.0.1", None, None, None)),
        ("validator-01=10.0.0.1:26600", HostEntry("validator-01", "10.0.0.1", 26600, None, None)),
        ("validator-01=10.0.0.1:26600:8080", HostEntry("validator-01", "10.0.0.1", 26600, 8080, None)),
        ("observer-01=node-1.example.org", HostEntry("observer-01", "node-1.example.org", None, None, None)),
        ("validator-02=2001:db8::5", HostEntry("validator-02", "2001:db8::5", None, None, None)),
        ("validator-02=[2001:db8::5]:7000:7001", HostEntry("validator-02", "2001:db8::5", 7000, 7001, None)),
        ("validator-03=[::1]", HostEntry("validator-03", "::1", None, None, None)),
        (
            "validator-01=public.example.org:26600:26601  listen=0.0.0.0",
            HostEntry("validator-01", "public.example.org", 26600, 26601, "0.0.0.0"),
        ),
        ("validator-01=10.0.0.1 listen=[::]", HostEntry("validator-01", "10.0.0.1", None, None, "::")),
        ("validator-04=validator-04", HostEntry("validator-04", "validator-04", None, None, None)),
    ],
)
def test_entries_are_parsed(text: str, expected: HostEntry) -> None:
    assert hosts.parse_node_spec(text) == expected


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("validator-01", "expected NAME=HOST"),
        ("Validator-01=10.0.0.1", "must be lowercase"),
        ("validator-01=0.0.0.0", "wildcard"),
        ("validator-01=[::]:1:2", "wildcard"),
        ("validator-01=10.0.0.300", "looks like an IPv4 address"),
        ("validator-01=bad_host", "neither an IP address nor a DNS name"),
        ("validator-01=-x.org", "neither an IP address nor a DNS name"),
        ("validator-01=10.0.0.1:0", "not within 1..65535"),
        ("validator-01=10.0.0.1:70000", "not within 1..65535"),
        ("validator-01=10.0.0.1:abc", "not within 1..65535"),
        ("validator-01=10.0.0.1:1:2:3", "expected HOST[:P2P_PORT[:API_PORT]]"),
        ("validator-01=[::1]:1:2:3", "at most two ports"),
        ("validator-01=10.0.0.1:5:5", "both 5"),
        ("validator-01=2001:db8::5:26600:26601", "is written [ADDRESS]:P2P_PORT:API_PORT"),
        ("validator-01=2001:db8::zz", "is written [ADDRESS]:P2P_PORT:API_PORT"),
        ("validator-01=[2001:db8::5", "unclosed"),
        ("validator-01=[10.0.0.1]:5", "not an IPv6 address"),
        ("validator-01=[::1]x", "expected ':' after ']'"),
        ("validator-01=10.0.0.1 bind=0.0.0.0", "unknown option"),
        ("validator-01=10.0.0.1 listen=bad_host", "listen host"),
    ],
)
def test_bad_entries_are_refused(text: str, complaint: str) -> None:
    with pytest.raises(ConfigError, match="--node") as refused:
        hosts.parse_node_spec(text)
    assert complaint in refused.value.message


def test_a_hosts_file_is_refused_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    path.write_text("# the pilot\nvalidator-01=10.0.0.1   # beijing\n\nvalidator-02=10.0.0.300\n")
    with pytest.raises(ConfigError, match=rf"{path}:4: .*10\.0\.0\.300"):
        hosts.load_hosts_file(path)
    path.write_text("validator-01=10.0.0.1\nvalidator-01=10.0.0.2\n")
    with pytest.raises(ConfigError, match=rf"{path}:2: node validator-01 was already given on line 1"):
        hosts.load_hosts_file(path)
    path.write_text("# nothing\n")
    with pytest.raises(ConfigError, match="names no node"):
        hosts.load_hosts_file(path)
    with pytest.raises(ConfigError, match="cannot read hosts file"):
        hosts.load_hosts_file(tmp_path / "missing")
    path.write_text("validator-01=10.0.0.1\nobserver-01=h.example.org listen=10.9.9.9\n")
    assert [entry.name for entry in hosts.load_hosts_file(path)] == ["validator-01", "observer-01"]


def test_node_options_override_the_file() -> None:
    from_file = [
        hosts.parse_node_spec("validator-01=10.0.0.1"),
        hosts.parse_node_spec("validator-02=10.0.0.2"),
    ]
    merged = hosts.merge_entries(from_file, [hosts.parse_node_spec("validator-02=10.0.0.9")])
    assert [entry.host for entry in merged] == ["10.0.0.1", "10.0.0.9"]
    with pytest.raises(ConfigError, match="given twice"):
        hosts.merge_entries([], [from_file[0], from_file[0]])


NODE_IDS = ["validator-01", "validator-02", "observer-01"]
ROLES = ["validator", "validator", "observer"]


def test_placement_defaults_and_listen_hosts() -> None:
    default = network.place_nodes(NODE_IDS, ROLES, [], base_port=26600, listen_host=None)
    assert [(p.host, p.listen_host, p.p2p_port, p.api_port) for p in default] == [
        ("127.0.0.1", "127.0.0.1", 26600, 26601),
        ("127.0.0.1", "127.0.0.1", 26602, 26603),
        ("127.0.0.1", "127.0.0.1", 26604, 26605),
    ]
    entries = [
        hosts.parse_node_spec("validator-01=10.0.0.1"),
        hosts.parse_node_spec("validator-02=node-2.example.org:7000:7001"),
        hosts.parse_node_spec("observer-01=[2001:db8::5]:7000:7001 listen=2001:db8::5"),
    ]
    placed = network.place_nodes(NODE_IDS, ROLES, entries, base_port=26600, listen_host=None)
    # An IP address is bound as it is; a DNS name binds the wildcard.
    assert [p.listen_host for p in placed] == ["10.0.0.1", "0.0.0.0", "2001:db8::5"]
    assert [p.p2p_address for p in placed] == [
        "10.0.0.1:26600",
        "node-2.example.org:7000",
        "[2001:db8::5]:7000",
    ]
    everywhere = network.place_nodes(NODE_IDS, ROLES, entries, base_port=26600, listen_host="0.0.0.0")
    assert [p.listen_host for p in everywhere] == ["0.0.0.0", "0.0.0.0", "2001:db8::5"]


@pytest.mark.parametrize(
    ("entries", "complaint"),
    [
        (["validator-01=10.0.0.1"], r"no address for \['validator-02', 'observer-01'\]"),
        (
            [
                "validator-01=10.0.0.1",
                "validator-02=10.0.0.2",
                "observer-01=10.0.0.3",
                "observer-02=10.0.0.4",
            ],
            "does not have: \\['observer-02'\\]",
        ),
        (
            ["validator-01=10.0.0.1:7000", "validator-02=10.0.0.1:7000", "observer-01=10.0.0.3"],
            "validator-02 and validator-01 both use 10.0.0.1 port 7000",
        ),
        (
            ["validator-01=10.0.0.1:26602", "validator-02=10.0.0.1", "observer-01=10.0.0.3"],
            "validator-02 and validator-01 both use 10.0.0.1 port 26602",
        ),
    ],
)
def test_bad_placements_are_refused(entries: list[str], complaint: str) -> None:
    parsed = [hosts.parse_node_spec(text) for text in entries]
    with pytest.raises(ConfigError, match=complaint):
        network.place_nodes(NODE_IDS, ROLES, parsed, base_port=26600, listen_host=None)


def test_ports_in_the_ephemeral_range_are_warned_about(tmp_path: Path) -> None:
    placed = network.place_nodes(
        NODE_IDS,
        ROLES,
        [
            hosts.parse_node_spec("validator-01=10.0.0.1:26600:26601"),
            hosts.parse_node_spec("validator-02=10.0.0.2:32767:32768"),
            hosts.parse_node_spec("observer-01=10.0.0.3:60999:61000"),
        ],
        base_port=26600,
        listen_host=None,
    )
    warnings = network.find_ephemeral_port_warnings(placed, (32768, 60999))
    assert [warning.split(":")[0] for warning in warnings] == ["validator-02", "observer-01"]
    assert "port 32768 lies in this machine's ephemeral port range 32768-60999" in warnings[0]
    assert "port 60999 lies" in warnings[1]
    assert network.find_ephemeral_port_warnings(placed, None) == []
    # The defaults stay below the range Linux ships with, for the largest network init writes.
    largest = network.place_nodes(
        network.compute_node_ids(network.VALIDATORS_MAX, network.NODES_MAX - network.VALIDATORS_MAX),
        ["validator"] * network.NODES_MAX,
        [],
        base_port=26600,
        listen_host=None,
    )
    assert network.find_ephemeral_port_warnings(largest, (32768, 60999)) == []
    range_file = tmp_path / "range"
    range_file.write_text("32768\t60999\n")
    assert hosts.read_ephemeral_port_range(range_file) == (32768, 60999)
    range_file.write_text("garbage\n")
    assert hosts.read_ephemeral_port_range(range_file) is None
