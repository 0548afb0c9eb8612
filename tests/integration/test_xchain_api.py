"""Cross-chain exchange end to end over HTTP: two nodes of two chains (real LevelDB ledgers over
real `network init` genesis files, blocks committed by the real executor with real commit
certificates, the API on real sockets on 127.0.0.1).  Each council registers the other chain with
the CLI (`council propose --kind register_chain --genesis FILE`); an entity of A writes a record
and sends a message with `chainnode xchain send`; the test relays with the SDK (`chainnode.sdk.xchain`,
headers and proofs fetched from A's API); B's API, SDK and CLI show the client, the fact and the
delivered message; the acknowledgement proven back to A marks A's outbound message."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import cli
from chainnode.api import xchain as api_xchain
from chainnode.core import types
from chainnode.sdk.client import Client, Identity, build_transaction
from chainnode.sdk.errors import ClientError
from chainnode.sdk.xchain import Xchain
from tests.governance_harness import Network
from tests.integration.api_harness import ServerThread
from tests.integration.test_governance_api import NetworkService


@pytest.fixture(scope="module")
def net_a(tmp_path_factory: pytest.TempPathFactory) -> Network:
    return Network.create(tmp_path_factory.mktemp("xchain-api-a"), chain_id="chain-a")


@pytest.fixture(scope="module")
def net_b(tmp_path_factory: pytest.TempPathFactory) -> Network:
    return Network.create(tmp_path_factory.mktemp("xchain-api-b"), chain_id="chain-b")


@pytest.fixture
def nodes(net_a: Network, net_b: Network, tmp_path: Path) -> Iterator[tuple[ServerThread, ServerThread]]:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    service_a = NetworkService(net_a, tmp_path / "a")
    service_b = NetworkService(net_b, tmp_path / "b")
    try:
        with (
            ServerThread(service_a, commit_interval_ms=50) as a,
            ServerThread(service_b, commit_interval_ms=50) as b,
        ):
            yield a, b
    finally:
        service_a.close()
        service_b.close()


def conforms(path: str, answer: Any) -> Any:
    """`answer` after checking it against the 200 schema its route declares (the OpenAPI document's)."""
    (route,) = [route for route in api_xchain.ROUTES if route.path == path]
    jsonschema.Draft202012Validator(dict(route.responses[200])).validate(answer)
    return answer


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> Any:
    """Run the CLI in JSON mode; its one document (exit code 0 required)."""
    capsys.readouterr()
    code = cli.main([str(item) for item in (*argv, "--json")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def register(capsys: pytest.CaptureFixture[str], net: Network, url: str, counterparty: Network) -> None:
    """The council of `net` registers `counterparty` from its genesis file (two of three)."""
    council = net.directory / "council"
    proposed = run_cli(
        capsys,
        "council",
        "propose",
        "--member-dir",
        council / "miit",
        "--node",
        url,
        "--kind",
        "register_chain",
        "--genesis",
        counterparty.directory / "genesis.json",
        "--wait",
    )
    assert proposed["ok"] and proposed["proposal"]["status"] == "open"
    voted = run_cli(
        capsys,
        "council",
        "vote",
        "--member-dir",
        council / "moe",
        "--node",
        url,
        "--proposal",
        str(proposed["proposal_id"]),
        "--approve",
        "--wait",
    )
    assert voted["proposal"]["status"] == "executed", voted


def test_a_record_and_a_message_cross_from_a_to_b_and_the_ack_comes_back(
    nodes: tuple[ServerThread, ServerThread],
    net_a: Network,
    net_b: Network,
    capsys: pytest.CaptureFixture[str],
) -> None:
    a, b = nodes
    client_a, client_b = Client(a.url), Client(b.url)
    register(capsys, net_b, b.url, net_a)
    register(capsys, net_a, a.url, net_b)
    chains = conforms("/v1/xchain/chains", run_cli(capsys, "xchain", "chains", "--node", b.url))
    assert [(c["chain_id"], c["status"], c["client"]["height"]) for c in chains["chains"]] == [
        ("chain-a", "registered", 0)
    ]
    assert chains["chains"][0]["genesis_hash"] == net_a.genesis.compute_hash().hex()

    # On A: a record, and a message to B sent with the CLI.
    pku_a = Identity.load(net_a.directory / "entities" / "pku")
    put = build_transaction(
        pku_a,
        chain_id="chain-a",
        module="records",
        action="put",
        args=("discharge-2026-001", b"discharged"),
        valid_until=int(client_a.get_status()["height"]) + 100,
    )
    put_status = client_a.wait_for_commit(client_a.submit(put), timeout_s=10)
    assert put_status["receipt"]["code"] == 0
    sent = run_cli(
        capsys,
        "xchain",
        "send",
        "chain-b",
        "--payload",
        "claim 2026-001",
        "--identity",
        net_a.directory / "entities" / "fudan",
        "--node",
        a.url,
        "--wait",
    )
    assert sent["ok"] and sent["seq"] == 1
    outbound = run_cli(capsys, "xchain", "outbound", "chain-b", "--node", a.url)
    conforms("/v1/xchain/chains/{chain}/outbound", outbound)
    assert [(m["seq"], m["sender"], m["acknowledged"]) for m in outbound["messages"]] == [(1, "fudan", False)]

    # The relay to B: headers and proofs from A's API, verified by B in execution.
    relay_b = Xchain(client_b, Identity.load(net_b.directory / "entities" / "pku"), timeout_s=10)
    put_proof = client_a.get_proof(put.hash.hex())
    send_proof = client_a.get_proof(sent["tx_hash"])
    with pytest.raises(ClientError) as behind:
        relay_b.import_transaction("chain-a", put_proof, wait=True)
    assert behind.value.code == "client_behind"
    updated = relay_b.update_to("chain-a", client_a, int(send_proof["height"]), wait=True)
    assert updated is not None
    assert relay_b.update_to("chain-a", client_a, int(send_proof["height"])) is None  # already there
    relay_b.import_transaction("chain-a", put_proof, wait=True)
    delivered = relay_b.import_transaction("chain-a", send_proof, wait=True)
    with pytest.raises(ClientError) as again:
        relay_b.import_transaction("chain-a", put_proof, wait=True)
    assert again.value.code == "already_imported"

    check_b_holds_the_fact_and_the_message(
        capsys, b.url, put.hash.hex(), put_proof, send_proof, sent, delivered.tx_hash
    )
    assert relay_b.get_fact("chain-a", "00" * 32) is None
    assert relay_b.get_chain("chain-x") is None

    # The acknowledgement: B's import that delivered the message, proven back to A.
    relay_a = Xchain(client_a, pku_a, timeout_s=10)
    ack_proof = client_b.get_proof(delivered.tx_hash)
    relay_a.update_to("chain-b", client_b, int(ack_proof["height"]), wait=True)
    acked = relay_a.import_transaction("chain-b", ack_proof, wait=True)
    names = [event["name"] for event in (acked.status or {})["receipt"]["events"]]
    assert names == ["xchain.imported", "xchain.acknowledged"]
    outbound = relay_a.get_all("chain-b", "outbound")
    assert [(m["seq"], m["acknowledged"]) for m in outbound] == [(1, True)]
    assert relay_a.get_chain("chain-b")["acknowledged"] == 1  # type: ignore[index]


def test_unknown_chains_and_bad_hashes_answer_typed_errors(
    nodes: tuple[ServerThread, ServerThread], capsys: pytest.CaptureFixture[str]
) -> None:
    _, b = nodes
    reader = Xchain(Client(b.url))
    assert reader.get_chains() == {"chains": [], "next_cursor": None}
    for what in ("facts", "outbound", "inbound"):
        with pytest.raises(ClientError) as missing:
            reader.get_all("chain-x", what)
        assert (missing.value.status, missing.value.code) == (404, "not_found")
    with pytest.raises(ClientError) as bad_hex:
        reader.get_fact("chain-x", "XYZ")
    assert (bad_hex.value.status, bad_hex.value.code) == (400, "bad_hex")
    capsys.readouterr()
    assert cli.main(["xchain", "client", "chain-x", "--node", b.url, "--json"]) == 1
    assert "not_found" in capsys.readouterr().err


def check_b_holds_the_fact_and_the_message(
    capsys: pytest.CaptureFixture[str],
    url: str,
    put_hash: str,
    put_proof: dict[str, Any],
    send_proof: dict[str, Any],
    sent: dict[str, Any],
    delivered_hash: str,
) -> None:
    """B's CLI (over its API): the client at the proofs' height, two facts, one message delivered."""
    client = conforms(
        "/v1/xchain/chains/{chain}", run_cli(capsys, "xchain", "client", "chain-a", "--node", url)
    )
    assert client["client"]["height"] == int(send_proof["height"]) and client["fork"] is None
    head = types.decode_block_header(bytes.fromhex(client["head"]["header"]))
    assert head.compute_hash().hex() == client["client"]["header_hash"] == send_proof["block_hash"]
    assert (client["facts"], client["delivered"]) == (2, 1)
    fact = run_cli(capsys, "xchain", "fact", "chain-a", put_hash, "--node", url)
    conforms("/v1/xchain/chains/{chain}/facts/{tx_hash}", fact)
    assert (fact["height"], fact["module"], fact["signer"], fact["importer"]) == (
        put_proof["height"],
        "records",
        "pku",
        "pku",
    )
    assert fact["block_hash"] == put_proof["block_hash"]
    assert fact["receipt"]["events"] == [
        {"name": "records.put", "attributes": ["pku", "discharge-2026-001", 1]}
    ]
    facts = run_cli(capsys, "xchain", "facts", "chain-a", "--node", url, "--limit", "1")
    conforms("/v1/xchain/chains/{chain}/facts", facts)
    assert [f["tx_hash"] for f in facts["facts"]] == [put_hash] and facts["next_cursor"] == "1"
    second = run_cli(capsys, "xchain", "facts", "chain-a", "--node", url, "--cursor", "1")
    assert [f["tx_hash"] for f in second["facts"]] == [sent["tx_hash"]] and second["next_cursor"] is None
    inbound = run_cli(capsys, "xchain", "inbound", "chain-a", "--node", url)
    conforms("/v1/xchain/chains/{chain}/inbound", inbound)
    assert [(m["seq"], m["sender"], bytes.fromhex(m["payload"])) for m in inbound["messages"]] == [
        (1, "fudan", b"claim 2026-001")
    ]
    assert inbound["messages"][0]["tx_hash"] == delivered_hash
