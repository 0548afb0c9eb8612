"""The schema of `node.toml`: every key with its kind, bounds, default and meaning.

One table, `NODE_TOML_KEYS`, is what `chainnode.node.config` checks a file and the environment
against (a table or key that is not in it is refused, naming it), what the environment
variables are named after (`ConfigKey.variable`: `CHAINNODE_<TABLE>_<KEY>`) and what the
README's reference is printed from (`render_config_reference`), so the three cannot disagree.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

FRAME_BYTES_MAX_DEFAULT = 16 * 1024 * 1024
PROPOSAL_DELAY_MS_DEFAULT = 20
TICK_MS_DEFAULT = 10
MEMPOOL_CAPACITY_TXS_DEFAULT = 100_000
VIEW_TIMEOUT_MS_DEFAULT = 2_000
CERTIFICATE_WARNING_DAYS_DEFAULT = 30
# Connection limits (see the docstring of chainnode.node.config).  256 API connections serve many clients with
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


class KeyKind(enum.Enum):
    """What a `node.toml` value is; how an environment variable's text is read for it."""

    STRING = "string"
    PATH = "path"  # a string, relative to the directory of node.toml
    ADDRESS = "host:port"  # IPv6 as [::1]:port
    INTEGER = "integer"
    PEERS = "list of {id, address}"  # from the environment: a TOML inline array


@dataclass(frozen=True, slots=True)
class ConfigKey:
    """One key of `node.toml`: the schema the loader checks, the environment overrides and the
    reference table (`render_config_reference`) are all read from `NODE_TOML_KEYS`."""

    table: str
    name: str
    kind: KeyKind
    meaning: str
    default: int | str | None = None  # None: required, unless `optional`
    minimum: int = 0
    maximum: int = 0
    optional: bool = False  # may be absent with no default (advertise, peers)

    @property
    def path(self) -> str:
        return f"{self.table}.{self.name}"

    @property
    def variable(self) -> str:
        """The environment variable that overrides it: CHAINNODE_<TABLE>_<KEY>."""
        return f"{ENVIRONMENT_PREFIX}{self.table.upper()}_{self.name.upper()}"


ENVIRONMENT_PREFIX = "CHAINNODE_"
_K = ConfigKey
_S, _P, _A, _I = KeyKind.STRING, KeyKind.PATH, KeyKind.ADDRESS, KeyKind.INTEGER
NODE_TOML_KEYS: tuple[ConfigKey, ...] = (
    _K("node", "id", _S, "Entity id of this node (its certificate's CN)."),
    _K("node", "data_dir", _P, "The node's LevelDB ledger and state (created if absent)."),
    _K("node", "genesis", _P, "The network's genesis.json."),
    _K("tls", "certificate", _P, "The node's own certificate (PEM)."),
    _K("tls", "chain", _P, "The node's certificate followed by its zone CA's, sent in TLS."),
    _K("tls", "key", _P, "The node's Ed25519 private key (PEM)."),
    _K("tls", "root_ca", _P, "The network root CA that every peer must chain to."),
    _K("p2p", "listen", _A, "What the node binds for peers (0.0.0.0 or [::]: every interface)."),
    _K("p2p", "advertise", _A, "What peers dial (default: listen; never a wildcard).", optional=True),
    _K("p2p", "peers", KeyKind.PEERS, "The other nodes: id and advertised p2p address.", optional=True),
    _K(
        "p2p",
        "frame_bytes_max",
        _I,
        "Largest frame taken from a peer.",
        FRAME_BYTES_MAX_DEFAULT,
        1024,
        1 << 30,
    ),
    _K(
        "p2p",
        "inbound_connections_max",
        _I,
        "Inbound peer connections open at once.",
        P2P_INBOUND_CONNECTIONS_MAX_DEFAULT,
        1,
        100_000,
    ),
    _K(
        "p2p",
        "inbound_unauthenticated_max",
        _I,
        "Of those, connections whose hello is not yet accepted (at most inbound_connections_max).",
        P2P_INBOUND_UNAUTHENTICATED_MAX_DEFAULT,
        1,
        100_000,
    ),
    _K("api", "listen", _A, "What the node binds for the HTTP API."),
    _K("api", "advertise", _A, "What clients call (default: listen; never a wildcard).", optional=True),
    _K(
        "api",
        "connections_max",
        _I,
        "API connections open at once; one more is answered 503 and closed.",
        API_CONNECTIONS_MAX_DEFAULT,
        1,
        1_000_000,
    ),
    _K(
        "api",
        "request_head_timeout_ms",
        _I,
        "From a request head's first byte to its end (slowloris).",
        API_REQUEST_HEAD_TIMEOUT_MS_DEFAULT,
        100,
        600_000,
    ),
    _K(
        "api",
        "keepalive_timeout_ms",
        _I,
        "How long an idle connection is kept.",
        API_KEEPALIVE_TIMEOUT_MS_DEFAULT,
        100,
        86_400_000,
    ),
    _K(
        "consensus",
        "proposal_delay_ms",
        _I,
        "The primary waits this long to batch transactions into a block.",
        PROPOSAL_DELAY_MS_DEFAULT,
        0,
        60_000,
    ),
    _K("consensus", "tick_ms", _I, "Consensus timer granularity.", TICK_MS_DEFAULT, 1, 10_000),
    _K(
        "consensus",
        "view_timeout_ms",
        _I,
        "A silent primary is replaced after this long, unless the chain parameters set it.",
        VIEW_TIMEOUT_MS_DEFAULT,
        50,
        600_000,
    ),
    _K(
        "mempool",
        "capacity_txs",
        _I,
        "Transactions the mempool holds.",
        MEMPOOL_CAPACITY_TXS_DEFAULT,
        1,
        100_000_000,
    ),
    _K(
        "identity",
        "certificate_warning_days",
        _I,
        "Status and /metrics list certificates expiring within this many days.",
        CERTIFICATE_WARNING_DAYS_DEFAULT,
        0,
        3650,
    ),
    _K(
        "storage",
        "disk_free_bytes_min",
        _I,
        "Less free space under data_dir: a warning and /readyz 503 (0: off; a full disk always stops "
        "writes).",
        DISK_FREE_BYTES_MIN_DEFAULT,
        0,
        1 << 50,
    ),
)
KEYS_BY_PATH = {key.path: key for key in NODE_TOML_KEYS}
TABLES = tuple(dict.fromkeys(key.table for key in NODE_TOML_KEYS))
PEER_KEYS = ("id", "address")


def render_config_reference() -> str:
    """The reference of every node.toml key, as a Markdown table (for the README)."""
    rows = ["| key | type | default | environment variable | meaning |", "| --- | --- | --- | --- | --- |"]
    for key in NODE_TOML_KEYS:
        absent = "(none)" if key.optional else "required"
        default = absent if key.default is None else f"`{key.default}`"
        bounds = f" ({key.minimum}..{key.maximum})" if key.kind is KeyKind.INTEGER else ""
        cells = (
            f"`[{key.table}] {key.name}`",
            f"{key.kind.value}{bounds}",
            default,
            f"`{key.variable}`",
            key.meaning,
        )
        rows.append(f"| {' | '.join(cells)} |")
    return "\n".join(rows) + "\n"
