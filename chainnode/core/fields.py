"""Typed reads of parsed TOML tables and JSON objects: the house's one config reader.

Theory of operation
-------------------
`tomllib` and `json` hand back plain dicts, lists and scalars; every file the house reads
(`node.toml`, `genesis.json`, `pilot.toml`) is checked through a `Fields` over its top table.
A `Fields` knows its own path from the top (`genesis.params`, `p2p.peers[2]`), so every refusal
is a `ConfigError` that names the full key path of what is wrong, in one form:
`<path>: <what is wrong>` (`genesis.params.block_txs_max: missing`, `api.connections_max: 0 is
outside [1, 1000000]`); a hex value's refusal is `chainnode.core.hexstr`'s, naming the same path.

A key is required unless its getter is given a `default`.  Nothing is coerced: a bool is not an
int, a number is not a string, a string of digits is not a number.  What a reader builds from
these values (paths resolved against a directory, addresses, certificates) stays with that
reader; this module is pure.
"""

from __future__ import annotations

from typing import Any

from chainnode.core.errors import ConfigError
from chainnode.core.hexstr import HexError, parse_hex

_REQUIRED: Any = object()


class Fields:
    """Typed access to one table (a TOML table or a JSON object) at `path` in its document."""

    __slots__ = ("path", "table_word", "value")

    def __init__(self, value: Any, path: str, *, table_word: str = "table") -> None:
        """`path` is the table's path from the top ("" for a document whose keys are read bare,
        as `node.toml`'s are); `table_word` is what a table is called in messages ("object" for
        JSON)."""
        self.path = path
        self.table_word = table_word
        if not isinstance(value, dict):
            raise ConfigError(f"{path or 'the document'}: expected {self._a_table()}")
        self.value: dict[str, Any] = value

    def _a_table(self) -> str:
        return f"an {self.table_word}" if self.table_word[0] in "aeiou" else f"a {self.table_word}"

    def get_key_path(self, key: str) -> str:
        """The full path of `key` in this table, as error messages name it."""
        return f"{self.path}.{key}" if self.path else key

    def has(self, key: str) -> bool:
        """Whether the table holds `key` (for fields that are optional as a pair, say)."""
        return key in self.value

    def _get(self, key: str, default: Any) -> Any:
        if key in self.value:
            return self.value[key]
        if default is _REQUIRED:
            raise ConfigError(f"{self.get_key_path(key)}: missing")
        return default

    def get_table(self, key: str, *, required: bool = True) -> Fields:
        """The table under `key`; an empty one if it is missing and not `required`."""
        value = self._get(key, _REQUIRED if required else {})
        return Fields(value, self.get_key_path(key), table_word=self.table_word)

    def get_tables(self, key: str, *, required: bool = True) -> list[Fields]:
        """The list of tables under `key` (`[[key]]` in TOML); an empty list if it is missing and
        not `required`."""
        items = self._get(key, _REQUIRED if required else [])
        key_path = self.get_key_path(key)
        if not isinstance(items, list):
            raise ConfigError(f"{key_path}: expected a list of {self.table_word}s")
        return [
            Fields(item, f"{key_path}[{index}]", table_word=self.table_word)
            for index, item in enumerate(items)
        ]

    def get_str(self, key: str, *, default: str = _REQUIRED) -> str:
        """A non-empty string."""
        value = self._get(key, default)
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{self.get_key_path(key)}: expected a non-empty string")
        return value

    def get_int(
        self, key: str, *, default: int = _REQUIRED, minimum: int = 0, maximum: int | None = None
    ) -> int:
        """An integer within [minimum, maximum] (non-negative unless told otherwise)."""
        value = self._get(key, default)
        key_path = self.get_key_path(key)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{key_path}: expected an integer")
        if maximum is None and value < minimum:
            raise ConfigError(f"{key_path}: {value} is less than {minimum}")
        if maximum is not None and not minimum <= value <= maximum:
            raise ConfigError(f"{key_path}: {value} is outside [{minimum}, {maximum}]")
        return value

    def get_bool(self, key: str, *, default: bool = _REQUIRED) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise ConfigError(f"{self.get_key_path(key)}: expected true or false")
        return value

    def get_hex(self, key: str, *, length: int | None = None) -> bytes:
        """Bytes spelled in strict hex (`chainnode.core.hexstr.parse_hex`), `length` of them if given."""
        try:
            return parse_hex(self._get(key, _REQUIRED), self.get_key_path(key), length=length)
        except HexError as error:
            raise ConfigError(error.message) from error

    def get_list(self, key: str) -> list[Any]:
        value = self._get(key, _REQUIRED)
        if not isinstance(value, list):
            raise ConfigError(f"{self.get_key_path(key)}: expected a list")
        return value

    def get_strings(self, key: str) -> tuple[str, ...]:
        """A list of strings (each may be anything a string holds; the reader checks what it needs)."""
        items = self.get_list(key)
        if not all(isinstance(item, str) for item in items):
            raise ConfigError(f"{self.get_key_path(key)}: expected a list of strings")
        return tuple(items)
