"""The ledger's layout on disk: its three databases, their keys, the head, and the write record.

Theory of operation: every module of the ledger (`storage.ledger` and the parts it is made of)
writes and reads these keys only through the names here, so the layout the `storage.ledger`
docstring draws is defined once: one-byte prefixes, then fixed-width big-endian integers, a
fixed-width hash or a raw state key, so byte order is height order.  `FORMAT_VERSION` changes
with the layout; a ledger of another version is refused at open.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from chainnode.core import codec
from chainnode.core.errors import DecodeError

BLOCK_HASH_PREFIX = b"h"
# + epoch:u32 + tx hash (storage.tx_index); below every other prefix of the main database
TX_PREFIX = b"I"
TX_EPOCH_PREFIX = b"T"  # + epoch:u32 -> the epoch's first height (storage.tx_index)
STATE_PREFIX = b"s"
EVIDENCE_PREFIX = b"e"
CHECKPOINT_PREFIX = b"k"
# + height: the proof that the block changed the validator set (chainnode.light)
VALIDATOR_CHANGE_PREFIX = b"v"
HEAD_KEY = b"mhead"
GENESIS_KEY = b"mgenesis"
FORMAT_KEY = b"mformat"
# 1: blocks, certificates and receipts in the main database; 2: votes there; 3: history
# values in the main database; 4: the tx index keyed by id alone; 5: by epoch, under b"t"
FORMAT_VERSION = b"6"
BLOCKS_DIRECTORY = "blocks"
VOTES_DIRECTORY = "votes"  # keys: VOTE_KEY
# The databases by name, as a `Write` names them.
MAIN_DATABASE = "main"
BLOCK_STORE = "blocks"
VOTE_LOG = "votes"
# In the block store, after the height:
BLOCK_SUFFIX = b"b"
CERTIFICATE_SUFFIX = b"c"
RECEIPT_SUFFIX = b"r"
HISTORY_SUFFIX = b"h"  # + seq:u32: a history value (storage.ledger, "History values")

U64 = struct.Struct(">Q")
LOCATION = struct.Struct(">QI")  # height, index
U32 = struct.Struct(">I")
VOTE_KEY = struct.Struct(">QQI")  # height, view, kind
EVIDENCE_KEY = struct.Struct(">QIIQ")  # height, validator, kind, view


@dataclass(frozen=True, slots=True)
class Head:
    """The last committed block; height 0 is genesis."""

    height: int
    block_hash: bytes  # at height 0, the genesis hash
    state_root: bytes  # state commitment after this block
    timestamp_ms: int  # the block's timestamp (genesis time at height 0)

    def encode(self) -> bytes:
        return codec.encode((self.height, self.block_hash, self.state_root, self.timestamp_ms))


def decode_head(data: bytes) -> Head:
    fields = codec.expect_tuple(codec.decode(data), "head", 4)
    if len(fields) != 4:
        raise DecodeError("head: expected 4 fields")
    return Head(
        codec.expect_int(fields[0], "head height"),
        codec.expect_bytes(fields[1], "head block hash", 32),
        codec.expect_bytes(fields[2], "head state root", 32),
        codec.expect_int(fields[3], "head timestamp"),
    )


@dataclass(frozen=True, slots=True)
class Write:
    """One batch the ledger wrote, as its `write_observer` sees it once LevelDB has returned."""

    database: str  # MAIN_DATABASE, BLOCK_STORE or VOTE_LOG
    sync: bool  # written with `sync=True`: on disk before the write returned
    keys: tuple[bytes, ...]  # the keys put or deleted, in the batch's order


# Called after each write (see `Ledger._write_batch`); for tests of durability and order.
WriteObserver = Callable[[Write], None]


def check_invariant(condition: bool, message: str) -> None:
    """An assertion about our own state that stays on in production."""
    if not condition:
        raise AssertionError(message)
