"""Connection limits for the node's two HTTP servers: the API and the p2p listener.

Theory of operation
-------------------
aiohttp's server takes every connection the kernel hands it, waits for a request head for
as long as its keep-alive timer allows and keeps an idle keep-alive connection for about an
hour (`keepalive_timeout=3630` s).  A client that opens connections and sends nothing, or
sends a request head a byte at a time (slowloris), therefore holds a descriptor and a
handler per connection for that long, and nothing bounds how many it holds.
`ConnectionGuard` bounds each of these, per server:

- at most `connections_max` connections are open at once, and at most
  `unauthenticated_max` of them before the application authenticates them (the p2p
  listener: until the hello is accepted; the API does not authenticate and sets no such
  limit).  A connection over a limit is answered at once with a canned
  `503 too_many_connections` and closed before anything it sends is read; it is counted
  in `connections_refused`;
- a request head must be complete within `request_head_timeout_ms` of its first byte,
  else the connection is closed and counted in `request_heads_timed_out`;
- a connection without a request in flight (since it opened, or since its last response)
  is closed after `keepalive_timeout_ms`.  This is aiohttp's keep-alive timer, which also
  closes a connection that is still waiting for a complete head when it fires, so a head
  never waits longer than that either;
- an upgraded connection (the p2p websocket) receives at most `unauthenticated_bytes_max`
  bytes until the application calls `mark_authenticated(request)`; the byte that crosses
  the budget is not read, the connection is closed and counted in
  `unauthenticated_bytes_exceeded`.

How it hooks in: `GuardedAppRunner` is a `web.AppRunner` whose server creates a
`GuardedRequestHandler` for each connection.  That class is aiohttp's `RequestHandler`
(the asyncio protocol of one connection) with the limits added where the connection's
life is visible: counted in `connection_made` and released in `connection_lost`, which
asyncio calls exactly once each; the head timer driven from `data_received`; the byte
budget wrapped around the websocket parser in `set_parser`.  The simpler places are
wrong: a protocol factory runs before the TLS handshake, and a handshake that fails
never reaches the protocol, so a slot counted there would leak; a middleware first sees
a connection when its request head is already complete, too late for a slowloris.

The head timer reads three attributes aiohttp keeps private (`_waiter`, set while the
handler waits for the next request; `_request_count`, request heads parsed so far;
`_upgraded`).  This module checks at import that aiohttp still has them, so an aiohttp
that renames them stops the node at start instead of silently losing the bound, and
`tests/unit/test_http_guard.py` fails when a bound is lost.

Not bounded here: connections still in the TLS handshake of the p2p listener (asyncio
gives each at most its 60 s `ssl_handshake_timeout`, but does not count them), and a
request body sent slowly after a complete head (the application's reading of it has no
deadline of its own).
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, cast

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from chainnode.core.errors import ConfigError

logger = logging.getLogger(__name__)

COUNTER_NAMES = ("connections_refused", "request_heads_timed_out", "unauthenticated_bytes_exceeded")
REFUSAL_CODE = "too_many_connections"
RETRY_AFTER_S = 1

# What the head timer reads of aiohttp's RequestHandler (see the module docstring).
_AIOHTTP_PRIVATE_ATTRIBUTES = ("_waiter", "_request_count", "_upgraded")


def _check_aiohttp_internals() -> None:
    slots = {name for cls in RequestHandler.__mro__ for name in getattr(cls, "__slots__", ())}
    missing = [name for name in _AIOHTTP_PRIVATE_ATTRIBUTES if name not in slots]
    if missing:
        raise ImportError(
            f"this aiohttp's RequestHandler has no {', '.join(missing)}; p2p.http_guard "
            "cannot enforce the request head timeout with it"
        )


_check_aiohttp_internals()


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """The bounds one HTTP server enforces on its connections."""

    connections_max: int
    """Connections open at once; one more is refused with 503 and closed."""
    request_head_timeout_ms: int
    """From the first byte of a request head until it is complete."""
    keepalive_timeout_ms: int
    """How long a connection may wait for its next request (or its first)."""
    unauthenticated_max: int | None = None
    """Open connections the application has not yet called `mark_authenticated` for."""
    unauthenticated_bytes_max: int | None = None
    """Bytes an upgraded connection may receive before `mark_authenticated`."""

    def find_problem(self) -> str | None:
        """Why these limits cannot be used, or None."""
        if self.connections_max < 1:
            return f"connections_max must be positive, got {self.connections_max}"
        if self.request_head_timeout_ms < 1 or self.keepalive_timeout_ms < 1:
            return "request_head_timeout_ms and keepalive_timeout_ms must be positive"
        if self.unauthenticated_max is not None and not 1 <= self.unauthenticated_max <= self.connections_max:
            return (
                f"unauthenticated_max must be within 1..connections_max ({self.connections_max}), "
                f"got {self.unauthenticated_max}"
            )
        if self.unauthenticated_bytes_max is not None and self.unauthenticated_bytes_max < 1:
            return f"unauthenticated_bytes_max must be positive, got {self.unauthenticated_bytes_max}"
        return None


def compute_refusal_response() -> bytes:
    """The whole HTTP answer to a connection over a limit: 503 with the API's error shape."""
    message = "the node serves its maximum of connections; retry later"
    body = json.dumps({"error": {"code": REFUSAL_CODE, "message": message}}).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        "Content-Type: application/json; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"Retry-After: {RETRY_AFTER_S}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


