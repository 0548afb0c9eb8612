"""A listener whose event loop stood still (SIGSTOP, then SIGCONT) meets a peer that is gone.

What happened in fault runs: while a node is stopped, its peers' websocket pings pile up in
the kernel and the peers give up and reset the connection.  When the node resumes, its own
heartbeat gave up on the peer's pong meanwhile and closed the transport, and then the buffered
pings are read: aiohttp answers each with a pong, on a closing transport, and raises
`ClientConnectionResetError` out of `receive()`, through `_serve_inbound` and `_handle_inbound`,
where aiohttp logged it as an uncaught "Error handling request" traceback.

Here the stop is a callback that blocks the listener's loop (`time.sleep`), and the peer is a
real TLS socket driven by a thread with blocking calls, so it keeps going while the loop stands
still: it completes the upgrade and the hello, waits for the listener's heartbeat ping, lets the
freeze begin, sends three pings of its own (they wait in the kernel) and resets the connection.
The ping's pong deadline passes inside the freeze, so once the loop runs again the listener
closes the transport first and reads the buffered pings second: the order of the fault runs,
made certain.  The listener must log no error and keep serving other peers.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import threading
import time
from pathlib import Path

import pytest

from chainnode.core import identity
from p2p.tls import create_client_context
from p2p.transport import PeerAddress, Transport, TransportConfig, decode_hello_ack
from tests.factories import create_pki, get_free_port, wait_until
from tests.helpers import NodeFiles, raw_hello
from tests.integration.test_p2p import UPGRADE_REQUEST, encode_client_frame, hello_for

CHAIN_ID = "pilot-test"
GENESIS_HASH = bytes(range(32))
HEARTBEAT_MS = 500  # the listener pings after this much silence and waits half of it for the pong
FREEZE_S = 1.0  # the loop stands still this long, past the pong deadline
PEER_PINGS_AFTER_S = 0.15  # into the freeze: the peer's pings arrive while nothing reads them
WAIT_S = 10.0


def issue_files(directory: Path, names: tuple[str, ...]) -> dict[str, NodeFiles]:
    pki = create_pki("Test Network", valid_days=30)
    root_ca_path = directory / "root.pem"
    root_ca_path.write_bytes(identity.certificate_to_pem(pki.root))
    files = {}
    for name in names:
        claims = identity.EntityClaims(name, "beijing", ("validator",), ("government",), name)
        certificate, key = pki.issue(claims, valid_days=30)
        chain_path, key_path = directory / f"{name}-chain.pem", directory / f"{name}-key.pem"
        chain_path.write_bytes(
            identity.certificate_to_pem(certificate) + identity.certificate_to_pem(pki.zones["beijing"])
        )
        key_path.write_bytes(key.to_pem())
        files[name] = NodeFiles(chain_path, key_path, root_ca_path)
    return files


def read_frame(stream: socket.socket, buffer: bytearray) -> tuple[int, bytes]:
    """One (unmasked) frame from the listener: (opcode, payload)."""

    def take(count: int) -> bytes:
        while len(buffer) < count:
            data = stream.recv(65536)
            if not data:
                raise ConnectionError("the listener closed the connection")
            buffer.extend(data)
        taken = bytes(buffer[:count])
        del buffer[:count]
        return taken

    first, second = take(2)
    length = second & 0x7F
    if length == 126:
        length = struct.unpack("!H", take(2))[0]
    elif length == 127:
        length = struct.unpack("!Q", take(8))[0]
    return first & 0x0F, take(length)


class VanishingPeer(threading.Thread):
    """node-b over a blocking TLS socket: hello, wait for the listener's ping, then (the loop
    frozen meanwhile) three pings of its own and a reset."""

    def __init__(self, port: int, files: NodeFiles) -> None:
        super().__init__(name="vanishing-peer", daemon=True)
        self.port = port
        self.files = files
        self.pinged = threading.Event()  # the listener's heartbeat ping arrived
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as error:  # reported by the test
            self.error = error

    def _run(self) -> None:
        context = create_client_context(self.files.chain_path, self.files.key_path, self.files.root_ca_path)
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=WAIT_S)
        stream = context.wrap_socket(raw, server_hostname="127.0.0.1")
        try:
            stream.sendall(UPGRADE_REQUEST)
            head = b""
            while b"\r\n\r\n" not in head:
                head += stream.recv(1)
            assert head.startswith(b"HTTP/1.1 101 "), head
            stream.sendall(encode_client_frame(hello_for("node-b")))
            buffer = bytearray()
            opcode, payload = read_frame(stream, buffer)
            assert opcode == 0x2 and decode_hello_ack(payload) == "node-a"
            while read_frame(stream, buffer)[0] != 0x9:  # silence until the heartbeat ping
                pass
            self.pinged.set()
            time.sleep(PEER_PINGS_AFTER_S)
            stream.sendall((b"\x89\x80" + bytes(4)) * 3)  # three masked, empty pings
        finally:
            # A reset, not a close: with SO_LINGER 0, close() sends RST.
            stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            stream.close()


async def test_a_listener_resumed_after_a_stop_logs_no_traceback_when_the_peer_has_reset(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    files = issue_files(tmp_path, ("node-a", "node-b", "node-c"))
    node_files = files["node-a"]
    transport = Transport(
        TransportConfig(
            entity_id="node-a",
            chain_id=CHAIN_ID,
            genesis_hash=GENESIS_HASH,
            listen_host="127.0.0.1",
            listen_port=get_free_port(),
            peers=(PeerAddress("node-x", "127.0.0.1", get_free_port()),),  # never there
            chain_path=node_files.chain_path,
            key_path=node_files.key_path,
            root_ca_path=node_files.root_ca_path,
            heartbeat_ms=HEARTBEAT_MS,
        ),
        authorize=lambda entity_id, certificate_der: None,
        on_message=lambda peer_id, data: None,
    )
    await transport.start()
    caplog.set_level(logging.INFO)
    try:
        peer = VanishingPeer(transport.get_listen_port(), files["node-b"])
        peer.start()
        deadline = time.monotonic() + WAIT_S
        while not peer.pinged.is_set():
            assert peer.error is None and time.monotonic() < deadline, peer.error
            await asyncio.sleep(0.005)
        time.sleep(FREEZE_S)  # the loop stands still: SIGSTOP ... SIGCONT
        peer.join(WAIT_S)
        assert peer.error is None, peer.error
        await wait_until(lambda: "node-b" not in transport.inbound_peers(), "node-b's connection is gone")
        await asyncio.sleep(0.2)  # what the resumed loop had to do is done
        errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
        assert errors == [], [(record.name, record.getMessage(), record.exc_info) for record in errors]
        # Still serving: another peer's hello is answered.
        answer = await raw_hello(transport.get_listen_port(), files["node-c"], hello_for("node-c"))
        assert decode_hello_ack(answer.data) == "node-a"
    finally:
        await transport.stop()
