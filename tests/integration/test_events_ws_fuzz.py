"""The events websocket `/v1/events/ws` under bad input, from a raw socket on 127.0.0.1: random and
invalid query parameters, junk frames (text, binary, invalid UTF-8, oversize, bad opcodes, bad
framing, bad close codes, random bytes) and connections cut at every step of the handshake and
mid-replay.  The node (the API harness's: a real LevelDB ledger, blocks executed by the real
executor, the API on a real socket) must answer each with a 4xx and a stable error code or a
clear close code, never a 5xx, never an error or traceback in its log, leak no subscriber, and
go on serving every event to the next client.

The schemathesis fuzz (`test_api_fuzz.py`) leaves the websocket out: it is not request/response.
The random cases are drawn from a fixed seed, so a failure names the case that reproduces it.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import logging
import os
import random
import socket
import struct
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from chainnode.api.event_reader import compute_chain_tag, encode_bound_cursor
from chainnode.api.events import HUB_KEY, EventLimits
from chainnode.api.server import create_app
from chainnode.app.events import Position, encode_cursor
from tests.factories import build_put, load_entity
from tests.integration.api_harness import CHAIN_ID, SUBMITTER, LocalService

SEED = 20261202
QUERY_CASES = 120
RANDOM_FRAME_CASES = 24
FAST_CLOSE_ROUNDS = 8
EVENTS = 24
READ_TIMEOUT_S = 5.0
LIMITS = EventLimits(
    subscribers_max=16,
    heartbeat_ms=150,
    send_timeout_ms=2_000,
    close_timeout_ms=1_000,
    send_buffer_bytes=8 * 1024,
)
# What a node may close a misbehaving client's websocket with: normal, protocol error,
# unsupported data, invalid payload (not UTF-8), message too big.
CLEAR_CLOSE_CODES = {1000, 1002, 1003, 1007, 1009}
OPCODE_TEXT, OPCODE_BINARY, OPCODE_CLOSE, OPCODE_PING = 0x1, 0x2, 0x8, 0x9


@dataclasses.dataclass
class Node:
    server: TestServer
    service: LocalService

    @property
    def port(self) -> int:
        assert self.server.port is not None
        return self.server.port


def _commit_puts(service: LocalService, blocks: int, per_block: int, label: str) -> None:
    signer = load_entity(service.directory, SUBMITTER)
    for block in range(blocks):
        txs = [
            build_put(signer, f"{label}{block}-{index}", b"v", chain_id=CHAIN_ID, valid_until=10_000)
            for index in range(per_block)
        ]
        assert all(result.accepted for result in service.submit_transactions([tx.encoded for tx in txs]))
        assert service.commit_pending() is not None


@pytest.fixture
async def node(service: LocalService, caplog: pytest.LogCaptureFixture) -> AsyncIterator[Node]:
    _commit_puts(service, 3, EVENTS // 3, "fuzz")
    app = create_app(service)
    app[HUB_KEY].limits = LIMITS
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    caplog.set_level(logging.WARNING)
    try:
        yield Node(server, service)
    finally:
        await server.close()
    problems = [
        f"{record.name} {record.levelname}: {record.getMessage()}"
        for record in caplog.records
        if record.levelno >= logging.ERROR or record.exc_info is not None
    ]
    assert not problems, "the node logged errors:\n" + "\n".join(problems)


# ---------------------------------------------------------------- a raw websocket client


def build_frame(opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True, rsv: int = 0) -> bytes:
    """One RFC 6455 frame as a client would send it (or not: unmasked, reserved bits set)."""
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    mask_bit = 0x80 if masked else 0
    length = len(payload)
    if length < 126:
        head += bytes([mask_bit | length])
    elif length < 1 << 16:
        head += bytes([mask_bit | 126]) + struct.pack(">H", length)
    else:
        head += bytes([mask_bit | 127]) + struct.pack(">Q", length)
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(byte ^ key[index % 4] for index, byte in enumerate(payload))


def build_handshake(query: bytes) -> bytes:
    key = base64.b64encode(os.urandom(16))
    return (
        b"GET /v1/events/ws" + query + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )


@dataclasses.dataclass
class Answer:
    status: int
    body: bytes = b""
    messages: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # text frames, as JSON
    close_code: int | None = None  # the node's close frame, None when it sent none


def parse_frames(data: bytes, answer: Answer) -> None:
    """The node's frames (unmasked, as a server sends them) into `answer`."""
    index = 0
    while index + 2 <= len(data):
        opcode, length, start = data[index] & 0x0F, data[index + 1] & 0x7F, index + 2
        if length == 126:
            (length,) = struct.unpack(">H", data[start : start + 2])
            start += 2
        elif length == 127:
            (length,) = struct.unpack(">Q", data[start : start + 8])
            start += 8
        payload = data[start : start + length]
        if len(payload) < length:
            return  # the rest never came
        if opcode == OPCODE_TEXT:
            answer.messages.append(json.loads(payload))
        elif opcode == OPCODE_CLOSE:
            answer.close_code = struct.unpack(">H", payload[:2])[0] if length >= 2 else 1005
        index = start + length


