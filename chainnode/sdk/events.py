"""Reading a node's committed events from the SDK: pages (`read_events`) and a stream that
reconnects by itself (`events`), each event exactly once and in order.

Theory of operation: the node names every event by its position in the chain and gives each
event the cursor just past it (`chainnode.api.events`, `chainnode.app.events`).  `events`
keeps the cursor of the last event it yielded (or the `next` of the last message, which may
be further on when a filter skipped events) and, whenever the websocket ends -- the node
restarted, the network dropped, the node dropped us as a slow subscriber, or nothing came
for `idle_timeout_s` (the node sends a heartbeat every few seconds) -- it connects again from
that cursor, after a pause that doubles up to `reconnect_delay_max_s`.  It never trusts the
cursor in a close reason over its own: the node cannot know what reached us.  Cursors are
opaque: the node's are bound to its chain (`chainnode.api.event_reader`), so a cursor kept
from another chain is refused (`bad_cursor`) instead of read at a meaningless position.  A refusal that
will not change by retrying (a bad cursor or filter: HTTP 400) raises `ClientError`; a node
with too many subscribers (503) is tried again after its `Retry-After`.

The websocket is a small client of RFC 6455 over the standard library (the SDK has no event
loop and needs none): text, ping, pong and close frames, masked as a client must.  The
stream is one way, so it only ever sends pongs and its close.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import socket
import ssl
import struct
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any, Protocol

from chainnode.sdk.errors import ClientError


class EventClient(Protocol):
    """What the stream needs of `chainnode.sdk.client.Client` (declared here, where it is used)."""

    @property
    def url(self) -> str: ...

    def send(self, method: str, path: str, body: bytes | None = None) -> Any: ...


_WEBSOCKET_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_HEAD_BYTES_MAX = 64 * 1024
_MESSAGE_BYTES_MAX = 64 * 1024 * 1024
_OPCODE_CONTINUATION = 0x0
_OPCODE_TEXT = 0x1
_OPCODE_BINARY = 0x2
_OPCODE_CLOSE = 0x8
_OPCODE_PING = 0x9
_OPCODE_PONG = 0xA


class WebSocketClosedError(Exception):
    """The node closed the websocket (code and reason), or the connection ended (code None)."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"closed ({code}): {reason}")
        self.code = code
        self.reason = reason


def _build_query(**values: str | int | None) -> str:
    present = {name: str(value) for name, value in values.items() if value is not None and value != ""}
    return "?" + urllib.parse.urlencode(present) if present else ""


class EventSocket:
    """A blocking websocket client for `/v1/events/ws` (see the module docstring)."""

    def __init__(self, sock: socket.socket, buffered: bytes) -> None:
        self._socket = sock
        self._buffer = bytearray(buffered)

    @classmethod
    def connect(
        cls, url: str, path: str, *, timeout_s: float, receive_buffer_bytes: int | None = None
    ) -> EventSocket:
        """Open the websocket at `url` + `path`; `ClientError` if the node answers otherwise."""
        parsed = urllib.parse.urlsplit(url)
        host = parsed.hostname or ""
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
            if receive_buffer_bytes is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer_bytes)
            sock.settimeout(timeout_s)
            sock.connect((host, port))
            if parsed.scheme == "https":
                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        except OSError as error:
            raise ClientError(f"cannot reach {url}: {error}", code="unreachable") from error
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {parsed.path.rstrip('/')}{path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        )
        try:
            sock.sendall(request.encode())
            head, rest = cls._read_head(sock)
        except OSError as error:
            sock.close()
            raise ClientError(f"cannot reach {url}: {error}", code="unreachable") from error
        status, headers = cls._parse_head(head, sock)
        if status != 101:
            cls._raise_refusal(sock, status, headers, rest)
        expected = base64.b64encode(hashlib.sha1(key.encode() + _WEBSOCKET_GUID).digest()).decode()
        if headers.get("sec-websocket-accept") != expected:
            sock.close()
            raise ClientError("the node's websocket handshake is wrong", code="bad_response")
        return cls(sock, rest)

    @staticmethod
    def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionResetError("the node closed the connection during the handshake")
            data += chunk
            if len(data) > _HEAD_BYTES_MAX:
                raise ConnectionResetError("the node's answer head is too large")
        head, _, rest = data.partition(b"\r\n\r\n")
        return head, rest

    @staticmethod
    def _parse_head(head: bytes, sock: socket.socket) -> tuple[int, dict[str, str]]:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            sock.close()
            raise ClientError(f"not an HTTP answer: {lines[0][:80]!r}", code="bad_response")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return int(parts[1]), headers

    @staticmethod
    def _raise_refusal(sock: socket.socket, status: int, headers: dict[str, str], rest: bytes) -> None:
        length = min(int(headers.get("content-length", "0") or 0), _HEAD_BYTES_MAX)
        body = rest
        try:
            while len(body) < length:
                chunk = sock.recv(length - len(body))
                if not chunk:
                    break
                body += chunk
        except OSError:
            pass
        sock.close()
        code, message = f"http_{status}", f"the node refused the websocket ({status})"
        try:
            error = json.loads(body)["error"]
            code, message = str(error["code"]), str(error["message"])
        except (ValueError, TypeError, KeyError):
            pass
        retry_after: float | None = None
        with contextlib.suppress(KeyError, ValueError):
            retry_after = float(headers["retry-after"])
        raise ClientError(message, code=code, status=status, retry_after_s=retry_after)

    def _read_exactly(self, count: int) -> bytes:
        while len(self._buffer) < count:
            chunk = self._socket.recv(max(65536, count - len(self._buffer)))
            if not chunk:
                raise WebSocketClosedError(None, "the connection ended")
            self._buffer += chunk
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        return data

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        length = len(payload)
        if length < 126:
            head = struct.pack(">BB", 0x80 | opcode, 0x80 | length)
        elif length < 65536:
            head = struct.pack(">BBH", 0x80 | opcode, 0x80 | 126, length)
        else:
            head = struct.pack(">BBQ", 0x80 | opcode, 0x80 | 127, length)
        masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
        self._socket.sendall(head + mask + masked)

    def receive_text(self) -> str:
        """The next text message; `WebSocketClosedError` when the node closes or the connection ends,
        `TimeoutError` (an `OSError`) when nothing came within the socket's timeout."""
        fragments: list[bytes] = []
        size = 0
        while True:
            first, second = self._read_exactly(2)
            opcode = first & 0x0F
            length = second & 0x7F
            if length == 126:
                (length,) = struct.unpack(">H", self._read_exactly(2))
            elif length == 127:
                (length,) = struct.unpack(">Q", self._read_exactly(8))
            if second & 0x80 or length > _MESSAGE_BYTES_MAX:
                raise WebSocketClosedError(None, "the node sent a masked or oversized frame")
            payload = self._read_exactly(length)
            if opcode == _OPCODE_PING:
                self._send_frame(_OPCODE_PONG, payload)
                continue
            if opcode == _OPCODE_PONG:
                continue
            if opcode == _OPCODE_CLOSE:
                code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else None
                reason = payload[2:].decode("utf-8", "replace")
                with contextlib.suppress(OSError):
                    self._send_frame(_OPCODE_CLOSE, payload[:2])
                raise WebSocketClosedError(code, reason)
            if opcode not in (_OPCODE_TEXT, _OPCODE_BINARY, _OPCODE_CONTINUATION):
                raise WebSocketClosedError(None, f"the node sent an unknown frame (opcode {opcode})")
            fragments.append(payload)
            size += length
            if size > _MESSAGE_BYTES_MAX:
                raise WebSocketClosedError(None, "the node sent an oversized message")
            if first & 0x80:
                return b"".join(fragments).decode("utf-8")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._send_frame(_OPCODE_CLOSE, struct.pack(">H", 1000))
        self._socket.close()


