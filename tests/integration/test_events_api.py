"""Committed events over real HTTP and websockets on 127.0.0.1, from a real ledger: pages,
long-poll, the websocket's replay then live stream, heartbeats, the slow-subscriber drop with
its resume cursor, the bounds, and the SDK's reconnecting generator."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, WSServerHandshakeError
from aiohttp.test_utils import TestClient, TestServer

from chainnode.api.event_reader import compute_chain_tag, decode_bound_cursor, encode_bound_cursor
from chainnode.api.events import (
    CLOSE_GOING_AWAY,
    CLOSE_SLOW_SUBSCRIBER,
    HUB_KEY,
    EventHub,
    EventLimits,
    compute_subscriber_samples,
)
from chainnode.api.server import create_app
from chainnode.app.events import START, BadCursorError, Position, encode_cursor
from chainnode.sdk import events as sdk_events
from chainnode.sdk.client import Client
from chainnode.sdk.errors import ClientError
from tests.factories import REPO, build_put, load_entity
from tests.integration.api_harness import CHAIN_ID, SUBMITTER, LocalService, ServerThread
from tests.tcp_proxy import CuttingProxy

LIMITS = EventLimits(
    subscribers_max=3,
    heartbeat_ms=200,
    send_timeout_ms=300,
    close_timeout_ms=3_000,
    batch_events_max=500,
    scan_txs_max=20_000,
    cache_events_max=1_000,
    send_buffer_bytes=8 * 1024,
)


@pytest.fixture
async def http(service: LocalService) -> AsyncIterator[TestClient[Any, Any]]:
    app = create_app(service)
    app[HUB_KEY].limits = LIMITS
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client


def _commit_puts(service: LocalService, blocks: int, per_block: int, prefix: str = "k") -> None:
    signer = load_entity(service.directory, SUBMITTER)
    for block in range(blocks):
        txs = [
            build_put(signer, f"{prefix}{block}-{index}", b"v", chain_id=CHAIN_ID, valid_until=10_000)
            for index in range(per_block)
        ]
        results = service.submit_transactions([tx.encoded for tx in txs])
        assert all(result.accepted for result in results), results
        assert service.commit_pending() is not None


async def _get(http: TestClient[Any, Any], **query: Any) -> dict[str, Any]:
    response = await http.get("/v1/events", params={name: str(value) for name, value in query.items()})
    assert response.status == 200, await response.text()
    return dict(await response.json())


async def _read_all(http: TestClient[Any, Any], limit: int, **query: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor = ""
    for _ in range(1000):
        page = await _get(http, **{"from": cursor}, limit=limit, **query)
        found.extend(page["events"])
        cursor = page["next"]
        if page["caught_up"] and not page["events"]:
            return found
    raise AssertionError("paging did not end")


def _decode(service: LocalService, cursor: str) -> Position:
    return decode_bound_cursor(cursor, compute_chain_tag(service.ledger.get_genesis_hash()))


def _encode(service: LocalService, position: Position) -> str:
    return encode_bound_cursor(position, compute_chain_tag(service.ledger.get_genesis_hash()))


def _get_subscriber_metrics(hub: EventHub) -> dict[str, float]:
    return {sample.name: sample.value for sample in compute_subscriber_samples(hub)}


def _position(event: dict[str, Any]) -> Position:
    return Position(event["height"], event["tx_index"], event["event_index"])


async def test_pages_hold_every_event_once_in_order(
    http: TestClient[Any, Any], service: LocalService
) -> None:
    _commit_puts(service, blocks=3, per_block=4)
    whole = await _get(http, limit=1000)
    assert whole["caught_up"] is True and whole["head"] == 3
    assert len(whole["events"]) == 12
    assert _decode(service, whole["next"]) == Position(4, 0, 0)
    positions = [_position(event) for event in whole["events"]]
    assert positions == sorted(positions) and len(set(positions)) == 12
    first = whole["events"][0]
    assert first["module"] == "records" and first["action"] == "put" and first["name"] == "records.put"
    assert first["entity"] == SUBMITTER and first["signer"] == SUBMITTER
    assert first["keys"] == [first["attributes"][1]]
    for event in whole["events"]:
        assert _decode(service, event["cursor"]) == _position(event).get_next()
    for limit in (1, 5, 12):
        assert await _read_all(http, limit) == whole["events"]
    # Resuming from an event's cursor starts right after it.
    fifth = whole["events"][4]
    rest = await _get(http, **{"from": fifth["cursor"]}, limit=1000)
    assert rest["events"] == whole["events"][5:]


async def test_filters(http: TestClient[Any, Any], service: LocalService) -> None:
    _commit_puts(service, blocks=2, per_block=3)
    assert len(await _read_all(http, 2, module="records")) == 6
    assert len(await _read_all(http, 2, entity=SUBMITTER)) == 6
    for query in ({"module": "assets"}, {"entity": "someone-else"}):
        page = await _get(http, limit=10, **query)
        assert page["events"] == [] and page["caught_up"] is True
        assert _decode(service, page["next"]) == Position(3, 0, 0)


async def test_bad_queries_are_typed_errors(http: TestClient[Any, Any], service: LocalService) -> None:
    good = encode_cursor(Position(10, 0xAB, 0xCD))
    cases = [
        ({"from": "zz"}, "bad_cursor"),
        ({"from": good.upper()}, "bad_cursor"),
        ({"from": good + "00"}, "bad_cursor"),
        ({"limit": "0"}, "bad_limit"),
        ({"limit": "1001"}, "bad_limit"),
        ({"limit": "-1"}, "bad_limit"),
        ({"wait_ms": "30001"}, "bad_request"),
        ({"module": "m" * 129}, "bad_request"),
    ]
    for query, code in cases:
        response = await http.get("/v1/events", params=query)
        assert response.status == 400, query
        assert (await response.json())["error"]["code"] == code, query
    response = await http.get("/v1/events/ws", params={"from": "nope"})
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "bad_cursor"


async def test_a_cursor_past_the_head_waits_there(http: TestClient[Any, Any], service: LocalService) -> None:
    ahead = _encode(service, Position(10, 0, 0))
    page = await _get(http, **{"from": ahead})
    assert page == {"events": [], "next": ahead, "head": 0, "caught_up": True}
    # A cursor of the old form (a position, no chain) is still taken, and answered in the new.
    page = await _get(http, **{"from": encode_cursor(Position(10, 0, 0))})
    assert page == {"events": [], "next": ahead, "head": 0, "caught_up": True}


async def test_a_cursor_of_another_chain_is_refused(
    http: TestClient[Any, Any], service: LocalService
) -> None:
    _commit_puts(service, blocks=1, per_block=2)
    ours = (await _get(http, limit=1))["events"][0]["cursor"]
    assert _decode(service, ours) == Position(1, 0, 1)
    other_chain = encode_bound_cursor(Position(1, 0, 1), b"\x5a" * 8)
    for path in ("/v1/events", "/v1/events/ws"):
        response = await http.get(path, params={"from": other_chain})
        assert response.status == 400, path
        error = (await response.json())["error"]
        assert error["code"] == "bad_cursor" and "another chain" in error["message"], error
    assert (await _get(http, **{"from": ours}))["events"][0]["cursor"] != ours


async def test_long_poll_wakes_on_commit_and_times_out(
    http: TestClient[Any, Any], service: LocalService
) -> None:
    started = time.monotonic()
    page = await _get(http, **{"from": "head"}, wait_ms=300)
    assert page["events"] == [] and time.monotonic() - started >= 0.29

    async def commit_later() -> None:
        await asyncio.sleep(0.3)  # the request is waiting by then
        _commit_puts(service, blocks=1, per_block=2)

    started = time.monotonic()
    committer = asyncio.ensure_future(commit_later())
    page = await _get(http, **{"from": page["next"]}, wait_ms=20_000)
    await committer
    assert len(page["events"]) == 2
    assert time.monotonic() - started < 5


async def _receive_json(ws: Any) -> dict[str, Any]:
    message = await asyncio.wait_for(ws.receive(), 10)
    assert message.type == WSMsgType.TEXT, message
    return dict(json.loads(message.data))


async def _receive_events(ws: Any, count: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while len(found) < count:
        message = await _receive_json(ws)
        if message["type"] == "events":
            found.extend(message["events"])
    return found, message


async def test_websocket_replays_then_streams_live(http: TestClient[Any, Any], service: LocalService) -> None:
    _commit_puts(service, blocks=2, per_block=3)
    expected = (await _get(http, limit=1000))["events"]
    async with http.ws_connect("/v1/events/ws") as ws:
        replayed, _ = await _receive_events(ws, 6)
        assert replayed == expected
        heartbeat = await _receive_json(ws)
        assert heartbeat == {"type": "heartbeat", "next": _encode(service, Position(3, 0, 0)), "head": 2}
        _commit_puts(service, blocks=1, per_block=2, prefix="live")
        live, message = await _receive_events(ws, 2)
        assert sorted(key for event in live for key in event["keys"]) == ["live0-0", "live0-1"]
        assert [_position(event).height for event in live] == [3, 3]
        assert message["next"] == _encode(service, Position(4, 0, 0))
    # From an event's cursor: the events after it, none before and not it.
    async with http.ws_connect("/v1/events/ws", params={"from": expected[3]["cursor"]}) as ws:
        resumed, _ = await _receive_events(ws, 4)
        assert resumed[:2] == expected[4:] and [_position(event).height for event in resumed[2:]] == [3, 3]


@pytest.mark.timeout(60)  # a subscriber never dropped would wait here until the suite's 300 s
async def test_slow_subscriber_is_dropped_with_its_resume_cursor(
    http: TestClient[Any, Any], service: LocalService
) -> None:
    _commit_puts(service, blocks=1, per_block=600)
    assert http.server.port is not None
    url = f"http://127.0.0.1:{http.server.port}"
    # A subscriber with a tiny receive window that reads nothing for a while.
    slow = await asyncio.to_thread(
        sdk_events.EventSocket.connect, url, "/v1/events/ws", timeout_s=10, receive_buffer_bytes=4096
    )
    await asyncio.sleep(1.0)  # being slow is the point: past the 300 ms send timeout
    received: list[dict[str, Any]] = []
    with pytest.raises(sdk_events.WebSocketClosedError) as closed:
        while True:
            message = json.loads(await asyncio.to_thread(slow.receive_text))
            received.extend(message.get("events", []))
    slow.close()
    assert closed.value.code == CLOSE_SLOW_SUBSCRIBER
    reason = json.loads(closed.value.reason)
    assert reason["code"] == "slow_subscriber"
    resume_from = reason["resume_from"]
    assert _decode(service, resume_from) == START  # its first message was never taken whole
    assert len(received) < 600
    metrics = _get_subscriber_metrics(http.app[HUB_KEY])
    assert metrics["chainnode_event_subscribers_dropped_slow_total"] == 1
    assert metrics["chainnode_event_subscribers_refused_total"] == 0
    # Resuming from the reason's cursor loses nothing.
    async with http.ws_connect("/v1/events/ws", params={"from": resume_from}) as ws:
        events, _ = await _receive_events(ws, 600)
    assert events == await _read_all(http, 1000)


async def test_subscribers_are_bounded_and_closed_at_shutdown(service: LocalService) -> None:
    app = create_app(service)
    app[HUB_KEY].limits = LIMITS
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    async with aiohttp.ClientSession() as session:
        url = str(server.make_url("/v1/events/ws"))
        open_sockets = [await session.ws_connect(url) for _ in range(LIMITS.subscribers_max)]
        with pytest.raises(WSServerHandshakeError) as refused:
            await session.ws_connect(url)
        assert refused.value.status == 503
        assert _get_subscriber_metrics(app[HUB_KEY]) == {
            "chainnode_event_subscribers": LIMITS.subscribers_max,
            "chainnode_event_subscribers_dropped_slow_total": 0,
            "chainnode_event_subscribers_refused_total": 1,
        }
        await server.close()  # the node shuts down: every subscriber hears where to resume
        for ws in open_sockets:
            message = await asyncio.wait_for(ws.receive(), 10)
            while message.type == WSMsgType.TEXT:
                message = await asyncio.wait_for(ws.receive(), 10)
            assert message.type == WSMsgType.CLOSE and message.data == CLOSE_GOING_AWAY
            assert json.loads(message.extra)["resume_from"] == _encode(service, START)
            await ws.close()
    assert _get_subscriber_metrics(app[HUB_KEY])["chainnode_event_subscribers"] == 0


@pytest.fixture
def served(service: LocalService, monkeypatch: pytest.MonkeyPatch) -> Iterator[ServerThread]:
    monkeypatch.setattr("chainnode.api.events.DEFAULT_LIMITS", LIMITS)
    with ServerThread(service) as server:
        yield server


def test_sdk_stream_survives_cut_connections(
    served: ServerThread, service: LocalService, tmp_path: Path
) -> None:
    """The SDK's generator, cut off from the node three times while blocks commit, yields every
    event exactly once and in order."""
    port = int(served.url.rsplit(":", 1)[1])
    proxy = CuttingProxy(port)
    received: list[dict[str, Any]] = []
    done = threading.Event()

    def subscribe() -> None:
        with Client(proxy.url) as client:
            for event in sdk_events.events(client, idle_timeout_s=5, reconnect_delay_s=0.05):
                received.append(event)
                if len(received) >= 40:
                    done.set()
                    return

    subscriber = threading.Thread(target=subscribe, daemon=True)
    subscriber.start()
    try:
        for round_index in range(4):
            served.call(_commit_puts, service, 2, 5, f"r{round_index}-")
            deadline = time.monotonic() + 10
            while len(received) < 10 * (round_index + 1) and time.monotonic() < deadline:
                time.sleep(0.01)
            if round_index < 3:
                assert proxy.cut() >= 1
        assert done.wait(20)
    finally:
        proxy.close()
    subscriber.join(10)
    with Client(served.url) as client:
        expected = list(sdk_events.read_events(client, page_size=7))
    assert len(expected) == 40
    assert received == expected


def test_sdk_head_cursor_is_the_nodes_own_bound_to_its_chain(
    served: ServerThread, service: LocalService
) -> None:
    served.call(_commit_puts, service, 1, 2, "old")
    with Client(served.url) as client:
        head = sdk_events.resolve_head_cursor(client)
    assert _decode(service, head) == Position(2, 0, 0)
    with pytest.raises(BadCursorError):
        decode_bound_cursor(head, b"\x00" * 8)


def test_sdk_refuses_a_bad_cursor(served: ServerThread) -> None:
    with Client(served.url) as client, pytest.raises(ClientError) as refused:
        next(client.events(from_cursor="bad"))
    assert refused.value.code == "bad_cursor" and refused.value.status == 400


async def test_a_filtered_read_scans_a_bounded_stretch(
    http: TestClient[Any, Any], service: LocalService
) -> None:
    _commit_puts(service, blocks=4, per_block=3)
    http.app[HUB_KEY].limits = dataclasses.replace(LIMITS, scan_txs_max=5)
    started = time.monotonic()
    page = await _get(http, module="assets", limit=10, wait_ms=5_000)
    # Two heights scanned (3 events + 1 each), nothing found, not at the head: no waiting.
    assert page["events"] == [] and page["caught_up"] is False
    assert _decode(service, page["next"]) == Position(3, 0, 0)
    assert time.monotonic() - started < 4
    assert len(await _read_all(http, 10, module="records")) == 12


def test_cli_prints_events_and_the_cursor_to_go_on_from(
    served: ServerThread, service: LocalService, capsys: pytest.CaptureFixture[str]
) -> None:
    from chainnode.cli.main import main

    served.call(_commit_puts, service, 2, 2, "cli")
    assert main(["events", "--node", served.url, "--json"]) == 0
    out, err = capsys.readouterr()
    document = json.loads(out)  # one document: the events, their count and where to go on
    printed = document["events"]
    assert document["count"] == len(printed) and document["next"] == err.strip().removeprefix("next: ")
    assert sorted(key for event in printed for key in event["keys"]) == [
        "cli0-0",
        "cli0-1",
        "cli1-0",
        "cli1-1",
    ]
    next_cursor = err.strip().removeprefix("next: ")
    assert _decode(service, next_cursor) == Position(3, 0, 0)
    served.call(_commit_puts, service, 1, 1, "later")
    assert main(["events", "--node", served.url, "--from", next_cursor, "--module", "records", "--text"]) == 0
    out, _ = capsys.readouterr()
    lines = out.splitlines()  # the table's header, one event, the note with the next cursor
    assert lines[0].split() == ["POSITION", "NAME", "ENTITY", "KEYS", "CURSOR"] and len(lines) == 3, out
    assert "records.put" in lines[1] and SUBMITTER in lines[1] and "later0-0" in lines[1]
    assert main(["events", "--node", served.url, "--from", "not-a-cursor"]) == 1
    assert "bad_cursor" in capsys.readouterr().err


def test_cli_follow_streams_new_events_until_interrupted(served: ServerThread, service: LocalService) -> None:
    served.call(_commit_puts, service, 1, 2, "old")
    with Client(served.url) as client:
        after_old = sdk_events.get_events_page(client, limit=10)["next"]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli",
            "events",
            "--node",
            served.url,
            "--from",
            after_old,
            "--follow",
            "--json",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        served.call(_commit_puts, service, 1, 2, "new")
        lines = [json.loads(process.stdout.readline()) for _ in range(2)]
        assert sorted(key for event in lines for key in event["keys"]) == ["new0-0", "new0-1"]
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=20)
    assert process.returncode == 130 and "interrupted" in err and "Traceback" not in err
