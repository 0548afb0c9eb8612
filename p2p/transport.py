"""The p2p transport: aiohttp websockets over mutual TLS between the nodes of a static peer list.

Theory of operation
-------------------
Each node listens on its p2p port (HTTPS, websocket route `/p2p`) and dials
every peer in its static list.  Application messages flow on the dialer's
connection only: A -> B travels on the connection A dialed, B -> A on the one B
dialed.  There is therefore no duplicate-connection logic, and each direction
reconnects on its own.  The listener never sends application frames; it only
answers the handshake.

Trust is established in two layers:

1. TLS 1.3 with certificates on both sides, each verified against the network
   root CA (`p2p.tls`).  A client without a certificate, or with one from
   another root, is refused inside OpenSSL and never reaches this module; the
   failure is logged and counted (`tls_refused`).
2. An application hello on the websocket.  The dialer first checks that the
   server's certificate names the peer it meant to dial and that `authorize`
   accepts it, then sends `(TAG_HELLO, 1, chain_id, genesis_hash, entity_id)`.
   The listener checks that the client certificate's CN equals the hello's
   entity id, that chain id and genesis hash are its own and that `authorize`
   accepts the entity; it answers `(TAG_HELLO_ACK, 1, own_entity_id)` or
   closes with code 4403 and the reason (4400 for a malformed hello).

After the handshake the listener delivers every binary frame to
`on_message(peer_id, data)`.  A text frame, an oversize frame or a
`RemoteError` raised by `on_message` closes that one connection, never the node.
Any other exception from a callback is a local bug: it is logged and counted,
and the connection stays up.

Outbound, each peer has a bounded queue that `send` fills without blocking
(a full queue or an unknown peer drops the message and counts it) and one
dialer task that connects, handshakes and then drains the queue with a writer
task while a reader task watches for the peer closing.  Messages queued while
disconnected stay queued and go out after the next handshake; a frame whose
write failed is kept and sent first on the next connection, so delivery is
at least once per frame that left `send`, except for frames lost inside the
kernel buffers of a dying connection.  Reconnects back off exponentially
with jitter from an injected `random.Random` (start `backoff_ms_min`, cap
`backoff_ms_max`, reset after a successful handshake).

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
import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from chainnode.core import codec
from chainnode.core.codec import expect_bytes, expect_str
from chainnode.core.errors import ChainError, ConfigError, IdentityError, RemoteError
from p2p.http_guard import (
    COUNTER_NAMES,
    ConnectionGuard,
    ConnectionLimits,
    GuardedAppRunner,
    mark_authenticated,
)
from p2p.tls import (
    create_client_context,
    create_server_context,
    get_entity_id,
    get_peer_certificate_der,
)

logger = logging.getLogger(__name__)

TAG_HELLO = 40
TAG_HELLO_ACK = 41
HELLO_VERSION = 1
P2P_PATH = "/p2p"

CLOSE_CODE_REFUSED = 4403
CLOSE_CODE_PROTOCOL = 4400
# A close frame carries at most 125 payload bytes, two of which are the code.
CLOSE_REASON_BYTES_MAX = 123

_ENTITY_ID_LENGTH_MAX = 256
_CHAIN_ID_LENGTH_MAX = 256
_GENESIS_HASH_BYTES_MAX = 64
_HELLO_BYTES_MAX = 4096
# What an inbound websocket may receive before its hello is accepted: the hello frame at
# its largest (a header of at most 14 bytes) and a few control frames (131 bytes each).
PRE_HELLO_BYTES_MAX = _HELLO_BYTES_MAX + 1024
# Header lines of the upgrade request (aiohttp's client sends ten; aiohttp's server would
# take 128 of 8 KiB each from a peer that has not said who it is yet).
_UPGRADE_HEADERS_MAX = 32
# How long closing a websocket may wait for the peer's close frame.
_CLOSE_TIMEOUT_S = 2.0

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

Authorize = Callable[[str, bytes], "str | None"]
OnMessage = Callable[[str, bytes], None]
OnConnected = Callable[[str], None]


class HandshakeError(RemoteError):
    """The other side of a p2p connection failed the application handshake."""

    code = "handshake_refused"


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


@dataclass(frozen=True, slots=True)
class Hello:
    """The dialer's first frame."""

    chain_id: str
    genesis_hash: bytes
    entity_id: str


