"""`chainnode network init --hosts/--node/--observers/--listen` as an operator runs it: a child
process, the files it writes, openssl's reading of the certificates, one-line refusals."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from chainnode.node.config import load_node_config
from tests.factories import run_cli_process


def test_hosts_file_node_options_and_observers(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("validator-01=10.213.7.11\nvalidator-02=10.213.7.12\nvalidator-03=10.213.7.13\n")
    out = tmp_path / "net"
    result = run_cli_process(
        "network",
        "init",
        "--validators",
        "4",
        "--observers",
        "1",
        "--out",
        str(out),
        "--hosts",
        str(hosts),
        "--node",
        "validator-04=[fd00:213::14]:26606:26607",
        "--node",
        "observer-01=observer-01.pilot.internal:40000:40001",
        "--listen",
        "0.0.0.0",
    )
    assert result.returncode == 0, result.stderr
    # The observer's ports are in the kernel's ephemeral range here: one warning, on stderr.
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and "observer-01: port 40000, 40001" in warnings[0], result.stderr
    summary = json.loads(result.stdout)
    assert [(node["id"], node["role"]) for node in summary["nodes"]][-1] == ("observer-01", "observer")
    assert summary["nodes"][3]["p2p_address"] == "[fd00:213::14]:26606"
    observer = load_node_config(out / "nodes" / "observer-01" / "node.toml")
    assert (observer.p2p_host, observer.p2p_port) == ("0.0.0.0", 40000)
    assert observer.api_advertise == "observer-01.pilot.internal:40001"
    assert {peer.host for peer in observer.peers} == {
        "10.213.7.11",
        "10.213.7.12",
        "10.213.7.13",
        "fd00:213::14",
    }
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    for node_id, expected in [
        ("validator-01", "IP Address:10.213.7.11"),
        ("validator-04", "IP Address:FD00:213:0:0:0:0:0:14"),
        ("observer-01", "DNS:observer-01.pilot.internal"),
    ]:
        text = subprocess.run(
            [
                "openssl",
                "x509",
                "-noout",
                "-ext",
                "subjectAltName",
                "-in",
                str(out / "nodes" / node_id / "cert.pem"),
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert expected in text, text
        assert f"URI:chainnode:entity:{node_id}" in text


@pytest.mark.parametrize(
    ("hosts_text", "extra", "complaint"),
    [
        (
            "validator-01=10.0.0.1\nvalidator-02=10.0.0.400\n",
            [],
            "hosts:2: '10.0.0.400' looks like an IPv4 address",
        ),
        ("validator-01=10.0.0.1\n", [], "hosts give no address for ['validator-02'"),
        ("validator-01=10.0.0.1\n", ["--node", "validator-02"], "--node: expected NAME=HOST"),
    ],
)
def test_bad_hosts_are_one_line_naming_the_place(
    tmp_path: Path, hosts_text: str, extra: list[str], complaint: str
) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text(hosts_text)
    result = run_cli_process(
        "network", "init", "--validators", "4", "--out", str(tmp_path / "net"), "--hosts", str(hosts), *extra
    )
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and complaint in lines[0], result.stderr
    assert not (tmp_path / "net").exists()
