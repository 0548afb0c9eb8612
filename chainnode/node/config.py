"""Node configuration: `node.toml`, read with the standard library's `tomllib`.

Theory of operation
-------------------
A node is configured by one TOML file (see `render_node_config` for the layout `network init`
writes).  `load_node_config` turns it into a frozen `NodeConfig` in which every path is absolute
(relative paths are resolved against the directory of the TOML file, so a network directory can
be moved as a whole) and every address is split into host and port.  Bad input raises
`ConfigError` naming the offending key (`p2p.listen`, `tls.key`, ...); nothing is defaulted
silently except the tuning values documented below.

Tuning tables, all optional: `[consensus]` (`proposal_delay_ms`, `tick_ms`, `view_timeout_ms`),
`[mempool]` (`capacity_txs`), `[identity]` (`certificate_warning_days`) and `[storage]`:
`disk_free_bytes_min` (default 256 MiB) is the free space under `data_dir` below which the node
logs a warning, reports `disk_space_low` on `/readyz` and answers 503 there (it keeps committing;
see `chainnode.node.health`).  0 turns the warning off; a full disk is reported whatever it says.

Addresses: `[p2p] listen` and `[api] listen` are what the node binds (`0.0.0.0` or `[::]`
binds every interface); `advertise` beside each (optional, default: the listen address) is what
the node's peers dial and its clients call, and is refused when it is a wildcard.  The peers'
`address` keys are their advertised p2p addresses.

Connection limits, all optional (`p2p.http_guard`): `[api]` `connections_max` (default
256) connections open at once, one more is answered 503 `too_many_connections` and closed;
`request_head_timeout_ms` (10 s) from a request head's first byte to its end (slowloris);
`keepalive_timeout_ms` (60 s) an idle connection is kept.  `[p2p]` `inbound_connections_max`
(128) inbound peer connections open at once, `inbound_unauthenticated_max` (16) of them before
their hello is accepted (see `p2p.transport`).

The schema: every key, its kind, bounds, default and meaning are one table, `NODE_TOML_KEYS`;
the loader refuses a table or key that is not in it (a typo, or a setting of another version,
would otherwise be ignored without a word) with one line naming it (`api.listn: unknown key`),
and `render_config_reference` prints it as the README's reference.  Environment overrides, for
containers: `CHAINNODE_<TABLE>_<KEY>` (`CHAINNODE_API_LISTEN=0.0.0.0:26601`,
`CHAINNODE_CONSENSUS_TICK_MS=20`, `CHAINNODE_P2P_PEERS` as a TOML inline array) is set over the
file before any check, so a bad value is refused like one in the file; a variable naming a table
of node.toml but no key of it is ignored with a warning naming it (see `apply_environment`).

The loader checks shapes and ranges only.  Whether the certificate, key and genesis files exist
and agree is checked by whoever opens them (`identity`, `genesis`, the TLS setup).
"""

from __future__ import annotations

import json
import logging
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chainnode.core.errors import ConfigError
from chainnode.core.fields import Fields
from chainnode.node.config_schema import (
    API_CONNECTIONS_MAX_DEFAULT,
    API_KEEPALIVE_TIMEOUT_MS_DEFAULT,
    API_REQUEST_HEAD_TIMEOUT_MS_DEFAULT,
    CERTIFICATE_WARNING_DAYS_DEFAULT,
    DISK_FREE_BYTES_MIN_DEFAULT,
    ENVIRONMENT_PREFIX,
    FRAME_BYTES_MAX_DEFAULT,
    KEYS_BY_PATH,
    MEMPOOL_CAPACITY_TXS_DEFAULT,
    NODE_TOML_KEYS,
    P2P_INBOUND_CONNECTIONS_MAX_DEFAULT,
    P2P_INBOUND_UNAUTHENTICATED_MAX_DEFAULT,
    PEER_KEYS,
    PROPOSAL_DELAY_MS_DEFAULT,
    TABLES,
    TICK_MS_DEFAULT,
    VIEW_TIMEOUT_MS_DEFAULT,
    ConfigKey,
    KeyKind,
    render_config_reference,
)