def encode_hello(hello: Hello) -> bytes:
    return codec.encode((TAG_HELLO, HELLO_VERSION, hello.chain_id, hello.genesis_hash, hello.entity_id))


def decode_hello(data: bytes) -> Hello:
    """Strictly decode a hello frame; raises `DecodeError`."""
    fields = codec.expect_struct(
        codec.decode(data, bytes_max=_HELLO_BYTES_MAX), TAG_HELLO, HELLO_VERSION, 5, "hello"
    )
    return Hello(
        chain_id=expect_str(fields[2], "hello chain id", _CHAIN_ID_LENGTH_MAX),
        genesis_hash=expect_bytes(fields[3], "hello genesis hash", length_max=_GENESIS_HASH_BYTES_MAX),
        entity_id=expect_str(fields[4], "hello entity id", _ENTITY_ID_LENGTH_MAX),
    )


def encode_hello_ack(entity_id: str) -> bytes:
    return codec.encode((TAG_HELLO_ACK, HELLO_VERSION, entity_id))


def decode_hello_ack(data: bytes) -> str:
    """Strictly decode a hello ack; returns the listener's entity id."""
    fields = codec.expect_struct(
        codec.decode(data, bytes_max=_HELLO_BYTES_MAX), TAG_HELLO_ACK, HELLO_VERSION, 3, "hello ack"
    )
    return expect_str(fields[2], "hello ack entity id", _ENTITY_ID_LENGTH_MAX)


def compute_backoff_delay_ms(backoff_ms: int, rng: random.Random) -> float:
    """Equal jitter: a delay uniform in [backoff/2, backoff]."""
    return backoff_ms / 2 + rng.random() * backoff_ms / 2


def compute_close_reason(reason: str) -> bytes:
    """The UTF-8 reason truncated to fit a close frame without splitting a character."""
    return reason.encode("utf-8")[:CLOSE_REASON_BYTES_MAX].decode("utf-8", "ignore").encode()


def _check_config(config: TransportConfig) -> None:
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


