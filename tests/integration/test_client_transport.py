"""The SDK's one request (`Client.send`) over real sockets: keep-alive, a stale connection sent
again once, Retry-After, and one connection per thread."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from typing import ClassVar

import pytest

from chainnode.sdk.client import Client
from chainnode.sdk.errors import ClientError


class _Handler(http.server.BaseHTTPRequestHandler):
    """Answers GET /v1/status and POST /v1/transactions; records each request's client port."""

    protocol_version = "HTTP/1.1"  # keep-alive unless told otherwise
    ports: ClassVar[list[int]] = []
    close_after_answer: ClassVar[bool] = False  # as a node does when its idle timeout passes
    full: ClassVar[bool] = False

    def _answer(self, status: int, value: object, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, text in (headers or {}).items():
            self.send_header(name, text)
        self.end_headers()
        self.wfile.write(body)
        # Closed without a `Connection: close`: the client finds out on its next request.
        self.close_connection = self.close_after_answer

    def do_GET(self) -> None:
        type(self).ports.append(self.client_address[1])
        self._answer(200, {"height": len(type(self).ports)})

    def do_POST(self) -> None:
        type(self).ports.append(self.client_address[1])
        items = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["txs"]
        if type(self).full:
            error = {"error": {"code": "mempool_full", "message": "the mempool is full"}}
            self._answer(503, error, {"Retry-After": "3"})
            return
        results = [{"hash": None, "status": "rejected", "error": {"code": "mempool_full"}} for _ in items]
        self._answer(200, {"accepted": 0, "rejected": len(items), "results": results}, {"Retry-After": "1"})

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def url() -> Iterator[str]:
    _Handler.ports = []
    _Handler.close_after_answer = False
    _Handler.full = False
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_requests_share_one_keep_alive_connection(url: str) -> None:
    with Client(url, timeout_s=5) as client:
        for _ in range(5):
            client.get_status()
    assert len(_Handler.ports) == 5 and len(set(_Handler.ports)) == 1


def test_a_connection_the_node_closed_is_replaced_and_the_request_sent_again(url: str) -> None:
    _Handler.close_after_answer = True
    with Client(url, timeout_s=5) as client:
        heights = [client.get_status()["height"] for _ in range(3)]
    assert heights == [1, 2, 3]  # each answered once: no request was lost or doubled
    assert len(set(_Handler.ports)) == 3


def test_each_thread_has_a_connection_of_its_own(url: str) -> None:
    with Client(url, timeout_s=5) as client:
        threads = [threading.Thread(target=lambda: [client.get_status() for _ in range(3)]) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
    assert len(_Handler.ports) == 9 and len(set(_Handler.ports)) == 3


def test_retry_after_comes_with_a_full_node_and_with_a_batch_answer(url: str) -> None:
    body = b'{"txs":["00","11"]}'
    with Client(url, timeout_s=5) as client:
        reply = client.send("POST", "/v1/transactions", body)
        assert (reply.status, reply.retry_after_s) == (200, 1.0)
        assert [item["error"]["code"] for item in reply.value["results"]] == ["mempool_full"] * 2
        _Handler.full = True
        with pytest.raises(ClientError) as caught:
            client.send("POST", "/v1/transactions", body)
    assert (caught.value.status, caught.value.code, caught.value.retry_after_s) == (503, "mempool_full", 3.0)