log = logging.getLogger("chainnode.node.config")

# Re-exported: the defaults and the schema are read from here too (tests, network init).
__all__ = [
    "API_CONNECTIONS_MAX_DEFAULT",
    "API_KEEPALIVE_TIMEOUT_MS_DEFAULT",
    "API_REQUEST_HEAD_TIMEOUT_MS_DEFAULT",
    "CERTIFICATE_WARNING_DAYS_DEFAULT",
    "DISK_FREE_BYTES_MIN_DEFAULT",
    "FRAME_BYTES_MAX_DEFAULT",
    "MEMPOOL_CAPACITY_TXS_DEFAULT",
    "NODE_TOML_KEYS",
    "P2P_INBOUND_CONNECTIONS_MAX_DEFAULT",
    "P2P_INBOUND_UNAUTHENTICATED_MAX_DEFAULT",
    "PROPOSAL_DELAY_MS_DEFAULT",
    "TICK_MS_DEFAULT",
    "VIEW_TIMEOUT_MS_DEFAULT",
    "WILDCARD_HOSTS",
    "ConfigKey",
    "KeyKind",
    "NodeConfig",
    "PeerConfig",
    "apply_environment",
    "check_known_keys",
    "format_address",
    "load_node_config",
    "parse_address",
    "read_node_document",
    "render_config_reference",
    "render_node_config",
]

WILDCARD_HOSTS = frozenset({"0.0.0.0", "::"})  # hosts a node binds, never one anybody dials


@dataclass(frozen=True, slots=True)
class PeerConfig:
    """Another validator this node connects to."""

    entity_id: str
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """A node's configuration with absolute paths and split addresses."""

    node_id: str  # entity id of this node (its certificate CN)
    config_path: Path  # the node.toml this was read from
    data_dir: Path  # LevelDB and other node state
    genesis_path: Path
    certificate_path: Path  # the node's own certificate
    chain_path: Path  # node certificate followed by its zone CA (sent in TLS)
    key_path: Path
    root_ca_path: Path  # the network root CA every peer must chain to
    p2p_host: str
    p2p_port: int
    peers: tuple[PeerConfig, ...]
    frame_bytes_max: int  # largest websocket frame accepted from a peer
    api_host: str
    api_port: int
    proposal_delay_ms: int  # the primary waits this long to batch transactions into a block
    tick_ms: int  # consensus timer granularity
    mempool_capacity_txs: int
    view_timeout_ms: int = VIEW_TIMEOUT_MS_DEFAULT  # used unless the chain parameters set one
    certificate_warning_days: int = CERTIFICATE_WARNING_DAYS_DEFAULT  # status/metrics warn this early
    api_connections_max: int = API_CONNECTIONS_MAX_DEFAULT  # more are refused with 503
    api_request_head_timeout_ms: int = API_REQUEST_HEAD_TIMEOUT_MS_DEFAULT  # first byte to end of head
    api_keepalive_timeout_ms: int = API_KEEPALIVE_TIMEOUT_MS_DEFAULT  # idle connections are closed
    p2p_inbound_connections_max: int = P2P_INBOUND_CONNECTIONS_MAX_DEFAULT
    p2p_inbound_unauthenticated_max: int = P2P_INBOUND_UNAUTHENTICATED_MAX_DEFAULT  # hello not yet accepted
    disk_free_bytes_min: int = DISK_FREE_BYTES_MIN_DEFAULT  # less free under data_dir: not ready
    # What peers dial and clients call (`p2p.advertise`, `api.advertise`); the listen address
    # when not set.  It differs from it when the node binds a wildcard or sits behind NAT.
    p2p_advertise: str = ""
    api_advertise: str = ""


def _get_path(table: Fields, key: str, base: Path) -> Path:
    return (base / table.get_str(key)).resolve()


def _get_address(table: Fields, key: str) -> tuple[str, int]:
    return parse_address(table.get_str(key), table.get_key_path(key))


