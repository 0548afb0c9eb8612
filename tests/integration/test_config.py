"""`node.toml`: the schema, unknown keys, environment overrides, the reference table.

The loader is read directly for the table-driven cases and through real `chainnode node run`
processes for what an operator sees: one line naming the key, no traceback, and an override
from the environment that the running node really uses.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest

from chainnode.core.errors import ConfigError
from chainnode.node import config
from chainnode.tools.network import init_network
from tests.factories import get_free_port

START_TIMEOUT_S = 30.0


def write_config(tmp_path: Path, extra: str = "") -> Path:
    text = config.render_node_config(
        node_id="validator-01",
        p2p_address="127.0.0.1:26600",
        api_address="127.0.0.1:26601",
        peers=[("validator-02", "127.0.0.1:26602")],
    )
    path = tmp_path / "node.toml"
    path.write_text(text + extra)
    return path


def test_every_key_written_by_network_init_is_in_the_schema_and_documented(tmp_path: Path) -> None:
    init_network(tmp_path, validators=4, chain_id="config-net", base_port=29900, observers=1)
    written: set[str] = set()
    for path in (tmp_path / "nodes").glob("*/node.toml"):
        document = tomllib.loads(path.read_text())
        written |= {f"{table}.{key}" for table, keys in document.items() for key in keys}
        config.load_node_config(path, environment={})
    schema = {key.path for key in config.NODE_TOML_KEYS}
    assert written <= schema, written - schema
    reference = config.render_config_reference()
    for key in config.NODE_TOML_KEYS:
        row = next(line for line in reference.splitlines() if f"`[{key.table}] {key.name}`" in line)
        assert key.variable in row and key.meaning in row, row
        assert (
            (str(key.default) in row) if key.default is not None else ("required" in row or "(none)" in row)
        )
    assert len(reference.splitlines()) == len(config.NODE_TOML_KEYS) + 2


@pytest.mark.parametrize(
    ("extra", "replace", "message"),
    [
        (
            "",
            ("[api]\n", '[api]\nlistn = "127.0.0.1:1"\n'),
            r"^api\.listn: unknown key \(known in api: listen, ",
        ),
        ("\n[storag]\ndisk_free_bytes_min = 1\n", None, r"^\[storag\]: unknown table in node\.toml"),
        (
            "",
            ('id = "validator-02", address', 'id = "validator-02", adress'),
            r"^p2p\.peers\[0\]\.adress: unknown",
        ),
        ("", ("tick_ms = 10", "tick_ms = 0"), r"^consensus\.tick_ms: 0 is outside \[1, 10000\]"),
        ("", ("tick_ms = 10", 'tick_ms = "10"'), r"^consensus\.tick_ms: expected an integer"),
        ("", ('listen = "127.0.0.1:26601"', 'listen = "127.0.0.1"'), r"^api\.listen: expected host:port"),
    ],
)
def test_unknown_and_bad_keys_are_refused_naming_the_key(
    tmp_path: Path, extra: str, replace: tuple[str, str] | None, message: str
) -> None:
    path = write_config(tmp_path, extra)
    if replace is not None:
        text = path.read_text()
        assert replace[0] in text
        path.write_text(text.replace(replace[0], replace[1], 1))
    with pytest.raises(ConfigError) as raised:
        config.load_node_config(path, environment={})
    assert re.search(message, raised.value.message), raised.value.message
    assert "\n" not in raised.value.message


def test_environment_overrides_every_kind_of_key(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    loaded = config.load_node_config(
        path,
        environment={
            "CHAINNODE_API_LISTEN": "0.0.0.0:9001",
            "CHAINNODE_API_ADVERTISE": "node1.example:9001",
            "CHAINNODE_CONSENSUS_TICK_MS": "25",
            "CHAINNODE_STORAGE_DISK_FREE_BYTES_MIN": "1_048_576",
            "CHAINNODE_NODE_DATA_DIR": "/var/lib/chainnode",
            "CHAINNODE_P2P_PEERS": '[{ id = "validator-03", address = "10.0.0.3:26600" }]',
            "CHAINNODE_LOG_FORMAT": "json",  # not node.toml's: left to the logs
            "HOME": "/root",
        },
    )
    assert (loaded.api_host, loaded.api_port, loaded.api_advertise) == ("0.0.0.0", 9001, "node1.example:9001")
    assert loaded.tick_ms == 25 and loaded.disk_free_bytes_min == 1 << 20
    assert loaded.data_dir == Path("/var/lib/chainnode")
    assert [(peer.entity_id, peer.host, peer.port) for peer in loaded.peers] == [
        ("validator-03", "10.0.0.3", 26600)
    ]
    assert config.load_node_config(path, environment={}).tick_ms == 10  # the file's value without it


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("CHAINNODE_MEMPOOL_CAPACITY_TXS", "lots", r"^CHAINNODE_MEMPOOL_CAPACITY_TXS: expected an integer"),
        ("CHAINNODE_API_CONNECTIONS_MAX", "0", r"^api\.connections_max: 0 is outside \[1, 1000000\]"),
        ("CHAINNODE_P2P_PEERS", "[{ id = ", r"^CHAINNODE_P2P_PEERS: expected a TOML array"),
        ("CHAINNODE_P2P_PEERS", '[{ id = "x", adress = "h:1" }]', r"^p2p\.peers\[0\]\.adress: unknown key"),
    ],
)
def test_bad_environment_overrides_are_refused_naming_the_variable_or_key(
    tmp_path: Path, variable: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        config.load_node_config(write_config(tmp_path), environment={variable: value})
    assert re.search(message, raised.value.message), raised.value.message


def test_a_variable_naming_no_key_is_ignored_with_a_warning_naming_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The image sets CHAINNODE_API_PORT for its HEALTHCHECK: it must not keep a node from starting.
    caplog.set_level(logging.WARNING, logger="chainnode.node.config")
    environment = {"CHAINNODE_API_PORT": "26601", "CHAINNODE_API_LISTN": "127.0.0.1:1"}
    loaded = config.load_node_config(write_config(tmp_path), environment=environment)
    assert (loaded.api_host, loaded.api_port) == ("127.0.0.1", 26601)
    assert sorted(record.getMessage() for record in caplog.records) == [
        "CHAINNODE_API_LISTN is ignored: node.toml has no key api.listn",
        "CHAINNODE_API_PORT is ignored: node.toml has no key api.port",
    ]


def run_node(config_path: Path, environment: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "cli", "node", "run", "--config", str(config_path)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **environment},
        )


def test_a_node_process_refuses_an_unknown_key_in_one_line(tmp_path: Path) -> None:
    init_network(tmp_path, validators=4, chain_id="config-net", base_port=29900)
    config_path = tmp_path / "nodes" / "validator-01" / "node.toml"
    config_path.write_text(config_path.read_text().replace("[mempool]\n", "[mempool]\ncapacity = 5\n"))
    process = run_node(config_path, {}, tmp_path / "node.log")
    assert process.wait(timeout=START_TIMEOUT_S) == 1
    output = (tmp_path / "node.log").read_text().strip().splitlines()
    assert output == ["error: bad_config: mempool.capacity: unknown key (known in mempool: capacity_txs)"], (
        output
    )


def test_a_node_process_listens_where_the_environment_says(tmp_path: Path) -> None:
    init_network(tmp_path, validators=4, chain_id="config-net", base_port=29900)
    config_path = tmp_path / "nodes" / "validator-01" / "node.toml"
    api_port, p2p_port = get_free_port(), get_free_port()
    environment = {
        "CHAINNODE_API_LISTEN": f"127.0.0.1:{api_port}",
        "CHAINNODE_P2P_LISTEN": f"127.0.0.1:{p2p_port}",
        "CHAINNODE_API_PORT": str(api_port),  # as the image sets it, for its HEALTHCHECK
    }
    process = run_node(config_path, environment, tmp_path / "node.log")
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert process.poll() is None, (tmp_path / "node.log").read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/healthz", timeout=2) as answer:
                    assert answer.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline, "the node did not answer on the overridden port"
                time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=START_TIMEOUT_S) == 0
    assert f"p2p 127.0.0.1:{p2p_port}, api 127.0.0.1:{api_port}" in (tmp_path / "node.log").read_text()
