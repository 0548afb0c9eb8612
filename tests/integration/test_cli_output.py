"""The `chainnode` command's output: one JSON document per command (with `--json` or into a pipe),
the readable view (`--text`) of the same answer, every read endpoint as a `query` command,
`tx proof`, `--version`, help text for every option, and `devnet` refusing a size mismatch."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest

import cli
from chainnode.cli.main import build_parser
from tests.factories import run_cli_process
from tests.governance_harness import Network
from tests.integration.api_harness import CHAIN_ID, SUBMITTER, ZONE, LocalService, ServerThread
from tests.integration.test_governance_api import NetworkService


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    service = LocalService(tmp_path / "node")
    try:
        with ServerThread(service, commit_interval_ms=30) as running:
            yield running
    finally:
        service.close()


def _run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> object:
    """Run a command with `--json`: exit 0 and exactly one JSON document on stdout."""
    code = cli.main([*argv, "--json"])
    output = capsys.readouterr()
    assert code == 0, output.err
    return json.loads(output.out)  # raises on a second document


def _run_text(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code = cli.main([*argv, "--text"])
    output = capsys.readouterr()
    assert code == 0, output.err
    with pytest.raises(ValueError):
        json.loads(output.out)
    return output.out


def _submit(server: ServerThread, capsys: pytest.CaptureFixture[str], key: str) -> dict[str, object]:
    identity = str(server.service.directory / "entities" / SUBMITTER)
    argv = ["tx", "submit", "--identity", identity, "--node", server.url, "--key", key, "--value", "v"]
    document = _run_json(capsys, *argv, "--wait")
    assert isinstance(document, dict)
    return document


def test_version_comes_from_the_installed_package() -> None:
    result = run_cli_process("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"chainnode {metadata.version('chainnode')}"


def test_every_option_has_help_text() -> None:
    missing: list[str] = []

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    walk(child, f"{path} {name}")
            elif action.option_strings and not action.help:
                missing.append(f"{path} {action.option_strings[0]}")

    walk(build_parser(), "chainnode")
    assert missing == []


def test_help_shows_defaults_and_query_timeout_has_no_wait() -> None:
    result = run_cli_process("query", "status", "--help")
    assert "(default: 10.0)" in result.stdout and "--wait" not in result.stdout
    assert "(default: 4)" in run_cli_process("bench", "--help").stdout


def test_submit_wait_prints_one_document_with_the_outcome(
    server: ServerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    identity = str(server.service.directory / "entities" / SUBMITTER)
    argv = ["tx", "submit", "--identity", identity, "--node", server.url, "--key", "k", "--value", "v"]
    pending = _run_json(capsys, *argv)
    assert isinstance(pending, dict)
    assert pending["status"] == "pending" and len(str(pending["tx_hash"])) == 64
    assert (pending["height"], pending["receipt"], pending["ok"]) == (None, None, None)
    committed = _submit(server, capsys, "k2")
    assert sorted(committed) == sorted(pending)  # the same fields whether it waited or not
    assert committed["status"] == "committed" and committed["ok"] is True
    # Into a pipe (not a terminal) the output is JSON without asking.
    assert cli.main(argv) == 0
    assert json.loads(capsys.readouterr().out)["action"] == "records.put"
    text = _run_text(capsys, *argv, "--wait")
    assert "committed" in text and "tx_hash" in text


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (["status"], "chain_id"),
        (["block"], "height"),
        (["record", SUBMITTER, "q"], "version"),
        (["entity", SUBMITTER], "roles"),
        (["zone", ZONE], "status"),
        (["zones"], "zones"),
        (["validators"], "validators"),
        (["validators", "--height", "1"], "validators"),
        (["proposals"], "proposals"),
        (["proposals", "--status", "open"], "proposals"),
        (["zones", "--limit", "1"], "next_cursor"),
        (["evidence"], "evidence"),
        (["certificates", "--within-days", "3650"], "certificates"),
    ],
)
def test_query_commands_in_both_modes(
    server: ServerThread, capsys: pytest.CaptureFixture[str], argv: list[str], field: str
) -> None:
    _submit(server, capsys, "q")
    document = _run_json(capsys, "query", *argv, "--node", server.url)
    assert isinstance(document, dict) and field in document
    text = _run_text(capsys, "query", *argv, "--node", server.url)
    assert field in text


def test_query_tx_times_and_missing_things(server: ServerThread, capsys: pytest.CaptureFixture[str]) -> None:
    committed = _submit(server, capsys, "t")
    block = _run_json(capsys, "query", "block", str(committed["height"]), "--node", server.url)
    assert isinstance(block, dict)
    text = _run_text(capsys, "query", "block", str(committed["height"]), "--node", server.url)
    assert "Z" in text and str(block["header"]["timestamp_ms"]) not in text  # ISO-8601 UTC, not epoch ms
    assert _run_json(capsys, "query", "tx", str(committed["tx_hash"]), "--node", server.url)
    for argv in (["entity", "nobody"], ["zone", "atlantis"], ["proposal", "7"]):
        assert cli.main(["query", *argv, "--node", server.url]) == 1
        output = capsys.readouterr()
        assert output.err.startswith("error: not_found: ") and output.out == ""


def test_tx_proof_writes_the_file(
    server: ServerThread, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    committed = _submit(server, capsys, "p")
    out = tmp_path / "proof.json"
    document = _run_json(
        capsys, "tx", "proof", str(committed["tx_hash"]), "--node", server.url, "--out", str(out)
    )
    assert document == {"tx_hash": committed["tx_hash"], "height": committed["height"], "out": str(out)}
    proof = json.loads(out.read_text())
    assert proof["height"] == committed["height"]
    assert cli.main(["tx", "proof", str(committed["tx_hash"]), "--node", server.url]) == 0
    assert json.loads(capsys.readouterr().out) == proof


def test_devnet_refuses_another_size_for_an_existing_network(tmp_path: Path) -> None:
    from chainnode.tools.network import init_network

    directory = tmp_path / "devnet"
    init_network(directory, validators=4, base_port=32600)
    result = run_cli_process("devnet", "--validators", "7", "--dir", str(directory), "--txs", "1")
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: bad_config: "), result.stderr
    assert "already holds a 4-validator network, not 7" in lines[0]
    assert "starting" not in result.stdout  # no node was started
    moved = run_cli_process("devnet", "--base-port", "33600", "--dir", str(directory), "--txs", "1")
    assert moved.returncode == 1 and "on ports from 32600, not 33600" in moved.stderr, moved.stderr


@pytest.fixture(scope="module")
def council_net(tmp_path_factory: pytest.TempPathFactory) -> Network:
    return Network.create(tmp_path_factory.mktemp("cli-council"), chain_id=CHAIN_ID)


def test_council_commands_print_the_proposal_id_and_votes(
    council_net: Network, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    service = NetworkService(council_net, tmp_path)
    council = council_net.directory / "council"
    try:
        with ServerThread(service, commit_interval_ms=30) as server:
            node = ("--node", server.url)
            propose = ("council", "propose", *node, "--kind", "set_params", "--param", "block_txs_max=500")
            proposed = _run_json(capsys, *propose, "--member-dir", str(council / "miit"), "--wait")
            assert isinstance(proposed, dict) and proposed["proposal_id"] == 1
            assert proposed["proposal"] == {
                "id": 1,
                "kind": "set_params",
                "payload": {"block_txs_max": 500},
                "status": "open",
                "approvals": 1,
                "rejections": 0,
                "threshold": 2,
                "council": 3,
                "outcome": "",
            }
            vote = ("council", "vote", *node, "--proposal", "1", "--approve")
            voted = _run_json(capsys, *vote, "--member-dir", str(council / "moe"), "--wait")
            assert isinstance(voted, dict) and voted["proposal_id"] == 1
            assert (voted["proposal"]["status"], voted["proposal"]["approvals"]) == ("executed", 2)
            # Without --wait the id is not known yet: the transaction is pending.
            pending = _run_json(capsys, *propose, "--member-dir", str(council / "pboc"))
            assert isinstance(pending, dict)
            assert (pending["status"], pending["proposal_id"], pending["proposal"]) == ("pending", None, None)
            listing = _run_text(capsys, "council", "list", *node)
            assert "executes at 2 approvals" in listing and "2/2 yes" in listing
            assert "proposals" in _run_text(capsys, "query", "proposals", *node)
            assert "executed" in _run_text(capsys, "query", "proposal", "1", *node)
    finally:
        service.close()


def test_network_init_and_submit_file_in_both_modes(
    server: ServerThread, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = _run_text(
        capsys, "network", "init", "--validators", "4", "--out", str(tmp_path / "net"), "--base-port", "31200"
    )
    assert "validator-04" in text and "genesis_hash" in text
    identity = str(server.service.directory / "entities" / SUBMITTER)
    (tmp_path / "txs.jsonl").write_text('{"key": "a", "value": "1"}\n{"key": "b", "value": "2"}\n')
    argv = [
        "tx",
        "submit",
        "--identity",
        identity,
        "--node",
        server.url,
        "--file",
        str(tmp_path / "txs.jsonl"),
    ]
    document = _run_json(capsys, *argv, "--wait")
    assert isinstance(document, dict)
    assert (document["accepted"], document["rejected"], document["committed"], document["failed"]) == (
        2,
        0,
        2,
        0,
    )
    assert "accepted" in _run_text(capsys, *argv)
