"""The API's connection limits (`p2p.http_guard`) over real sockets on 127.0.0.1.

The real API application (`create_app` over the `LocalService` harness) is served by a
`GuardedAppRunner` with small limits, attacked with raw sockets (slowloris heads, idle
connections, connections over the cap) while an honest client keeps asking for
`/v1/health`.  Every loop is bounded in count and every wait in time; each test fails
when the limit it is about is removed (a `GuardedAppRunner` without that limit keeps
the attacker's connections open past the deadline the test allows).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass

import pytest
from aiohttp import web

from chainnode.api.server import create_app
from chainnode.core.errors import ConfigError
from p2p.http_guard import REFUSAL_CODE, ConnectionGuard, ConnectionLimits, GuardedAppRunner
from tests.factories import wait_until
from tests.integration.api_harness import LocalService

WAIT_S = 5.0
SHORT_MS = 300  # the limit under test
LONG_MS = 20_000  # the limits not under test: far beyond any wait below

HEALTH_REQUEST = b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@dataclass(frozen=True, slots=True)
class Served:
    guard: ConnectionGuard
    port: int


@asynccontextmanager
async def serve(service: LocalService, limits: ConnectionLimits) -> AsyncIterator[Served]:
    guard = ConnectionGuard(limits, name="api")
    runner = GuardedAppRunner(create_app(service), guard, shutdown_timeout=1.0, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield Served(guard, int(runner.addresses[0][1]))
    finally:
        await runner.cleanup()


@asynccontextmanager
async def connections() -> AsyncIterator[list[Connection]]:
    """A list the test fills with raw connections; all are closed afterwards."""
    opened: list[Connection] = []
    try:
        yield opened
    finally:
        for _, writer in opened:
            writer.close()
            with suppress(ConnectionError):
                await writer.wait_closed()


async def connect(port: int, opened: list[Connection]) -> Connection:
    connection = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), WAIT_S)
    opened.append(connection)
    return connection


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One HTTP/1.1 response with a Content-Length body: its status and body."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT_S)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = next(int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:"))
    body = await asyncio.wait_for(reader.readexactly(length), WAIT_S)
    return status, body


async def ask_health(connection: Connection) -> int:
    reader, writer = connection
    writer.write(HEALTH_REQUEST)
    await writer.drain()
    status, body = await read_response(reader)
    assert json.loads(body) == {"status": "ok"}
    return status


async def ask_health_on_a_new_connection(port: int) -> int:
    async with connections() as opened:
        return await ask_health(await connect(port, opened))


async def wait_closed_by_server(reader: asyncio.StreamReader, timeout_s: float) -> float:
    """Seconds until the server closed the connection (reading whatever it sent); raises on timeout."""
    started = time.monotonic()
    deadline = started + timeout_s
    while True:
        try:
            data = await asyncio.wait_for(reader.read(65536), max(0.0, deadline - time.monotonic()))
        except ConnectionResetError:
            data = b""
        except TimeoutError:
            raise AssertionError(f"the server kept the connection open for {timeout_s} s") from None
        if not data:
            return time.monotonic() - started


# ---------------------------------------------------------------- the limits themselves


@pytest.mark.parametrize(
    "limits",
    [
        ConnectionLimits(0, 1000, 1000),
        ConnectionLimits(10, 0, 1000),
        ConnectionLimits(10, 1000, 0),
        ConnectionLimits(10, 1000, 1000, unauthenticated_max=11),
        ConnectionLimits(10, 1000, 1000, unauthenticated_max=0),
        ConnectionLimits(10, 1000, 1000, unauthenticated_bytes_max=0),
    ],
    ids=[
        "no-connections",
        "no-head-time",
        "no-keepalive",
        "more-unauthenticated-than-open",
        "no-unauthenticated",
        "no-unauthenticated-bytes",
    ],
)
def test_unusable_limits_are_a_config_error(limits: ConnectionLimits) -> None:
    with pytest.raises(ConfigError, match="api connection limits"):
        ConnectionGuard(limits, name="api")


# ---------------------------------------------------------------- slowloris


SLOWLORIS_CONNECTIONS = 8
TRICKLE_S = 0.05


async def trickle_head(writer: asyncio.StreamWriter, stop: asyncio.Event) -> None:
    """Send a request head that never ends, one short header line every TRICKLE_S."""
    writer.write(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    for index in range(int(WAIT_S / TRICKLE_S)):
        if stop.is_set():
            return
        try:
            writer.write(f"X-Slow-{index}: 1\r\n".encode())
            await writer.drain()
        except ConnectionError:
            return
        await asyncio.sleep(TRICKLE_S)


async def test_slowloris_heads_are_closed_after_the_head_timeout_while_an_honest_client_is_served(
    service: LocalService,
) -> None:
    limits = ConnectionLimits(
        connections_max=64, request_head_timeout_ms=SHORT_MS, keepalive_timeout_ms=LONG_MS
    )
    async with serve(service, limits) as served, connections() as opened:
        honest = await connect(served.port, opened)
        assert await ask_health(honest) == 200
        slow = [await connect(served.port, opened) for _ in range(SLOWLORIS_CONNECTIONS)]
        stop = asyncio.Event()
        trickles = [asyncio.create_task(trickle_head(writer, stop)) for _, writer in slow]
        try:
            # While the heads trickle in, the honest client is answered, on its open
            # connection and on new ones.
            for _ in range(5):
                assert await ask_health(honest) == 200
                assert await ask_health_on_a_new_connection(served.port) == 200
            held_s = [await wait_closed_by_server(reader, WAIT_S) for reader, _ in slow]
        finally:
            stop.set()
            await asyncio.gather(*trickles)
        # Each was closed about SHORT_MS after its first byte, long before the keep-alive
        # timer (LONG_MS) could have closed it, although it kept sending.
        assert max(held_s) < 4 * SHORT_MS / 1000, held_s
        assert served.guard.counters["request_heads_timed_out"] == SLOWLORIS_CONNECTIONS
        assert await ask_health(honest) == 200


async def test_a_head_sent_in_pieces_within_the_timeout_is_served(service: LocalService) -> None:
    limits = ConnectionLimits(
        connections_max=8, request_head_timeout_ms=SHORT_MS * 2, keepalive_timeout_ms=LONG_MS
    )
    async with serve(service, limits) as served, connections() as opened:
        reader, writer = await connect(served.port, opened)
        for _ in range(3):  # three requests on one connection, each head in three pieces
            for piece in (HEALTH_REQUEST[:10], HEALTH_REQUEST[10:30], HEALTH_REQUEST[30:]):
                writer.write(piece)
                await writer.drain()
                await asyncio.sleep(SHORT_MS / 1000 / 4)
            assert (await read_response(reader))[0] == 200
            # Idle between requests for longer than the head timeout: that is keep-alive,
            # not a slow head.
            await asyncio.sleep(SHORT_MS * 3 / 1000)
        assert served.guard.counters["request_heads_timed_out"] == 0


# ---------------------------------------------------------------- idle keep-alive


async def test_idle_connections_are_closed_after_the_keepalive_timeout(service: LocalService) -> None:
    limits = ConnectionLimits(
        connections_max=8, request_head_timeout_ms=LONG_MS, keepalive_timeout_ms=SHORT_MS
    )
    async with serve(service, limits) as served, connections() as opened:
        silent_reader, _ = await connect(served.port, opened)  # never sends a byte
        used = await connect(served.port, opened)
        assert await ask_health(used) == 200  # then idle
        for reader in (silent_reader, used[0]):
            held_s = await wait_closed_by_server(reader, WAIT_S)
            assert held_s < 4 * SHORT_MS / 1000, held_s
        await wait_until(lambda: served.guard.connections_open == 0, "both connections are released", WAIT_S)
        assert await ask_health_on_a_new_connection(served.port) == 200


# ---------------------------------------------------------------- the connection cap


CAP = 6
OVER_CAP_ATTEMPTS = 10


async def test_connections_over_the_cap_are_refused_and_counted_while_honest_clients_are_served(
    service: LocalService,
) -> None:
    limits = ConnectionLimits(
        connections_max=CAP, request_head_timeout_ms=LONG_MS, keepalive_timeout_ms=LONG_MS
    )
    async with serve(service, limits) as served, connections() as opened:
        honest = await connect(served.port, opened)
        assert await ask_health(honest) == 200
        idle = [await connect(served.port, opened) for _ in range(CAP - 1)]
        await wait_until(lambda: served.guard.connections_open == CAP, "the cap is reached", WAIT_S)
        for attempt in range(OVER_CAP_ATTEMPTS):
            reader, _ = await connect(served.port, opened)
            status, body = await read_response(reader)
            assert (status, json.loads(body)["error"]["code"]) == (503, REFUSAL_CODE), attempt
            assert await wait_closed_by_server(reader, WAIT_S) < 1.0
            # The honest client's connection, opened before the flood, is still served.
            assert await ask_health(honest) == 200
        assert served.guard.counters["connections_refused"] == OVER_CAP_ATTEMPTS
        assert served.guard.connections_open == CAP
        # Once the idle connections go, new clients are served again.
        for _, writer in idle:
            writer.close()
        await wait_until(
            lambda: served.guard.connections_open == 1, "the idle connections are released", WAIT_S
        )
        assert await ask_health_on_a_new_connection(served.port) == 200
        assert served.guard.counters["connections_refused"] == OVER_CAP_ATTEMPTS