def get_events_page(
    client: EventClient,
    *,
    from_cursor: str | None = None,
    module: str | None = None,
    entity: str | None = None,
    limit: int = 100,
    wait_ms: int = 0,
) -> dict[str, Any]:
    """One page of `GET /v1/events`: {"events", "next", "head", "caught_up"}."""
    query = _build_query(**{"from": from_cursor}, module=module, entity=entity, limit=limit, wait_ms=wait_ms)
    value = client.send("GET", "/v1/events" + query).value
    if not isinstance(value, dict) or not isinstance(value.get("events"), list):
        raise ClientError("GET /v1/events: expected a page of events", code="bad_response")
    return value


def read_events(
    client: EventClient,
    *,
    from_cursor: str | None = None,
    module: str | None = None,
    entity: str | None = None,
    page_size: int = 500,
) -> Iterator[dict[str, Any]]:
    """Every matching event from `from_cursor` (default: the first) up to the node's head, by
    pages; the last page's `next` is where a later read goes on (see `events`)."""
    cursor = from_cursor
    while True:
        page = get_events_page(client, from_cursor=cursor, module=module, entity=entity, limit=page_size)
        yield from page["events"]
        cursor = str(page["next"])
        if page.get("caught_up") and not page["events"]:
            return


def resolve_head_cursor(client: EventClient) -> str:
    """A cursor just past everything the node has committed now (to follow only new events):
    the node's own, so it is bound to the node's chain like every cursor it gives."""
    return str(get_events_page(client, from_cursor="head", limit=1)["next"])


def events(
    client: EventClient,
    *,
    from_cursor: str | None = None,
    module: str | None = None,
    entity: str | None = None,
    idle_timeout_s: float = 30.0,
    reconnect_delay_s: float = 0.2,
    reconnect_delay_max_s: float = 5.0,
    give_up_after_s: float | None = None,
    receive_buffer_bytes: int | None = None,
) -> Iterator[dict[str, Any]]:
    """Every matching event from `from_cursor` on (default: the chain's first; "head": those
    committed from now on), forever, each exactly once and in order, across reconnections.

    `give_up_after_s`: raise the last `ClientError` once no connection has succeeded for that
    long (None: keep trying).  `receive_buffer_bytes` sets the socket's receive buffer (tests)."""
    cursor = resolve_head_cursor(client) if from_cursor == "head" else from_cursor
    delay_s = reconnect_delay_s
    failing_since: float | None = None
    while True:
        path = "/v1/events/ws" + _build_query(**{"from": cursor}, module=module, entity=entity)
        try:
            connection = EventSocket.connect(
                client.url, path, timeout_s=idle_timeout_s, receive_buffer_bytes=receive_buffer_bytes
            )
        except ClientError as error:
            if error.status is not None and error.status < 500:
                raise
            now = time.monotonic()
            failing_since = now if failing_since is None else failing_since
            if give_up_after_s is not None and now - failing_since > give_up_after_s:
                raise
            time.sleep(max(delay_s, error.retry_after_s or 0.0))
            delay_s = min(delay_s * 2, reconnect_delay_max_s)
            continue
        failing_since = None
        try:
            while True:
                message = json.loads(connection.receive_text())
                if message.get("type") == "events":
                    delay_s = reconnect_delay_s
                    for event in message["events"]:
                        cursor = str(event["cursor"])
                        yield event
                cursor = str(message["next"])
        except (WebSocketClosedError, OSError, ValueError, KeyError, TypeError):
            pass  # reconnect from `cursor`
        finally:
            connection.close()
        time.sleep(delay_s)
        delay_s = min(delay_s * 2, reconnect_delay_max_s)
