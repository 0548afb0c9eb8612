"""The light-client, cross-chain and join commands against one live four-validator network, each
in both output modes: `--json` is one parseable document with the documented fields, `--text`
the readable view (issue 16: every command in both modes)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from chainnode.sdk.client import build_transaction
from tests.cluster.conftest import Cluster
from tests.factories import get_free_port, run_cli_process

pytestmark = pytest.mark.cluster

LIGHT_FIELDS = {
    "chain_id",
    "genesis_hash",
    "height",
    "header_hash",
    "validators",
    "validator_changes",
    "halted",
}


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    result = run_cli_process(*argv)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def _both(*argv: str) -> tuple[dict[str, object], str]:
    """The command's JSON document and its readable view."""
    document = json.loads(_run(*argv, "--json").stdout)
    text = _run(*argv, "--text").stdout
    return document, text


def test_light_commands_in_both_modes(cluster: Cluster, tmp_path: Path) -> None:
    client = cluster.client("validator-01")
    signer = cluster.load_submitters(1)[0]
    tx = build_transaction(
        signer,
        chain_id=cluster.chain_id,
        module="records",
        action="put",
        args=("light-cli", b"both modes"),
        valid_until=int(client.get_status()["height"]) + 100,
    )
    client.submit(tx)
    client.wait_for_commit(tx.hash.hex(), timeout_s=30.0)
    url = cluster.network.get_node("validator-01").api_url
    genesis = str(cluster.directory / "genesis.json")
    state = str(tmp_path / "light")
    synced, synced_text = _both("light", "sync", "--node", url, "--genesis", genesis, "--state", state)
    assert LIGHT_FIELDS | {"accepted"} <= set(synced) and synced["halted"] == "", synced
    assert cluster.chain_id in synced_text and "height" in synced_text
    status, status_text = _both("light", "status", "--state", state)
    assert set(status) >= LIGHT_FIELDS and status["height"] >= 1, status
    assert "validator-01" in status_text
    proof_path = tmp_path / "proof.json"
    _run("tx", "proof", tx.hash.hex(), "--node", url, "--out", str(proof_path))
    verified, verified_text = _both(
        "light", "verify-proof", str(proof_path), "--genesis", genesis, "--state", state, "--node", url
    )
    assert verified["valid"] is True and verified["tx_hash"] == tx.hash.hex(), verified
    assert {"light_height", "validator_set_hash", "commit_signatures"} <= set(verified)
    assert "valid" in verified_text
    # A state directory that holds nothing is one clear line, exit 1.
    empty = run_cli_process("light", "status", "--state", str(tmp_path / "nothing"), "--json")
    assert empty.returncode == 1 and "holds no light client" in empty.stderr, empty.stderr


def test_xchain_and_join_commands_in_both_modes(cluster: Cluster) -> None:
    url = cluster.network.get_node("validator-02").api_url
    chains, chains_text = _both("xchain", "chains", "--node", url)
    assert isinstance(chains.get("chains"), list), chains
    assert chains_text.strip()
    unknown = run_cli_process("xchain", "client", "no-such-chain", "--node", url, "--json")
    assert unknown.returncode == 1 and "no-such-chain" in unknown.stderr, unknown.stderr
    for mode, name in (("--json", "observer-21"), ("--text", "observer-22")):
        spec = f"{name}=127.0.0.1:{get_free_port()}:{get_free_port()}"
        written = _run(
            "network", "add-observer", str(cluster.directory), "--node", spec, "--zone", "beijing", mode
        )
        if mode == "--json":
            document = json.loads(written.stdout)
            assert document["node_id"] == name and document["registered"] is None, document
            assert any("authority register" in step for step in document["next"]), document
        else:
            assert name in written.stdout and "authority register" in written.stdout
