"""Peer-to-peer networking: a mutual-TLS websocket transport between the nodes of a static peer list.

`p2p.handshake` is the application handshake as a pure object; `p2p.transport` (the listener
and the public face) and `p2p.outbound` (one queued, reconnecting dialer per peer) do the I/O.
"""

from p2p.config import PeerAddress, TransportConfig
from p2p.transport import Transport

__all__ = ["PeerAddress", "Transport", "TransportConfig"]
