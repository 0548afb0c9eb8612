"""Audit checkpoints: the replayed state at a height, saved after a clean audit to resume from
(trusted, see the package docstring)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chainnode.core import codec
from chainnode.core.errors import ConfigError, DecodeError
from chainnode.core.tags import TAG_CHECKPOINT

CHECKPOINT_VERSION = 1
_CHUNK_ITEMS = 50_000
_CHECKPOINT_BYTES_MAX = 16 * 1024 * 1024 * 1024


# ---------------------------------------------------------------- checkpoints


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The replayed chain at a height, to resume from (trusted, see the module doc)."""

    chain_id: str
    genesis_hash: bytes
    height: int
    block_hash: bytes  # the genesis hash at height 0
    state_root: bytes
    timestamp_ms: int
    state: tuple[tuple[bytes, bytes], ...]  # key-sorted
    committed_tx_hashes: tuple[bytes, ...]  # sorted

    def encode(self) -> bytes:
        def chunks(items: Sequence[Any]) -> tuple[tuple[Any, ...], ...]:
            return tuple(tuple(items[i : i + _CHUNK_ITEMS]) for i in range(0, len(items), _CHUNK_ITEMS))

        return codec.encode(
            (
                TAG_CHECKPOINT,
                CHECKPOINT_VERSION,
                self.chain_id,
                self.genesis_hash,
                self.height,
                self.block_hash,
                self.state_root,
                self.timestamp_ms,
                chunks(self.state),
                chunks(self.committed_tx_hashes),
            )
        )


def decode_checkpoint(data: bytes) -> Checkpoint:
    fields = codec.expect_struct(
        codec.decode(data, bytes_max=_CHECKPOINT_BYTES_MAX),
        TAG_CHECKPOINT,
        CHECKPOINT_VERSION,
        10,
        "checkpoint",
    )
    state: list[tuple[bytes, bytes]] = []
    for chunk in codec.expect_tuple(fields[8], "checkpoint state"):
        for item in codec.expect_tuple(chunk, "checkpoint state chunk"):
            pair = codec.expect_tuple(item, "checkpoint state entry", 2)
            if len(pair) != 2:
                raise DecodeError("checkpoint state entry: expected [key, value]")
            key, value = codec.expect_bytes(pair[0], "state key"), codec.expect_bytes(pair[1], "state value")
            state.append((key, value))
    hashes = [
        codec.expect_bytes(item, "committed tx hash", 32)
        for chunk in codec.expect_tuple(fields[9], "checkpoint tx hashes")
        for item in codec.expect_tuple(chunk, "checkpoint tx hash chunk")
    ]
    return Checkpoint(
        codec.expect_str(fields[2], "checkpoint chain id", 64),
        codec.expect_bytes(fields[3], "checkpoint genesis hash", 32),
        codec.expect_int(fields[4], "checkpoint height"),
        codec.expect_bytes(fields[5], "checkpoint block hash", 32),
        codec.expect_bytes(fields[6], "checkpoint state root", 32),
        codec.expect_int(fields[7], "checkpoint timestamp"),
        tuple(state),
        tuple(hashes),
    )


def save_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    partial = path.with_name(path.name + ".partial")
    try:
        partial.write_bytes(checkpoint.encode())
        partial.replace(path)
    except OSError as error:
        raise ConfigError(f"cannot write the checkpoint {path}: {error}") from error


def load_checkpoint(path: Path) -> Checkpoint:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"cannot read the checkpoint {path}: {error}") from error
    try:
        return decode_checkpoint(data)
    except DecodeError as error:
        raise ConfigError(f"{path} is not a checkpoint: {error.message}") from error