def _get_int(table: Fields, key: str, *, maximum: int | None = None) -> int:
    """The integer `key` of `table` within its schema's bounds (or `maximum`), else its default."""
    schema = KEYS_BY_PATH[table.get_key_path(key)]
    assert isinstance(schema.default, int), schema  # the schema's own invariant: integers have defaults
    return table.get_int(
        key,
        default=schema.default,
        minimum=schema.minimum,
        maximum=schema.maximum if maximum is None else maximum,
    )


def format_address(host: str, port: int) -> str:
    """`host:port`, IPv6 in brackets: what `parse_address` reads back."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_address(text: str, key: str) -> tuple[str, int]:
    """Split `host:port` (IPv6 as `[::1]:port`); `ConfigError` naming `key` if malformed."""
    host, separator, port_text = text.rpartition(":")
    if not separator or not host or not port_text.isdigit():
        raise ConfigError(f"{key}: expected host:port, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ConfigError(f"{key}: port {port} is outside 1..65535")
    return host, port


def _get_advertise(table: Fields, listen: tuple[str, int]) -> str:
    """`advertise` as host:port (the listen address if absent); a wildcard is refused when
    written (a node that binds one and says nothing was valid before `advertise` existed)."""
    if "advertise" not in table.value:
        return format_address(*listen)
    host, port = _get_address(table, "advertise")
    if host in WILDCARD_HOSTS:
        raise ConfigError(
            f"{table.get_key_path('advertise')}: {host} is a wildcard address that nobody can dial; "
            "set advertise to this node's reachable address"
        )
    return format_address(host, port)


def _read_peers(p2p: Fields, node_id: str) -> tuple[PeerConfig, ...]:
    peers = []
    for table in p2p.get_tables("peers", required=False):
        _refuse_unknown(table, PEER_KEYS)
        host, port = _get_address(table, "address")
        peers.append(PeerConfig(entity_id=table.get_str("id"), host=host, port=port))
    ids = [peer.entity_id for peer in peers]
    if len(set(ids)) != len(ids):
        raise ConfigError("p2p.peers: a peer id is listed twice")
    if node_id in ids:
        raise ConfigError(f"p2p.peers: the node {node_id} lists itself as a peer")
    return tuple(peers)


def _refuse_unknown(table: Fields, known: Sequence[str]) -> None:
    """A key the node does not read is a typo or a setting of another version: refused, named."""
    for key in table.value:
        if key in known:
            continue
        if not table.path:
            raise ConfigError(f"[{key}]: unknown table in node.toml (known tables: {', '.join(known)})")
        raise ConfigError(
            f"{table.get_key_path(key)}: unknown key (known in {table.path}: {', '.join(known)})"
        )


def check_known_keys(document: dict[str, Any]) -> None:
    """Every table and key of `document` is in `NODE_TOML_KEYS` (peer entries: id, address)."""
    top = Fields(document, "")
    _refuse_unknown(top, TABLES)
    for table_name in TABLES:
        table = top.get_table(table_name, required=False)
        _refuse_unknown(table, [key.name for key in NODE_TOML_KEYS if key.table == table_name])


def apply_environment(document: dict[str, Any], environment: Mapping[str, str]) -> dict[str, Any]:
    """`document` with every `CHAINNODE_<TABLE>_<KEY>` of `environment` set over it (a container's
    settings).  Variables of other prefixes (`CHAINNODE_LOG_FORMAT`) are not node.toml's and are
    left alone.  One naming a table of node.toml but none of its keys is a typo or another tool's
    setting (the image's `CHAINNODE_API_PORT`, read by its HEALTHCHECK): it is ignored with a
    warning naming it, rather than refused, so such a setting cannot keep a node from starting."""
    result = {name: dict(value) if isinstance(value, dict) else value for name, value in document.items()}
    for variable, text in sorted(environment.items()):
        table_name, _, key_name = variable.removeprefix(ENVIRONMENT_PREFIX).lower().partition("_")
        if not variable.startswith(ENVIRONMENT_PREFIX) or table_name not in TABLES:
            continue
        schema = KEYS_BY_PATH.get(f"{table_name}.{key_name}")
        if schema is None:
            log.warning("%s is ignored: node.toml has no key %s.%s", variable, table_name, key_name)
            continue
        table = result.setdefault(table_name, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{table_name}: expected a table")
        table[key_name] = _parse_environment_value(schema, variable, text)
    return result


def _parse_environment_value(schema: ConfigKey, variable: str, text: str) -> object:
    if schema.kind is KeyKind.INTEGER:
        try:
            return int(text.replace("_", ""))
        except ValueError:
            raise ConfigError(f"{variable}: expected an integer for {schema.path}, got {text!r}") from None
    if schema.kind is KeyKind.PEERS:
        try:
            return tomllib.loads(f"value = {text}")["value"]
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(
                f"{variable}: expected a TOML array of {{ id = ..., address = ... }}: {error}"
            ) from error
    return text


def read_node_document(config_path: Path, environment: Mapping[str, str]) -> dict[str, Any]:
    """The TOML document of `config_path` with the environment's overrides, its keys checked."""
    try:
        with config_path.open("rb") as file:
            document = tomllib.load(file)
    except OSError as error:
        raise ConfigError(f"cannot read node config {config_path}: {error}") from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"node config {config_path} is not valid TOML: {error}") from error
    document = apply_environment(document, environment)
    check_known_keys(document)
    return document


