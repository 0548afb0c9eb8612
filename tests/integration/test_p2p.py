"""Tests of the p2p transport over real sockets on 127.0.0.1 with real mutual TLS.

Certificates come from `chainnode.core.identity` (root CA -> zone CA -> entity); nothing under test is
mocked.  Every wait is bounded: messages are awaited with `asyncio.wait_for`, connectivity is
polled against a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import aiohttp
import pytest

from chainnode.core import codec, identity
from chainnode.core.errors import DecodeError
from p2p.tls import create_client_context, get_entity_id
from p2p.transport import (
    CLOSE_CODE_PROTOCOL,
    CLOSE_CODE_REFUSED,
    CLOSE_REASON_BYTES_MAX,
    P2P_PATH,
    PRE_HELLO_BYTES_MAX,
    TAG_HELLO_ACK,
    Hello,
    PeerAddress,
    Transport,
    TransportConfig,
    compute_backoff_delay_ms,
    compute_close_reason,
    decode_hello,
    decode_hello_ack,
    encode_hello,
    encode_hello_ack,
)
from tests.factories import Pki, create_pki, get_free_port, wait_until
from tests.helpers import NodeFiles, is_refused_at_tls, open_raw, raw_hello

CHAIN_ID = "pilot-test"
GENESIS_HASH = bytes(range(32))
WAIT_S = 10.0


# ---------------------------------------------------------------- PKI on disk


@dataclass(frozen=True, slots=True)
class Authority:
    """A root CA and one zone CA (beijing) under it, with the root written to disk."""

    pki: Pki
    root_ca_path: Path
    directory: Path


def create_authority(directory: Path, name: str) -> Authority:
    directory.mkdir(parents=True, exist_ok=True)
    pki = create_pki(name, valid_days=30)
    root_ca_path = directory / "root.pem"
    root_ca_path.write_bytes(identity.certificate_to_pem(pki.root))
    return Authority(pki, root_ca_path, directory)


def issue_node_files(authority: Authority, entity_id: str) -> NodeFiles:
    claims = identity.EntityClaims(entity_id, "beijing", ("validator",), ("government",), entity_id)
    certificate, key = authority.pki.issue(claims, valid_days=30)
    zone = authority.pki.zones["beijing"]
    node_directory = authority.directory / entity_id
    node_directory.mkdir(exist_ok=True)
    chain_path = node_directory / "chain.pem"
    chain_path.write_bytes(identity.certificate_to_pem(certificate) + identity.certificate_to_pem(zone))
    key_path = node_directory / "key.pem"
    key_path.write_bytes(key.to_pem())
    return NodeFiles(chain_path, key_path, authority.root_ca_path)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, NodeFiles]]:
    base = tmp_path_factory.mktemp("pki")
    network = create_authority(base / "network", "Test Network")
    foreign = create_authority(base / "foreign", "Foreign Network")
    files = {
        name: issue_node_files(network, name) for name in ("node-a", "node-b", "node-c", "node-x", "mallory")
    }
    files["foreign-a"] = issue_node_files(foreign, "node-a")
    yield files


# ---------------------------------------------------------------- nodes under test


@dataclass
class Node:
    """A transport plus what it received; `authorize` refuses the ids in `refused`."""

    files: NodeFiles
    config: TransportConfig
    refused: dict[str, str] = field(default_factory=dict)
    received: asyncio.Queue[tuple[str, bytes]] = field(default_factory=asyncio.Queue)
    connected: list[str] = field(default_factory=list)
    transport: Transport | None = None

    def authorize(self, entity_id: str, certificate_der: bytes) -> str | None:
        assert get_entity_id(certificate_der) == entity_id
        return self.refused.get(entity_id)

    def on_message(self, peer_id: str, data: bytes) -> None:
        self.received.put_nowait((peer_id, data))

    async def start(self) -> Transport:
        self.transport = Transport(
            self.config,
            authorize=self.authorize,
            on_message=self.on_message,
            on_connected=self.connected.append,
            rng=random.Random(7),
        )
        await self.transport.start()
        return self.transport

    @property
    def t(self) -> Transport:
        assert self.transport is not None
        return self.transport

    async def receive(self, count: int) -> list[tuple[str, bytes]]:
        return [await asyncio.wait_for(self.received.get(), WAIT_S) for _ in range(count)]


def make_config(
    files: NodeFiles, entity_id: str, port: int, peers: dict[str, int], **overrides: object
) -> TransportConfig:
    config = TransportConfig(
        entity_id=entity_id,
        chain_id=CHAIN_ID,
        genesis_hash=GENESIS_HASH,
        listen_host="127.0.0.1",
        listen_port=port,
        peers=tuple(PeerAddress(peer, "127.0.0.1", peer_port) for peer, peer_port in peers.items()),
        chain_path=files.chain_path,
        key_path=files.key_path,
        root_ca_path=files.root_ca_path,
        handshake_timeout_ms=2_000,
        backoff_ms_min=20,
        backoff_ms_max=200,
    )
    return replace(config, **overrides)  # type: ignore[arg-type]


@pytest.fixture
async def nodes() -> AsyncIterator[list[Node]]:
    """A list the test fills with nodes; every started transport is stopped afterwards."""
    started: list[Node] = []
    yield started
    for node in started:
        if node.transport is not None:
            await node.transport.stop()


async def start_mesh(
    pki: dict[str, NodeFiles], nodes: list[Node], names: list[str], **overrides: object
) -> dict[str, Node]:
    ports = {name: get_free_port() for name in names}
    mesh: dict[str, Node] = {}
    for name in names:
        peers = {peer: port for peer, port in ports.items() if peer != name}
        node = Node(pki[name], make_config(pki[name], name, ports[name], peers, **overrides))
        nodes.append(node)
        mesh[name] = node
    for node in mesh.values():
        await node.start()
    return mesh


def is_meshed(transport: Transport, others: list[str]) -> bool:
    return transport.connected_peers() == others and transport.inbound_peers() == others


async def wait_connected(mesh: dict[str, Node]) -> None:
    for name, node in mesh.items():
        others = sorted(other for other in mesh if other != name)
        await wait_until(functools.partial(is_meshed, node.t, others), f"{name} is meshed")


# ---------------------------------------------------------------- raw clients


def hello_for(entity_id: str, *, chain_id: str = CHAIN_ID, genesis_hash: bytes = GENESIS_HASH) -> bytes:
    return encode_hello(Hello(chain_id, genesis_hash, entity_id))


async def start_listener(pki: dict[str, NodeFiles], nodes: list[Node], **overrides: object) -> Node:
    """node-a listening with no peers of its own."""
    node = Node(pki["node-a"], make_config(pki["node-a"], "node-a", 0, {}, **overrides))
    nodes.append(node)
    await node.start()
    return node


# ---------------------------------------------------------------- pure helpers


def test_hello_round_trip_and_strict_decoding() -> None:
    hello = Hello(CHAIN_ID, GENESIS_HASH, "node-a")
    assert decode_hello(encode_hello(hello)) == hello
    assert decode_hello_ack(encode_hello_ack("node-b")) == "node-b"
    with pytest.raises(DecodeError):
        decode_hello(encode_hello_ack("node-b"))
    with pytest.raises(DecodeError):
        decode_hello(b"\xc1not msgpack")
    with pytest.raises(DecodeError):
        decode_hello(codec.encode((40, 1, CHAIN_ID, GENESIS_HASH, "node-a", "extra")))
    with pytest.raises(DecodeError):
        decode_hello(codec.encode((40, 2, CHAIN_ID, GENESIS_HASH, "node-a")))
    with pytest.raises(DecodeError):
        decode_hello(codec.encode((40, 1, CHAIN_ID, "not bytes", "node-a")))
    with pytest.raises(DecodeError):
        decode_hello(codec.encode((40, 1, CHAIN_ID, GENESIS_HASH, "x" * 5000)))


def test_close_reason_fits_a_close_frame_without_splitting_characters() -> None:
    assert compute_close_reason("short") == b"short"
    long_reason = compute_close_reason("区块" * 100)
    assert len(long_reason) == CLOSE_REASON_BYTES_MAX  # 41 three-byte characters
    assert long_reason.decode("utf-8") == ("区块" * 100)[:41]
    assert len(compute_close_reason("é" * 100)) == CLOSE_REASON_BYTES_MAX - 1


def test_backoff_delay_is_jittered_within_half_to_full() -> None:
    rng = random.Random(1)
    delays = [compute_backoff_delay_ms(400, rng) for _ in range(200)]
    assert all(200 <= delay <= 400 for delay in delays)
    assert len(set(delays)) > 100


# ---------------------------------------------------------------- connectivity


async def test_three_transports_exchange_messages_both_ways(
    pki: dict[str, NodeFiles], nodes: list[Node]
) -> None:
    mesh = await start_mesh(pki, nodes, ["node-a", "node-b", "node-c"])
    await wait_connected(mesh)
    for name, node in mesh.items():
        assert sorted(node.connected) == sorted(other for other in mesh if other != name)
    for name, node in mesh.items():
        for other in mesh:
            if other != name:
                for index in range(50):
                    assert node.t.send(other, f"{name}->{other}#{index}".encode())
    for name, node in mesh.items():
        received = await node.receive(100)
        for sender in (other for other in mesh if other != name):
            from_sender = [data for peer, data in received if peer == sender]
            assert from_sender == [f"{sender}->{name}#{index}".encode() for index in range(50)]
        assert node.t.metrics["frames_sent"] == 100
        assert node.t.metrics["frames_received"] == 100
    mesh["node-a"].t.broadcast(b"to all")
    assert await mesh["node-b"].receive(1) == [("node-a", b"to all")]
    assert await mesh["node-c"].receive(1) == [("node-a", b"to all")]


async def test_stop_leaves_no_pending_tasks(pki: dict[str, NodeFiles], nodes: list[Node]) -> None:
    mesh = await start_mesh(pki, nodes, ["node-a", "node-b"])
    await wait_connected(mesh)
    for node in mesh.values():
        await node.t.stop()
        node.transport = None
    current = asyncio.current_task()
    pending = [task for task in asyncio.all_tasks() if task is not current and not task.done()]
    assert pending == []


async def stop_node_b_of_two(pki: dict[str, NodeFiles], nodes: list[Node]) -> tuple[Node, Node]:
    """node-a and node-b meshed, then node-b stopped and seen gone by node-a."""
    mesh = await start_mesh(pki, nodes, ["node-a", "node-b"])
    await wait_connected(mesh)
    a, b = mesh["node-a"], mesh["node-b"]
    await b.t.stop()
    b.transport = None
    await wait_until(lambda: a.t.connected_peers() == [], "node-a saw node-b go")
    return a, b


async def restart(stopped: Node, nodes: list[Node]) -> Node:
    restarted = Node(stopped.files, stopped.config)
    nodes.append(restarted)
    await restarted.start()
    return restarted


async def test_restarted_peer_reconnects_and_gets_queued_messages(
    pki: dict[str, NodeFiles], nodes: list[Node]
) -> None:
    a, b = await stop_node_b_of_two(pki, nodes)
    for index in range(20):
        assert a.t.send("node-b", f"queued#{index}".encode())
    assert a.t.get_queue_length("node-b") == 20
    restarted = await restart(b, nodes)
    received = await restarted.receive(20)
    assert received == [("node-a", f"queued#{index}".encode()) for index in range(20)]
    await wait_until(lambda: restarted.t.connected_peers() == ["node-a"], "node-b redialed")
    assert restarted.t.send("node-a", b"back")
    assert await a.receive(1) == [("node-b", b"back")]
    assert a.t.metrics["connections_opened"] >= 2


async def test_a_first_frame_goes_ahead_of_what_waited_for_a_returning_peer(
    pki: dict[str, NodeFiles], nodes: list[Node]
) -> None:
    """`send(..., first=True)` (the status a node sends on connecting) reaches a returning peer
    before the frames queued while it was away, the latest such frame replacing an earlier one."""
    a, b = await stop_node_b_of_two(pki, nodes)
    for index in range(3):
        assert a.t.send("node-b", f"queued#{index}".encode())
    assert a.t.get_queue_length("node-b") == 3
    assert a.t.send("node-b", b"first, replaced", first=True)
    assert a.t.send("node-b", b"first", first=True)
    restarted = await restart(b, nodes)
    received = await restarted.receive(4)
    assert received == [("node-a", b"first")] + [("node-a", f"queued#{index}".encode()) for index in range(3)]
    assert restarted.received.empty()


async def test_send_drops_for_unknown_peer_full_queue_and_oversize(
    pki: dict[str, NodeFiles], nodes: list[Node]
) -> None:
    files = pki["node-a"]
    config = make_config(
        files, "node-a", 0, {"node-b": get_free_port()}, queue_messages_max=2, frame_bytes_max=1000
    )
    node = Node(files, config)
    nodes.append(node)
    await node.start()
    assert not node.t.send("node-z", b"unknown")
    assert node.t.send("node-b", b"1")
    assert node.t.send("node-b", b"2")
    assert not node.t.send("node-b", b"3")
    assert not node.t.send("node-b", b"x" * 1001)
    assert node.t.metrics["frames_dropped"] == 3
    assert node.t.get_queue_length("node-b") == 2


async def test_oversize_frame_closes_that_connection_only(
    pki: dict[str, NodeFiles], nodes: list[Node]
) -> None:
    mesh = await start_mesh(pki, nodes, ["node-a", "node-b", "node-c"], frame_bytes_max=64 * 1024)
    await wait_connected(mesh)
    a, b, c = mesh["node-a"], mesh["node-b"], mesh["node-c"]
    # node-b is restarted with a larger limit than node-a, so it can send what node-a refuses.
    await b.t.stop()
    big_sender = Node(b.files, replace(b.config, frame_bytes_max=1024 * 1024))
    nodes.append(big_sender)
    await big_sender.start()
    await wait_until(lambda: big_sender.t.connected_peers() == ["node-a", "node-c"], "b redialed")
    opened_before = big_sender.t.metrics["connections_opened"]
    assert big_sender.t.send("node-a", b"x" * (100 * 1024))
    await wait_until(lambda: a.t.metrics["protocol_violations"] == 1, "node-a refused the frame")
    await wait_until(lambda: big_sender.t.metrics["connections_opened"] > opened_before, "b reconnected to a")
    assert c.t.send("node-a", b"from c")
    assert await a.receive(1) == [("node-c", b"from c")]
    assert big_sender.t.send("node-a", b"small")
    assert await a.receive(1) == [("node-b", b"small")]
    assert a.t.metrics["frames_received"] == 2


# ---------------------------------------------------------------- TLS refusals


async def assert_refused_at_tls(node: Node, context: ssl.SSLContext) -> None:
    assert await is_refused_at_tls(node.t.get_listen_port(), context, wait_s=WAIT_S)
    await wait_until(lambda: node.t.metrics["tls_refused"] >= 1, "the TLS refusal was counted")


async def assert_still_serving(node: Node, files: NodeFiles, entity_id: str) -> None:
    answer = await raw_hello(node.t.get_listen_port(), files, hello_for(entity_id))
    assert answer.type is aiohttp.WSMsgType.BINARY
    assert codec.decode(answer.data) == (TAG_HELLO_ACK, 1, "node-a")


async def test_client_without_certificate_is_refused_at_tls(
    pki: dict[str, NodeFiles], nodes: list[Node], caplog: pytest.LogCaptureFixture
) -> None:
    node = await start_listener(pki, nodes)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.load_verify_locations(cafile=str(pki["node-a"].root_ca_path))
    with caplog.at_level(logging.WARNING, logger="p2p.transport"):
        await assert_refused_at_tls(node, context)
    assert "refused a TLS handshake" in caplog.text
    assert node.t.inbound_peers() == []
    await assert_still_serving(node, pki["node-b"], "node-b")


async def test_client_from_another_root_is_refused_at_tls(
    pki: dict[str, NodeFiles], nodes: list[Node]
) -> None:
    node = await start_listener(pki, nodes)
    foreign = pki["foreign-a"]
    # The client trusts our root (so it accepts the server) but presents a foreign chain.
    context = create_client_context(foreign.chain_path, foreign.key_path, pki["node-a"].root_ca_path)
    await assert_refused_at_tls(node, context)
    await assert_still_serving(node, pki["node-b"], "node-b")


async def test_dialer_refuses_server_from_another_root(pki: dict[str, NodeFiles], nodes: list[Node]) -> None:
    foreign = pki["foreign-a"]
    server = Node(foreign, make_config(foreign, "node-a", 0, {}))
    nodes.append(server)
    await server.start()
    files = pki["node-b"]
    dialer = Node(files, make_config(files, "node-b", 0, {"node-a": server.t.get_listen_port()}))
    nodes.append(dialer)
    await dialer.start()
    await wait_until(lambda: dialer.t.metrics["dials_failed"] >= 2, "two refused dials")
    assert dialer.t.connected_peers() == []
    assert server.t.inbound_peers() == []


async def test_dialer_refuses_an_impostor_that_asks_for_no_client_certificate(
    pki: dict[str, NodeFiles], nodes: list[Node]
) -> None:
    """The dialer checks the server's chain itself.  In the test above the foreign server
    refuses the dialer's certificate too, so the dial fails on that side whatever the dialer
    checks; this impostor asks for no client certificate and presents a chain of another root
    that names the expected peer: only the dialer's own verification stops it."""
    foreign = pki["foreign-a"]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(foreign.chain_path, foreign.key_path)
    context.verify_mode = ssl.CERT_NONE  # any client, or none
    completed: list[bytes] = []

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Called only once the TLS handshake completed: the dialer accepted our chain.
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            completed.append(await asyncio.wait_for(reader.read(256), 2.0))
        writer.close()

    impostor = await asyncio.start_server(on_connection, "127.0.0.1", 0, ssl=context)
    try:
        port = impostor.sockets[0].getsockname()[1]
        files = pki["node-b"]
        dialer = Node(files, make_config(files, "node-b", 0, {"node-a": port}))
        nodes.append(dialer)
        await dialer.start()
        await wait_until(lambda: dialer.t.metrics["dials_failed"] >= 2, "two refused dials")
        assert completed == [], "the dialer finished a TLS handshake with a server of another root"
        assert dialer.t.connected_peers() == []
    finally:
        impostor.close()
        await impostor.wait_closed()