_REFUSAL_RESPONSE = compute_refusal_response()


class ConnectionGuard:
    """The open-connection counts and event counters of one server (see the module docstring).

    `counters` may be a mapping the caller already exports (the p2p transport passes its
    metrics); the guard adds `COUNTER_NAMES` to it.
    """

    def __init__(
        self, limits: ConnectionLimits, *, name: str, counters: MutableMapping[str, int] | None = None
    ) -> None:
        problem = limits.find_problem()
        if problem is not None:
            raise ConfigError(f"{name} connection limits: {problem}")
        self.limits = limits
        self.name = name  # for the log: "api", "p2p"
        self.counters: MutableMapping[str, int] = counters if counters is not None else {}
        for counter in COUNTER_NAMES:
            self.counters.setdefault(counter, 0)
        self.connections_open = 0
        self.connections_unauthenticated = 0

    def find_refusal(self) -> str | None:
        """Why one more connection is refused now, or None."""
        limits = self.limits
        if self.connections_open >= limits.connections_max:
            return f"{self.connections_open} connections are open (the maximum)"
        unauthenticated_max = limits.unauthenticated_max
        if unauthenticated_max is not None and self.connections_unauthenticated >= unauthenticated_max:
            return f"{self.connections_unauthenticated} connections are not yet authenticated (the maximum)"
        return None

    def _open(self) -> None:
        self.connections_open += 1
        self.connections_unauthenticated += 1

    def _authenticate(self) -> None:
        self.connections_unauthenticated -= 1
        self._check_counts()

    def _close(self, *, authenticated: bool) -> None:
        self.connections_open -= 1
        if not authenticated:
            self.connections_unauthenticated -= 1
        self._check_counts()

    def _check_counts(self) -> None:
        # Always on (not `assert`): a count that drifts would refuse every connection, or none.
        if not 0 <= self.connections_unauthenticated <= self.connections_open:
            raise AssertionError(
                f"{self.name} connection counts drifted: {self.connections_open} open, "
                f"{self.connections_unauthenticated} unauthenticated"
            )

    def count(self, counter: str, reason: str, peer: Any) -> None:
        """Count an event; log it while its count is a power of ten (1, 10, 100, ...).

        A flood must not become a flood of log lines; the counter carries the rate.
        """
        self.counters[counter] += 1
        total = self.counters[counter]
        if total == 10 ** (len(str(total)) - 1):
            logger.warning("%s: %s from %s: %s (%d so far)", self.name, counter, peer, reason, total)


class _ConnectionState(enum.Enum):
    NEW = "new"
    REFUSED = "refused"  # over a limit: answered 503 and closed, never counted as open
    UNAUTHENTICATED = "unauthenticated"
    AUTHENTICATED = "authenticated"
    CLOSED = "closed"


class _BudgetedParser:
    """Passes bytes to aiohttp's websocket parser until the budget would be crossed, then none."""

    __slots__ = ("_bytes_left", "_on_exceeded", "_parser")

    def __init__(self, parser: Any, bytes_max: int, on_exceeded: Callable[[], None]) -> None:
        self._parser = parser
        self._bytes_left: int | None = bytes_max
        self._on_exceeded = on_exceeded

    def lift(self) -> None:
        self._bytes_left = None

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        if self._bytes_left is not None:
            if len(data) > self._bytes_left:
                self._bytes_left = 0
                self._on_exceeded()
                return False, b""
            self._bytes_left -= len(data)
        result: tuple[bool, bytes] = self._parser.feed_data(data)
        return result

    def feed_eof(self) -> None:
        self._parser.feed_eof()