def load_node_config(path: Path, environment: Mapping[str, str] | None = None) -> NodeConfig:
    """Read `node.toml` with the `CHAINNODE_<TABLE>_<KEY>` overrides of `environment` (the
    process's by default); all paths come back absolute."""
    config_path = Path(path).resolve()
    document = read_node_document(config_path, os.environ if environment is None else environment)
    base = config_path.parent
    top = Fields(document, "")
    node, tls = top.get_table("node"), top.get_table("tls")
    p2p, api = top.get_table("p2p"), top.get_table("api")
    p2p_host, p2p_port = _get_address(p2p, "listen")
    api_host, api_port = _get_address(api, "listen")
    node_id = node.get_str("id")
    return NodeConfig(
        node_id=node_id,
        config_path=config_path,
        data_dir=_get_path(node, "data_dir", base),
        genesis_path=_get_path(node, "genesis", base),
        certificate_path=_get_path(tls, "certificate", base),
        chain_path=_get_path(tls, "chain", base),
        key_path=_get_path(tls, "key", base),
        root_ca_path=_get_path(tls, "root_ca", base),
        p2p_host=p2p_host,
        p2p_port=p2p_port,
        peers=_read_peers(p2p, node_id),
        api_host=api_host,
        api_port=api_port,
        p2p_advertise=_get_advertise(p2p, (p2p_host, p2p_port)),
        api_advertise=_get_advertise(api, (api_host, api_port)),
        **_read_tuning(top),
    )


def _read_tuning(top: Fields) -> dict[str, int]:
    """The optional integers, each within its schema's bounds."""
    p2p, api = top.get_table("p2p"), top.get_table("api")
    consensus = top.get_table("consensus", required=False)
    inbound_connections_max = _get_int(p2p, "inbound_connections_max")
    return {
        "frame_bytes_max": _get_int(p2p, "frame_bytes_max"),
        "p2p_inbound_connections_max": inbound_connections_max,
        "p2p_inbound_unauthenticated_max": _get_int(
            p2p, "inbound_unauthenticated_max", maximum=inbound_connections_max
        ),
        "api_connections_max": _get_int(api, "connections_max"),
        "api_request_head_timeout_ms": _get_int(api, "request_head_timeout_ms"),
        "api_keepalive_timeout_ms": _get_int(api, "keepalive_timeout_ms"),
        "proposal_delay_ms": _get_int(consensus, "proposal_delay_ms"),
        "tick_ms": _get_int(consensus, "tick_ms"),
        "view_timeout_ms": _get_int(consensus, "view_timeout_ms"),
        "mempool_capacity_txs": _get_int(top.get_table("mempool", required=False), "capacity_txs"),
        "certificate_warning_days": _get_int(
            top.get_table("identity", required=False), "certificate_warning_days"
        ),
        "disk_free_bytes_min": _get_int(top.get_table("storage", required=False), "disk_free_bytes_min"),
    }


