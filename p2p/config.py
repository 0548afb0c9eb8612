"""The transport's static configuration: where the peers are, our identity and the limits.

Pure data and its validation, shared by the listener (`p2p.transport`) and the dialers
(`p2p.outbound`); nothing here opens a socket.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from chainnode.core.errors import ConfigError


@dataclass(frozen=True, slots=True)
class PeerAddress:
    """Where to dial a peer."""

    entity_id: str
    """The entity id the peer's certificate must name in its CN."""
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class TransportConfig:
    """Static configuration of one node's transport."""

    entity_id: str
    """Our own entity id; the CN of our certificate."""
    chain_id: str
    genesis_hash: bytes
    listen_host: str
    listen_port: int
    """0 binds an ephemeral port; read it back with `Transport.get_listen_port`."""
    peers: tuple[PeerAddress, ...]
    chain_path: Path
    """PEM: our certificate followed by our zone authority's certificate."""
    key_path: Path
    root_ca_path: Path
    frame_bytes_max: int = 16 * 1024 * 1024
    queue_messages_max: int = 10_000
    handshake_timeout_ms: int = 5_000
    backoff_ms_min: int = 100
    backoff_ms_max: int = 5_000
    heartbeat_ms: int = 10_000
    """Websocket ping interval; a connection whose pong is missing is closed."""
    inbound_connections_max: int = 128
    """Inbound connections open at once (past TLS); one more is refused with 503."""
    inbound_unauthenticated_max: int = 16
    """Inbound connections open at once whose hello is not yet accepted."""


def check_config(config: TransportConfig) -> None:
    """Raise `ConfigError` unless `config` can run a transport."""
    peer_ids = [peer.entity_id for peer in config.peers]
    if len(set(peer_ids)) != len(peer_ids):
        raise ConfigError("the peer list names an entity more than once")
    if config.entity_id in peer_ids:
        raise ConfigError("the peer list names this node itself")
    if config.frame_bytes_max <= 0 or config.queue_messages_max <= 0:
        raise ConfigError("frame_bytes_max and queue_messages_max must be positive")
    if not 0 < config.backoff_ms_min <= config.backoff_ms_max:
        raise ConfigError("backoff must satisfy 0 < backoff_ms_min <= backoff_ms_max")
    if config.handshake_timeout_ms <= 0 or config.heartbeat_ms <= 0:
        raise ConfigError("handshake_timeout_ms and heartbeat_ms must be positive")
