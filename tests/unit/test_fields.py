"""The one typed reader of parsed TOML and JSON tables: every refusal names the full key path."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from chainnode.core.errors import ConfigError
from chainnode.core.fields import Fields

DOCUMENT: dict[str, Any] = {
    "name": "pilot",
    "count": 7,
    "flag": True,
    "key": "ab" * 32,
    "roles": ["a", "b"],
    "params": {"block_txs_max": 500},
    "peers": [{"id": "one"}, {"id": "two"}],
}


def test_fields_read_what_is_there() -> None:
    fields = Fields(DOCUMENT, "genesis")
    assert fields.get_str("name") == "pilot"
    assert fields.get_int("count", maximum=10) == 7
    assert fields.get_bool("flag") is True
    assert fields.get_hex("key", length=32) == b"\xab" * 32
    assert fields.get_strings("roles") == ("a", "b")
    assert fields.get_list("roles") == ["a", "b"]
    assert fields.get_table("params").get_int("block_txs_max") == 500
    assert [peer.get_str("id") for peer in fields.get_tables("peers")] == ["one", "two"]


def test_fields_give_defaults_only_for_optional_keys() -> None:
    fields = Fields(DOCUMENT, "")
    assert fields.get_int("absent", default=3) == 3
    assert fields.get_str("absent", default="x") == "x"
    assert fields.get_bool("absent", default=False) is False
    assert fields.get_table("absent", required=False).get_int("deeper", default=1) == 1
    assert fields.get_tables("absent", required=False) == []


def test_an_optional_table_names_its_path() -> None:
    table = Fields({}, "").get_table("storage", required=False)
    with pytest.raises(ConfigError, match=r"storage\.disk_free_bytes_min: expected an integer"):
        Fields({"storage": {"disk_free_bytes_min": "lots"}}, "").get_table("storage").get_int(
            "disk_free_bytes_min"
        )
    assert table.get_key_path("disk_free_bytes_min") == "storage.disk_free_bytes_min"


REFUSALS: list[tuple[Callable[[Fields], Any], str]] = [
    (lambda f: f.get_table("params").get_int("view_timeout_ms"), "genesis.params.view_timeout_ms: missing"),
    (lambda f: f.get_str("count"), "genesis.count: expected a non-empty string"),
    (lambda f: f.get_int("flag"), "genesis.flag: expected an integer"),  # a bool is not an int
    (lambda f: f.get_int("name"), "genesis.name: expected an integer"),
    (lambda f: f.get_int("count", minimum=8), "genesis.count: 7 is less than 8"),
    (lambda f: f.get_int("count", minimum=1, maximum=5), r"genesis.count: 7 is outside \[1, 5\]"),
    (lambda f: f.get_bool("count"), "genesis.count: expected true or false"),
    (lambda f: f.get_hex("name"), "genesis.name is not valid hex"),
    (lambda f: f.get_hex("key", length=16), r"genesis.key must be 16 bytes \(32 hex digits\)"),
    (lambda f: f.get_hex("count"), "genesis.count must be a hex string"),
    (lambda f: f.get_list("name"), "genesis.name: expected a list"),
    (lambda f: f.get_strings("peers"), "genesis.peers: expected a list of strings"),
    (lambda f: f.get_table("name"), "genesis.name: expected an object"),
    (lambda f: f.get_tables("roles"), r"genesis.roles\[0\]: expected an object"),
    (lambda f: f.get_tables("name"), "genesis.name: expected a list of objects"),
    (lambda f: f.get_tables("peers")[1].get_str("address"), r"genesis.peers\[1\].address: missing"),
]


@pytest.mark.parametrize(("read", "message"), REFUSALS)
def test_fields_refuse_naming_the_full_key_path(read: Callable[[Fields], Any], message: str) -> None:
    with pytest.raises(ConfigError, match=f"^bad_config: {message}$"):
        read(Fields(DOCUMENT, "genesis", table_word="object"))


def test_a_bare_document_names_keys_from_the_top() -> None:
    with pytest.raises(ConfigError, match=r"^bad_config: node: missing$"):
        Fields({}, "").get_table("node")
    with pytest.raises(ConfigError, match=r"^bad_config: the document: expected a table$"):
        Fields([], "")