# ---------------------------------------------------------------- handshake refusals


@pytest.mark.parametrize(
    ("overrides", "reason_part"),
    [({"chain_id": "other-chain"}, "chain id"), ({"genesis_hash": b"\x01" * 32}, "genesis hash")],
)
async def test_wrong_chain_or_genesis_is_refused_with_4403(
    pki: dict[str, NodeFiles], nodes: list[Node], overrides: dict[str, object], reason_part: str
) -> None:
    node = await start_listener(pki, nodes)
    answer = await raw_hello(node.t.get_listen_port(), pki["node-b"], hello_for("node-b", **overrides))  # type: ignore[arg-type]
    assert answer.type is aiohttp.WSMsgType.CLOSE
    assert answer.data == CLOSE_CODE_REFUSED
    assert reason_part in str(answer.extra)
    # A whole transport with the wrong chain never gets connected.
    files = pki["node-b"]
    wrong = Node(files, make_config(files, "node-b", 0, {"node-a": node.t.get_listen_port()}, **overrides))
    nodes.append(wrong)
    await wrong.start()
    await wait_until(lambda: wrong.t.metrics["handshakes_failed"] >= 2, "two refused handshakes")
    assert wrong.t.connected_peers() == []
    assert node.t.inbound_peers() == []
    assert node.t.metrics["handshakes_refused"] >= 3