def _format_url(peer: PeerAddress) -> str:
    host = f"[{peer.host}]" if ":" in peer.host else peer.host
    return f"wss://{host}:{peer.port}{P2P_PATH}"


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
        _check_config(config)
        self._config = config
        self._authorize = authorize
        self._on_message = on_message
        self._on_connected = on_connected
        self._rng = rng if rng is not None else random.Random()
        self._queues: dict[str, asyncio.Queue[bytes]] = {
            peer.entity_id: asyncio.Queue(maxsize=config.queue_messages_max) for peer in config.peers
        }
        # A frame whose write failed; sent first on the next connection.
        self._carry: dict[str, bytes] = {}
        self._outbound: dict[str, aiohttp.ClientWebSocketResponse] = {}
        self._inbound: dict[str, web.WebSocketResponse] = {}
        self._inbound_sockets: set[web.WebSocketResponse] = set()
        self._dialers: dict[str, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._listen_port: int | None = None
        self._stopping = False
        self.metrics: dict[str, int] = dict.fromkeys(_METRIC_NAMES, 0)
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
            shutdown_timeout=_CLOSE_TIMEOUT_S,
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
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_context, limit=0))
        for peer in config.peers:
            self._dialers[peer.entity_id] = asyncio.create_task(
                self._run_dialer(peer), name=f"p2p-dial-{peer.entity_id}"
            )
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
                self._close_socket(ws, aiohttp.WSCloseCode.GOING_AWAY, "node stopping")
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

    def send(self, peer_id: str, data: bytes) -> bool:
        """Queue `data` for `peer_id` without blocking; False (and counted) if dropped."""
        queue = self._queues.get(peer_id)
        if queue is None or len(data) > self._config.frame_bytes_max:
            self.metrics["frames_dropped"] += 1
            return False
        try:
            queue.put_nowait(data)
        except asyncio.QueueFull:
            self.metrics["frames_dropped"] += 1
            return False
        return True

    def broadcast(self, data: bytes) -> None:
        """Queue `data` for every peer in the static list."""
        for peer_id in self._queues:
            self.send(peer_id, data)

    def connected_peers(self) -> list[str]:
        """Peers with a live outbound connection that completed its handshake."""
        return sorted(self._outbound)

    def inbound_peers(self) -> list[str]:
        """Peers whose inbound connection to us completed its handshake."""
        return sorted(self._inbound)

    def get_queue_length(self, peer_id: str) -> int:
        """How many messages wait for `peer_id` (0 for an unknown peer)."""
        queue = self._queues.get(peer_id)
        return 0 if queue is None else queue.qsize()

    def disconnect(self, peer_id: str) -> None:
        """Close both connections with `peer_id`.

        The dialer redials after its backoff; a peer that `authorize` now refuses
        stays out.  Queued messages stay queued.
        """
        outbound = self._outbound.get(peer_id)
        if outbound is not None:
            self._spawn(self._close_socket(outbound, CLOSE_CODE_REFUSED, "disconnected"))
        inbound = self._inbound.get(peer_id)
        if inbound is not None:
            self._spawn(self._close_socket(inbound, CLOSE_CODE_REFUSED, "disconnected"))

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
        finally:
            self._inbound_sockets.discard(ws)
            if not ws.closed:
                await ws.close()
        return ws

    async def _accept_hello(self, ws: web.WebSocketResponse, request: web.Request) -> str | None:
        """Run the listener's side of the handshake; the peer's id, or None if refused."""
        transport = request.transport
        ssl_object = None if transport is None else transport.get_extra_info("ssl_object")
        certificate_der = get_peer_certificate_der(ssl_object)
        try:
            message = await ws.receive(timeout=self._config.handshake_timeout_ms / 1000)
        except TimeoutError:
            await self._refuse(ws, CLOSE_CODE_PROTOCOL, "no hello before the handshake timeout")
            return None
        if message.type in (
            aiohttp.WSMsgType.CLOSE,
            aiohttp.WSMsgType.CLOSING,
            aiohttp.WSMsgType.CLOSED,
            aiohttp.WSMsgType.ERROR,
        ):
            return None
        if message.type is not aiohttp.WSMsgType.BINARY:
            await self._refuse(ws, CLOSE_CODE_PROTOCOL, "the hello must be a binary frame")
            return None
        try:
            hello = decode_hello(message.data)
        except ChainError as error:
            await self._refuse(ws, CLOSE_CODE_PROTOCOL, f"malformed hello: {error.message}")
            return None
        reason = self._check_hello(hello, certificate_der)
        if reason is not None:
            await self._refuse(ws, CLOSE_CODE_REFUSED, reason)
            return None
        # Lifted before the ack goes out: the peer may send a full frame as soon as it has it.
        mark_authenticated(request)
        await ws.send_bytes(encode_hello_ack(self._config.entity_id))
        return hello.entity_id

    def _check_hello(self, hello: Hello, certificate_der: bytes | None) -> str | None:
        """Why `hello` is refused, or None when it is accepted."""
        if certificate_der is None:
            return "no client certificate"
        try:
            certificate_id = get_entity_id(certificate_der)
        except IdentityError as error:
            return error.message
        if certificate_id != hello.entity_id:
            return f"the certificate names {certificate_id!r} but the hello names {hello.entity_id!r}"
        if hello.chain_id != self._config.chain_id:
            return f"wrong chain id {hello.chain_id!r}, expected {self._config.chain_id!r}"
        if hello.genesis_hash != self._config.genesis_hash:
            return f"wrong genesis hash {hello.genesis_hash.hex()}"
        return self._get_authorization_refusal(hello.entity_id, certificate_der)

    async def _refuse(self, ws: web.WebSocketResponse, code: int, reason: str) -> None:
        self.metrics["handshakes_refused"] += 1
        logger.warning("p2p: refused an inbound handshake (%d): %s", code, reason)
        await self._close_socket(ws, code, reason)

    async def _serve_inbound(self, peer_id: str, ws: web.WebSocketResponse) -> None:
        """Deliver the binary frames of an accepted inbound connection until it closes."""
        previous = self._inbound.get(peer_id)
        if previous is not None:
            # The peer redialed; its old connection is dead or dying.
            self._spawn(self._close_socket(previous, 1000, "superseded"))
        self._inbound[peer_id] = ws
        self.metrics["connections_accepted"] += 1
        logger.info("p2p: %s accepted inbound connection from %s", self._config.entity_id, peer_id)
        try:
            while not self._stopping:
                message = await ws.receive()
                if message.type is aiohttp.WSMsgType.BINARY:
                    self.metrics["frames_received"] += 1
                    if not self._deliver(peer_id, message.data):
                        await self._close_socket(ws, CLOSE_CODE_PROTOCOL, "invalid message")
                        return
                elif message.type is aiohttp.WSMsgType.TEXT:
                    self._count_violation(peer_id, "sent a text frame")
                    await self._close_socket(ws, CLOSE_CODE_PROTOCOL, "text frames are refused")
                    return
                elif message.type is aiohttp.WSMsgType.ERROR:
                    self._count_violation(peer_id, f"broke the websocket protocol: {message.data}")
                    return
                else:
                    return
        finally:
            if self._inbound.get(peer_id) is ws:
                del self._inbound[peer_id]
            logger.info("p2p: inbound connection from %s closed", peer_id)

    def _deliver(self, peer_id: str, data: bytes) -> bool:
        """Hand one frame to the node; False when the peer is to blame for a bad message."""
        try:
            self._on_message(peer_id, data)
        except RemoteError as error:
            self._count_violation(peer_id, f"sent an invalid message: {error}")
            return False
        except Exception:
            self.metrics["callback_errors"] += 1
            logger.exception("p2p: on_message failed for a frame from %s", peer_id)
        return True

    def _count_violation(self, peer_id: str, what: str) -> None:
        self.metrics["protocol_violations"] += 1
        logger.warning("p2p: closing the connection with %s, which %s", peer_id, what)

    def _on_tls_error(self, error: Exception) -> None:
        # Called from inside asyncio's TLS layer: count and log, never raise.
        self.metrics["tls_refused"] += 1
        logger.warning("p2p: refused a TLS handshake: %s", error)

    # ------------------------------------------------------------ outbound

    async def _run_dialer(self, peer: PeerAddress) -> None:
        """Keep one handshaken outbound connection to `peer` until the transport stops."""
        config = self._config
        backoff_ms = config.backoff_ms_min
        first_attempt = True
        while not self._stopping:
            if not first_attempt:
                delay_ms = compute_backoff_delay_ms(backoff_ms, self._rng)
                backoff_ms = min(backoff_ms * 2, config.backoff_ms_max)
                await asyncio.sleep(delay_ms / 1000)
            first_attempt = False
            ws = await self._dial(peer)
            if ws is None:
                continue
            backoff_ms = config.backoff_ms_min
            await self._run_outbound(peer.entity_id, ws)

    async def _dial(self, peer: PeerAddress) -> aiohttp.ClientWebSocketResponse | None:
        """Connect and handshake; the open websocket, or None after a logged failure."""
        assert self._session is not None
        config = self._config
        ws: aiohttp.ClientWebSocketResponse | None = None
        accepted = False
        try:
            async with asyncio.timeout(config.handshake_timeout_ms / 1000):
                ws = await self._session.ws_connect(
                    _format_url(peer),
                    max_msg_size=config.frame_bytes_max,
                    heartbeat=config.heartbeat_ms / 1000,
                    compress=0,
                    timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=_CLOSE_TIMEOUT_S),
                )
                await self._complete_dial(peer, ws)
            accepted = True
            return ws
        except HandshakeError as error:
            self.metrics["handshakes_failed"] += 1
            logger.warning("p2p: handshake with %s failed: %s", peer.entity_id, error.message)
            if ws is not None:
                await self._close_socket(ws, CLOSE_CODE_REFUSED, error.message)
            return None
        except (aiohttp.ClientError, OSError, TimeoutError, ChainError) as error:
            self.metrics["dials_failed"] += 1
            level = logging.WARNING if isinstance(error, aiohttp.ClientSSLError) else logging.DEBUG
            logger.log(level, "p2p: dialing %s failed: %r", peer.entity_id, error)
            return None
        finally:
            if not accepted and ws is not None and not ws.closed:
                await ws.close()

    async def _complete_dial(self, peer: PeerAddress, ws: aiohttp.ClientWebSocketResponse) -> None:
        """The dialer's side of the handshake; raises `HandshakeError` or `DecodeError`."""
        certificate_der = get_peer_certificate_der(ws.get_extra_info("ssl_object"))
        if certificate_der is None:
            raise HandshakeError("the server presented no certificate")
        try:
            certificate_id = get_entity_id(certificate_der)
        except IdentityError as error:
            raise HandshakeError(error.message) from error
        if certificate_id != peer.entity_id:
            self.metrics["handshakes_refused"] += 1
            raise HandshakeError(
                f"the server's certificate names {certificate_id!r}, expected {peer.entity_id!r}"
            )
        reason = self._get_authorization_refusal(peer.entity_id, certificate_der)
        if reason is not None:
            self.metrics["handshakes_refused"] += 1
            raise HandshakeError(f"not authorized: {reason}")
        config = self._config
        await ws.send_bytes(encode_hello(Hello(config.chain_id, config.genesis_hash, config.entity_id)))
        message = await ws.receive()
        if message.type is aiohttp.WSMsgType.CLOSE:
            raise HandshakeError(f"the peer closed with code {message.data}: {message.extra}")
        if message.type is not aiohttp.WSMsgType.BINARY:
            raise HandshakeError(f"expected a hello ack, got {message.type.name}")
        listener_id = decode_hello_ack(message.data)
        if listener_id != peer.entity_id:
            raise HandshakeError(f"the hello ack names {listener_id!r}")

    async def _run_outbound(self, peer_id: str, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Drain the peer's queue into `ws` until either side closes it."""
        self._outbound[peer_id] = ws
        self.metrics["connections_opened"] += 1
        logger.info("p2p: %s connected to %s", self._config.entity_id, peer_id)
        reader = asyncio.create_task(self._watch_outbound(peer_id, ws))
        writer = asyncio.create_task(self._write_frames(peer_id, ws))
        try:
            self._notify_connected(peer_id)
            await asyncio.wait((reader, writer), return_when=asyncio.FIRST_COMPLETED)
        finally:
            writer.cancel()
            # Closing while the reader waits wakes it with a normal close; cancelling it
            # instead would mark the connection as abnormally closed.
            if not ws.closed:
                await self._close_socket(ws, aiohttp.WSCloseCode.OK, "")
            reader.cancel()
            for result in await asyncio.gather(reader, writer, return_exceptions=True):
                if isinstance(result, Exception) and not isinstance(
                    result, (ConnectionError, aiohttp.ClientError)
                ):
                    logger.error("p2p: connection task for %s failed: %r", peer_id, result)
            if self._outbound.get(peer_id) is ws:
                del self._outbound[peer_id]
            logger.info("p2p: outbound connection to %s closed (%s)", peer_id, ws.close_code)

    async def _watch_outbound(self, peer_id: str, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Read the listener's side, which must stay silent; returns when the connection ends."""
        message = await ws.receive()
        if message.type in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
            self._count_violation(peer_id, "sent a frame on our outbound connection")
            await ws.close(code=CLOSE_CODE_PROTOCOL, message=b"the listener must not send")
        elif message.type is aiohttp.WSMsgType.ERROR:
            logger.info("p2p: outbound connection to %s failed: %r", peer_id, message.data)

    async def _write_frames(self, peer_id: str, ws: aiohttp.ClientWebSocketResponse) -> None:
        queue = self._queues[peer_id]
        while True:
            data = self._carry.pop(peer_id, None)
            if data is None:
                data = await queue.get()
            try:
                await ws.send_bytes(data)
            except BaseException:
                # Keep the frame for the next connection, whatever ended this one.
                self._carry[peer_id] = data
                raise
            self.metrics["frames_sent"] += 1

    def _notify_connected(self, peer_id: str) -> None:
        if self._on_connected is None:
            return
        try:
            self._on_connected(peer_id)
        except Exception:
            self.metrics["callback_errors"] += 1
            logger.exception("p2p: on_connected failed for %s", peer_id)

    # ------------------------------------------------------------ helpers

    def _get_authorization_refusal(self, entity_id: str, certificate_der: bytes) -> str | None:
        try:
            return self._authorize(entity_id, certificate_der)
        except Exception:
            self.metrics["callback_errors"] += 1
            logger.exception("p2p: authorize failed for %s", entity_id)
            return "authorization check failed"

    async def _close_socket(self, ws: Any, code: int, reason: str) -> None:
        """Close a client or server websocket with a code and a truncated reason."""
        with contextlib.suppress(ConnectionError, aiohttp.ClientError, RuntimeError):
            await ws.close(code=code, message=compute_close_reason(reason))

    def _spawn(self, coroutine: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
