"""A started node's limits on hostile clients, over its real API on 127.0.0.1.

One validator of a four-validator network written by `chainnode.tools.network.init_network`,
started in this process with its `node.toml` pointing at free ports and carrying small
`[api]` limits.  Its three peers are never started, so it cannot commit: a transaction
it admits stays pending, which is what the resend test needs.  The connection limits
themselves are tested in `test_http_guard.py`; here, that `node.toml` reaches them and
`/metrics` reports them.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from chainnode.core.errors import ConfigError
from chainnode.node.config import load_node_config, render_node_config
from chainnode.node.runtime import Node
from chainnode.tools.devnet import LocalNetwork
from chainnode.tools.network import init_network
from tests.factories import build_put, get_free_port, load_entity, wait_until
from tests.integration.test_http_guard import (
    ask_health,
    connect,
    connections,
    read_response,
    wait_closed_by_server,
)

CHAIN_ID = "limits-net"
CONNECTIONS_MAX = 3
HEAD_TIMEOUT_MS = 200
WAIT_S = 5.0


def set_key(text: str, table: str, key: str, value: str) -> str:
    """`text` with `key = value` in `[table]` (replaced if the key is there, else added)."""
    start = text.index(f"[{table}]\n") + len(f"[{table}]\n")
    end = text.find("\n[", start)
    end = len(text) if end == -1 else end + 1
    body, count = re.subn(rf"^{key} = .*$", f"{key} = {value}", text[start:end], flags=re.MULTILINE)
    if count == 0:
        body = f"{key} = {value}\n" + body
    return text[:start] + body + text[end:]


@dataclass(frozen=True, slots=True)
class Started:
    node: Node
    api_port: int
    directory: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"


@pytest.fixture
async def started(tmp_path: Path) -> AsyncIterator[Started]:
    init_network(tmp_path, validators=4, chain_id=CHAIN_ID, base_port=29800)
    config_path = LocalNetwork(tmp_path).nodes[0].config_path
    api_port = get_free_port()
    text = config_path.read_text()
    text = set_key(text, "p2p", "listen", f'"127.0.0.1:{get_free_port()}"')
    text = set_key(text, "api", "listen", f'"127.0.0.1:{api_port}"')
    text = set_key(text, "api", "connections_max", str(CONNECTIONS_MAX))
    text = set_key(text, "api", "request_head_timeout_ms", str(HEAD_TIMEOUT_MS))
    config_path.write_text(text)
    node = Node(load_node_config(config_path))
    await node.start()
    try:
        yield Started(node, api_port, tmp_path)
    finally:
        await node.stop()


def read_metric(text: str, name: str) -> float:
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{")]
    assert len(values) == 1, (name, values)
    return values[0]


async def get_metrics(session: aiohttp.ClientSession, started: Started) -> str:
    async with session.get(f"{started.url}/metrics") as response:
        assert response.status == 200
        return await response.text()


async def post_tx(session: aiohttp.ClientSession, started: Started, encoded: bytes) -> tuple[int, Any]:
    async with session.post(f"{started.url}/v1/transactions", json={"tx": encoded.hex()}) as response:
        return response.status, await response.json()


# ---------------------------------------------------------------- admission


async def test_a_pending_transaction_resent_with_a_broken_signature_is_refused(started: Started) -> None:
    genuine = build_put(load_entity(started.directory), "resend", b"v", chain_id=CHAIN_ID, valid_until=1000)
    forged = bytearray(genuine.encoded)
    forged[-1] ^= 0x01  # the signature is the last field of the encoding; the id does not cover it
    async with aiohttp.ClientSession() as session:
        assert await post_tx(session, started, genuine.encoded) == (
            202,
            {"hash": genuine.hash.hex(), "status": "pending"},
        )
        status, answer = await post_tx(session, started, bytes(forged))
        assert status == 422, answer
        assert (answer["error"]["code"], answer["hash"]) == ("bad_signature", genuine.hash.hex())
        # The bytes that are pooled are still welcome, and the id still reads pending.
        assert (await post_tx(session, started, genuine.encoded))[0] == 202
        async with session.get(f"{started.url}/v1/transactions/{genuine.hash.hex()}") as response:
            assert (await response.json())["status"] == "pending"
    assert started.node.mempool.get(genuine.hash) == genuine


@pytest.mark.parametrize(
    ("table", "key", "value"),
    [
        ("api", "connections_max", "0"),
        ("api", "request_head_timeout_ms", "10"),
        ("api", "keepalive_timeout_ms", "true"),
        ("p2p", "inbound_connections_max", "0"),
        ("p2p", "inbound_unauthenticated_max", "129"),  # above inbound_connections_max (128)
    ],
)
def test_unusable_limits_in_node_toml_are_refused_naming_the_key(
    tmp_path: Path, table: str, key: str, value: str
) -> None:
    path = tmp_path / "node.toml"
    text = render_node_config(
        node_id="validator-01", p2p_address="127.0.0.1:26600", api_address="127.0.0.1:26601", peers=[]
    )
    path.write_text(set_key(text, table, key, value))
    with pytest.raises(ConfigError, match=rf"{table}\.{key}"):
        load_node_config(path)


# ---------------------------------------------------------------- connection limits from node.toml


async def test_node_toml_limits_the_api_and_metrics_count_what_they_refused(started: Started) -> None:
    config = started.node.config
    assert config.api_connections_max == CONNECTIONS_MAX
    assert config.api_request_head_timeout_ms == HEAD_TIMEOUT_MS
    runner = started.node.api_runner
    assert runner is not None
    async with connections() as opened:
        held = [await connect(started.api_port, opened) for _ in range(CONNECTIONS_MAX)]
        await wait_until(
            lambda: runner.guard.connections_open == CONNECTIONS_MAX, "the node holds them all", WAIT_S
        )
        assert await ask_health(held[0]) == 200
        refused_reader, _ = await connect(started.api_port, opened)
        status, body = await read_response(refused_reader)
        assert (status, json.loads(body)["error"]["code"]) == (503, "too_many_connections")
        # A head that never ends, on one of the held connections.
        slow_reader, slow_writer = held[1]
        slow_writer.write(b"GET /v1/health HTTP/1.1\r\n")
        assert await wait_closed_by_server(slow_reader, WAIT_S) < 4 * HEAD_TIMEOUT_MS / 1000
        for _, writer in held:
            writer.close()
    async with aiohttp.ClientSession() as session:
        text = await get_metrics(session, started)
        assert read_metric(text, "chainnode_api_connections_refused_total") == 1
        assert read_metric(text, "chainnode_api_request_heads_timed_out_total") == 1
        assert read_metric(text, "chainnode_p2p_connections_refused_total") == 0
        assert 1 <= read_metric(text, "chainnode_api_connections_open") <= CONNECTIONS_MAX
