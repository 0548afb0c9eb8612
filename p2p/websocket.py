"""What either end of a p2p connection does with its websocket: run the handshake, close it.

The handshake's rules live in the pure `p2p.handshake`; `run_handshake` is the I/O that feeds
it on one aiohttp websocket, client or server: the entity id TLS proved, the frames that
arrive (each bounded by the handshake timeout), the node's verdict.  The listener
(`p2p.transport`) and the dialers (`p2p.outbound`) share it, and `close_socket`, which closes
with a code and a reason cut to fit a close frame.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web

from chainnode.core.errors import IdentityError, InvariantError
from p2p.config import PeerAddress
from p2p.handshake import CLOSE_CODE_PROTOCOL, Accept, AskAuthorization, AwaitFrame, Handshake, Refuse
from p2p.tls import get_entity_id, get_peer_certificate_der

# The transport's one logger, whichever of its modules writes.
logger = logging.getLogger("p2p.transport")

P2P_PATH = "/p2p"
# A close frame carries at most 125 payload bytes, two of which are the code.
CLOSE_REASON_BYTES_MAX = 123
# How long closing a websocket may wait for the peer's close frame.
CLOSE_TIMEOUT_S = 2.0

Authorize = Callable[[str, bytes], "str | None"]
# Either end's websocket; both read, write and close the same way.
Socket = web.WebSocketResponse | aiohttp.ClientWebSocketResponse
# How a handshake ended: its own verdict, or the message that ended the connection first.
HandshakeEnd = Accept | Refuse | aiohttp.WSMessage


def compute_close_reason(reason: str) -> bytes:
    """The UTF-8 reason truncated to fit a close frame without splitting a character."""
    return reason.encode("utf-8")[:CLOSE_REASON_BYTES_MAX].decode("utf-8", "ignore").encode()


def format_url(peer: PeerAddress) -> str:
    host = f"[{peer.host}]" if ":" in peer.host else peer.host
    return f"wss://{host}:{peer.port}{P2P_PATH}"


def read_certificate_id(certificate_der: bytes | None) -> tuple[str | None, str | None]:
    """The entity id a verified peer certificate names, or None and why it names none."""
    if certificate_der is None:
        return None, None
    try:
        return get_entity_id(certificate_der), None
    except IdentityError as error:
        return None, error.message


async def run_handshake(
    handshake: Handshake, ws: Socket, ssl_object: Any, *, authorize: Authorize, timeout_s: float
) -> HandshakeEnd:
    """Feed `handshake` what arrives on `ws` until it accepts or refuses, or the peer leaves.

    `authorize` must not raise (the transport's wrapper turns a failure into a refusal).
    Sending the reply of an `Accept` is left to the caller, which has limits to lift first.
    """
    certificate_der = get_peer_certificate_der(ssl_object)
    entity_id, problem = read_certificate_id(certificate_der)
    action = handshake.receive_certificate(entity_id, problem=problem)
    while True:
        if isinstance(action, AskAuthorization):
            if certificate_der is None:
                raise InvariantError("the handshake asked about a peer without a certificate")
            action = handshake.receive_verdict(authorize(action.entity_id, certificate_der))
        elif isinstance(action, AwaitFrame):
            if action.send is not None:
                await ws.send_bytes(action.send)
            try:
                message = await ws.receive(timeout=timeout_s)
            except TimeoutError:
                action = handshake.receive_timeout()
                continue
            if message.type not in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
                return message
            action = handshake.receive_frame(message.data)
        else:
            return action


async def close_socket(ws: Socket, code: int, reason: str) -> None:
    """Close a client or server websocket with a code and a truncated reason."""
    with contextlib.suppress(ConnectionError, aiohttp.ClientError, RuntimeError):
        await ws.close(code=code, message=compute_close_reason(reason))


def count_violation(metrics: dict[str, int], peer_id: str, what: str) -> None:
    """Count and log a peer's breach of the protocol after its handshake."""
    metrics["protocol_violations"] += 1
    logger.warning("p2p: closing the connection with %s, which %s", peer_id, what)


async def read_frames(
    ws: Socket,
    peer_id: str,
    deliver: Callable[[str, bytes], bool],
    metrics: dict[str, int],
    *,
    errors_are_violations: bool,
    is_stopping: Callable[[], bool] = lambda: False,
) -> None:
    """Hand each binary frame of a handshaken connection to `deliver` until the connection ends.

    `deliver` answers False for an invalid message: the connection is closed (4400), as it is for
    a text frame, which is counted as a violation.  A websocket error ends the reading; it counts
    as a violation when `errors_are_violations` (on a connection the peer dialed, where it is the
    peer's framing that broke), and is logged otherwise.
    """
    while not is_stopping():
        message = await ws.receive()
        if message.type is aiohttp.WSMsgType.BINARY:
            metrics["frames_received"] += 1
            if not deliver(peer_id, message.data):
                await close_socket(ws, CLOSE_CODE_PROTOCOL, "invalid message")
                return
        elif message.type is aiohttp.WSMsgType.TEXT:
            count_violation(metrics, peer_id, "sent a text frame")
            await close_socket(ws, CLOSE_CODE_PROTOCOL, "text frames are refused")
            return
        else:
            if message.type is aiohttp.WSMsgType.ERROR:
                if errors_are_violations:
                    count_violation(metrics, peer_id, f"broke the websocket protocol: {message.data}")
                else:
                    logger.info("p2p: connection with %s failed: %r", peer_id, message.data)
            return
