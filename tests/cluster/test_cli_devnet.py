"""The `chainnode` commands against a live network of validator processes, in both output modes.

One four-validator network (the module's `cluster`) serves every test here; each command runs in
this process (`cli.main`) once with `--json`, where stdout must be exactly one JSON document with
the documented field names, and where it makes sense once more with `--text`, where stdout must
be the readable view (not JSON) naming what the document holds.  `devnet` itself runs as a child
process on a fresh directory: its answer on stdout, its progress on stderr, with `--txs` and when
stopped by a signal.
"""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import cli
from tests import factories
from tests.cluster.conftest import Cluster, find_free_base_port, wait_until
from tests.factories import run_cli_process

pytestmark = pytest.mark.cluster

# The fields every command that submits a transaction prints (`chainnode.cli.args.submit_document`).
SUBMIT_FIELDS = {"tx_hash", "action", "signer", "status", "ok", "height", "index", "receipt"}
SUBMITTER = "tsinghua"
ISSUER = "icbc-beijing"
ZONE = "beijing"


def run_json(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> Any:
    """Exit 0 and exactly one JSON document on stdout (json.loads refuses a second one)."""
    code = cli.main([*(str(item) for item in argv), "--json"])
    output = capsys.readouterr()
    assert code == 0, output.err
    return json.loads(output.out)


def run_text(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> str:
    """Exit 0 and the readable view on stdout: text, not JSON."""
    code = cli.main([*(str(item) for item in argv), "--text"])
    output = capsys.readouterr()
    assert code == 0, output.err
    with pytest.raises(ValueError):
        json.loads(output.out)
    return output.out


def _node(cluster: Cluster) -> tuple[str, str]:
    return ("--node", cluster.network.nodes[0].api_url)


def _entity(cluster: Cluster, entity_id: str) -> Path:
    return cluster.directory / "entities" / entity_id


def _check_committed(document: dict[str, Any], action: str) -> None:
    assert set(document) >= SUBMIT_FIELDS, document
    assert (document["action"], document["status"], document["ok"]) == (action, "committed", True), document
    assert len(document["tx_hash"]) == 64 and document["height"] >= 1


def test_records_commands(cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    node = _node(cluster)
    writer = ("--identity", _entity(cluster, SUBMITTER), *node, "--wait")
    put = run_json(capsys, "records", "put", *writer, "--key", "cli-1", "--value", "one")
    assert set(put) == SUBMIT_FIELDS and put["signer"] == SUBMITTER
    _check_committed(put, "records.put")
    text = run_text(capsys, "records", "put", *writer, "--key", "cli-1", "--value", "two")
    assert "records.put" in text and "committed" in text and "tx_hash" in text
    reads = ("--entity", SUBMITTER, *node)
    record = run_json(capsys, "records", "get", *reads, "--key", "cli-1")
    assert (record["version"], record["value"]) == (2, "two")
    assert re.search(r"^value\s+'two'", run_text(capsys, "records", "get", *reads, "--key", "cli-1"), re.M)
    history = run_json(capsys, "records", "history", *reads, "--key", "cli-1", "--limit", "1")
    assert [item["version"] for item in history["items"]] == [1] and history["next_cursor"]  # oldest first
    text = run_text(capsys, "records", "history", *reads, "--key", "cli-1", "--limit", "1")
    assert text.split()[:5] == ["VERSION", "HEIGHT", "WRITER", "TX", "VALUE"] and "(more: --cursor" in text
    listing = run_json(capsys, "records", "list", *reads, "--prefix", "cli-")
    assert [item["key"] for item in listing["items"]] == ["cli-1"]
    document = tmp_path / "report.pdf"
    document.write_bytes(b"%PDF-1.4 a report")
    anchored = run_json(capsys, "records", "anchor", document, *writer, "--key", "report")
    _check_committed(anchored, "records.anchor")
    verified = run_json(capsys, "records", "verify", document, *reads, "--key", "report")
    assert verified["anchored"] is True and verified["anchors"][0]["tx_hash"] == anchored["tx_hash"]
    assert f"anchored in {SUBMITTER}/report" in run_text(
        capsys, "records", "verify", document, *reads, "--key", "report"
    )
    granted = run_json(
        capsys, "records", "grant", *writer, "--grantee", "pku", "--prefix", "cli-", "--right", "write"
    )
    _check_committed(granted, "records.grant")
    grants = run_json(capsys, "records", "grants", *reads)
    assert [(g["grantee"], g["prefix"]) for g in grants["grants"]] == [("pku", "cli-")]
    assert "GRANTEE" in run_text(capsys, "records", "grants", *reads)


def test_asset_commands(cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    node = _node(cluster)
    issuer = ("--identity", _entity(cluster, ISSUER), *node, "--wait", "--collection", "cli-art")
    created = run_json(capsys, "asset", "create-collection", *issuer, "--name", "Works", "--symbol", "ART")
    assert set(created) == SUBMIT_FIELDS | {"asset_id", "asset_ids"} and created["asset_id"] == "cli-art"
    _check_committed(created, "assets.create_collection")
    mint = ("asset", "mint", *issuer, "--owner", SUBMITTER, "--metadata-hash", "ab" * 32)
    minted = run_json(capsys, *mint, "--token", "t-1")
    assert (minted["asset_id"], minted["asset_ids"]) == ("cli-art/t-1", ["cli-art/t-1"])
    _check_committed(minted, "assets.mint")
    text = run_text(capsys, *mint, "--token", "t-2")
    assert "assets.mint" in text and "cli-art/t-2" in text and "committed" in text
    where = (*node, "--collection", "cli-art", "--token", "t-1")
    shown = run_json(capsys, "asset", "show", *where)
    assert [holder["holder"] for holder in shown["holders"]] == [SUBMITTER]
    assert "HOLDER" in run_text(capsys, "asset", "show", *where)
    owned = run_json(capsys, "asset", "owned", SUBMITTER, *node)
    assert {item["asset_id"] for item in owned["assets"]} >= {"cli-art/t-1", "cli-art/t-2"}
    collection = run_json(capsys, "asset", "collection", "cli-art", *node, "--limit", "1")
    assert len(collection["assets"]) == 1 and collection["next_cursor"]
    assert "more: --cursor" in run_text(capsys, "asset", "collection", "cli-art", *node, "--limit", "1")
    provenance = run_json(capsys, "asset", "provenance", *where)
    assert [entry["action"] for entry in provenance["entries"]] == ["mint"]
    assert "ACTION" in run_text(capsys, "asset", "provenance", *where)


def test_every_asset_action_prints_the_submit_document(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    node = (*_node(cluster), "--wait", "--collection", "cli-more")
    issuer = ("--identity", _entity(cluster, ISSUER), *node)
    holder = ("--identity", _entity(cluster, SUBMITTER), *node)
    token = ("--token", "t-1")
    steps: list[tuple[str, tuple[str | Path, ...], str]] = [
        ("create-collection", (*issuer, "--name", "More", "--symbol", "MORE"), "cli-more"),
        ("mint", (*issuer, *token, "--owner", SUBMITTER, "--metadata-hash", "cd" * 32), "cli-more/t-1"),
        ("approve", (*holder, *token, "--spender", "pku"), "cli-more/t-1"),
        ("approve", (*holder, *token, "--clear"), "cli-more/t-1"),
        ("approve-all", (*holder, "--operator", "pku"), "cli-more"),
        ("approve-all", (*holder, "--operator", "pku", "--revoke"), "cli-more"),
        ("freeze", (*issuer, *token, "--holder", SUBMITTER), "cli-more/t-1"),
        ("unfreeze", (*issuer, *token, "--holder", SUBMITTER), "cli-more/t-1"),
        ("pause", issuer, "cli-more"),
        ("unpause", issuer, "cli-more"),
        ("burn", (*holder, *token), "cli-more/t-1"),
    ]
    for command, argv, asset_id in steps:
        document = run_json(capsys, "asset", command, *argv)
        assert set(document) == SUBMIT_FIELDS | {"asset_id", "asset_ids"}, command
        _check_committed(document, f"assets.{command.replace('-', '_')}")
        assert document["asset_id"] == asset_id, (command, document)
    provenance = run_json(capsys, "asset", "provenance", *_node(cluster), "--collection", "cli-more", *token)
    assert [entry["action"] for entry in provenance["entries"]] == [
        "mint", "approve", "approve", "freeze", "unfreeze", "burn",
    ]  # fmt: skip


def test_authority_commands(cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    zone = ("--zone-dir", cluster.directory / "zones" / ZONE)
    issue = (
        "authority",
        "issue",
        *zone,
        "--name",
        "CLI Test",
        "--roles",
        "submitter",
        "--sectors",
        "education",
    )
    issued = run_json(capsys, *issue, "--entity", "cli-lab", "--out", tmp_path / "lab")
    assert (issued["entity"], issued["zone"], issued["roles"]) == ("cli-lab", ZONE, ["submitter"])
    assert "not_after" in run_text(capsys, *issue, "--entity", "cli-lab-2", "--out", tmp_path / "lab2")
    node = (*_node(cluster), "--wait")
    registered = run_json(
        capsys, "authority", "register", *zone, *node, "--cert", tmp_path / "lab" / "cert.pem"
    )
    _check_committed(registered, "authority.register")
    assert registered["signer"] == f"zone:{ZONE}"
    text = run_text(capsys, "authority", "register", *zone, *node, "--cert", tmp_path / "lab2" / "cert.pem")
    assert "authority.register" in text and "committed" in text
    revoked = run_json(
        capsys, "authority", "revoke", *zone, *node, "--entity", "cli-lab-2", "--reason", "test"
    )
    _check_committed(revoked, "authority.revoke")
    entity = run_json(capsys, "query", "entity", "cli-lab", *_node(cluster))
    assert entity["zone"] == ZONE


def test_events_council_and_queries(cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    node = _node(cluster)
    first = run_json(capsys, "events", *node, "--limit", "2")
    assert set(first) == {"events", "count", "next"} and first["count"] == len(first["events"]) == 2
    after = run_json(capsys, "events", *node, "--limit", "1", "--from", first["next"])
    assert after["events"][0]["cursor"] not in {event["cursor"] for event in first["events"]}
    text = run_text(capsys, "events", *node, "--limit", "2")
    assert text.split()[:5] == ["POSITION", "NAME", "ENTITY", "KEYS", "CURSOR"] and "--from" in text
    listing = run_json(capsys, "council", "list", *node)
    assert listing["threshold"] == 10 and len(listing["council"]) == 15
    assert "a proposal executes at 10 approvals" in run_text(capsys, "council", "list", *node)
    for argv, field in ((["status"], "chain_id"), (["validators"], "validators"), (["zones"], "zones")):
        assert field in run_json(capsys, "query", *argv, *node)
        assert field in run_text(capsys, "query", *argv, *node)


def test_proof_audit_and_export(cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    node = _node(cluster)
    put = run_json(
        capsys,
        "tx",
        "submit",
        "--identity",
        _entity(cluster, SUBMITTER),
        *node,
        "--key",
        "proved",
        "--value",
        "v",
        "--wait",
    )
    proof = tmp_path / "proof.json"
    run_json(capsys, "tx", "proof", put["tx_hash"], *node, "--out", proof)
    genesis = ("--genesis", cluster.directory / "genesis.json")
    verified = run_json(capsys, "verify-proof", proof, *genesis)
    assert (verified["valid"], verified["tx_hash"], verified["height"]) == (
        True,
        put["tx_hash"],
        put["height"],
    )
    assert "the proof is valid" in run_text(capsys, "verify-proof", proof, *genesis)
    audited = run_json(capsys, "audit", *node, *genesis, "--workers", "0")
    assert audited["result"] == "ok" and audited["height_to"] >= put["height"], audited
    assert re.search(r"^result\s+ok", run_text(capsys, "audit", *node, *genesis, "--workers", "0"), re.M)
    data = ("--data-dir", cluster.directory / "nodes" / "validator-02" / "data")
    exported = run_json(
        capsys, "export", *data, "--out", tmp_path / "chain.jsonl", "--to", str(put["height"])
    )
    assert exported["height_to"] == put["height"] and exported["transactions"] >= 1
    lines = (tmp_path / "chain.jsonl").read_text().splitlines()
    assert len(lines) == exported["blocks"]
    assert "transactions" in run_text(capsys, "export", *data, "--out", tmp_path / "again.jsonl", "--to", "1")


def test_devnet_prints_one_document_and_progress_on_stderr(tmp_path: Path) -> None:
    base_port = find_free_base_port(8, random.Random())
    argv = ("devnet", "--dir", str(tmp_path / "net"), "--base-port", str(base_port), "--log-level", "warning")
    result = run_cli_process(*argv, "--txs", "5", "--json", timeout_s=120)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)
    assert summary["validators"] == 4 and summary["committed_txs"] == 5 and len(summary["head_hash"]) == 64
    assert len(summary["api_urls"]) == 4 and summary["height"] >= 1
    assert "all validators are up" in result.stderr and "validators stopped" in result.stderr
    # Without --txs it runs until stopped, then prints the same document for the head it holds.
    out, err = tmp_path / "devnet.out", tmp_path / "devnet.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        running = subprocess.Popen(
            [sys.executable, "-m", "cli", *argv, "--json"], cwd=factories.REPO, stdout=stdout, stderr=stderr
        )
        try:
            wait_until(lambda: "press Ctrl-C to stop" in err.read_text(), "the devnet runs", 60)
        finally:
            running.send_signal(signal.SIGTERM)
            running.wait(timeout=60)
    assert running.returncode == 0, out.read_text() + err.read_text()
    stopped = json.loads(out.read_text())
    assert stopped["height"] >= summary["height"] and stopped["committed_txs"] == 0, stopped
    assert "validators stopped" in err.read_text()