async def test_authorize_refusal_is_4403_with_truncated_reason(
    pki: dict[str, NodeFiles], nodes: list[Node]
) -> None:
    node = await start_listener(pki, nodes)
    node.refused["mallory"] = "mallory holds no validator or observer role " * 10
    answer = await raw_hello(node.t.get_listen_port(), pki["mallory"], hello_for("mallory"))
    assert answer.type is aiohttp.WSMsgType.CLOSE
    assert answer.data == CLOSE_CODE_REFUSED
    assert str(answer.extra).startswith("mallory holds no validator")
    assert len(str(answer.extra).encode()) <= CLOSE_REASON_BYTES_MAX
    assert node.t.metrics["handshakes_refused"] == 1
    assert node.t.inbound_peers() == []


async def test_dialer_refuses_unauthorized_or_misnamed_server(
    pki: dict[str, NodeFiles], nodes: list[Node]
) -> None:
    mesh = await start_mesh(pki, nodes, ["node-b", "node-c"])
    await wait_connected(mesh)
    files = pki["node-a"]
    ports = {name: mesh[name].config.listen_port for name in mesh}
    # node-a expects node-b at node-c's port (misnamed) and refuses the real node-c itself.
    config = make_config(files, "node-a", 0, {"node-b": ports["node-c"], "node-c": ports["node-c"]})
    dialer = Node(files, config, refused={"node-c": "not in our validator set"})
    nodes.append(dialer)
    await dialer.start()
    await wait_until(lambda: dialer.t.metrics["handshakes_refused"] >= 4, "both refused twice")
    assert dialer.t.connected_peers() == []
    assert mesh["node-c"].t.inbound_peers() == ["node-b"]


