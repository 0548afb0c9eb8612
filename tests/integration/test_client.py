"""The client SDK against a real API server on 127.0.0.1 over a real ledger and mempool."""

from __future__ import annotations

import functools
import http.server
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chainnode.core import types
from chainnode.core.errors import ConfigError
from chainnode.sdk.client import Client, Identity, build_transaction
from chainnode.sdk.errors import ClientError
from tests.factories import build_put, get_free_port, load_entity
from tests.integration.api_harness import (
    CHAIN_ID,
    OBSERVER,
    OUTSIDER,
    SUBMITTER,
    LocalService,
    ServerThread,
)


@pytest.fixture
def server(service: LocalService) -> Iterator[ServerThread]:
    with ServerThread(service, commit_interval_ms=30) as running:
        yield running


_put = functools.partial(build_put, chain_id=CHAIN_ID, valid_until=500)


def test_identity_load_and_sign(service: LocalService) -> None:
    signer = load_entity(service.directory, SUBMITTER)
    assert signer.entity_id == SUBMITTER
    tx = _put(signer, "k", b"v")
    assert tx.signer == SUBMITTER and tx.chain_id == CHAIN_ID
    assert tx.verify_signature(signer.key.public_key)
    assert types.decode_transaction(tx.encoded) == tx
    assert 0 <= tx.nonce < 2**63
    assert _put(signer, "k", b"v").hash != tx.hash  # fresh random nonces
    fixed = build_transaction(
        signer, chain_id=CHAIN_ID, module="records", action="put", args=("k", b"v"), valid_until=500, nonce=7
    )
    assert fixed.nonce == 7


def test_identity_refuses_a_foreign_key(service: LocalService, tmp_path: Path) -> None:
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    shutil.copy(service.directory / "entities" / SUBMITTER / "cert.pem", mixed / "cert.pem")
    shutil.copy(service.directory / "entities" / OBSERVER / "key.pem", mixed / "key.pem")
    with pytest.raises(ConfigError, match="does not belong"):
        Identity.load(mixed)
    with pytest.raises(ConfigError):
        Identity.load(tmp_path / "missing")


def test_submit_wait_and_query(service: LocalService, server: ServerThread) -> None:
    client = Client(server.url, timeout_s=5)
    assert client.get_health() == {"status": "ok"}
    assert client.get_status()["chain_id"] == CHAIN_ID
    signer = load_entity(service.directory, SUBMITTER)
    tx = _put(signer, "contract", b"signed")
    tx_hash = client.submit(tx)
    assert tx_hash == tx.hash.hex()
    committed = client.wait_for_commit(tx_hash, timeout_s=10, poll_ms=20)
    assert committed["status"] == "committed"
    assert committed["receipt"]["code_name"] == "ok"
    record = client.get_record(SUBMITTER, "contract")
    assert record is not None and record["value"] == "signed" and record["version"] == 1
    assert client.get_record(SUBMITTER, "contract", version=1) == record
    assert client.get_record(SUBMITTER, "contract", version=2) is None
    assert client.get_record(SUBMITTER, "no-such-key") is None
    block = client.get_block(committed["height"])
    assert block["transactions"][committed["index"]]["hash"] == tx_hash
    assert client.get_block()["height"] >= committed["height"]
    assert client.get_transaction(tx_hash)["status"] == "committed"


def test_batch_submit(service: LocalService, server: ServerThread) -> None:
    client = Client(server.url, timeout_s=5)
    signer, stranger = load_entity(service.directory, SUBMITTER), load_entity(service.directory, OUTSIDER)
    txs = [_put(signer, f"item-{index}", b"x") for index in range(20)]
    txs.append(_put(stranger, "item", b"x"))
    answer = client.submit_batch(txs)
    assert (answer["accepted"], answer["rejected"]) == (20, 1)
    assert answer["results"][-1]["error"]["code"] == "unknown_signer"
    for tx in txs[:20]:
        assert client.wait_for_commit(tx.hash.hex(), timeout_s=10, poll_ms=20)["status"] == ("committed")
    record = client.get_record(SUBMITTER, "item-19")
    assert record is not None and record["value"] == "x"


def test_errors_carry_status_and_code(service: LocalService, server: ServerThread) -> None:
    client = Client(server.url, timeout_s=5)
    refused = _put(load_entity(service.directory, OBSERVER), "k", b"v")
    with pytest.raises(ClientError) as caught:
        client.submit(refused)
    assert (caught.value.status, caught.value.code) == (422, "missing_role")
    with pytest.raises(ClientError) as caught:
        client.wait_for_commit(refused.hash.hex(), timeout_s=5, poll_ms=20)
    assert caught.value.code == "missing_role"
    with pytest.raises(ClientError) as caught:
        client.get_transaction("ab" * 32)
    assert (caught.value.status, caught.value.code) == (404, "not_found")
    with pytest.raises(ClientError) as caught:
        client.get_block("nope")
    assert (caught.value.status, caught.value.code) == (400, "bad_height")


def test_wait_for_commit_times_out(server: ServerThread) -> None:
    client = Client(server.url, timeout_s=5)
    started = time.monotonic()
    with pytest.raises(ClientError) as caught:
        client.wait_for_commit("cd" * 32, timeout_s=0.3, poll_ms=50)
    assert caught.value.code == "timeout"
    assert time.monotonic() - started < 3


def test_unreachable_node() -> None:
    client = Client(f"http://127.0.0.1:{get_free_port()}", timeout_s=2)
    with pytest.raises(ClientError) as caught:
        client.get_status()
    assert caught.value.code == "unreachable" and caught.value.status is None


def test_silent_node_times_out() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # accepts connections in the backlog, never answers
        port = listener.getsockname()[1]
        client = Client(f"http://127.0.0.1:{port}", timeout_s=0.3)
        started = time.monotonic()
        with pytest.raises(ClientError) as caught:
            client.get_status()
        assert caught.value.code == "timeout"
        assert time.monotonic() - started < 5


class _TextHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<html>not an API</html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


def test_answer_that_is_not_json() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _TextHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = Client(f"http://127.0.0.1:{server.server_address[1]}", timeout_s=5)
        with pytest.raises(ClientError) as caught:
            client.get_status()
        assert caught.value.code == "bad_response"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_bad_url() -> None:
    with pytest.raises(ClientError) as caught:
        Client("127.0.0.1:26601")
    assert caught.value.code == "bad_url"
