"""Where each node of a network runs: `network init --hosts FILE` and `--node NAME=ADDRESS`.

Theory of operation
-------------------
A node has two addresses per service: the one it binds (`listen`) and the one its peers dial and
clients call (`advertise`).  On one machine both are 127.0.0.1.  Across machines the advertised
host is what the others reach (an IPv4 or IPv6 address or a DNS name); the listen host is that
same address when it is an IP address the machine holds, and the wildcard when it is a DNS name
(a name may resolve to an address the machine does not hold, behind NAT or in a container),
unless the entry says `listen=HOST`.

One entry per node::

    NAME=HOST[:P2P_PORT[:API_PORT]] [listen=HOST]

`HOST` is `10.0.0.5`, `[2001:db8::5]` (brackets needed only when ports follow; a bare IPv6
address is accepted alone) or `node-1.example.org`.  A hosts file holds one entry per line;
blank lines and `#` comments are ignored.  Ports left out are filled in by `network init`
(node *i* gets base+2i and base+2i+1, so nodes sharing a host never collide).  Everything is
checked here, before any key is generated, and a refusal names the file and line.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from chainnode.core.errors import ConfigError
from chainnode.node.config import WILDCARD_HOSTS, format_address

__all__ = [
    "WILDCARD_HOSTS",
    "HostEntry",
    "format_address",
    "load_hosts_file",
    "merge_entries",
    "parse_node_spec",
]
_LABEL_PATTERN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_NAME_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
HOST_NAME_LENGTH_MAX = 253


@dataclass(frozen=True, slots=True)
class HostEntry:
    """Where one node runs, as an operator wrote it."""

    name: str  # the node id (validator-01, observer-01, ...)
    host: str  # advertised: what peers dial and clients call (no brackets around IPv6)
    p2p_port: int | None  # None: network init chooses
    api_port: int | None
    listen_host: str | None  # None: `compute_listen_host(host)`


def is_ip_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def find_host_problem(host: str) -> str | None:
    """Why `host` cannot be a node's advertised address, or None."""
    if is_ip_address(host):
        if host in WILDCARD_HOSTS or ipaddress.ip_address(host).is_unspecified:
            return f"{host} is a wildcard address: peers cannot dial it (use listen={host} instead)"
        return None
    if len(host) > HOST_NAME_LENGTH_MAX or not host:
        return f"host name {host!r} is empty or longer than {HOST_NAME_LENGTH_MAX} characters"
    labels = host.rstrip(".").split(".")
    if not all(_LABEL_PATTERN.match(label) for label in labels):
        return f"{host!r} is neither an IP address nor a DNS name (labels of [A-Za-z0-9-])"
    if labels[-1].isdigit():
        return f"{host!r} looks like an IPv4 address but is not one"
    return None


def compute_listen_host(host: str) -> str:
    """What a node advertising `host` binds by default (see the module docstring)."""
    if is_ip_address(host):
        return host
    # A DNS name may resolve to an address this machine does not hold (NAT, containers).
    return "0.0.0.0"


def _parse_port(text: str, what: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ConfigError(f"{what}: port {text!r} is not within 1..65535")
    return int(text)


def _split_address(text: str, what: str) -> tuple[str, list[str]]:
    """HOST and the port texts after it; IPv6 in brackets, or bare and alone."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ConfigError(f"{what}: unclosed '[' in {text!r}")
        host, rest = text[1:end], text[end + 1 :]
        if not is_ip_address(host) or ":" not in host:
            raise ConfigError(f"{what}: {host!r} in brackets is not an IPv6 address")
        if rest and not rest.startswith(":"):
            raise ConfigError(f"{what}: expected ':' after ']' in {text!r}")
        return host, rest[1:].split(":") if rest else []
    if is_ip_address(text):
        return text, []  # an IPv4 address, or a bare IPv6 address without ports
    if text.count(":") > 2:
        raise ConfigError(
            f"{what}: expected HOST[:P2P_PORT[:API_PORT]], got {text!r} "
            "(an IPv6 address with ports is written [ADDRESS]:P2P_PORT:API_PORT)"
        )
    host, *ports = text.split(":")
    return host, ports


def parse_node_spec(text: str, what: str = "--node") -> HostEntry:
    """One entry, `NAME=HOST[:P2P_PORT[:API_PORT]] [listen=HOST]`; ConfigError naming `what`."""
    words = text.split()
    if not words or "=" not in words[0]:
        raise ConfigError(f"{what}: expected NAME=HOST[:P2P_PORT[:API_PORT]], got {text.strip()!r}")
    name, _, address = words[0].partition("=")
    if not _NAME_PATTERN.match(name):
        raise ConfigError(f"{what}: node name {name!r} must be lowercase [a-z0-9-]")
    host, ports = _split_address(address, what)
    problem = find_host_problem(host)
    if problem is not None:
        raise ConfigError(f"{what}: {problem}")
    if len(ports) > 2:
        raise ConfigError(f"{what}: expected at most two ports after the host in {address!r}")
    p2p_port = _parse_port(ports[0], what) if ports else None
    api_port = _parse_port(ports[1], what) if len(ports) > 1 else None
    if p2p_port is not None and p2p_port == api_port:
        raise ConfigError(f"{what}: the p2p and API ports are both {p2p_port}")
    listen_host = None
    for option in words[1:]:
        key, separator, value = option.partition("=")
        if key != "listen" or not separator:
            raise ConfigError(f"{what}: unknown option {option!r} (only listen=HOST)")
        listen_host = value[1:-1] if value.startswith("[") and value.endswith("]") else value
        if not is_ip_address(listen_host) and find_host_problem(listen_host) is not None:
            raise ConfigError(f"{what}: listen host {value!r} is neither an IP address nor a DNS name")
    return HostEntry(name, host, p2p_port, api_port, listen_host)


def parse_hosts_text(text: str, source: str) -> list[HostEntry]:
    """Every entry of a hosts file's text; a refusal names `source:line`."""
    entries = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        content = line.split("#", 1)[0].strip()
        if not content:
            continue
        where = f"{source}:{number}"
        entry = parse_node_spec(content, where)
        if entry.name in seen:
            raise ConfigError(f"{where}: node {entry.name} was already given on line {seen[entry.name]}")
        seen[entry.name] = number
        entries.append(entry)
    if not entries:
        raise ConfigError(f"{source}: names no node")
    return entries


def load_hosts_file(path: Path) -> list[HostEntry]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read hosts file {path}: {error}") from error
    return parse_hosts_text(text, str(path))


def merge_entries(from_file: Sequence[HostEntry], from_options: Sequence[HostEntry]) -> list[HostEntry]:
    """File entries, then `--node` ones; a node given in both takes the `--node` entry."""
    options = {entry.name: entry for entry in from_options}
    if len(options) != len(from_options):
        raise ConfigError("--node: a node is given twice")
    merged = [options.pop(entry.name, entry) for entry in from_file]
    return merged + list(options.values())


def read_ephemeral_port_range(
    path: Path = Path("/proc/sys/net/ipv4/ip_local_port_range"),
) -> tuple[int, int] | None:
    """The kernel's ephemeral port range (Linux), or None where it cannot be read."""
    try:
        low_text, high_text = path.read_text().split()
        return int(low_text), int(high_text)
    except (OSError, ValueError):
        return None
