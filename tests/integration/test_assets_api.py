"""Digital assets end to end: the SDK (`chainnode.sdk.assets`) and the `chainnode asset` CLI over
real HTTP on 127.0.0.1, a real LevelDB ledger over a real network's genesis, blocks committed
from the mempool by the real executor.  An issuer mints a certificate, the owner transfers it,
the zone authority freezes it, and an auditor reads the provenance, page by page."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import cli
from chainnode.core import crypto, identity
from chainnode.sdk.assets import Assets
from chainnode.sdk.client import AuthoritySigner, Client, Identity, build_transaction
from chainnode.sdk.errors import ClientError
from tests.governance_harness import Network
from tests.integration.api_harness import CHAIN_ID, ServerThread
from tests.integration.test_governance_api import NetworkService

ISSUER = "cert-office"
META = crypto.sha256(b"certificate 2026-0001 metadata")


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Network:
    return Network.create(tmp_path_factory.mktemp("assets-api"), chain_id=CHAIN_ID)


@pytest.fixture
def server(net: Network, tmp_path: Path) -> Iterator[ServerThread]:
    service = NetworkService(net, tmp_path)
    try:
        with ServerThread(service, commit_interval_ms=50) as running:
            yield running
    finally:
        service.close()


def register_issuer(net: Network, client: Client, directory: Path) -> Path:
    """Issue and register a beijing entity with the issuer role; its identity directory."""
    certificate_der, key = net.issue("beijing", ISSUER, roles=("submitter", "issuer"))
    directory.mkdir(parents=True)
    pem = identity.certificate_to_pem(identity.certificate_from_der(certificate_der))
    (directory / "cert.pem").write_bytes(pem)
    (directory / "key.pem").write_bytes(key.to_pem())
    zone = AuthoritySigner.load_zone(net.zone_dir("beijing"))
    status = client.get_status()
    tx = build_transaction(
        zone,
        chain_id=CHAIN_ID,
        module="authority",
        action="register",
        args=(certificate_der,),
        valid_until=int(status["height"]) + 100,
    )
    answer = client.wait_for_commit(client.submit(tx), timeout_s=10)
    assert answer["receipt"]["code"] == 0, answer
    return directory


def test_mint_transfer_freeze_and_provenance_through_the_api(
    net: Network, server: ServerThread, tmp_path: Path
) -> None:
    client = Client(server.url)
    issuer = Assets(client, Identity.load(register_issuer(net, client, tmp_path / "issuer")))
    owner = Assets(client, Identity.load(net.directory / "entities" / "pku"))
    zone = Assets(client, AuthoritySigner.load_zone(net.zone_dir("shanghai")))
    auditor = Assets(client)

    issuer.create_collection("diplomas", "University Diplomas", "DIP", wait=True)
    minted = issuer.mint("diplomas", "2026-0001", owner="pku", metadata_hash=META, wait=True)
    assert minted.asset_ids == ("diplomas/2026-0001",) and len(minted.tx_hash) == 64
    owner.transfer("diplomas", "2026-0001", "fudan", wait=True)
    # fudan is a shanghai entity: the shanghai authority may freeze its holding.
    zone.freeze("diplomas", "2026-0001", "fudan", wait=True)

    asset = auditor.get_asset("diplomas", "2026-0001")
    assert asset is not None
    assert (asset["owner"], asset["units"], asset["metadata_hash"]) == ("fudan", 1, META.hex())
    assert asset["holders"] == [
        {
            "asset_id": "diplomas/2026-0001",
            "collection": "diplomas",
            "token": "2026-0001",
            "holder": "fudan",
            "amount": 1,
            "frozen_by": "zone:shanghai",
        }
    ]
    first = auditor.get_provenance("diplomas", "2026-0001", limit=2)
    assert [entry["action"] for entry in first["entries"]] == ["mint", "transfer"]
    assert first["next_cursor"] == "2"
    entries = list(auditor.iter_provenance("diplomas", "2026-0001", limit=2))
    assert [(e["action"], e["actor"], e["from"], e["to"]) for e in entries] == [
        ("mint", ISSUER, None, "pku"),
        ("transfer", "pku", "pku", "fudan"),
        ("freeze", "zone:shanghai", "fudan", None),
    ]
    assert entries[0]["tx_hash"] == minted.tx_hash
    heights = [entry["height"] for entry in entries]
    assert heights == sorted(heights) and len(set(heights)) == 3
    # Every entry's transaction is committed at the height it names.
    for entry in entries:
        assert client.get_transaction(entry["tx_hash"])["height"] == entry["height"]

    # The frozen holding does not move: a stable code through the SDK.
    fudan = Assets(client, Identity.load(net.directory / "entities" / "fudan"))
    with pytest.raises(ClientError) as refused:
        fudan.transfer("diplomas", "2026-0001", "pku", wait=True)
    assert refused.value.code == "asset_frozen"

    owned = auditor.list_owned("fudan")
    assert [item["asset_id"] for item in owned["assets"]] == ["diplomas/2026-0001"]
    assert auditor.list_owned("pku")["assets"] == []
    stats = auditor.get_collection("diplomas")
    assert stats is not None
    assert stats["stats"] == {
        "tokens": 1,
        "tokens_burned": 0,
        "tokens_live": 1,
        "units": 1,
        "transfers": 1,
        "frozen_holdings": 1,
    }
    listing = auditor.list_collection_assets("diplomas", limit=10)
    assert [a["asset_id"] for a in listing["assets"]] == ["diplomas/2026-0001"] and listing[
        "next_cursor"
    ] is None


def test_queries_answer_404_and_400_with_stable_codes(server: ServerThread) -> None:
    client = Client(server.url)
    auditor = Assets(client)
    assert auditor.get_collection("nothing-here") is None
    assert auditor.get_asset("nothing-here", "x") is None
    for path, code in (
        ("/v1/collections/nothing-here/assets", "not_found"),
        ("/v1/collections/nothing-here/assets/x/provenance", "not_found"),
        ("/v1/entities/pku/assets?limit=0", "bad_limit"),
        ("/v1/entities/pku/assets?limit=1001", "bad_limit"),
        ("/v1/entities/pku/assets?cursor=no-slash", "bad_cursor"),
        ("/v1/collections/c/assets?cursor=-1", "bad_cursor"),
    ):
        with pytest.raises(ClientError) as refused:
            client.send("GET", path)
        assert refused.value.code == code, path


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = cli.main([str(item) for item in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_asset_commands_drive_the_same_flow(
    net: Network, server: ServerThread, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    issuer = register_issuer(net, Client(server.url), tmp_path / "issuer")
    pku = net.directory / "entities" / "pku"
    node = ("--node", server.url)
    code, out, _ = run_cli(
        capsys, "asset", "create-collection", "--identity", issuer, *node, "--collection", "certs",
        "--name", "Certificates", "--symbol", "CRT", "--wait", "--json",
    )  # fmt: skip
    assert code == 0 and json.loads(out)["asset_id"] == "certs"
    metadata = tmp_path / "certificate.json"
    metadata.write_text('{"holder": "pku", "title": "Data steward"}')
    code, out, _ = run_cli(
        capsys, "asset", "mint", "--identity", issuer, *node, "--collection", "certs", "--token", "c-1",
        "--owner", "pku", "--metadata-file", metadata, "--wait", "--json",
    )  # fmt: skip
    minted = json.loads(out)
    assert code == 0 and minted["asset_id"] == "certs/c-1" and minted["status"] == "committed"
    assert len(minted["tx_hash"]) == 64
    code, out, _ = run_cli(
        capsys, "asset", "transfer", "--identity", pku, *node, "--collection", "certs", "--token", "c-1",
        "--to", "fudan", "--wait",
    )  # fmt: skip
    assert code == 0 and "asset_id" in out and "certs/c-1" in out and "tx_hash" in out
    code, _, _ = run_cli(
        capsys, "asset", "freeze", "--zone-dir", net.zone_dir("shanghai"), *node, "--collection", "certs",
        "--token", "c-1", "--holder", "fudan", "--wait",
    )  # fmt: skip
    assert code == 0
    # A refused transaction: exit 1 and the receipt's stable code on one line.
    code, _, err = run_cli(
        capsys, "asset", "transfer", "--identity", net.directory / "entities" / "fudan", *node,
        "--collection", "certs", "--token", "c-1", "--to", "pku", "--wait",
    )  # fmt: skip
    assert code == 1 and err.startswith("error: asset_frozen:")
    code, out, _ = run_cli(
        capsys, "asset", "provenance", *node, "--collection", "certs", "--token", "c-1", "--json"
    )
    assert code == 0
    entries = json.loads(out)["entries"]
    assert [e["action"] for e in entries] == ["mint", "transfer", "freeze"]
    assert entries[0]["tx_hash"] == minted["tx_hash"]
    code, out, _ = run_cli(
        capsys, "asset", "provenance", *node, "--collection", "certs", "--token", "c-1", "--text"
    )
    assert code == 0 and out.splitlines()[0].split()[:4] == ["#", "HEIGHT", "ACTION", "ACTOR"]
    code, out, _ = run_cli(
        capsys, "asset", "show", *node, "--collection", "certs", "--token", "c-1", "--text"
    )
    assert code == 0 and "zone:shanghai" in out
    code, out, _ = run_cli(capsys, "asset", "owned", "fudan", *node, "--json")
    assert code == 0 and [a["asset_id"] for a in json.loads(out)["assets"]] == ["certs/c-1"]
    code, out, _ = run_cli(capsys, "asset", "collection", "certs", *node, "--text")
    assert code == 0 and "frozen_holdings" in out
    code, _, err = run_cli(capsys, "asset", "show", *node, "--collection", "certs", "--token", "missing")
    assert code == 1 and err.startswith("error: not_found:")
    # Usage errors exit 2 before anything is sent.
    no_signer = ("asset", "freeze", *node, "--collection", "certs", "--token", "c-1", "--holder", "x")
    assert run_cli(capsys, *no_signer)[0] == 2
    no_metadata = ("asset", "mint", "--identity", issuer, *node, "--collection", "certs", "--token", "c-2")
    assert run_cli(capsys, *no_metadata, "--owner", "pku")[0] == 2


def test_editioned_batches_operators_and_pages_through_the_sdk(
    net: Network, server: ServerThread, tmp_path: Path
) -> None:
    client = Client(server.url)
    issuer = Assets(client, Identity.load(register_issuer(net, client, tmp_path / "issuer")))
    pku = Assets(client, Identity.load(net.directory / "entities" / "pku"))
    fudan = Assets(client, Identity.load(net.directory / "entities" / "fudan"))
    issuer.create_collection("tickets", "Conference tickets", "TIX", kind="editioned", wait=True)
    minted = issuer.mint_batch(
        "tickets", [(f"day-{day}", "pku", 10 * day, META, "") for day in (1, 2, 3)], wait=True
    )
    assert minted.asset_ids == ("tickets/day-1", "tickets/day-2", "tickets/day-3")
    pku.transfer_batch("tickets", [("day-1", "pku", "fudan", 4), ("day-2", "pku", "fudan", 5)], wait=True)
    # An operator moves pku's units once approved for the collection.
    pku.approve_all("tickets", "fudan", wait=True)
    fudan.transfer("tickets", "day-3", "fudan", amount=30, from_holder="pku", wait=True)
    fudan.burn("tickets", "day-3", amount=30, wait=True)
    # Pages: the collection's assets by sequence, an entity's holdings by asset id.
    first = pku.list_collection_assets("tickets", limit=2)
    assert [a["token"] for a in first["assets"]] == ["day-1", "day-2"] and first["next_cursor"] == "2"
    rest = pku.list_collection_assets("tickets", limit=2, cursor=first["next_cursor"])
    assert [(a["token"], a["burned"]) for a in rest["assets"]] == [("day-3", True)] and rest[
        "next_cursor"
    ] is None
    page = fudan.list_owned("fudan", limit=1)
    assert [(a["asset_id"], a["amount"]) for a in page["assets"]] == [("tickets/day-1", 4)]
    page = fudan.list_owned("fudan", limit=1, cursor=page["next_cursor"])
    assert [(a["asset_id"], a["amount"]) for a in page["assets"]] == [("tickets/day-2", 5)]
    assert fudan.list_owned("fudan", limit=1, cursor=page["next_cursor"])["assets"] == []
    # An asset's holders, paged in holder id order.
    holders = pku.get_asset("tickets", "day-1", holders_limit=1)
    assert holders is not None
    assert [(h["holder"], h["amount"]) for h in holders["holders"]] == [("fudan", 4)]
    assert holders["next_cursor"] == "fudan" and holders["holders_truncated"] is True
    holders = pku.get_asset("tickets", "day-1", holders_limit=1, holders_cursor="fudan")
    assert holders is not None and [h["holder"] for h in holders["holders"]] == ["pku"]
    assert holders["next_cursor"] is None and holders["holders_truncated"] is False
    assert [h["holder"] for h in pku.iter_holders("tickets", "day-1", limit=1)] == ["fudan", "pku"]
    with pytest.raises(ClientError) as refused_cursor:
        pku.get_asset("tickets", "day-1", holders_cursor="Not An Id")
    assert (refused_cursor.value.status, refused_cursor.value.code) == (400, "bad_cursor")
    stats = issuer.get_collection("tickets")
    assert stats is not None and stats["stats"]["units"] == 30 and stats["stats"]["tokens_burned"] == 1
    issuer.pause("tickets", wait=True)
    with pytest.raises(ClientError) as refused:
        pku.transfer("tickets", "day-1", "fudan", amount=1, wait=True)
    assert refused.value.code == "collection_paused"
