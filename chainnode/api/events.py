"""HTTP endpoints for committed events: a page with long-poll, and a websocket that replays then
streams.  Both resume from a cursor (`chainnode.app.events`), lose nothing and repeat nothing.
The cursors they give are bound to this chain (`chainnode.api.event_reader`): a cursor of
another chain is refused 400 `bad_cursor`; an unbound cursor of the first form is still taken.

Theory of operation
-------------------
Where events come from.  There is no events index: the events of a height are read from the
block store, where every commit already wrote the block and its receipts under
height-ordered keys in its one synced batch.  An index would cost the commit hot path one
more key per event (thousands per block) for what the receipts already hold in order; reading
them back costs one block decode and one receipt read per transaction, paid only when someone
reads events, once per height for all readers (`EventReader`, chainnode.api.event_reader,
keeps the recent heights' events, encoded as JSON once, in a cache bounded by a count of
events).  A filtered read of a long chain scans receipts: a request scans at most
`scan_txs_max` transactions and answers with what it found and a `next` cursor past what it
scanned, so a page is bounded and the reader goes on from there.  Reads happen on the node's
loop (the ledger is not shared with threads), in bounded steps: a subscriber replaying a long
chain yields to the loop between steps, so consensus is never held for longer than one step.

- `GET /v1/events?from=CURSOR&module=M&entity=E&limit=N&wait_ms=W`: up to `limit` (1..1000,
  default 100) matching events at `from` and after (default: the chain's first event; `head`:
  after the current head), `{"events": [...], "next": CURSOR, "head": H, "caught_up": B}`
  (`caught_up`: read up to the head).  Each event carries
  `cursor`, the cursor just past it.  With `wait_ms` (at most 30,000) a request that finds no
  event and has read up to the head waits for the next commit and reads again, until one
  comes or the time is up.  `entity` matches the event's entity or its transaction's signer.
- `GET /v1/events/ws?from=CURSOR&module=M&entity=E` (websocket): text messages
  `{"type": "events", "events": [...], "next": CURSOR, "head": H}` from `from` on, then the
  same as blocks commit, and `{"type": "heartbeat", "next": CURSOR, "head": H}` after
  `heartbeat_ms` without one.  The client sends nothing (a close ends it).

Back-pressure.  A subscriber is not given a queue: it pulls from the ledger at its own pace,
so memory per subscriber is one batch and the socket's buffers, however far behind it falls,
and a commit only wakes the subscribers (`CommitSignal.notify`: no reading, no sending).  A
subscriber that does not take a message within `send_timeout_ms` is dropped: closed with code
4008 and the reason `{"code": "slow_subscriber", "resume_from": CURSOR}`, the cursor of the
first event of the message it did not take (a client resumes from the cursor of the last event
it received, which the server cannot know better).  At most `subscribers_max` websockets are
open (one more is answered 503 `too_many_subscribers` with `Retry-After`), and at shutdown each
is closed with 1001 and the same resume reason, and long polls return at once.

Metrics.  The hub counts what `/metrics` shows of it (`compute_subscriber_samples`, read by
`chainnode.node.status` at each scrape): the subscribers connected (a gauge), and those dropped
as too slow and refused as too many (counters).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import Awaitable
from dataclasses import dataclass

from aiohttp import WSMsgType, web

from chainnode.api.common import (
    LIMIT_PARAM,
    SERVICE_KEY,
    Route,
    error_body,
    get_service,
    json_response,
    parse_limit,
    parse_natural,
    query_param,
    register_routes,
)
from chainnode.api.event_reader import BOUND_CURSOR_CHARS, EventReader, Page
from chainnode.api.forms import (
    ANY,
    HASH,
    INTEGER,
    STRING,
    compute_array_schema,
    compute_object_schema,
)
from chainnode.app import events as chain_events
from chainnode.core.errors import RemoteError
from chainnode.core.metrics import Sample

logger = logging.getLogger(__name__)

CLOSE_SLOW_SUBSCRIBER = 4008
CLOSE_GOING_AWAY = 1001
WAIT_MS_MAX = 30_000
RETRY_AFTER_S = 1
# Bytes a websocket writes before it waits for the socket to drain (aiohttp's default: 256 KiB).
WRITER_BYTES_MAX = 64 * 1024


@dataclass(frozen=True, slots=True)
class EventLimits:
    """The bounds of the event endpoints (see the module docstring)."""

    subscribers_max: int = 64
    heartbeat_ms: int = 5_000
    send_timeout_ms: int = 10_000
    close_timeout_ms: int = 2_000
    batch_events_max: int = 500  # events per websocket message
    # Transactions one read looks at (whole heights: at least one).  Reading a height costs
    # ~24 us per event the first time (decode, JSON), so a step holds the loop ~50 ms at most
    # for 2,000-transaction blocks; later readers of the same height find it cached (~0.5 us).
    scan_txs_max: int = 2_000
    cache_events_max: int = 20_000  # events of recent heights kept encoded
    send_buffer_bytes: int | None = None  # the kernel's send buffer per subscriber (None: its own)


DEFAULT_LIMITS = EventLimits()


class CommitSignal:
    """Wakes every coroutine waiting for a commit.  The node calls `notify` after each commit:
    O(1) plus waking the waiters, nothing read or sent on the commit's path."""

    def __init__(self) -> None:
        self._committed = asyncio.Event()

    def notify(self) -> None:
        committed, self._committed = self._committed, asyncio.Event()
        committed.set()

    async def wait(self, timeout_s: float) -> None:
        """Return at the next commit, or after `timeout_s`."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._committed.wait(), timeout_s)


class EventHub:
    """The event endpoints' shared parts: the reader, the subscribers and the shutdown."""

    def __init__(self, app: web.Application, limits: EventLimits) -> None:
        self.limits = limits
        self.reader = EventReader(lambda: app[SERVICE_KEY].ledger, limits.cache_events_max)
        self.subscribers: set[web.WebSocketResponse] = set()
        self.subscribers_dropped_slow = 0
        self.subscribers_refused = 0
        self._closing: asyncio.Future[None] | None = None

    def get_closing(self) -> asyncio.Future[None]:
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_future()
        return self._closing

    @property
    def is_closing(self) -> bool:
        return self._closing is not None and self._closing.done()

    async def wait_for_commit(
        self, wait: Awaitable[None], timeout_s: float, *also: asyncio.Future[None]
    ) -> None:
        """Wait for `wait` (the service's commit wait) or shutdown or any of `also`."""
        waiter = asyncio.ensure_future(wait)
        waiting: set[asyncio.Future[None]] = {waiter, self.get_closing(), *also}
        try:
            await asyncio.wait(waiting, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()

    def close(self) -> None:
        closing = self.get_closing()
        if not closing.done():
            closing.set_result(None)


HUB_KEY = web.AppKey("events_hub", EventHub)


def compute_subscriber_samples(hub: EventHub | None) -> list[Sample]:
    """The subscribers connected, and how many were dropped as slow or refused as too many
    (zeros without a hub: an application not started yet)."""
    return [
        Sample(
            "chainnode_event_subscribers",
            "gauge",
            "Event websocket subscribers connected (at most subscribers_max).",
            0 if hub is None else len(hub.subscribers),
        ),
        Sample(
            "chainnode_event_subscribers_dropped_slow_total",
            "counter",
            "Event websocket subscribers dropped because they did not take a message in time.",
            0 if hub is None else hub.subscribers_dropped_slow,
        ),
        Sample(
            "chainnode_event_subscribers_refused_total",
            "counter",
            "Event websocket subscribers refused because subscribers_max were connected.",
            0 if hub is None else hub.subscribers_refused,
        ),
    ]


@dataclass(frozen=True, slots=True)
class _Query:
    start: chain_events.Position
    event_filter: chain_events.EventFilter


def _parse_query(request: web.Request, head: int, reader: EventReader) -> _Query:
    text = request.query.get("from", "")
    if text == "":
        start = chain_events.START
    elif text == "head":
        start = chain_events.Position(head + 1, 0, 0)
    else:
        start = reader.decode_cursor(text)
    event_filter = chain_events.EventFilter(
        module=chain_events.parse_filter_value(request.query.get("module"), "module"),
        entity=chain_events.parse_filter_value(request.query.get("entity"), "entity"),
    )
    return _Query(start, event_filter)


def _compute_page_text(page: Page, reader: EventReader, *, kind: str | None = None) -> str:
    prefix = "" if kind is None else f'"type":"{kind}",'
    joined = ",".join(event.text for event in page.events)
    cursor = reader.encode_cursor(page.next)
    caught_up = "true" if page.caught_up else "false"
    tail = f'"next":"{cursor}","head":{page.head},"caught_up":{caught_up}'
    return f'{{{prefix}"events":[{joined}],{tail}}}'


async def handle_events(request: web.Request) -> web.Response:
    service = get_service(request)
    hub = request.app[HUB_KEY]
    query = _parse_query(request, service.ledger.get_head().height, hub.reader)
    limit = parse_limit(request)
    wait_ms = parse_natural(request.query.get("wait_ms", "0"), "wait_ms", code="bad_request")
    if wait_ms > WAIT_MS_MAX:
        raise RemoteError(f"wait_ms must be at most {WAIT_MS_MAX}, got {wait_ms}", code="bad_request")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_ms / 1000
    scan = hub.limits.scan_txs_max
    page = hub.reader.read_page(query.start, query.event_filter, limit=limit, scan_txs_max=scan)
    while not page.events and page.caught_up and not hub.is_closing:
        remaining_s = deadline - loop.time()
        if remaining_s <= 0:
            break
        await hub.wait_for_commit(service.wait_for_commit(page.head, remaining_s), remaining_s)
        page = hub.reader.read_page(page.next, query.event_filter, limit=limit, scan_txs_max=scan)
    return web.Response(text=_compute_page_text(page, hub.reader), content_type="application/json")


class _SlowSubscriberError(Exception):
    """A websocket message was not taken within the send timeout."""


async def _send(ws: web.WebSocketResponse, text: str, timeout_s: float) -> None:
    try:
        await asyncio.wait_for(ws.send_str(text), timeout_s)
    except TimeoutError:
        raise _SlowSubscriberError from None


async def _drain_incoming(ws: web.WebSocketResponse) -> None:
    """Read what the client sends (pings, its close) until the connection ends; the stream is
    one way, so anything else is ignored."""
    while True:
        message = await ws.receive()
        if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            return


async def _close(
    request: web.Request, ws: web.WebSocketResponse, code: int, reason: str, timeout_s: float
) -> None:
    with contextlib.suppress(TimeoutError, ConnectionError):
        await asyncio.wait_for(ws.close(code=code, message=reason.encode(), drain=False), timeout_s)
    transport = request.transport
    if transport is not None and not transport.is_closing():
        transport.abort()  # a subscriber that takes nothing does not keep its buffers


def _compute_reason(code: str, position: chain_events.Position, reader: EventReader) -> str:
    return json.dumps({"code": code, "resume_from": reader.encode_cursor(position)}, separators=(",", ":"))


async def _accept_subscriber(request: web.Request, hub: EventHub) -> web.WebSocketResponse:
    """The websocket of a new subscriber, counted from before its handshake."""
    limits = hub.limits
    ws = web.WebSocketResponse(
        timeout=limits.close_timeout_ms / 1000,
        compress=False,
        max_msg_size=64 * 1024,
        writer_limit=WRITER_BYTES_MAX,
    )
    hub.subscribers.add(ws)  # counted before the handshake's await: the bound holds in a burst
    try:
        await ws.prepare(request)
    except BaseException:
        hub.subscribers.discard(ws)
        raise
    sock = None if request.transport is None else request.transport.get_extra_info("socket")
    if limits.send_buffer_bytes is not None and sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, limits.send_buffer_bytes)
    return ws


