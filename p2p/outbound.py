"""The transport's outbound side: one queued, reconnecting connection to each peer.

Theory of operation
-------------------
Application messages flow on the dialer's connection, so each peer of the static list has
one `OutboundPeer`: a bounded queue that `offer` fills without blocking, and one task
(`run`, for the transport's lifetime) that connects, runs the dialer's side of the
handshake (`p2p.handshake`, fed by `p2p.websocket.run_handshake`) and then drains the
queue with a writer task while a reader task reads the listener's side.  A listener that
dials us too stays silent on this connection; one that does not (our address is not in its
static list: we joined after its list was written, as an observer registered later does)
sends us its frames back on it (`ReturnPath`), and the reader delivers them like any inbound
frame: a text frame or an invalid message closes the connection (4400).

`ReturnPath` is the listener's side of that: a bounded queue and one writer task on the
inbound connection of a peer that is not in the static list, for as long as the connection
lives.  Frames queued on it are lost when it closes (the peer redials and catches up from
the status it is sent on connecting), so it delivers at most once.

Messages queued while disconnected stay queued and go out after the next handshake; a
frame whose write failed is kept and sent first on the next connection, so delivery is at
least once per frame that `offer` took, except for frames lost inside the kernel buffers
of a dying connection.  `offer(..., first=True)` puts one frame ahead of all that (the
node's status on connecting: it must reach the peer before statuses queued or kept from
earlier, which the peer then recognises as older and ignores).  Reconnects back off
exponentially with jitter from an injected `random.Random` (start `backoff_ms_min`, cap
`backoff_ms_max`, reset after a successful handshake).  Tasks: the one `run` task, and two per
live connection; none per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable

import aiohttp
from aiohttp import web

from p2p.config import PeerAddress, TransportConfig
from p2p.handshake import Accept, Handshake, Hello, Refuse
from p2p.websocket import (
    CLOSE_TIMEOUT_S,
    Authorize,
    HandshakeEnd,
    close_socket,
    format_url,
    read_frames,
    run_handshake,
)

# The transport's one logger, whichever of its modules writes.
logger = logging.getLogger("p2p.transport")


def compute_backoff_delay_ms(backoff_ms: int, rng: random.Random) -> float:
    """Equal jitter: a delay uniform in [backoff/2, backoff]."""
    return backoff_ms / 2 + rng.random() * backoff_ms / 2


class OutboundPeer:
    """The queue for one peer and the connection that drains it."""

    def __init__(
        self,
        peer: PeerAddress,
        config: TransportConfig,
        *,
        own_hello: Hello,
        authorize: Authorize,
        on_connected: Callable[[str], None],
        on_frame: Callable[[str, bytes], bool],
        metrics: dict[str, int],
        rng: random.Random,
    ) -> None:
        """`authorize`, `on_connected` and `on_frame` (False: the peer sent an invalid message)
        must not raise; `metrics` is the transport's."""
        self.peer = peer
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=config.queue_messages_max)
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        """The connection while it is up and handshaken."""
        self._config = config
        self._own_hello = own_hello
        self._authorize = authorize
        self._on_connected = on_connected
        self._on_frame = on_frame
        self._metrics = metrics
        self._rng = rng
        # A frame whose write failed; sent first on the next connection.
        self._carry: bytes | None = None
        # A frame that goes out before the carried one and the queue (`offer(first=True)`).
        self._first: bytes | None = None

    def offer(self, data: bytes, *, first: bool = False) -> bool:
        """Queue `data` without blocking; False when the queue is full.  `first`: send it before
        anything queued, on this connection or the next (the latest such frame wins), for what
        must not arrive behind older frames, as the status a node sends a peer on connecting
        (frames queued while the peer was away are older)."""
        if first:
            self._first = data
            return True
        try:
            self.queue.put_nowait(data)
        except asyncio.QueueFull:
            return False
        return True

    async def run(self, session: aiohttp.ClientSession) -> None:
        """Keep one handshaken connection to the peer until cancelled."""
        config = self._config
        backoff_ms = config.backoff_ms_min
        first_attempt = True
        while True:
            if not first_attempt:
                delay_ms = compute_backoff_delay_ms(backoff_ms, self._rng)
                backoff_ms = min(backoff_ms * 2, config.backoff_ms_max)
                await asyncio.sleep(delay_ms / 1000)
            first_attempt = False
            ws = await self._dial(session)
            if ws is None:
                continue
            backoff_ms = config.backoff_ms_min
            await self._run_connected(ws)

    async def _dial(self, session: aiohttp.ClientSession) -> aiohttp.ClientWebSocketResponse | None:
        """Connect and handshake; the open websocket, or None after a logged failure."""
        config = self._config
        peer_id = self.peer.entity_id
        ws: aiohttp.ClientWebSocketResponse | None = None
        end: HandshakeEnd | None = None
        try:
            async with asyncio.timeout(config.handshake_timeout_ms / 1000):
                ws = await session.ws_connect(
                    format_url(self.peer),
                    max_msg_size=config.frame_bytes_max,
                    heartbeat=config.heartbeat_ms / 1000,
                    compress=0,
                    timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=CLOSE_TIMEOUT_S),
                )
                end = await run_handshake(
                    Handshake.dialer(self._own_hello, peer_id),
                    ws,
                    ws.get_extra_info("ssl_object"),
                    authorize=self._authorize,
                    timeout_s=config.handshake_timeout_ms / 1000,
                )
        except (aiohttp.ClientError, OSError, TimeoutError) as error:
            self._metrics["dials_failed"] += 1
            level = logging.WARNING if isinstance(error, aiohttp.ClientSSLError) else logging.DEBUG
            logger.log(level, "p2p: dialing %s failed: %r", peer_id, error)
        finally:
            # Whatever ended the dial short, cancellation included, closes what it opened.
            if ws is not None and not isinstance(end, Accept):
                await self._end_dial(ws, end)
        return ws if isinstance(end, Accept) else None

    async def _end_dial(
        self, ws: aiohttp.ClientWebSocketResponse, end: Refuse | aiohttp.WSMessage | None
    ) -> None:
        """Close a dialed websocket whose handshake did not succeed; count and log why."""
        if end is not None:
            self._metrics["handshakes_failed"] += 1
            if isinstance(end, Refuse):
                self._metrics["handshakes_refused"] += 1
                reason = end.reason
                await close_socket(ws, end.close_code, end.reason)
            elif end.type is aiohttp.WSMsgType.CLOSE:
                reason = f"the peer closed with code {end.data}: {end.extra}"
            else:
                reason = f"the connection ended ({end.type.name})"
            logger.warning("p2p: handshake with %s failed: %s", self.peer.entity_id, reason)
        if not ws.closed:
            await ws.close()

    async def _run_connected(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Drain the queue into `ws` until either side closes it."""
        peer_id = self.peer.entity_id
        self.ws = ws
        self._metrics["connections_opened"] += 1
        logger.info("p2p: %s connected to %s", self._own_hello.entity_id, peer_id)
        reader = asyncio.create_task(self._watch(ws))
        writer = asyncio.create_task(self._write_frames(ws))
        try:
            self._on_connected(peer_id)
            await asyncio.wait((reader, writer), return_when=asyncio.FIRST_COMPLETED)
        finally:
            writer.cancel()
            # Closing while the reader waits wakes it with a normal close; cancelling it
            # instead would mark the connection as abnormally closed.
            if not ws.closed:
                await close_socket(ws, aiohttp.WSCloseCode.OK, "")
            reader.cancel()
            for result in await asyncio.gather(reader, writer, return_exceptions=True):
                if isinstance(result, Exception) and not isinstance(
                    result, (ConnectionError, aiohttp.ClientError)
                ):
                    logger.error("p2p: connection task for %s failed: %r", peer_id, result)
            if self.ws is ws:
                self.ws = None
            logger.info("p2p: outbound connection to %s closed (%s)", peer_id, ws.close_code)

    async def _watch(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Read the listener's side (frames it sends back, see the module doc); returns when the
        connection ends."""
        await read_frames(ws, self.peer.entity_id, self._on_frame, self._metrics, errors_are_violations=False)

    async def _write_frames(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            first = False
            if self._first is not None:
                data, first, self._first = self._first, True, None
            elif self._carry is not None:
                data, self._carry = self._carry, None
            else:
                data = await self.queue.get()
            try:
                await ws.send_bytes(data)
            except BaseException:
                # Keep the frame for the next connection, whatever ended this one (a first
                # frame stays first, unless a newer one took its place meanwhile).
                if not first:
                    self._carry = data
                elif self._first is None:
                    self._first = data
                raise
            self._metrics["frames_sent"] += 1


class ReturnPath:
    """Frames for a peer that dialed us and that we do not dial, sent on its own connection."""

    def __init__(
        self, peer_id: str, ws: web.WebSocketResponse, config: TransportConfig, metrics: dict[str, int]
    ):
        self.peer_id = peer_id
        self.ws = ws
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=config.queue_messages_max)
        self._metrics = metrics

    def offer(self, data: bytes, *, first: bool = False) -> bool:
        """Queue `data` without blocking; False when the queue is full (`first` changes nothing:
        no frame outlives this connection, so none is older than the next)."""
        try:
            self.queue.put_nowait(data)
        except asyncio.QueueFull:
            return False
        return True

    @classmethod
    @contextlib.asynccontextmanager
    async def open_if(
        cls,
        condition: bool,
        peer_id: str,
        ws: web.WebSocketResponse,
        config: TransportConfig,
        metrics: dict[str, int],
        paths: dict[str, ReturnPath],
    ) -> AsyncIterator[None]:
        """When `condition`: a return path for `peer_id` in `paths` with its writer, for the
        duration of the block (removed and its writer stopped on the way out)."""
        if not condition:
            yield
            return
        path = cls(peer_id, ws, config, metrics)
        paths[peer_id] = path
        writer = asyncio.create_task(path.run(), name=f"p2p-return-{peer_id}")
        try:
            yield
        finally:
            if paths.get(peer_id) is path:
                del paths[peer_id]
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)

    async def run(self) -> None:
        """Drain the queue into the connection until it fails or the task is cancelled."""
        while True:
            data = await self.queue.get()
            try:
                await self.ws.send_bytes(data)
            except (ConnectionError, aiohttp.ClientError, RuntimeError) as error:
                logger.info("p2p: sending back to %s failed: %r", self.peer_id, error)
                return
            self._metrics["frames_sent"] += 1