async def test_certificate_name_differing_from_hello_is_refused(
    pki: dict[str, NodeFiles], nodes: list[Node]
) -> None:
    node = await start_listener(pki, nodes)
    answer = await raw_hello(node.t.get_listen_port(), pki["node-x"], hello_for("node-b"))
    assert answer.type is aiohttp.WSMsgType.CLOSE
    assert answer.data == CLOSE_CODE_REFUSED
    assert "node-x" in str(answer.extra)
    assert node.t.inbound_peers() == []


async def test_garbage_hello_closes_connection_and_server_stays_up(
    pki: dict[str, NodeFiles], nodes: list[Node]
) -> None:
    node = await start_listener(pki, nodes)
    port = node.t.get_listen_port()
    # Garbage within the hello size; a larger first frame is not even read (see below).
    for garbage in (b"\xc1\xc1 not msgpack", codec.encode((40, 1)), b"\x00" * 4_000):
        answer = await raw_hello(port, pki["node-b"], garbage)
        assert answer.type is aiohttp.WSMsgType.CLOSE
        assert answer.data == CLOSE_CODE_PROTOCOL
    await assert_still_serving(node, pki["node-b"], "node-b")


async def test_text_frame_after_handshake_closes_that_connection(
    pki: dict[str, NodeFiles], nodes: list[Node]
) -> None:
    node = await start_listener(pki, nodes)
    files = pki["node-b"]
    context = create_client_context(files.chain_path, files.key_path, files.root_ca_path)
    async with aiohttp.ClientSession() as session:
        ws = await open_raw(node.t.get_listen_port(), context, session)
        await ws.send_bytes(hello_for("node-b"))
        ack = await asyncio.wait_for(ws.receive(), WAIT_S)
        assert decode_hello_ack(ack.data) == "node-a"
        await ws.send_bytes(b"payload")
        await ws.send_str("not binary")
        answer = await asyncio.wait_for(ws.receive(), WAIT_S)
        await ws.close()
    assert answer.type is aiohttp.WSMsgType.CLOSE
    assert answer.data == CLOSE_CODE_PROTOCOL
    assert await node.receive(1) == [("node-b", b"payload")]
    assert node.t.metrics["protocol_violations"] == 1
    await wait_until(lambda: node.t.inbound_peers() == [], "the connection is forgotten")
    await assert_still_serving(node, files, "node-b")


