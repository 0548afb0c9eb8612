"""The identity and governance endpoints and the `authority` / `council` CLI commands, end to end:
real HTTP on 127.0.0.1, a real LevelDB ledger over a real network's genesis, blocks committed
from the mempool by the real executor."""

from __future__ import annotations

import json
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import cli
from chainnode.app import genesis, governance
from chainnode.core import crypto
from chainnode.sdk.client import Client
from chainnode.sdk.errors import ClientError
from tests.governance_harness import Network
from tests.integration.api_harness import CHAIN_ID, LocalService, ServerThread


class NetworkService(LocalService):
    """`LocalService` (single process, no consensus) over a `network init` genesis."""

    def __init__(self, net: Network, directory: Path) -> None:
        chain_genesis: genesis.Genesis = net.genesis
        self.open_chain(
            directory,
            chain_id=chain_genesis.chain_id,
            validator_keys=[net.entity_key(v.entity_id) for v in chain_genesis.validators.validators],
            validators=chain_genesis.validators,
            genesis_hash=chain_genesis.compute_hash(),
            genesis_time_ms=chain_genesis.genesis_time_ms,
            initial_state=chain_genesis.initial_state(),
            mempool_capacity_txs=1000,
            mempool_capacity_bytes=16 * 1024 * 1024,
        )


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Network:
    return Network.create(tmp_path_factory.mktemp("governance-api"), chain_id=CHAIN_ID)


@pytest.fixture
def server(net: Network, tmp_path: Path) -> Iterator[ServerThread]:
    service = NetworkService(net, tmp_path)
    try:
        with ServerThread(service, commit_interval_ms=50) as running:
            yield running
    finally:
        service.close()


def run_cli(*argv: str | Path) -> int:
    return cli.main([str(item) for item in argv])


def last_json(output: str) -> Any:
    """The last JSON document the CLI printed."""
    decoder = json.JSONDecoder()
    documents, index = [], 0
    text = output.strip()
    while index < len(text):
        value, index = decoder.raw_decode(text, index)
        documents.append(value)
        while index < len(text) and text[index].isspace():
            index += 1
    return documents[-1]


