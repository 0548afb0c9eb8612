"""The `chainnode` command: help, usage errors, network init, submit and queries end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import cli
from chainnode.node.config import load_node_config
from tests import factories
from tests.factories import get_free_port, run_cli_process
from tests.integration.api_harness import OBSERVER, SUBMITTER, LocalService, ServerThread


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    service = LocalService(tmp_path / "node")
    try:
        with ServerThread(service, commit_interval_ms=30) as running:
            yield running
    finally:
        service.close()


def test_help_is_fast_and_imports_nothing_heavy() -> None:
    result = run_cli_process("--help")
    assert result.returncode == 0
    for command in ("network", "node", "devnet", "tx", "query"):
        assert command in result.stdout
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, cli; code = cli.main(['--help']); "
            "heavy = [m for m in ('aiohttp', 'plyvel', 'nacl', 'cryptography', 'chainnode.sdk.client')"
            " if m in sys.modules]; print(code, heavy)",
        ],
        cwd=factories.REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert probe.stdout.strip().splitlines()[-1] == "0 []", probe.stdout + probe.stderr


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["network"],
        ["network", "init", "--out", "x"],
        ["network", "init", "--validators", "0", "--out", "x"],
        ["network", "init", "--validators", "four", "--out", "x"],
        ["network", "init", "--validators", "4", "--out", "x", "--base-port", "70000"],
        ["node", "run"],
        ["query", "status"],
        ["query", "block", "abc", "--node", "http://127.0.0.1:1"],
        ["query", "tx", "not-a-hash", "--node", "http://127.0.0.1:1"],
        ["query", "record", "only-entity", "--node", "http://127.0.0.1:1"],
        ["query", "record", "e", "k", "--version", "0", "--node", "http://127.0.0.1:1"],
        ["tx", "submit", "--identity", "d", "--node", "http://127.0.0.1:1", "--key", "k"],
        ["tx", "submit", "--identity", "d", "--node", "http://127.0.0.1:1"],
        [
            "tx",
            "submit",
            "--identity",
            "d",
            "--node",
            "http://127.0.0.1:1",
            "--key",
            "k",
            "--value",
            "v",
            "--file",
            "f",
        ],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(argv) == 2
    assert "usage:" in capsys.readouterr().err


def test_unreachable_node_is_one_clean_error_line() -> None:
    node = f"http://127.0.0.1:{get_free_port()}"
    result = run_cli_process("query", "status", "--node", node, "--timeout", "5")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: unreachable: ")
    assert result.stdout == ""


def test_network_init_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "net"
    result = run_cli_process(
        "network",
        "init",
        "--validators",
        "4",
        "--out",
        str(out),
        "--chain-id",
        "cli-net",
        "--base-port",
        "31000",
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["chain_id"] == "cli-net"
    assert [node["id"] for node in summary["nodes"]] == [f"validator-0{i}" for i in range(1, 5)]
    assert summary["entities"] >= 100
    network = json.loads((out / "network.json").read_text())
    assert network["genesis_hash"] == summary["genesis_hash"]
    for node in network["nodes"]:
        config = load_node_config(out / "nodes" / node["id"] / "node.toml")
        assert config.node_id == node["id"]
        assert 31000 <= config.p2p_port < 31008 and 31000 <= config.api_port < 31008
    entity = network["entities"][0]
    assert (out / "entities" / entity / "cert.pem").is_file()
    assert (out / "entities" / entity / "key.pem").is_file()
    again = run_cli_process("network", "init", "--validators", "4", "--out", str(out))
    assert again.returncode == 1
    assert again.stderr.startswith("error: ") and len(again.stderr.strip().splitlines()) == 1


def test_submit_wait_and_queries(server: ServerThread, capsys: pytest.CaptureFixture[str]) -> None:
    identity_dir = server.service.directory / "entities" / SUBMITTER
    node = ["--node", server.url]
    code = cli.main(
        [
            "tx",
            "submit",
            "--identity",
            str(identity_dir),
            *node,
            "--key",
            "minutes",
            "--value",
            "approved",
            "--wait",
        ]
    )
    output = capsys.readouterr()
    assert code == 0, output.err
    committed = json.loads(output.out)  # one JSON document: the id and, with --wait, the outcome
    assert committed["status"] == "committed" and committed["ok"] is True
    assert committed["receipt"]["code_name"] == "ok" and committed["action"] == "records.put"
    submitted = {"hash": committed["tx_hash"]}

    assert cli.main(["query", "record", SUBMITTER, "minutes", *node]) == 0
    record = json.loads(capsys.readouterr().out)
    assert (record["value"], record["version"]) == ("approved", 1)
    assert cli.main(["query", "record", SUBMITTER, "minutes", "--version", "1", *node]) == 0
    assert json.loads(capsys.readouterr().out) == record
    assert cli.main(["query", "tx", submitted["hash"], *node]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "committed"
    assert cli.main(["query", "block", str(committed["height"]), *node]) == 0
    block = json.loads(capsys.readouterr().out)
    assert block["transactions"][committed["index"]]["hash"] == submitted["hash"]
    assert cli.main(["query", "block", *node]) == 0
    assert json.loads(capsys.readouterr().out)["height"] >= committed["height"]
    assert cli.main(["query", "status", *node]) == 0
    assert json.loads(capsys.readouterr().out)["chain_id"] == server.service.chain_id


def test_query_errors_exit_1(server: ServerThread, capsys: pytest.CaptureFixture[str]) -> None:
    node = ["--node", server.url]
    assert cli.main(["query", "record", SUBMITTER, "nothing", *node]) == 1
    assert capsys.readouterr().err.startswith("error: not_found: ")
    assert cli.main(["query", "tx", "ab" * 32, *node]) == 1
    assert capsys.readouterr().err.startswith("error: not_found: ")
    assert cli.main(["query", "block", "99", *node]) == 1
    assert capsys.readouterr().err.startswith("error: not_found: ")


def test_submit_refused_and_bad_identity(
    server: ServerThread, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    node = ["--node", server.url]
    observer = server.service.directory / "entities" / OBSERVER
    assert cli.main(["tx", "submit", "--identity", str(observer), *node, "--key", "k", "--value", "v"]) == 1
    assert capsys.readouterr().err.startswith("error: missing_role: ")
    assert (
        cli.main(["tx", "submit", "--identity", str(tmp_path / "none"), *node, "--key", "k", "--value", "v"])
        == 1
    )
    assert capsys.readouterr().err.startswith("error: bad_config: ")


def test_submit_file(server: ServerThread, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    identity_dir = server.service.directory / "entities" / SUBMITTER
    lines = ["# two records", '{"key": "alpha", "value": "one"}', "", '{"key": "beta", "value_hex": "00ff"}']
    (tmp_path / "txs.jsonl").write_text("\n".join(lines) + "\n")
    code = cli.main(
        [
            "tx",
            "submit",
            "--identity",
            str(identity_dir),
            "--node",
            server.url,
            "--file",
            str(tmp_path / "txs.jsonl"),
            "--wait",
        ]
    )
    output = capsys.readouterr()
    assert code == 0, output.err
    assert cli.main(["query", "record", SUBMITTER, "beta", "--node", server.url]) == 0
    assert json.loads(capsys.readouterr().out)["value_hex"] == "00ff"
    (tmp_path / "bad.jsonl").write_text('{"value": "no key"}\n')
    assert (
        cli.main(
            [
                "tx",
                "submit",
                "--identity",
                str(identity_dir),
                "--node",
                server.url,
                "--file",
                str(tmp_path / "bad.jsonl"),
            ]
        )
        == 1
    )
    assert "bad.jsonl:1" in capsys.readouterr().err


def test_network_init_refuses_three_validators_in_one_line(tmp_path: Path) -> None:
    result = run_cli_process("network", "init", "--validators", "3", "--out", str(tmp_path / "net"))
    assert result.returncode != 0
    assert "validators must be within 4.." in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "net").exists()