class GuardedRequestHandler(RequestHandler):
    """aiohttp's per-connection protocol with a `ConnectionGuard`'s limits applied."""

    __slots__ = ("_budgeted_parser", "_guard", "_head_timer", "_heads_at_timer", "_state")

    def __init__(self, manager: web.Server, *, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = guard
        self._state = _ConnectionState.NEW
        self._head_timer: asyncio.TimerHandle | None = None
        self._heads_at_timer = 0
        self._budgeted_parser: _BudgetedParser | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        refusal = self._guard.find_refusal()
        if refusal is not None:
            # Answered and closed without a handler task or a parser run: a refusal must
            # cost less than the connection it refuses.
            self._state = _ConnectionState.REFUSED
            self._guard.count("connections_refused", refusal, transport.get_extra_info("peername"))
            stream = cast(asyncio.Transport, transport)  # a listening socket's transports are streams
            stream.write(_REFUSAL_RESPONSE)
            stream.close()
            return
        self._state = _ConnectionState.UNAUTHENTICATED
        self._guard._open()
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._state is _ConnectionState.REFUSED:
            return
        self._cancel_head_timer()
        if self._state is not _ConnectionState.CLOSED:
            self._guard._close(authenticated=self._state is _ConnectionState.AUTHENTICATED)
            self._state = _ConnectionState.CLOSED
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._state is _ConnectionState.REFUSED:
            return
        super().data_received(data)
        if self._head_timer is not None and (self._request_count != self._heads_at_timer or self._upgraded):
            self._cancel_head_timer()  # the head is complete
        if self._head_timer is None and data and self._is_awaiting_head():
            # The first bytes of a head the handler is waiting for: from now on it has
            # request_head_timeout_ms to become complete.
            self._heads_at_timer = self._request_count
            self._head_timer = asyncio.get_running_loop().call_later(
                self._guard.limits.request_head_timeout_ms / 1000, self._on_head_timeout
            )

    def _is_awaiting_head(self) -> bool:
        """True while the handler waits for a request and bytes of it have come, but not all."""
        waiter = self._waiter
        return waiter is not None and not waiter.done() and not self._upgraded

    def _on_head_timeout(self) -> None:
        self._head_timer = None
        if self._request_count != self._heads_at_timer or self._upgraded or self.transport is None:
            return
        peer = self.transport.get_extra_info("peername")
        timeout_ms = self._guard.limits.request_head_timeout_ms
        self._guard.count("request_heads_timed_out", f"no complete request head within {timeout_ms} ms", peer)
        self.force_close()

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def set_parser(self, parser: Any, data_received_cb: Callable[[], None] | None = None) -> None:
        """aiohttp installs the websocket parser here; before authentication it gets a byte budget."""
        bytes_max = self._guard.limits.unauthenticated_bytes_max
        if bytes_max is not None and self._state is _ConnectionState.UNAUTHENTICATED:
            self._budgeted_parser = _BudgetedParser(parser, bytes_max, self._on_budget_exceeded)
            parser = self._budgeted_parser
        super().set_parser(parser, data_received_cb)

    def _on_budget_exceeded(self) -> None:
        peer = None if self.transport is None else self.transport.get_extra_info("peername")
        bytes_max = self._guard.limits.unauthenticated_bytes_max
        self._guard.count(
            "unauthenticated_bytes_exceeded", f"more than {bytes_max} bytes before authentication", peer
        )
        self.force_close()

    def mark_authenticated(self) -> None:
        """The application trusts this connection now: lift the unauthenticated limits."""
        if self._state is not _ConnectionState.UNAUTHENTICATED:
            return  # already authenticated, or closed meanwhile (then it was released as unauthenticated)
        self._state = _ConnectionState.AUTHENTICATED
        self._guard._authenticate()
        if self._budgeted_parser is not None:
            self._budgeted_parser.lift()


def mark_authenticated(request: web.BaseRequest) -> None:
    """Lift the unauthenticated limits of the connection `request` came on.

    Call it before answering the authentication (the p2p hello ack): a peer may send its
    first large frame as soon as it has the answer.
    """
    protocol = request.protocol
    if not isinstance(protocol, GuardedRequestHandler):
        raise TypeError("the request did not come through a GuardedAppRunner")
    protocol.mark_authenticated()


class _GuardedServer(web.Server):
    """aiohttp's low-level server, making a `GuardedRequestHandler` per connection."""

    def __init__(
        self,
        handler: Any,
        *,
        guard: ConnectionGuard,
        request_factory: Any,
        handler_cancellation: bool,
        handler_kwargs: dict[str, Any],
    ) -> None:
        loop = asyncio.get_running_loop()
        super().__init__(
            handler,
            request_factory=request_factory,
            handler_cancellation=handler_cancellation,
            loop=loop,
            **handler_kwargs,
        )
        self._guard = guard
        self._handler_loop = loop
        self._handler_kwargs = handler_kwargs

    def __call__(self) -> RequestHandler:
        return GuardedRequestHandler(self, guard=self._guard, loop=self._handler_loop, **self._handler_kwargs)


class GuardedAppRunner(web.AppRunner):
    """A `web.AppRunner` whose connections obey `guard`; use it with `web.TCPSite` as usual.

    `handler_kwargs` go to each connection's `RequestHandler` (`access_log`, `max_headers`,
    ...); the keep-alive timeout comes from the guard's limits.
    """

    def __init__(
        self,
        app: web.Application,
        guard: ConnectionGuard,
        *,
        shutdown_timeout: float = 60.0,
        **handler_kwargs: Any,
    ) -> None:
        handler_kwargs["keepalive_timeout"] = guard.limits.keepalive_timeout_ms / 1000
        super().__init__(app, shutdown_timeout=shutdown_timeout, **handler_kwargs)
        self.guard = guard
        self._handler_kwargs = handler_kwargs

    async def _make_server(self) -> web.Server:
        # The base class starts the application up and builds aiohttp's own server, whose
        # handler and request factory are then served through the guarded one.
        server = await super()._make_server()
        return _GuardedServer(
            server.request_handler,
            guard=self.guard,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            handler_kwargs=self._handler_kwargs,
        )