def test_authority_commands_and_entity_endpoints(
    net: Network, server: ServerThread, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    client = Client(server.url)
    node = ("--node", server.url, "--timeout", "20")
    zone_dir = net.zone_dir("beijing")
    out = tmp_path / "ruc"
    assert (
        run_cli(
            "authority",
            "issue",
            "--zone-dir",
            zone_dir,
            "--entity",
            "ruc",
            "--name",
            "Renmin University",
            "--roles",
            "submitter",
            "--sectors",
            "law,education",
            "--out",
            out,
        )
        == 0
    )
    issued = last_json(capsys.readouterr().out)
    assert issued["zone"] == "beijing" and issued["sectors"] == ["education", "law"]
    assert stat.S_IMODE((out / "key.pem").stat().st_mode) == 0o600
    assert client.get_entity("ruc") is None
    assert (
        run_cli("authority", "register", "--zone-dir", zone_dir, "--cert", out / "cert.pem", *node, "--wait")
        == 0
    )
    entity = client.get_entity("ruc")
    assert entity is not None and entity["roles"] == ["submitter"] and not entity["revoked"]
    assert entity["public_key"] == crypto.SigningKey.load(out / "key.pem").public_key.hex()
    assert entity["certificate_pem"].startswith("-----BEGIN CERTIFICATE-----")
    # Registering the same id again commits as a failed transaction: --wait reports it, exit 1.
    capsys.readouterr()
    assert (
        run_cli("authority", "register", "--zone-dir", zone_dir, "--cert", out / "cert.pem", *node, "--wait")
        == 1
    )
    assert "already_registered" in capsys.readouterr().err
    # Another zone cannot revoke it.
    assert (
        run_cli(
            "authority",
            "revoke",
            "--zone-dir",
            net.zone_dir("shanghai"),
            "--entity",
            "ruc",
            "--reason",
            "not ours",
            *node,
            "--wait",
        )
        == 1
    )
    assert "wrong_zone" in capsys.readouterr().err
    assert (
        run_cli(
            "authority",
            "revoke",
            "--zone-dir",
            zone_dir,
            "--entity",
            "ruc",
            "--reason",
            "merged",
            *node,
            "--wait",
        )
        == 0
    )
    revoked = client.get_entity("ruc")
    assert revoked is not None and revoked["revoked"] and revoked["revocation_reason"] == "merged"
    assert revoked["revoked_from_height"] >= 1
    with pytest.raises(ClientError) as missing:
        client._get_object("/v1/entities/nobody")
    assert missing.value.status == 404


def test_council_commands_and_governance_endpoints(
    net: Network, server: ServerThread, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    client = Client(server.url)
    node = ("--node", server.url, "--timeout", "20")
    council = net.directory / "council"
    out = tmp_path / "validator-05"
    assert (
        run_cli(
            "authority",
            "issue",
            "--zone-dir",
            net.zone_dir("beijing"),
            "--entity",
            "validator-05",
            "--name",
            "Validator 05",
            "--roles",
            "validator,observer",
            "--sectors",
            "government",
            "--out",
            out,
        )
        == 0
    )
    assert (
        run_cli(
            "authority",
            "register",
            "--zone-dir",
            net.zone_dir("beijing"),
            "--cert",
            out / "cert.pem",
            *node,
            "--wait",
        )
        == 0
    )
    assert (
        run_cli(
            "council",
            "propose",
            "--member-dir",
            council / "miit",
            *node,
            "--kind",
            "add_validator",
            "--entity",
            "validator-05",
            "--wait",
        )
        == 0
    )
    capsys.readouterr()
    assert run_cli("council", "list", "--node", server.url, "--status", "open") == 0
    listed = last_json(capsys.readouterr().out)
    assert listed["threshold"] == 2 and listed["council"] == ["miit", "moe", "pboc"]
    assert [(p["id"], p["kind"], p["payload"], p["approvals"]) for p in listed["proposals"]] == [
        (1, "add_validator", "validator-05", ["miit"])
    ]
    assert client.get_validators()["size"] == 4
    # The proposer voting again is a duplicate vote.
    assert (
        run_cli(
            "council",
            "vote",
            "--member-dir",
            council / "miit",
            *node,
            "--proposal",
            "1",
            "--approve",
            "--wait",
        )
        == 1
    )
    assert "duplicate_vote" in capsys.readouterr().err
    assert (
        run_cli(
            "council",
            "vote",
            "--member-dir",
            council / "moe",
            *node,
            "--proposal",
            "1",
            "--approve",
            "--wait",
        )
        == 0
    )
    proposal = client.get_proposal(1)
    assert (
        proposal is not None and proposal["status"] == "executed" and proposal["approvals"] == ["miit", "moe"]
    )
    current = client.get_validators()
    assert current["size"] == 5 and current["validators"][-1]["id"] == "validator-05"
    assert (current["faults_max"], current["quorum"]) == (1, 4)
    assert current["height"] == client.get_status()["height"] + 1
    assert client.get_validators(1)["size"] == 4
    assert client.get_proposal(99) is None
    assert client.get_proposals("executed")["proposals"][0]["id"] == 1


def test_params_zones_and_expiring_certificates(
    net: Network, server: ServerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    client = Client(server.url)
    node = ("--node", server.url, "--timeout", "20")
    council = net.directory / "council"
    assert (
        run_cli(
            "council",
            "propose",
            "--member-dir",
            council / "pboc",
            *node,
            "--kind",
            "set_params",
            "--param",
            "block_txs_max=500",
            "--param",
            "view_timeout_ms=1500",
            "--wait",
        )
        == 0
    )
    assert (
        run_cli(
            "council", "vote", "--member-dir", council / "moe", *node, "--proposal", "1", "--reject", "--wait"
        )
        == 0
    )
    assert (
        run_cli(
            "council",
            "vote",
            "--member-dir",
            council / "miit",
            *node,
            "--proposal",
            "1",
            "--approve",
            "--wait",
        )
        == 0
    )
    params = governance.get_chain_params(server.service.ledger)
    assert (params.block_txs_max, params.view_timeout_ms) == (500, 1500)
    proposal = client.get_proposal(1)
    assert proposal is not None and proposal["payload"] == {"block_txs_max": 500, "view_timeout_ms": 1500}
    assert proposal["rejections"] == ["moe"]
    zones = {zone["id"]: zone for zone in client.get_zones()}
    assert set(zones) == {"beijing", "shanghai", "guangdong", "sichuan", "hainan"}
    assert zones["hainan"]["status"] == "active" and zones["hainan"]["signer"] == "zone:hainan"
    assert client.get_zone("atlantis") is None
    soon = client.get_expiring_certificates(30)
    assert soon["certificates"] == []
    within_year = client.get_expiring_certificates(400)["certificates"]
    expected = {e.entity_id for e in net.genesis.entities}
    assert {item["id"] for item in within_year if item["kind"] == "entity"} == expected
    assert all(not item["expired"] and item["expires_in_ms"] > 0 for item in within_year)
    with pytest.raises(ClientError) as bad:
        client._get_object("/v1/certificates/expiring?within_days=soon")
    assert bad.value.status == 400
    with pytest.raises(ClientError) as bad_height:
        client._get_object("/v1/validators?height=0")
    assert bad_height.value.status == 400


def test_usage_errors_of_council_propose(net: Network, capsys: pytest.CaptureFixture[str]) -> None:
    member = net.directory / "council" / "miit"
    base = ("council", "propose", "--member-dir", member, "--node", "http://127.0.0.1:9")
    assert run_cli(*base, "--kind", "add_validator") == 2
    assert run_cli(*base, "--kind", "suspend_zone", "--zone", "hainan", "--entity", "x") == 2
    assert run_cli(*base, "--kind", "set_params", "--param", "block_txs_max") == 2
    assert (
        run_cli("council", "vote", "--member-dir", member, "--node", "http://127.0.0.1:9", "--proposal", "1")
        == 2
    )
    started = time.monotonic()
    assert run_cli(*base, "--kind", "remove_zone", "--zone", "hainan", "--timeout", "2") == 1
    assert "unreachable" in capsys.readouterr().err and time.monotonic() - started < 10