async def exchange(port: int, query: bytes, frames: bytes = b"", *, listen_s: float = 0.5) -> Answer:
    """Open the websocket with `query`, send `frames`, and read what the node answers until it
    closes the connection or `listen_s` passes (then close it ourselves)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(build_handshake(query))
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
        status = int(head.split(b" ", 2)[1])
        if status != 101:
            lengths = [line for line in head.lower().split(b"\r\n") if line.startswith(b"content-length:")]
            length = int(lengths[0].split(b":")[1]) if lengths else 0
            body = await asyncio.wait_for(reader.readexactly(length), READ_TIMEOUT_S)
            return Answer(status, body)
        answer = Answer(status)
        received = b""
        with_close = frames + build_frame(OPCODE_CLOSE, struct.pack(">H", 1000))
        writer.write(frames)
        await writer.drain()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + listen_s
        sent_close = False
        while True:
            remaining_s = deadline - loop.time()
            if remaining_s <= 0 and not sent_close:
                writer.write(with_close[len(frames) :])  # our own close: the node must echo it
                sent_close, deadline = True, loop.time() + READ_TIMEOUT_S
                continue
            try:
                chunk = await asyncio.wait_for(reader.read(1 << 16), max(remaining_s, 0.01))
            except TimeoutError:
                if sent_close:
                    raise AssertionError("the node did not close after our close") from None
                continue
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
        parse_frames(received, answer)
        return answer
    finally:
        writer.close()


def _check_refusal(answer: Answer, case: object) -> None:
    assert answer.status == 400, (case, answer)
    if answer.body.startswith(b"{"):
        assert json.loads(answer.body)["error"]["code"] in ("bad_cursor", "bad_request"), (case, answer)


async def _check_still_serving(node: Node, events_expected: int = EVENTS) -> None:
    """A new subscriber gets every event, and no subscriber is left behind."""
    answer = await exchange(node.port, b"", listen_s=0.5)
    events = [
        event for message in answer.messages if message["type"] == "events" for event in message["events"]
    ]
    assert len(events) == events_expected and answer.close_code == 1000, answer
    hub = node.server.app[HUB_KEY]
    for _ in range(100):
        if not hub.subscribers:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{len(hub.subscribers)} subscribers left open")


# ---------------------------------------------------------------- query parameters


def _draw_value(draw: random.Random, chain_tag: bytes) -> bytes:
    """A query value, percent-encoded: a good or near-good cursor, or junk of any bytes."""
    choice = draw.randrange(10)
    if choice == 0:
        return encode_cursor(
            Position(draw.randrange(1, 2**63), draw.randrange(2**32), draw.randrange(2**32))
        ).encode()
    if choice == 1:
        tag = chain_tag if draw.random() < 0.5 else draw.randbytes(8)
        return encode_bound_cursor(
            Position(draw.randrange(0, 50), draw.randrange(9), draw.randrange(9)), tag
        ).encode()
    if choice == 2:
        return draw.choice([b"", b"head", b"HEAD", b"0", b"-1", b"%00", b"%ff%fe", b"+", b"&&", b"%"])
    if choice == 3:
        return draw.randbytes(draw.randrange(0, 40)).hex().encode()
    if choice == 4:
        return b"x" * draw.choice([129, 1000, 4000])
    raw = draw.randbytes(draw.randrange(0, 60))
    return urllib.parse.quote_from_bytes(raw).encode()


def draw_query(draw: random.Random, chain_tag: bytes) -> bytes:
    names = [b"from", b"module", b"entity", b"limit", b"wait_ms", b"x", b"from[]", b"%ff"]
    pairs = [draw.choice(names) + b"=" + _draw_value(draw, chain_tag) for _ in range(draw.randrange(1, 4))]
    return b"?" + b"&".join(pairs)


async def test_random_and_invalid_queries_are_refused_with_4xx_or_served(node: Node) -> None:
    draw = random.Random(SEED)
    chain_tag = compute_chain_tag(node.service.ledger.get_genesis_hash())
    statuses: dict[int, int] = {}
    for case in range(QUERY_CASES):
        query = draw_query(draw, chain_tag)
        answer = await exchange(node.port, query, listen_s=0.05)
        statuses[answer.status] = statuses.get(answer.status, 0) + 1
        what = f"seed {SEED} case {case}: {query[:200]!r}"
        if answer.status == 101:
            assert answer.close_code == 1000, (what, answer)
        else:
            _check_refusal(answer, what)
    assert statuses.get(400, 0) >= QUERY_CASES // 8 and statuses.get(101, 0) >= QUERY_CASES // 8, statuses
    # A cursor of another chain, and one of this chain, on a query that is otherwise good.
    other = encode_bound_cursor(Position(1, 0, 0), b"\x5a" * 8).encode()
    refused = await exchange(node.port, b"?from=" + other)
    _check_refusal(refused, "another chain's cursor")
    assert json.loads(refused.body)["error"]["code"] == "bad_cursor"
    ours = encode_bound_cursor(Position(1, 0, 0), chain_tag).encode()
    assert (await exchange(node.port, b"?from=" + ours)).status == 101
    await _check_still_serving(node)


# ---------------------------------------------------------------- junk frames

# (name, bytes sent after the handshake, the close code the node must answer; None: it ignores
# the frame, goes on streaming and echoes our close with 1000).
JUNK_FRAMES: list[tuple[str, bytes, int | None]] = [
    ("text", build_frame(OPCODE_TEXT, b'{"type": "subscribe"}'), None),
    ("binary", build_frame(OPCODE_BINARY, bytes(range(256))), None),
    ("empty text", build_frame(OPCODE_TEXT, b""), None),
    ("ping", build_frame(OPCODE_PING, b"are you there"), None),
    ("unmasked text", build_frame(OPCODE_TEXT, b"hello", masked=False), None),
    ("text not UTF-8", build_frame(OPCODE_TEXT, b"\xff\xfe\xfd"), 1007),
    ("oversize binary", build_frame(OPCODE_BINARY, b"x" * (70 * 1024)), 1009),
    (
        "length of 2**62",
        bytes([0x80 | OPCODE_BINARY, 0xFF]) + struct.pack(">Q", 1 << 62) + os.urandom(4),
        1009,
    ),
    ("reserved bits", build_frame(OPCODE_TEXT, b"hi", rsv=0x40), 1002),
    ("reserved opcode", build_frame(0x3, b"hi"), 1002),
    ("fragmented ping", build_frame(OPCODE_PING, b"p", fin=False), 1002),
    ("continuation first", build_frame(0x0, b"tail"), 1002),
    ("close code 999", build_frame(OPCODE_CLOSE, struct.pack(">H", 999)), 1002),
    ("close of one byte", build_frame(OPCODE_CLOSE, b"\x03"), 1002),
    ("close 1000", build_frame(OPCODE_CLOSE, struct.pack(">H", 1000)), 1000),
]


@pytest.mark.parametrize(("name", "frames", "close_code"), JUNK_FRAMES, ids=[case[0] for case in JUNK_FRAMES])
async def test_junk_frames_get_a_clear_close_code_or_are_ignored(
    node: Node, name: str, frames: bytes, close_code: int | None
) -> None:
    answer = await exchange(node.port, b"", frames, listen_s=0.4)
    assert answer.status == 101
    if close_code is None:
        # Ignored: the stream went on (the replay, then heartbeats) until our close.
        assert [message["type"] for message in answer.messages][:2] == ["events", "heartbeat"], answer
        assert answer.close_code == 1000, answer
    else:
        assert answer.close_code == close_code, answer
    await _check_still_serving(node)


async def test_random_bytes_after_the_handshake_end_in_a_clear_close(node: Node) -> None:
    draw = random.Random(SEED + 1)
    for case in range(RANDOM_FRAME_CASES):
        junk = draw.randbytes(draw.randrange(1, 300))
        answer = await exchange(node.port, b"", junk, listen_s=0.2)
        assert answer.status == 101
        assert answer.close_code in CLEAR_CLOSE_CODES, (
            f"seed {SEED + 1} case {case}: {junk[:40].hex()}",
            answer,
        )
    await _check_still_serving(node)


# ---------------------------------------------------------------- connections cut short


async def _cut(port: int, sent: bytes, *, read_first: bool, reset: bool) -> None:
    sock = socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT_S)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(sent)
        if read_first:
            await asyncio.to_thread(sock.recv, 256)  # the 101 and a little of the replay
        if reset:  # RST instead of FIN
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        sock.close()


async def test_connections_cut_at_every_step_leave_no_subscriber_and_no_error(node: Node) -> None:
    # A replay far larger than the socket buffers: mid-send when the subscriber goes.
    _commit_puts(node.service, 1, 600, "big")
    handshake = build_handshake(b"")
    for round_index in range(FAST_CLOSE_ROUNDS):
        await _cut(node.port, b"", read_first=False, reset=round_index % 2 == 0)
        await _cut(node.port, handshake[: len(handshake) // 2], read_first=False, reset=round_index % 2 == 1)
        await _cut(node.port, handshake, read_first=False, reset=round_index % 2 == 0)
        await _cut(node.port, handshake, read_first=True, reset=True)
        await _cut(node.port, handshake, read_first=True, reset=False)
        await _cut(node.port, handshake + build_frame(OPCODE_CLOSE, b""), read_first=False, reset=True)
        await asyncio.sleep(0)
    await _check_still_serving(node, EVENTS + 600)
