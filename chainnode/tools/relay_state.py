"""A relayer's state file: where it is in the source chain's events, saved atomically.

Theory of operation: the relayer (`chainnode.tools.relay`) saves a `RelayState` after every
batch whose imports all committed on the destination: the events cursor just past the batch's
last transaction, that transaction's hash and a running count.  `save_relay_state` writes a
temporary file in the same directory, syncs it, renames it over the old file and syncs the
directory, so a crash at any point leaves either the old state or the new one, whole, never a
torn file.  `load_relay_state` refuses anything `save_relay_state` did not write (another
version, unknown or missing fields, wrong types) and a state of a relay between other chains:
resuming from another relay's cursor would silently skip or repeat transactions.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chainnode.core.errors import ConfigError

STATE_VERSION = 1
STATE_BYTES_MAX = 64 * 1024


@dataclass(frozen=True, slots=True)
class RelayState:
    """Where a relayer is: what it has carried from one chain to another."""

    source_chain: str
    destination_chain: str
    cursor: str | None  # the events cursor to read from next (None: the chain's first event)
    last_relayed: str  # hash (hex) of the last source transaction known imported ("" none yet)
    relayed: int  # transactions this state has seen imported (counting already-imported ones)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "source_chain": self.source_chain,
            "destination_chain": self.destination_chain,
            "cursor": self.cursor,
            "last_relayed": self.last_relayed,
            "relayed": self.relayed,
        }


def parse_relay_state(value: Any) -> RelayState:
    """A `RelayState` from its JSON object; `ConfigError` for anything `to_json` did not write."""
    fields = ("version", "source_chain", "destination_chain", "cursor", "last_relayed", "relayed")
    if not isinstance(value, dict) or sorted(value) != sorted(fields):
        raise ConfigError(f"a relay state is a JSON object with exactly the fields {list(fields)}")
    if value["version"] != STATE_VERSION:
        raise ConfigError(f"relay state version {value['version']!r} is not {STATE_VERSION}")
    texts = (value["source_chain"], value["destination_chain"], value["last_relayed"])
    if not all(isinstance(text, str) for text in texts):
        raise ConfigError("a relay state's chains and last_relayed are strings")
    cursor = value["cursor"]
    if cursor is not None and not isinstance(cursor, str):
        raise ConfigError("a relay state's cursor is a string or null")
    relayed = value["relayed"]
    if not isinstance(relayed, int) or isinstance(relayed, bool) or relayed < 0:
        raise ConfigError("a relay state's relayed count is a non-negative integer")
    return RelayState(
        value["source_chain"], value["destination_chain"], cursor, value["last_relayed"], relayed
    )


def load_relay_state(path: Path, source_chain: str, destination_chain: str) -> RelayState:
    """The state saved at `path`, or a fresh one when there is no file; `ConfigError` when the
    file is unreadable or belongs to a relay between other chains."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return RelayState(source_chain, destination_chain, None, "", 0)
    except OSError as error:
        raise ConfigError(f"cannot read the relay state {path}: {error}") from error
    if len(data) > STATE_BYTES_MAX:
        raise ConfigError(f"{path}: a relay state is at most {STATE_BYTES_MAX} bytes")
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"{path} is not JSON: {error}") from error
    try:
        state = parse_relay_state(value)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error.message}") from error
    if (state.source_chain, state.destination_chain) != (source_chain, destination_chain):
        raise ConfigError(
            f"{path} is the state of a relay from {state.source_chain!r} to {state.destination_chain!r}, "
            f"not from {source_chain!r} to {destination_chain!r}",
            code="relay_state_mismatch",
        )
    return state


def save_relay_state(path: Path, state: RelayState) -> None:
    """Replace the file at `path` with `state` atomically: a reader (or a restart after a crash at
    any point) finds either the old state or the new one, whole.  `ConfigError` when it cannot be
    written (a missing directory, no permission, a full disk)."""
    data = json.dumps(state.to_json(), sort_keys=True).encode() + b"\n"
    directory = path.parent
    try:
        descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as error:
        raise ConfigError(f"cannot write the relay state beside {path}: {error}") from error
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
        directory_descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(directory_descriptor)
        finally:
            os.close(directory_descriptor)
    except OSError as error:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise ConfigError(f"cannot write the relay state {path}: {error}") from error
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
