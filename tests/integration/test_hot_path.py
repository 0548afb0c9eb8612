"""The hot-path edits of issue 6: refusing before checking, and the cheap block view."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from chainnode.api.server import create_app
from chainnode.node.mempool import Mempool, MempoolFullError
from tests.factories import build_put, load_entity
from tests.integration.api_harness import CHAIN_ID, SUBMITTER, LocalService


@pytest.fixture
async def http(service: LocalService) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(create_app(service), host="127.0.0.1")) as client:
        yield client


def _puts(service: LocalService, count: int) -> list[Any]:
    signer = load_entity(service.directory, SUBMITTER)
    return [build_put(signer, f"k{i}", b"v", chain_id=CHAIN_ID, valid_until=1000) for i in range(count)]


def test_check_room_refuses_at_either_capacity(service: LocalService) -> None:
    txs = _puts(service, 3)
    size = len(txs[0].encoded)
    by_count = Mempool(capacity_txs=2, capacity_bytes=1 << 20)
    by_count.add(txs[0])
    by_count.check_room(size)  # one more fits
    by_count.add(txs[1])
    with pytest.raises(MempoolFullError, match="2 transactions"):
        by_count.check_room(size)
    with pytest.raises(MempoolFullError):
        by_count.add(txs[2])
    by_bytes = Mempool(capacity_txs=100, capacity_bytes=size + size // 2)
    by_bytes.add(txs[0])
    with pytest.raises(MempoolFullError, match="bytes"):
        by_bytes.check_room(size)
    by_count.remove([txs[0].hash])
    by_count.check_room(size)  # room again after a commit removed one


async def test_block_hashes_view_lists_exactly_the_committed_transactions(
    http: TestClient[Any, Any], service: LocalService
) -> None:
    txs = _puts(service, 5)
    answer = await http.post("/v1/transactions", json={"txs": [tx.encoded.hex() for tx in txs]})
    assert (await answer.json())["accepted"] == 5
    service.commit_pending()
    full = await (await http.get("/v1/blocks/1")).json()
    cheap_response = await http.get("/v1/blocks/1?transactions=hashes")
    assert cheap_response.status == 200
    cheap = await cheap_response.json()
    assert [item["hash"] for item in cheap["transactions"]] == [item["hash"] for item in full["transactions"]]
    assert sorted(item["hash"] for item in cheap["transactions"]) == sorted(tx.hash.hex() for tx in txs)
    assert "block_encoded" not in cheap and "block_encoded" in full
    assert cheap["hash"] == full["hash"] and cheap["certificate"] == full["certificate"]
    assert cheap["header"] == full["header"] and cheap["height"] == full["height"] == 1


async def test_an_unknown_block_view_is_a_client_error(
    http: TestClient[Any, Any], service: LocalService
) -> None:
    (tx,) = _puts(service, 1)
    assert (await http.post("/v1/transactions", json={"tx": tx.encoded.hex()})).status == 202
    service.commit_pending()
    answer = await http.get("/v1/blocks/1?transactions=everything")
    assert answer.status == 400
    assert (await answer.json())["error"]["code"] == "bad_request"


async def test_a_follower_waits_for_the_next_height_instead_of_polling(
    http: TestClient[Any, Any], service: LocalService
) -> None:
    txs = _puts(service, 4)
    asked_at = asyncio.get_running_loop().time()
    waiting = asyncio.create_task(http.get("/v1/blocks/1?transactions=hashes&wait_ms=10000"))
    await asyncio.sleep(0.2)
    assert not waiting.done(), "height 1 is not committed yet: the answer waits"
    answer = await http.post("/v1/transactions", json={"txs": [tx.encoded.hex() for tx in txs[:2]]})
    assert (await answer.json())["accepted"] == 2
    service.commit_pending()
    block_answer = await asyncio.wait_for(waiting, 5)
    assert block_answer.status == 200
    block = await block_answer.json()
    assert block["height"] == 1
    assert sorted(item["hash"] for item in block["transactions"]) == sorted(tx.hash.hex() for tx in txs[:2])
    assert asyncio.get_running_loop().time() - asked_at < 5, "answered at the commit, not at wait_ms"
    # A commit below the height asked for does not answer it: it waits on until its own.
    waiting = asyncio.create_task(http.get("/v1/blocks/3?wait_ms=10000"))
    await asyncio.sleep(0.1)
    await http.post("/v1/transactions", json={"tx": txs[2].encoded.hex()})
    service.commit_pending()  # height 2
    await asyncio.sleep(0.2)
    assert not waiting.done()
    await http.post("/v1/transactions", json={"tx": txs[3].encoded.hex()})
    service.commit_pending()  # height 3
    assert (await (await asyncio.wait_for(waiting, 5)).json())["height"] == 3


async def test_a_wait_that_runs_out_answers_not_found(
    http: TestClient[Any, Any], service: LocalService
) -> None:
    started = asyncio.get_running_loop().time()
    answer = await http.get("/v1/blocks/1?wait_ms=300")
    assert answer.status == 404 and (await answer.json())["error"]["code"] == "not_found"
    assert asyncio.get_running_loop().time() - started >= 0.29
    assert (await http.get("/v1/blocks/5")).status == 404  # no wait_ms: at once, as before


@pytest.mark.parametrize(
    "query", ["wait_ms=30001", "wait_ms=-1", "wait_ms=soon", "transactions=all&wait_ms=500"]
)
async def test_bad_wait_parameters_are_refused_before_any_wait(
    http: TestClient[Any, Any], service: LocalService, query: str
) -> None:
    started = asyncio.get_running_loop().time()
    answer = await http.get(f"/v1/blocks/1?{query}")
    assert answer.status == 400 and (await answer.json())["error"]["code"] == "bad_request"
    assert asyncio.get_running_loop().time() - started < 0.4