def _quote(text: str) -> str:
    # A JSON string without non-ASCII escapes is also a valid TOML basic string.
    return json.dumps(text)


def render_node_config(
    *,
    node_id: str,
    p2p_address: str,
    api_address: str,
    peers: list[tuple[str, str]],
    p2p_advertise: str | None = None,
    api_advertise: str | None = None,
    data_dir: str = "data",
    genesis: str = "../../genesis.json",
    root_ca: str = "../../root/ca.pem",
    frame_bytes_max: int = FRAME_BYTES_MAX_DEFAULT,
    proposal_delay_ms: int = PROPOSAL_DELAY_MS_DEFAULT,
    tick_ms: int = TICK_MS_DEFAULT,
    mempool_capacity_txs: int = MEMPOOL_CAPACITY_TXS_DEFAULT,
) -> str:
    """The text of a `node.toml`; `peers` are (entity id, host:port) pairs, the addresses they
    advertise.  An advertise address is written only when it differs from the listen one."""
    p2p_advertise_line = (
        f"advertise = {_quote(p2p_advertise)}  # what peers dial\n"
        if p2p_advertise not in (None, p2p_address)
        else ""
    )
    api_advertise_line = (
        f"advertise = {_quote(api_advertise)}  # what clients call\n"
        if api_advertise not in (None, api_address)
        else ""
    )
    peer_lines = "".join(
        f"  {{ id = {_quote(peer_id)}, address = {_quote(address)} }},\n" for peer_id, address in peers
    )
    return (
        "[node]\n"
        f"id = {_quote(node_id)}  # entity id of this node (its certificate CN)\n"
        f"data_dir = {_quote(data_dir)}  # paths are relative to this file's directory\n"
        f"genesis = {_quote(genesis)}\n"
        "\n[tls]\n"
        'certificate = "cert.pem"  # the node\'s own certificate\n'
        'chain = "chain.pem"  # node certificate followed by its zone CA certificate\n'
        'key = "key.pem"\n'
        f"root_ca = {_quote(root_ca)}\n"
        "\n[p2p]\n"
        f"listen = {_quote(p2p_address)}\n"
        f"{p2p_advertise_line}"
        f"peers = [\n{peer_lines}]\n"
        f"frame_bytes_max = {frame_bytes_max}\n"
        f"inbound_connections_max = {P2P_INBOUND_CONNECTIONS_MAX_DEFAULT}\n"
        f"inbound_unauthenticated_max = {P2P_INBOUND_UNAUTHENTICATED_MAX_DEFAULT}  # hello not yet accepted\n"
        "\n[api]\n"
        f"listen = {_quote(api_address)}\n"
        f"{api_advertise_line}"
        f"connections_max = {API_CONNECTIONS_MAX_DEFAULT}  # more are answered 503 and closed\n"
        f"request_head_timeout_ms = {API_REQUEST_HEAD_TIMEOUT_MS_DEFAULT}  # first byte to end of head\n"
        f"keepalive_timeout_ms = {API_KEEPALIVE_TIMEOUT_MS_DEFAULT}  # idle connections are closed\n"
        "\n[consensus]\n"
        f"proposal_delay_ms = {proposal_delay_ms}  # primary batches transactions this long\n"
        f"tick_ms = {tick_ms}\n"
        "\n[mempool]\n"
        f"capacity_txs = {mempool_capacity_txs}\n"
        "\n[storage]\n"
        f"disk_free_bytes_min = {DISK_FREE_BYTES_MIN_DEFAULT}  # less free under data_dir: /readyz 503\n"
    )
