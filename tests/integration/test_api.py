"""The HTTP JSON API over real HTTP on 127.0.0.1, a real ledger, mempool and executor."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

from chainnode.api.chain import SUBMIT_TXS_MAX
from chainnode.api.server import create_app
from chainnode.api.service import SubmitResult
from chainnode.core import quorum, types
from chainnode.node.mempool import MempoolFullError
from tests.factories import build_put, load_entity
from tests.integration.api_harness import CHAIN_ID, OBSERVER, OUTSIDER, SUBMITTER, LocalService

BODY_BYTES_MAX = 256 * 1024


@pytest.fixture
async def http(service: LocalService) -> AsyncIterator[TestClient[Any, Any]]:
    app = create_app(service, body_bytes_max=BODY_BYTES_MAX)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client


def _put(
    service: LocalService, key: str, value: bytes, *, entity_id: str = SUBMITTER, chain_id: str = CHAIN_ID
) -> types.Transaction:
    signer = load_entity(service.directory, entity_id)
    return build_put(signer, key, value, chain_id=chain_id, valid_until=1000)


async def _expect_error(response: ClientResponse, status: int, code: str) -> dict[str, Any]:
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    body = await response.json()
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert "Traceback" not in body["error"]["message"]
    return dict(body)


async def test_health_and_status(http: TestClient[Any, Any], service: LocalService) -> None:
    response = await http.get("/v1/health")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}
    status = await (await http.get("/v1/status")).json()
    assert status["chain_id"] == CHAIN_ID
    assert status["height"] == 0
    assert status["genesis_hash"] == service.genesis_hash.hex()


async def test_submit_commit_and_read_back(http: TestClient[Any, Any], service: LocalService) -> None:
    tx = _put(service, "lab-results", b"negative")
    response = await http.post("/v1/transactions", json={"tx": tx.encoded.hex()})
    assert response.status == 202
    assert await response.json() == {"hash": tx.hash.hex(), "status": "pending"}
    pending = await (await http.get(f"/v1/transactions/{tx.hash.hex()}")).json()
    assert pending == {"hash": tx.hash.hex(), "status": "pending"}

    assert service.commit_pending() == 1
    committed = await (await http.get(f"/v1/transactions/{tx.hash.hex()}")).json()
    assert committed["status"] == "committed"
    assert (committed["height"], committed["index"]) == (1, 0)
    assert committed["receipt"] == {
        "code": 0,
        "code_name": "ok",
        "message": "",
        "events": [{"name": "records.put", "attributes": [SUBMITTER, "lab-results", 1]}],
    }

    record = await (await http.get(f"/v1/records/{SUBMITTER}/lab-results")).json()
    assert record == {
        "entity": SUBMITTER,
        "key": "lab-results",
        "version": 1,
        "value_hex": b"negative".hex(),
        "value": "negative",
        "height": 1,
        "tx_hash": tx.hash.hex(),
        "writer": SUBMITTER,
        "document": None,
    }


async def test_block_endpoint_lets_an_auditor_verify(
    http: TestClient[Any, Any], service: LocalService
) -> None:
    tx = _put(service, "doc", b"\xff\x00binary")
    assert (await http.post("/v1/transactions", json={"tx": tx.encoded.hex()})).status == 202
    service.commit_pending()
    block = await (await http.get("/v1/blocks/1")).json()
    assert block == await (await http.get("/v1/blocks/latest")).json()
    assert block["height"] == 1
    assert block["header"]["parent_hash"] == service.genesis_hash.hex()
    assert block["header"]["tx_count"] == 1
    assert block["transactions"] == [
        {
            "hash": tx.hash.hex(),
            "signer": SUBMITTER,
            "nonce": tx.nonce,
            "valid_until": 1000,
            "module": "records",
            "action": "put",
            "args": ["doc", {"hex": b"\xff\x00binary".hex()}],
            "signature": tx.signature.hex(),
        }
    ]
    names = [signature["validator"] for signature in block["certificate"]["signatures"]]
    assert names == [v.entity_id for v in service.validators.validators]
    # The raw encodings verify on their own, without trusting the JSON.
    decoded = types.decode_block(bytes.fromhex(block["block_encoded"]))
    assert decoded.hash.hex() == block["hash"] == block["certificate"]["block_hash"]
    certificate = quorum.decode_commit_certificate(bytes.fromhex(block["certificate_encoded"]))
    assert certificate.find_problem(CHAIN_ID, service.validators) is None
    record = await (await http.get(f"/v1/records/{SUBMITTER}/doc")).json()
    assert record["value"] is None and record["value_hex"] == b"\xff\x00binary".hex()


async def test_blocks_at_genesis_and_bad_heights(http: TestClient[Any, Any], service: LocalService) -> None:
    genesis = await (await http.get("/v1/blocks/0")).json()
    assert genesis["genesis"] is True and genesis["hash"] == service.genesis_hash.hex()
    assert (await (await http.get("/v1/blocks/latest")).json())["height"] == 0
    await _expect_error(await http.get("/v1/blocks/1"), 404, "not_found")
    await _expect_error(await http.get("/v1/blocks/abc"), 400, "bad_height")
    await _expect_error(await http.get("/v1/blocks/-1"), 400, "bad_height")
    await _expect_error(await http.get("/v1/blocks/1.5"), 400, "bad_height")
    await _expect_error(await http.get("/v1/blocks/" + "9" * 40), 400, "bad_height")


async def test_replay_of_a_committed_transaction_is_refused(
    http: TestClient[Any, Any], service: LocalService
) -> None:
    tx = _put(service, "once", b"1")
    assert (await http.post("/v1/transactions", json={"tx": tx.encoded.hex()})).status == 202
    service.commit_pending()
    body = await _expect_error(
        await http.post("/v1/transactions", json={"tx": tx.encoded.hex()}), 422, "duplicate"
    )
    assert body["hash"] == tx.hash.hex()
    # The refusal does not hide the committed transaction.
    status = await (await http.get(f"/v1/transactions/{tx.hash.hex()}")).json()
    assert status["status"] == "committed"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "malformed_json"),
        (b"\xff\xfe\x00", "malformed_json"),
        (b"[1, 2]", "bad_request"),
        (b'{"tx": 5}', "bad_hex"),
        (b'{"tx": "abc"}', "bad_hex"),
        (b'{"tx": "zz"}', "bad_hex"),
        (b'{"tx": "00 11"}', "bad_hex"),
        (b'{"tx": "00"}', "malformed"),
        (b'{"tx": ""}', "malformed"),
        (b'{"transaction": "00"}', "bad_request"),
        (b'{"tx": "00", "txs": ["00"]}', "bad_request"),
        (b'{"txs": "00"}', "bad_request"),
        (b'{"txs": []}', "bad_request"),
    ],
)
async def test_bad_submissions_are_400(http: TestClient[Any, Any], body: bytes, code: str) -> None:
    response = await http.post("/v1/transactions", data=body, headers={"Content-Type": "application/json"})
    await _expect_error(response, 400, code)


async def test_rule_breaking_transactions_are_422(http: TestClient[Any, Any], service: LocalService) -> None:
    good = _put(service, "k", b"v")
    forged = bytearray(good.encoded)
    forged[-1] ^= 0x01  # the last byte belongs to the signature
    cases = [
        (bytes(forged), "bad_signature", good.hash),
        (_put(service, "k", b"v", entity_id=OUTSIDER).encoded, "unknown_signer", None),
        (_put(service, "k", b"v", entity_id=OBSERVER).encoded, "missing_role", None),
        (_put(service, "k", b"v", chain_id="other-net").encoded, "wrong_chain", None),
        (_put(service, "bad/key", b"v").encoded, "bad_arguments", None),
    ]
    for encoded, code, expected_hash in cases:
        body = await _expect_error(await http.post("/v1/transactions", json={"tx": encoded.hex()}), 422, code)
        assert body["hash"] == types.decode_transaction(encoded).hash.hex()
        if expected_hash is not None:
            assert body["hash"] == expected_hash.hex()
    assert len(service.mempool) == 0


async def test_oversize_body_is_413(http: TestClient[Any, Any]) -> None:
    response = await http.post(
        "/v1/transactions",
        data=b"x" * (BODY_BYTES_MAX + 1),
        headers={"Content-Type": "application/json"},
    )
    await _expect_error(response, 413, "too_large")


async def test_batch_with_mixed_items(http: TestClient[Any, Any], service: LocalService) -> None:
    first, second = _put(service, "a", b"1"), _put(service, "b", b"2")
    stranger = _put(service, "c", b"3", entity_id=OUTSIDER)
    items = [first.encoded.hex(), "not hex", "00", stranger.encoded.hex(), second.encoded.hex()]
    response = await http.post("/v1/transactions", json={"txs": items})
    assert response.status == 200
    body = await response.json()
    assert (body["accepted"], body["rejected"]) == (2, 3)
    results = body["results"]
    assert [item["status"] for item in results] == ["pending", "rejected", "rejected", "rejected", "pending"]
    assert [item.get("error", {}).get("code") for item in results] == [
        None,
        "bad_hex",
        "malformed",
        "unknown_signer",
        None,
    ]
    assert results[0]["hash"] == first.hash.hex() and results[4]["hash"] == second.hash.hex()
    assert results[1]["hash"] is None and results[3]["hash"] == stranger.hash.hex()
    assert len(service.mempool) == 2
    # The same batch again: the good ones are already pooled, which is not an error.
    again = await (await http.post("/v1/transactions", json={"txs": [first.encoded.hex()]})).json()
    assert again["accepted"] == 1


async def test_batch_size_is_bounded(http: TestClient[Any, Any]) -> None:
    response = await http.post("/v1/transactions", json={"txs": ["00"] * (SUBMIT_TXS_MAX + 1)})
    await _expect_error(response, 400, "too_many")


async def test_mempool_full_is_503_with_retry_after(tmp_path: Path) -> None:
    service = LocalService(tmp_path, mempool_capacity_txs=2)
    try:
        app = create_app(service)
        async with TestClient(TestServer(app, host="127.0.0.1")) as http:
            for key in ("a", "b"):
                tx = _put(service, key, b"v")
                response = await http.post("/v1/transactions", json={"tx": tx.encoded.hex()})
                assert response.status == 202
            overflow = _put(service, "c", b"v")
            response = await http.post("/v1/transactions", json={"tx": overflow.encoded.hex()})
            await _expect_error(response, 503, "mempool_full")
            assert int(response.headers["Retry-After"]) >= 1
            batch = await http.post("/v1/transactions", json={"txs": [overflow.encoded.hex()]})
            await _expect_error(batch, 503, "mempool_full")
            assert "Retry-After" in batch.headers
    finally:
        service.close()


class _PerItemFullService(LocalService):
    """Reports a full pool per item, as the node does for a batch."""

    def submit_transactions(self, encoded: Sequence[bytes], *, replicate: bool = False) -> list[SubmitResult]:
        results = []
        for item in encoded:
            try:
                results.extend(super().submit_transactions([item], replicate=replicate))
            except MempoolFullError as error:
                results.append(SubmitResult(None, False, error.code, error.message))
        return results


async def test_batch_partly_refused_for_a_full_pool_says_when_to_retry(tmp_path: Path) -> None:
    service = _PerItemFullService(tmp_path, mempool_capacity_txs=1)
    try:
        async with TestClient(TestServer(create_app(service), host="127.0.0.1")) as http:
            items = [_put(service, key, b"v").encoded.hex() for key in ("a", "b")]
            response = await http.post("/v1/transactions", json={"txs": items})
            assert response.status == 200
            body = await response.json()
            assert (body["accepted"], body["rejected"]) == (1, 1)
            assert body["results"][1]["error"]["code"] == "mempool_full"
            assert int(response.headers["Retry-After"]) >= 1
            single = await http.post("/v1/transactions", json={"tx": items[1]})
            await _expect_error(single, 503, "mempool_full")
            assert "Retry-After" in single.headers
    finally:
        service.close()


async def test_transaction_lookup_errors(http: TestClient[Any, Any]) -> None:
    await _expect_error(await http.get("/v1/transactions/" + "ab" * 32), 404, "not_found")
    await _expect_error(await http.get("/v1/transactions/" + "ab" * 31), 400, "bad_hex")
    await _expect_error(await http.get("/v1/transactions/" + "zz" * 32), 400, "bad_hex")


async def test_rejected_transaction_status(http: TestClient[Any, Any], service: LocalService) -> None:
    tx = _put(service, "k", b"v", entity_id=OBSERVER)
    await http.post("/v1/transactions", json={"tx": tx.encoded.hex()})
    status = await (await http.get(f"/v1/transactions/{tx.hash.hex()}")).json()
    assert status["status"] == "rejected"
    assert status["error"]["code"] == "missing_role"


async def test_record_versions_and_errors(http: TestClient[Any, Any], service: LocalService) -> None:
    for value in (b"first", b"second"):
        tx = _put(service, "report", value)
        assert (await http.post("/v1/transactions", json={"tx": tx.encoded.hex()})).status == 202
        service.commit_pending()
    latest = await (await http.get(f"/v1/records/{SUBMITTER}/report")).json()
    assert (latest["version"], latest["value"], latest["height"]) == (2, "second", 2)
    first = await (await http.get(f"/v1/records/{SUBMITTER}/report?version=1")).json()
    assert (first["version"], first["value"], first["height"]) == (1, "first", 1)
    await _expect_error(await http.get(f"/v1/records/{SUBMITTER}/report?version=3"), 404, "not_found")
    await _expect_error(await http.get(f"/v1/records/{SUBMITTER}/nothing"), 404, "not_found")
    await _expect_error(await http.get(f"/v1/records/{SUBMITTER}/report?version=x"), 400, "bad_version")
    await _expect_error(await http.get(f"/v1/records/{SUBMITTER}/report?version=0"), 400, "bad_version")
    await _expect_error(await http.get(f"/v1/records/{SUBMITTER}/report?version="), 400, "bad_version")


async def test_unknown_routes_and_methods(http: TestClient[Any, Any]) -> None:
    await _expect_error(await http.get("/v1/nothing-here"), 404, "not_found")
    await _expect_error(await http.get("/"), 404, "not_found")
    response = await http.delete("/v1/status")
    await _expect_error(response, 405, "method_not_allowed")
    assert "GET" in response.headers["Allow"]
    await _expect_error(await http.get("/v1/transactions"), 405, "method_not_allowed")


class _BrokenService(LocalService):
    def get_status(self) -> dict[str, Any]:
        raise RuntimeError("secret internal detail")


async def test_unexpected_errors_are_500_json_without_details(tmp_path: Path) -> None:
    service = _BrokenService(tmp_path)
    try:
        async with TestClient(TestServer(create_app(service), host="127.0.0.1")) as http:
            response = await http.get("/v1/status")
            body = await _expect_error(response, 500, "internal")
            assert "secret" not in str(body)
            # The server keeps serving.
            assert (await http.get("/v1/health")).status == 200
    finally:
        service.close()


async def test_metrics_evidence_and_checkpoint_endpoints(
    http: TestClient[Any, Any], service: LocalService
) -> None:
    response = await http.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = await response.text()
    assert "# TYPE chainnode_height gauge" in text
    assert f'chainnode_height{{chain_id="{service.chain_id}",node="{service.node_id}"}} 0' in text
    response = await http.get("/v1/evidence")
    assert response.status == 200
    assert await response.json() == {"count": 0, "evidence": [], "next_cursor": None}
    response = await http.get("/v1/checkpoints/latest")
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "not_found"


async def test_a_busy_node_refuses_submissions_before_reading_them(
    http: TestClient[Any, Any], service: LocalService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "get_busy_reason", lambda: "the node is busy; retry later")
    # Not even JSON: a node that read the body would answer 400.
    response = await http.post("/v1/transactions", data=b"\xff not json")
    assert response.status == 503
    assert response.headers["Retry-After"]
    assert (await response.json())["error"]["code"] == "mempool_full"
    monkeypatch.undo()
    response = await http.post("/v1/transactions", data=b"\xff not json")
    assert response.status == 400
