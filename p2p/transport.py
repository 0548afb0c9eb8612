"""The p2p transport: aiohttp websockets over mutual TLS between the nodes of a static peer list.

Theory of operation
-------------------
Each node listens on its p2p port (HTTPS, websocket route `/p2p`) and dials
every peer in its static list.  Application messages flow on the dialer's
connection: A -> B travels on the connection A dialed, B -> A on the one B
dialed.  There is therefore no duplicate-connection logic, and each direction
reconnects on its own.  A listener sends application frames only to a peer it
does not dial (one not in its static list, such as an observer registered after
the list was written): those go back on the peer's own connection
(`p2p.outbound.ReturnPath`), so a node can join a running network by dialing it,
without a change to anyone's list.  The on-chain peer policy (`authorize`) decides
who may connect either way.  This module is the listener and the public face;
`p2p.outbound` holds the dialers, with their queues and reconnects.

Trust is established in two layers:

1. TLS 1.3 with certificates on both sides, each verified against the network
   root CA (`p2p.tls`).  A client without a certificate, or with one from
   another root, is refused inside OpenSSL and never reaches this module; the
   failure is logged and counted (`tls_refused`).
2. The application handshake on the websocket (`p2p.handshake`): the dialer's
   hello names chain id, genesis hash and entity id; the listener checks them
   against its own, against the client certificate and against `authorize`,
   and answers with an ack or a close (4403 refused, 4400 malformed).  The
   handshake is a pure object; the transport only feeds it what arrives (the
   entity id TLS proved, frames, `authorize`'s verdict, the timeout) and does
   what it returns (`p2p.websocket.run_handshake`).  `handshakes_refused`
   counts the peers either end refused; `handshakes_failed` counts the dials
   whose handshake did not complete, whoever ended it.

After the handshake the listener delivers every binary frame to
`on_message(peer_id, data)`.  A text frame, an oversize frame or a
`RemoteError` raised by `on_message` closes that one connection, never the node.
Any other exception from a callback is a local bug: it is logged and counted,
and the connection stays up.

Tasks: one dialer task per peer for the transport's lifetime, two tasks per
live outbound connection, aiohttp's handler task per inbound connection.
None per message.

Inbound limits (`p2p.http_guard`), so that a peer past TLS, or many, cannot
hold the listener's descriptors and memory before it has proved who it is: at most
`inbound_connections_max` inbound connections are open at once and at most
`inbound_unauthenticated_max` of them before their hello is accepted (one more is
answered 503 and closed, counted in `connections_refused`); the upgrade request's
head must be complete within `handshake_timeout_ms` of its first byte, and a
connection that sends no request at all is closed after as long
(`request_heads_timed_out`); and until the hello is accepted the websocket reads at
most `PRE_HELLO_BYTES_MAX` bytes -- one hello at its largest, with room for its frame
header and a few control frames -- so a frame of up to `frame_bytes_max` before the
hello is not read but closes the connection (`unauthenticated_bytes_exceeded`).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp
from aiohttp import web

from chainnode.core.errors import ConfigError, RemoteError
from chainnode.core.tags import TAG_HELLO, TAG_HELLO_ACK
from p2p.config import PeerAddress, TransportConfig, check_config
from p2p.handshake import (
    CLOSE_CODE_PROTOCOL,
    CLOSE_CODE_REFUSED,
    PRE_HELLO_BYTES_MAX,
    Accept,
    Handshake,
    Hello,
    Refuse,
    decode_hello,
    decode_hello_ack,
    encode_hello,
    encode_hello_ack,
)
from p2p.http_guard import (
    COUNTER_NAMES,
    ConnectionGuard,
    ConnectionLimits,
    GuardedAppRunner,
    mark_authenticated,
)
from p2p.outbound import OutboundPeer, ReturnPath, compute_backoff_delay_ms
from p2p.tls import create_client_context, create_server_context
from p2p.websocket import (
    CLOSE_REASON_BYTES_MAX,
    CLOSE_TIMEOUT_S,
    P2P_PATH,
    Authorize,
    Socket,
    close_socket,
    compute_close_reason,
    count_violation,
    read_frames,
    run_handshake,
)

# What callers and tests import from here, including names now defined in the modules the
# transport was split into (the handshake's wire format above all).
__all__ = [
    "CLOSE_CODE_PROTOCOL",
    "CLOSE_CODE_REFUSED",
    "CLOSE_REASON_BYTES_MAX",
    "P2P_PATH",
    "PRE_HELLO_BYTES_MAX",
    "TAG_HELLO",
    "TAG_HELLO_ACK",
    "Hello",
    "PeerAddress",
    "Transport",
    "TransportConfig",
    "compute_backoff_delay_ms",
    "compute_close_reason",
    "decode_hello",
    "decode_hello_ack",
    "encode_hello",
    "encode_hello_ack",
]

logger = logging.getLogger(__name__)

# Header lines of the upgrade request (aiohttp's client sends ten; aiohttp's server would
# take 128 of 8 KiB each from a peer that has not said who it is yet).
_UPGRADE_HEADERS_MAX = 32

_METRIC_NAMES = (
    "frames_sent",
    "frames_received",
    "frames_dropped",
    "handshakes_refused",
    "handshakes_failed",
    "dials_failed",
    "tls_refused",
    "protocol_violations",
    "connections_opened",
    "connections_accepted",
    "callback_errors",
    *COUNTER_NAMES,  # the inbound limits' (p2p.http_guard)
)

OnMessage = Callable[[str, bytes], None]
OnConnected = Callable[[str], None]


class Transport:
    """Authenticated, bounded, reconnecting message transport to a static set of peers."""

    def __init__(
        self,
        config: TransportConfig,
        *,
        authorize: Authorize,
        on_message: OnMessage,
        on_connected: OnConnected | None = None,
        rng: random.Random | None = None,
    ) -> None:
        check_config(config)
        self._config = config
        self._own_hello = Hello(config.chain_id, config.genesis_hash, config.entity_id)
        self._authorize = authorize
        self._on_message = on_message
        self._on_connected = on_connected
        self.metrics: dict[str, int] = dict.fromkeys(_METRIC_NAMES, 0)
        shared_rng = rng if rng is not None else random.Random()
        self._outbound: dict[str, OutboundPeer] = {
            peer.entity_id: OutboundPeer(
                peer,
                config,
                own_hello=self._own_hello,
                authorize=self._get_authorization_refusal,
                on_connected=self._notify_connected,
                on_frame=self._deliver,
                metrics=self.metrics,
                rng=shared_rng,
            )
            for peer in config.peers
        }
        self._inbound: dict[str, web.WebSocketResponse] = {}
        self._return_paths: dict[str, ReturnPath] = {}  # inbound peers we do not dial
        self._inbound_sockets: set[web.WebSocketResponse] = set()
        self._dialers: dict[str, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._listen_port: int | None = None
        self._stopping = False
        self._inbound_guard = ConnectionGuard(
            ConnectionLimits(
                connections_max=config.inbound_connections_max,
                request_head_timeout_ms=config.handshake_timeout_ms,
                # No request is kept alive here: a connection either upgrades or goes.
                keepalive_timeout_ms=config.handshake_timeout_ms,
                unauthenticated_max=config.inbound_unauthenticated_max,
                unauthenticated_bytes_max=PRE_HELLO_BYTES_MAX,
            ),
            name="p2p",
            counters=self.metrics,
        )

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Bind the listener, then start one dialer per peer."""
        assert self._runner is None, "a transport starts once"
        config = self._config
        server_context = create_server_context(
            config.chain_path,
            config.key_path,
            config.root_ca_path,
            on_handshake_error=self._on_tls_error,
        )
        client_context = create_client_context(config.chain_path, config.key_path, config.root_ca_path)
        app = web.Application()
        app.router.add_get(P2P_PATH, self._handle_inbound)
        runner = GuardedAppRunner(
            app,
            self._inbound_guard,
            shutdown_timeout=CLOSE_TIMEOUT_S,
            access_log=None,
            max_headers=_UPGRADE_HEADERS_MAX,
        )
        await runner.setup()
        site = web.TCPSite(runner, config.listen_host, config.listen_port, ssl_context=server_context)
        try:
            await site.start()
        except OSError as error:
            await runner.cleanup()
            raise ConfigError(
                f"cannot listen on {config.listen_host}:{config.listen_port}: {error}"
            ) from error
        self._runner = runner
        self._listen_port = int(runner.addresses[0][1])
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_context, limit=0))
        self._session = session
        for peer_id, outbound in self._outbound.items():
            self._dialers[peer_id] = asyncio.create_task(outbound.run(session), name=f"p2p-dial-{peer_id}")
        logger.info(
            "p2p: %s listening on %s:%d, dialing %d peers",
            config.entity_id,
            config.listen_host,
            self._listen_port,
            len(config.peers),
        )

    async def stop(self) -> None:
        """Close every connection and wait for every task this transport started."""
        self._stopping = True
        dialers = list(self._dialers.values())
        for task in dialers:
            task.cancel()
        await asyncio.gather(*dialers, return_exceptions=True)
        self._dialers.clear()
        await asyncio.gather(
            *(
                close_socket(ws, aiohttp.WSCloseCode.GOING_AWAY, "node stopping")
                for ws in list(self._inbound_sockets)
            ),
            return_exceptions=True,
        )
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()
            self._session = None
        background = list(self._background)
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)

    def get_listen_port(self) -> int:
        """The bound listening port (useful with `listen_port=0`)."""
        assert self._listen_port is not None, "the transport is not started"
        return self._listen_port

    # ------------------------------------------------------------ public API

    def send(self, peer_id: str, data: bytes, *, first: bool = False) -> bool:
        """Queue `data` for `peer_id` without blocking; False (and counted) if dropped.  `first`:
        ahead of all that waits for a peer we dial (see `p2p.outbound.OutboundPeer.offer`)."""
        path: OutboundPeer | ReturnPath | None = self._outbound.get(peer_id) or self._return_paths.get(
            peer_id
        )
        if path is None or len(data) > self._config.frame_bytes_max or not path.offer(data, first=first):
            self.metrics["frames_dropped"] += 1
            return False
        return True

    def broadcast(self, data: bytes) -> None:
        """Queue `data` for every peer in the static list and every peer we send back to."""
        for peer_id in [*self._outbound, *self._return_paths]:
            self.send(peer_id, data)

    def connected_peers(self) -> list[str]:
        """Peers we can send to: a live outbound connection that completed its handshake, or a
        handshaken inbound one of a peer we do not dial."""
        live = [peer_id for peer_id, outbound in self._outbound.items() if outbound.ws is not None]
        return sorted([*live, *self._return_paths])

    def inbound_peers(self) -> list[str]:
        """Peers whose inbound connection to us completed its handshake."""
        return sorted(self._inbound)

    def get_queue_length(self, peer_id: str) -> int:
        """How many messages wait for `peer_id` (0 for an unknown peer)."""
        path: OutboundPeer | ReturnPath | None = self._outbound.get(peer_id) or self._return_paths.get(
            peer_id
        )
        return 0 if path is None else path.queue.qsize()

    def disconnect(self, peer_id: str) -> None:
        """Close both connections with `peer_id`.

        The dialer redials after its backoff; a peer that `authorize` now refuses
        stays out.  Queued messages stay queued.
        """
        outbound = self._outbound.get(peer_id)
        sockets: list[Socket | None] = [
            None if outbound is None else outbound.ws,
            self._inbound.get(peer_id),
        ]
        for ws in sockets:
            if ws is not None:
                self._spawn(close_socket(ws, CLOSE_CODE_REFUSED, "disconnected"))

    # ------------------------------------------------------------ inbound

    async def _handle_inbound(self, request: web.Request) -> web.StreamResponse:
        config = self._config
        ws = web.WebSocketResponse(
            max_msg_size=config.frame_bytes_max,
            compress=False,
            heartbeat=config.heartbeat_ms / 1000,
            autoping=True,
        )
        await ws.prepare(request)
        self._inbound_sockets.add(ws)
        try:
            peer_id = await self._accept_hello(ws, request)
            if peer_id is not None:
                await self._serve_inbound(peer_id, ws)
        except ConnectionError as error:
            # The peer is gone while we wrote to it: aiohttp raises ClientConnectionResetError
            # (a ConnectionResetError) from `receive()` when it answers a buffered ping on a
            # transport that is closing, from `send_bytes` for the hello ack, and from `close`.
            # A node resumed after a stop (SIGSTOP, a long pause) meets exactly this: its
            # heartbeat gave up on the peer meanwhile and closed the transport, and the peer's
            # pings were still waiting to be read.  Not a bug of ours: said once, at INFO.
            logger.info("p2p: inbound connection lost while writing to it: %s", error)
        finally:
            self._inbound_sockets.discard(ws)
            if not ws.closed:
                await close_socket(ws, 1000, "")  # guarded: the peer may reset mid-close
        return ws

    async def _accept_hello(self, ws: web.WebSocketResponse, request: web.Request) -> str | None:
        """Run the listener's side of the handshake; the peer's id, or None if refused."""
        transport = request.transport
        end = await run_handshake(
            Handshake.listener(self._own_hello),
            ws,
            None if transport is None else transport.get_extra_info("ssl_object"),
            authorize=self._get_authorization_refusal,
            timeout_s=self._config.handshake_timeout_ms / 1000,
        )
        if isinstance(end, Accept):
            # Lifted before the ack goes out: the peer may send a full frame as soon as it has it.
            mark_authenticated(request)
            if end.reply is not None:
                await ws.send_bytes(end.reply)
            return end.peer_id
        if isinstance(end, Refuse):
            self.metrics["handshakes_refused"] += 1
            logger.warning("p2p: refused an inbound handshake (%d): %s", end.close_code, end.reason)
            await close_socket(ws, end.close_code, end.reason)
        return None  # refused, or the peer left first

    async def _serve_inbound(self, peer_id: str, ws: web.WebSocketResponse) -> None:
        """Deliver the binary frames of an accepted inbound connection until it closes; a peer we
        do not dial is sent to on this connection while it lasts."""
        previous = self._inbound.get(peer_id)
        if previous is not None:
            # The peer redialed; its old connection is dead or dying.
            self._spawn(close_socket(previous, 1000, "superseded"))
        self._inbound[peer_id] = ws
        self.metrics["connections_accepted"] += 1
        logger.info("p2p: %s accepted inbound connection from %s", self._config.entity_id, peer_id)
        sends_back = peer_id not in self._outbound
        paths = self._return_paths
        try:
            async with ReturnPath.open_if(sends_back, peer_id, ws, self._config, self.metrics, paths):
                if sends_back:
                    self._notify_connected(peer_id)
                stopping = lambda: self._stopping  # noqa: E731
                await read_frames(
                    ws, peer_id, self._deliver, self.metrics, errors_are_violations=True, is_stopping=stopping
                )
        finally:
            if self._inbound.get(peer_id) is ws:
                del self._inbound[peer_id]
            logger.info("p2p: inbound connection from %s closed", peer_id)

    def _on_tls_error(self, error: Exception) -> None:
        # Called from inside asyncio's TLS layer: count and log, never raise.
        self.metrics["tls_refused"] += 1
        logger.warning("p2p: refused a TLS handshake: %s", error)

    # ------------------------------------------------------------ the node's callbacks, guarded

    def _deliver(self, peer_id: str, data: bytes) -> bool:
        """Hand one frame to the node; False when the peer is to blame for a bad message."""
        try:
            self._on_message(peer_id, data)
        except RemoteError as error:
            count_violation(self.metrics, peer_id, f"sent an invalid message: {error}")
            return False
        except Exception:
            self.metrics["callback_errors"] += 1
            logger.exception("p2p: on_message failed for a frame from %s", peer_id)
        return True

    def _get_authorization_refusal(self, entity_id: str, certificate_der: bytes) -> str | None:
        try:
            return self._authorize(entity_id, certificate_der)
        except Exception:
            self.metrics["callback_errors"] += 1
            logger.exception("p2p: authorize failed for %s", entity_id)
            return "authorization check failed"

    def _notify_connected(self, peer_id: str) -> None:
        if self._on_connected is None:
            return
        try:
            self._on_connected(peer_id)
        except Exception:
            self.metrics["callback_errors"] += 1
            logger.exception("p2p: on_connected failed for %s", peer_id)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
