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

The loader checks shapes and ranges only.  Whether the certificate, key and genesis files exist
and agree is checked by whoever opens them (`identity`, `genesis`, the TLS setup).
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path

from chainnode.core.errors import ConfigError
from chainnode.core.fields import Fields

FRAME_BYTES_MAX_DEFAULT = 16 * 1024 * 1024
PROPOSAL_DELAY_MS_DEFAULT = 20
TICK_MS_DEFAULT = 10
MEMPOOL_CAPACITY_TXS_DEFAULT = 100_000
VIEW_TIMEOUT_MS_DEFAULT = 2_000
CERTIFICATE_WARNING_DAYS_DEFAULT = 30
# Connection limits (see the module docstring).  256 API connections serve many clients with
# keep-alive connections while a flood of idle ones costs at most 256 descriptors; a request
# head is a few hundred bytes, so 10 s for it is generous on any link; 60 s of keep-alive
# outlasts the usual client pools' own idle timeouts (aiohttp's: 15 s), so a server close
# rarely races a client's next request.  An inbound peer connection is one per peer (a
# network has tens of validators and observers), and an honest hello takes milliseconds.
API_CONNECTIONS_MAX_DEFAULT = 256
API_REQUEST_HEAD_TIMEOUT_MS_DEFAULT = 10_000
API_KEEPALIVE_TIMEOUT_MS_DEFAULT = 60_000
P2P_INBOUND_CONNECTIONS_MAX_DEFAULT = 128
P2P_INBOUND_UNAUTHENTICATED_MAX_DEFAULT = 16
DISK_FREE_BYTES_MIN_DEFAULT = 256 * 1024 * 1024
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


def _read_peers(p2p: Fields) -> tuple[PeerConfig, ...]:
    peers = []
    for table in p2p.get_tables("peers", required=False):
        host, port = _get_address(table, "address")
        peers.append(PeerConfig(entity_id=table.get_str("id"), host=host, port=port))
    ids = [peer.entity_id for peer in peers]
    if len(set(ids)) != len(ids):
        raise ConfigError("p2p.peers: a peer id is listed twice")
    return tuple(peers)


def load_node_config(path: Path) -> NodeConfig:
    """Read `node.toml`; all paths come back absolute."""
    config_path = Path(path).resolve()
    try:
        with config_path.open("rb") as file:
            document = tomllib.load(file)
    except OSError as error:
        raise ConfigError(f"cannot read node config {config_path}: {error}") from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"node config {config_path} is not valid TOML: {error}") from error
    base = config_path.parent
    top = Fields(document, "")
    node = top.get_table("node")
    tls = top.get_table("tls")
    p2p = top.get_table("p2p")
    api = top.get_table("api")
    consensus = top.get_table("consensus", required=False)
    mempool = top.get_table("mempool", required=False)
    identity_table = top.get_table("identity", required=False)
    storage = top.get_table("storage", required=False)
    p2p_host, p2p_port = _get_address(p2p, "listen")
    api_host, api_port = _get_address(api, "listen")
    node_id = node.get_str("id")
    peers = _read_peers(p2p)
    if any(peer.entity_id == node_id for peer in peers):
        raise ConfigError(f"p2p.peers: the node {node_id} lists itself as a peer")
    inbound_connections_max = p2p.get_int(
        "inbound_connections_max", default=P2P_INBOUND_CONNECTIONS_MAX_DEFAULT, minimum=1, maximum=100_000
    )
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
        peers=peers,
        frame_bytes_max=p2p.get_int(
            "frame_bytes_max", default=FRAME_BYTES_MAX_DEFAULT, minimum=1024, maximum=1 << 30
        ),
        api_host=api_host,
        api_port=api_port,
        proposal_delay_ms=consensus.get_int(
            "proposal_delay_ms", default=PROPOSAL_DELAY_MS_DEFAULT, minimum=0, maximum=60_000
        ),
        tick_ms=consensus.get_int("tick_ms", default=TICK_MS_DEFAULT, minimum=1, maximum=10_000),
        mempool_capacity_txs=mempool.get_int(
            "capacity_txs", default=MEMPOOL_CAPACITY_TXS_DEFAULT, minimum=1, maximum=100_000_000
        ),
        view_timeout_ms=consensus.get_int(
            "view_timeout_ms", default=VIEW_TIMEOUT_MS_DEFAULT, minimum=50, maximum=600_000
        ),
        certificate_warning_days=identity_table.get_int(
            "certificate_warning_days", default=CERTIFICATE_WARNING_DAYS_DEFAULT, minimum=0, maximum=3650
        ),
        api_connections_max=api.get_int(
            "connections_max", default=API_CONNECTIONS_MAX_DEFAULT, minimum=1, maximum=1_000_000
        ),
        api_request_head_timeout_ms=api.get_int(
            "request_head_timeout_ms",
            default=API_REQUEST_HEAD_TIMEOUT_MS_DEFAULT,
            minimum=100,
            maximum=600_000,
        ),
        api_keepalive_timeout_ms=api.get_int(
            "keepalive_timeout_ms", default=API_KEEPALIVE_TIMEOUT_MS_DEFAULT, minimum=100, maximum=86_400_000
        ),
        p2p_inbound_connections_max=inbound_connections_max,
        p2p_inbound_unauthenticated_max=p2p.get_int(
            "inbound_unauthenticated_max",
            default=P2P_INBOUND_UNAUTHENTICATED_MAX_DEFAULT,
            minimum=1,
            maximum=inbound_connections_max,
        ),
        disk_free_bytes_min=storage.get_int(
            "disk_free_bytes_min", default=DISK_FREE_BYTES_MIN_DEFAULT, minimum=0, maximum=1 << 50
        ),
        p2p_advertise=_get_advertise(p2p, (p2p_host, p2p_port)),
        api_advertise=_get_advertise(api, (api_host, api_port)),
    )


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
