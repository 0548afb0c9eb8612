"""Peer-to-peer networking: a mutual-TLS websocket transport between the nodes of a static peer list."""

from p2p.transport import PeerAddress, Transport, TransportConfig

__all__ = ["PeerAddress", "Transport", "TransportConfig"]