async def test_disconnect_drops_a_peer_that_authorize_now_refuses(
    pki: dict[str, NodeFiles], nodes: list[Node]
) -> None:
    mesh = await start_mesh(pki, nodes, ["node-a", "node-b"])
    await wait_connected(mesh)
    a, b = mesh["node-a"], mesh["node-b"]
    a.refused["node-b"] = "role revoked"
    a.t.disconnect("node-b")
    await wait_until(lambda: a.t.connected_peers() == [] and a.t.inbound_peers() == [], "dropped")
    await wait_until(lambda: b.t.metrics["handshakes_failed"] >= 1, "node-b was refused")
    assert b.t.connected_peers() == []


# ---------------------------------------------------------------- inbound limits before the hello


UPGRADE_REQUEST = (
    f"GET {P2P_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
).encode()
OVERSIZE_PAYLOAD_BYTES = 256 * 1024  # far below frame_bytes_max, far above a hello


def encode_client_frame(payload: bytes) -> bytes:
    """One masked binary websocket frame (the mask is zero, so the payload goes as it is)."""
    return b"\x82\xff" + len(payload).to_bytes(8, "big") + bytes(4) + payload


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the listener sends until it closes the connection (bounded by WAIT_S)."""
    received = b""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        try:
            data = await asyncio.wait_for(reader.read(65536), max(0.0, deadline - time.monotonic()))
        except (ConnectionError, ssl.SSLError):
            return received
        if not data:
            return received
        received += data
    raise AssertionError(f"the listener kept the connection open for {WAIT_S} s")


@pytest.mark.parametrize("pipelined", [False, True], ids=["after-the-101", "with-the-upgrade-request"])
async def test_a_frame_over_the_hello_size_before_the_hello_is_not_read_and_closes_the_connection(
    pki: dict[str, NodeFiles], nodes: list[Node], pipelined: bool
) -> None:
    node = await start_listener(pki, nodes)  # frame_bytes_max is 16 MiB
    files = pki["node-b"]  # a certificate the listener accepts, so this is a peer past TLS
    context = create_client_context(files.chain_path, files.key_path, files.root_ca_path)
    frame = encode_client_frame(b"\x00" * OVERSIZE_PAYLOAD_BYTES)
    assert len(frame) > PRE_HELLO_BYTES_MAX
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", node.t.get_listen_port(), ssl=context), WAIT_S
    )
    try:
        if pipelined:
            writer.write(UPGRADE_REQUEST + frame)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT_S)
        else:
            writer.write(UPGRADE_REQUEST)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT_S)
            writer.write(frame)
        assert head.startswith(b"HTTP/1.1 101 "), head
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.drain()
        # Closed without a word: a listener that read the frame would answer it as a
        # malformed hello, with a close frame (code 4400).
        assert await read_until_closed(reader) == b""
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()
    assert node.t.metrics["unauthenticated_bytes_exceeded"] == 1
    assert node.t.metrics["handshakes_refused"] == 0
    await assert_still_serving(node, pki["node-c"], "node-c")


async def test_after_the_hello_frames_up_to_frame_bytes_max_are_read(
    pki: dict[str, NodeFiles], nodes: list[Node]
) -> None:
    node = await start_listener(pki, nodes)
    files = pki["node-b"]
    context = create_client_context(files.chain_path, files.key_path, files.root_ca_path)
    async with aiohttp.ClientSession() as session:
        ws = await open_raw(node.t.get_listen_port(), context, session)
        await ws.send_bytes(hello_for("node-b"))
        assert decode_hello_ack((await asyncio.wait_for(ws.receive(), WAIT_S)).data) == "node-a"
        payload = b"\x01" * OVERSIZE_PAYLOAD_BYTES
        await ws.send_bytes(payload)
        assert await node.receive(1) == [("node-b", payload)]
        await ws.close()
    assert node.t.metrics["unauthenticated_bytes_exceeded"] == 0


async def try_open(
    port: int, files: NodeFiles, session: aiohttp.ClientSession
) -> aiohttp.ClientWebSocketResponse | None:
    """The upgraded websocket, or None when the listener refused the connection."""
    context = create_client_context(files.chain_path, files.key_path, files.root_ca_path)
    try:
        return await open_raw(port, context, session)
    except aiohttp.WSServerHandshakeError as error:
        assert error.status == 503, error
    except (aiohttp.ClientConnectionError, ssl.SSLError, ConnectionError):
        pass  # the 503 and the close may reach the client as a reset instead
    return None


@pytest.mark.parametrize(
    ("unauthenticated_max", "connections_max"),
    [(3, 32), (4, 4)],
    ids=["unauthenticated-cap", "total-cap"],
)
async def test_inbound_connections_over_the_limits_are_refused_while_peers_are_served(
    pki: dict[str, NodeFiles], nodes: list[Node], unauthenticated_max: int, connections_max: int
) -> None:
    node = await start_listener(
        pki,
        nodes,
        inbound_unauthenticated_max=unauthenticated_max,
        inbound_connections_max=connections_max,
        handshake_timeout_ms=30_000,  # the silent connections stay for the whole test
    )
    port = node.t.get_listen_port()
    silent_count = 3  # fills the first limit alone, the second together with the peer
    attempts = 5
    async with aiohttp.ClientSession() as session:
        # An authenticated peer, which counts towards the total but not as unauthenticated.
        peer = await try_open(port, pki["node-c"], session)
        assert peer is not None
        await peer.send_bytes(hello_for("node-c"))
        assert decode_hello_ack((await asyncio.wait_for(peer.receive(), WAIT_S)).data) == "node-a"
        silent = [await try_open(port, pki["node-b"], session) for _ in range(silent_count)]
        assert all(ws is not None for ws in silent)
        for attempt in range(attempts):
            assert await try_open(port, pki["node-b"], session) is None, attempt
            # The authenticated peer is still served.
            await peer.send_bytes(b"still here %d" % attempt)
            assert await node.receive(1) == [("node-c", b"still here %d" % attempt)]
        assert node.t.metrics["connections_refused"] == attempts
        # Once a silent connection goes, another peer gets in again.
        first = silent[0]
        assert first is not None
        await first.close()
        refused = node.t.metrics["connections_refused"]
        newcomer = None
        for _ in range(100):  # until the listener has seen the close (bounded: 100 x 50 ms)
            newcomer = await try_open(port, pki["node-x"], session)
            if newcomer is not None:
                break
            await asyncio.sleep(0.05)
        assert newcomer is not None, "no connection was admitted after a slot was freed"
        await newcomer.send_bytes(hello_for("node-x"))
        assert decode_hello_ack((await asyncio.wait_for(newcomer.receive(), WAIT_S)).data) == "node-a"
        await newcomer.close()
        assert node.t.metrics["connections_refused"] - refused < 100
        assert node.t.metrics["handshakes_refused"] == 0
        for ws in (peer, *silent):
            if ws is not None:
                await ws.close()


# ---------------------------------------------------------------- a peer that is in nobody's list


async def test_a_peer_outside_the_static_list_is_answered_on_its_own_connection(
    pki: dict[str, NodeFiles], nodes: list[Node]
) -> None:
    """node-c joins a running pair by dialing both; neither lists it, yet both reach it (the way a
    node registered after the others' lists were written joins), and it reaches them."""
    mesh = await start_mesh(pki, nodes, ["node-a", "node-b"])
    await wait_connected(mesh)
    ports = {name: node.t.get_listen_port() for name, node in mesh.items()}
    late = Node(pki["node-c"], make_config(pki["node-c"], "node-c", get_free_port(), ports))
    nodes.append(late)
    await late.start()
    for name, node in mesh.items():
        await wait_until(lambda node=node: "node-c" in node.t.connected_peers(), f"{name} can send to node-c")
        assert "node-c" in node.connected  # told, so the node can send it its status
    # The listeners accept before the dialer has read their acknowledgements: wait for its side too.
    await wait_until(lambda: late.t.connected_peers() == ["node-a", "node-b"], "node-c's dials are up")
    # Point to point and broadcast, both ways.
    assert mesh["node-a"].t.send("node-c", b"a-to-c")
    mesh["node-b"].t.broadcast(b"b-to-all")
    received = sorted(await late.receive(2))
    assert received == [("node-a", b"a-to-c"), ("node-b", b"b-to-all")]
    assert sorted(await mesh["node-a"].receive(1)) == [("node-b", b"b-to-all")]
    assert late.t.send("node-a", b"c-to-a")
    assert await mesh["node-a"].receive(1) == [("node-c", b"c-to-a")]
    # When node-c leaves, the path back goes with its connection: nothing is queued for it.
    await late.t.stop()
    await wait_until(lambda: "node-c" not in mesh["node-a"].t.connected_peers(), "node-a forgets node-c")
    assert not mesh["node-a"].t.send("node-c", b"gone")


async def test_an_invalid_frame_sent_back_closes_that_connection(
    pki: dict[str, NodeFiles], nodes: list[Node]
) -> None:
    """Frames a listener sends back are checked like inbound ones: an invalid message closes that
    connection (4400), counted, and the dialer reconnects."""
    listener = await start_listener(pki, nodes)
    dialer = Node(pki["node-b"], make_config(pki["node-b"], "node-b", get_free_port(), {}))

    def reject(peer_id: str, data: bytes) -> None:
        if data == b"bad":
            raise DecodeError("not a message")
        dialer.received.put_nowait((peer_id, data))

    dialer.on_message = reject  # type: ignore[method-assign]
    dialer.config = replace(
        dialer.config, peers=(PeerAddress("node-a", "127.0.0.1", listener.t.get_listen_port()),)
    )
    nodes.append(dialer)
    await dialer.start()
    await wait_until(lambda: "node-b" in listener.t.connected_peers(), "node-a can send to node-b")
    assert listener.t.send("node-b", b"bad")
    await wait_until(lambda: dialer.t.metrics["protocol_violations"] >= 1, "node-b counts the violation")
    await wait_until(lambda: "node-b" in listener.t.connected_peers(), "node-b redials")
    assert listener.t.send("node-b", b"good")
    assert await dialer.receive(1) == [("node-a", b"good")]
