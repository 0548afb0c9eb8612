"""An offline light client's directory: its state, the hash of every header it accepted, evidence.

Theory of operation
-------------------
The directory holds three things:

- `state.bin`: the encoded `LightState`, replaced atomically (written to a temporary file,
  fsynced, renamed over the old one, the directory fsynced), so a crash leaves the old state or
  the new one, never a torn one;
- `hashes.bin`: the 32-byte hash of header h at offset 32 * (h - 1), appended and fsynced
  *before* the state that accepts those headers is saved.  At open, entries past the state's
  height (a crash between the two writes) are cut off, and the last entry must be the state's
  header hash, so the two agree or the store refuses to open;
- `evidence/`: one JSON file per fork seen (both headers and certificates, hex).

The hashes let a later sync compare what a node serves at an already accepted height with what
was accepted (`chainnode.light.check_conflict`): a difference certified by that height's set is a
fork, and the store keeps it and halts.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from chainnode.core.errors import StorageError
from chainnode.light.verify import LightState, decode_light_state

_HASH_BYTES = 32
STATE_FILE = "state.bin"
HASHES_FILE = "hashes.bin"
EVIDENCE_DIR = "evidence"


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class LightStore:
    """The state, header hashes and fork evidence of one light client, in one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._state_path = directory / STATE_FILE
        self._hashes_path = directory / HASHES_FILE

    def load(self) -> LightState | None:
        """The saved state (None for a new directory), with the hash log cut back to it."""
        if not self._state_path.exists():
            return None
        try:
            state = decode_light_state(self._state_path.read_bytes())
        except OSError as error:
            raise StorageError(f"cannot read {self._state_path}: {error.strerror}") from error
        size = state.height * _HASH_BYTES
        try:
            with open(self._hashes_path, "r+b" if self._hashes_path.exists() else "w+b") as file:
                file.seek(0, os.SEEK_END)
                if file.tell() < size:
                    raise StorageError(
                        f"{self._hashes_path} holds {file.tell() // _HASH_BYTES} header hashes, "
                        f"the state accepted {state.height}: the directory is damaged"
                    )
                file.truncate(size)
                if state.height:
                    file.seek(size - _HASH_BYTES)
                    if file.read(_HASH_BYTES) != state.header_hash:
                        raise StorageError(f"{self._hashes_path} does not end with the state's header")
        except OSError as error:
            raise StorageError(f"cannot open {self._hashes_path}: {error.strerror}") from error
        return state

    def get_header_hash(self, height: int) -> bytes:
        """The hash of the accepted header at `height` (1 <= height <= the saved state's)."""
        with open(self._hashes_path, "rb") as file:
            file.seek((height - 1) * _HASH_BYTES)
            value = file.read(_HASH_BYTES)
        if len(value) != _HASH_BYTES:
            raise StorageError(f"no accepted header at height {height}")
        return value

    def save(self, state: LightState, new_hashes: list[bytes]) -> None:
        """Append the hashes of the headers accepted since the last save, then the state."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self._hashes_path, "ab") as file:
            if file.tell() != (state.height - len(new_hashes)) * _HASH_BYTES:
                raise StorageError("the hash log and the state being saved disagree")
            file.write(b"".join(new_hashes))
            file.flush()
            os.fsync(file.fileno())
        _write_atomically(self._state_path, state.encode())

    def save_evidence(self, height: int, evidence: dict[str, str]) -> Path:
        """Keep a fork's evidence; returns the file written."""
        directory = self.directory / EVIDENCE_DIR
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"fork-{height}.json"
        _write_atomically(path, json.dumps(evidence, indent=2, sort_keys=True).encode())
        return path