async def handle_events_ws(request: web.Request) -> web.StreamResponse:
    service = get_service(request)
    hub = request.app[HUB_KEY]
    limits = hub.limits
    query = _parse_query(request, service.ledger.get_head().height, hub.reader)
    if len(hub.subscribers) >= limits.subscribers_max or hub.is_closing:
        hub.subscribers_refused += 1
        return json_response(
            error_body("too_many_subscribers", f"at most {limits.subscribers_max} event subscribers"),
            status=503,
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    ws = await _accept_subscriber(request, hub)
    incoming = asyncio.ensure_future(_drain_incoming(ws))
    position = query.start
    send_timeout_s = limits.send_timeout_ms / 1000
    heartbeat_s = limits.heartbeat_ms / 1000
    loop = asyncio.get_running_loop()
    last_sent = loop.time()
    try:
        while not hub.is_closing and not incoming.done():
            page = hub.reader.read_page(
                position, query.event_filter, limit=limits.batch_events_max, scan_txs_max=limits.scan_txs_max
            )
            if page.events:
                await _send(ws, _compute_page_text(page, hub.reader, kind="events"), send_timeout_s)
                last_sent = loop.time()
            position = page.next
            if not page.caught_up:
                await asyncio.sleep(0)  # one bounded step at a time: the loop runs consensus too
                continue
            idle_s = loop.time() - last_sent
            if idle_s >= heartbeat_s:
                heartbeat = {
                    "type": "heartbeat",
                    "next": hub.reader.encode_cursor(position),
                    "head": page.head,
                }
                await _send(ws, json.dumps(heartbeat, separators=(",", ":")), send_timeout_s)
                last_sent = loop.time()
                idle_s = 0
            timeout_s = heartbeat_s - idle_s
            await hub.wait_for_commit(service.wait_for_commit(page.head, timeout_s), timeout_s, incoming)
        if hub.is_closing:
            await _close(
                request,
                ws,
                CLOSE_GOING_AWAY,
                _compute_reason("shutting_down", position, hub.reader),
                limits.close_timeout_ms / 1000,
            )
    except _SlowSubscriberError:
        hub.subscribers_dropped_slow += 1
        logger.info("dropped a slow event subscriber at %s", hub.reader.encode_cursor(position))
        await _close(
            request,
            ws,
            CLOSE_SLOW_SUBSCRIBER,
            _compute_reason("slow_subscriber", position, hub.reader),
            limits.close_timeout_ms / 1000,
        )
    except ConnectionError:
        pass  # the subscriber went away
    finally:
        hub.subscribers.discard(ws)
        incoming.cancel()
    return ws


async def _close_subscriptions(app: web.Application) -> None:
    app[HUB_KEY].close()


# ---------------------------------------------------------------- the routes, declared once

EVENT_SCHEMA = compute_object_schema(
    {
        "cursor": STRING,
        "height": INTEGER,
        "tx_index": INTEGER,
        "event_index": INTEGER,
        "tx_hash": HASH,
        "timestamp_ms": INTEGER,
        "signer": STRING,
        "name": STRING,
        "module": STRING,
        "action": STRING,
        "entity": STRING,
        "keys": compute_array_schema(STRING),
        "attributes": ANY,
    }
)
_PAGE_SCHEMA = compute_object_schema(
    {
        "events": compute_array_schema(EVENT_SCHEMA),
        "next": STRING,
        "head": INTEGER,
        "caught_up": {"type": "boolean"},
    }
)
_FILTER_SCHEMA = {"type": "string", "minLength": 1, "maxLength": chain_events.FILTER_CHARS_MAX}
_STREAM_PARAMS = (
    query_param(
        "from",
        "the cursor to read from: an event's cursor or a page's next (absent: the chain's start; "
        "'head': after the current head)",
        {
            "type": "string",
            "pattern": f"^(01[0-9a-f]{{{chain_events.CURSOR_CHARS - 2}}}"
            f"|02[0-9a-f]{{{BOUND_CURSOR_CHARS - 2}}}|head)?$",
        },
    ),
    query_param("module", "only this module's events", _FILTER_SCHEMA),
    query_param("entity", "only events about or signed by this entity", _FILTER_SCHEMA),
)

ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/v1/events",
        handle_events,
        "Committed events from a cursor (`from`, the list's cursor; `next` is the next page's), "
        "with long-poll",
        params=(
            *_STREAM_PARAMS,
            LIMIT_PARAM,
            query_param(
                "wait_ms",
                f"wait up to this long for a commit when nothing is there yet, 0..{WAIT_MS_MAX}",
                {"type": "integer", "minimum": 0, "maximum": WAIT_MS_MAX, "default": 0},
            ),
        ),
        responses={200: _PAGE_SCHEMA},
        errors={400: ("bad_request", "bad_limit", "bad_cursor")},
        tag="events",
    ),
    Route(
        "GET",
        "/v1/events/ws",
        handle_events_ws,
        "Websocket: the events from `from`, then each commit's as it happens, and heartbeats",
        params=_STREAM_PARAMS,
        responses={101: None},
        errors={400: ("bad_request", "bad_cursor"), 503: ("too_many_subscribers",)},
        tag="events",
    ),
)


def add_routes(app: web.Application) -> None:
    """Mount the event endpoints (after `SERVICE_KEY` is set); `DEFAULT_LIMITS` bound them."""
    app[HUB_KEY] = EventHub(app, DEFAULT_LIMITS)
    app.on_shutdown.append(_close_subscriptions)
    register_routes(app, ROUTES)
