"""The state of the `xchain` module: its key layout and the readers of the records it keeps.
Pure: no I/O.

Theory of operation is in `chainnode.app.xchain`; this module is what the module, governance
(`register_chain`, `remove_chain`), the API and the SDK share.  The records themselves and their
encodings are in `chainnode.app.xchain_records`, the argument forms of the actions (the
inclusion proof of `xchain.import`, the steps of `xchain.update_client`) in
`chainnode.app.xchain_args`; both are re-exported here, so callers import one module.

State layout (the module owns the `xc/` prefix; `<chain>` is a counterparty chain id, which
holds no NUL and no '/', so `<chain> NUL <fixed-width suffix>` is unambiguous):

- `xc/chains`                       -> encode((chain id, ...)) every chain ever registered, in
  registration order (removed ones too: their records stay readable)
- `xc/c/<chain>`                    -> `ChainRecord` (registration, counters of the channel)
- `xc/l/<chain>`                    -> `chainnode.light.LightState.encode()`: the on-chain light client
- `xc/h/<chain>`                    -> encode((header, certificate)) of the latest accepted header
- `xc/f/<chain>`                    -> `ForkEvidence`: the two certified headers that halted the client
- `xc/in/<chain> NUL <tx hash>`     -> `Fact`: one imported source transaction
- `xc/if/<chain> NUL <n:u64be>`     -> tx hash of the n-th fact imported from the chain (from 1)
- `xc/o/<chain> NUL <seq:u64be>`    -> `OutboundMessage` sent to the chain (seq from 1)
- `xc/r/<chain> NUL <seq:u64be>`    -> `InboundMessage` received from the chain (seq from 1)

Every value is a fixed-arity msgpack array whose first item is its layout version (1).  Only the
state machine writes these keys, so a value that does not decode is a corrupt data directory
(`StorageError`), never a failed transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chainnode import light
from chainnode.app.state import StateReader
from chainnode.app.xchain_args import PROOF_PATH_MAX, compute_steps_args, decode_proof_args, encode_proof_args
from chainnode.app.xchain_records import (
    CHAIN_ID_CHARS_MAX,
    HASH_BYTES,
    PAYLOAD_BYTES_MAX,
    ChainRecord,
    Fact,
    ForkEvidence,
    InboundMessage,
    OutboundMessage,
    compute_args_hash,
    compute_payload_hash,
    decode_chain_record,
    decode_fact,
    decode_fork_evidence,
    decode_inbound_message,
    decode_outbound_message,
)
from chainnode.core import codec
from chainnode.core.codec import expect_bytes, expect_str, expect_tuple
from chainnode.core.errors import DecodeError, StorageError

# What callers import from here, the records' and the argument forms' names included.
__all__ = [
    "CHAINS_KEY",
    "CHAIN_ID_CHARS_MAX",
    "HASH_BYTES",
    "MODULE",
    "PAYLOAD_BYTES_MAX",
    "PROOF_PATH_MAX",
    "STEPS_MAX",
    "VALIDATOR_SET_BYTES_MAX",
    "ChainRecord",
    "Fact",
    "ForkEvidence",
    "InboundMessage",
    "OutboundMessage",
    "compute_args_hash",
    "compute_chain_key",
    "compute_fact_index_key",
    "compute_fact_key",
    "compute_fork_key",
    "compute_head_key",
    "compute_inbound_key",
    "compute_light_key",
    "compute_outbound_key",
    "compute_payload_hash",
    "compute_steps_args",
    "decode_chain_record",
    "decode_fact",
    "decode_fork_evidence",
    "decode_inbound_message",
    "decode_outbound_message",
    "decode_proof_args",
    "encode_proof_args",
    "get_chain",
    "get_chain_ids",
    "get_fact",
    "get_fork_evidence",
    "get_head",
    "get_inbound_message",
    "get_light_state",
    "get_outbound_message",
    "is_valid_chain_id",
    "list_facts",
    "list_inbound",
    "list_outbound",
]

MODULE = "xchain"
STEPS_MAX = 32  # header updates per `xchain.update_client`
VALIDATOR_SET_BYTES_MAX = 12 * 1024

CHAINS_KEY = b"xc/chains"
_CHAIN_PREFIX = b"xc/c/"
_LIGHT_PREFIX = b"xc/l/"
_HEAD_PREFIX = b"xc/h/"
_FORK_PREFIX = b"xc/f/"
_FACT_PREFIX = b"xc/in/"
_FACT_INDEX_PREFIX = b"xc/if/"
_OUTBOUND_PREFIX = b"xc/o/"
_INBOUND_PREFIX = b"xc/r/"


def is_valid_chain_id(value: object) -> bool:
    """1..64 printable characters without NUL or '/' (a state key part and a URL path segment)."""
    return (
        isinstance(value, str)
        and 1 <= len(value) <= CHAIN_ID_CHARS_MAX
        and value.isprintable()
        and "\x00" not in value
        and "/" not in value
    )


def compute_chain_key(chain: str) -> bytes:
    return _CHAIN_PREFIX + chain.encode()


def compute_light_key(chain: str) -> bytes:
    return _LIGHT_PREFIX + chain.encode()


def compute_head_key(chain: str) -> bytes:
    return _HEAD_PREFIX + chain.encode()


def compute_fork_key(chain: str) -> bytes:
    return _FORK_PREFIX + chain.encode()


def compute_fact_key(chain: str, tx_hash: bytes) -> bytes:
    return _FACT_PREFIX + chain.encode() + b"\x00" + tx_hash


def compute_fact_index_key(chain: str, index: int) -> bytes:
    return _FACT_INDEX_PREFIX + chain.encode() + b"\x00" + index.to_bytes(8, "big")


def compute_outbound_key(chain: str, seq: int) -> bytes:
    return _OUTBOUND_PREFIX + chain.encode() + b"\x00" + seq.to_bytes(8, "big")


def compute_inbound_key(chain: str, seq: int) -> bytes:
    return _INBOUND_PREFIX + chain.encode() + b"\x00" + seq.to_bytes(8, "big")


# ---------------------------------------------------------------- reads


def _read(state: StateReader, key: bytes, decode: Any, what: str) -> Any:
    stored = state.get_state(key)
    if stored is None:
        return None
    try:
        return decode(stored)
    except DecodeError as error:
        raise StorageError(f"corrupt {what} in state: {error.message}") from error


def _decode_chain_ids(data: bytes) -> tuple[str, ...]:
    return tuple(
        expect_str(item, "chain id", CHAIN_ID_CHARS_MAX)
        for item in expect_tuple(codec.decode(data), "chains")
    )


def get_chain_ids(state: StateReader) -> tuple[str, ...]:
    """Every chain ever registered, in registration order (removed ones too)."""
    return _read(state, CHAINS_KEY, _decode_chain_ids, "chain list") or ()


def get_chain(state: StateReader, chain: str) -> ChainRecord | None:
    if not is_valid_chain_id(chain):
        return None
    found: ChainRecord | None = _read(
        state, compute_chain_key(chain), decode_chain_record, f"chain {chain!r}"
    )
    return found


def get_light_state(state: StateReader, chain: str) -> light.LightState | None:
    if not is_valid_chain_id(chain):
        return None
    stored = state.get_state(compute_light_key(chain))
    if stored is None:
        return None
    try:
        return light.decode_light_state(stored)
    except (DecodeError, light.LightError) as error:
        raise StorageError(f"corrupt light client of {chain!r} in state: {error.message}") from error


def get_head(state: StateReader, chain: str) -> tuple[bytes, bytes] | None:
    """(header, certificate) of the latest header the chain's client accepted; None at genesis."""
    if not is_valid_chain_id(chain):
        return None

    def decode(data: bytes) -> tuple[bytes, bytes]:
        fields = expect_tuple(codec.decode(data), "head", 2)
        if len(fields) != 2:
            raise DecodeError("head: expected (header, certificate)")
        return expect_bytes(fields[0], "head header"), expect_bytes(fields[1], "head certificate")

    found: tuple[bytes, bytes] | None = _read(state, compute_head_key(chain), decode, f"head of {chain!r}")
    return found


def get_fork_evidence(state: StateReader, chain: str) -> ForkEvidence | None:
    if not is_valid_chain_id(chain):
        return None
    found: ForkEvidence | None = _read(
        state, compute_fork_key(chain), decode_fork_evidence, f"fork evidence of {chain!r}"
    )
    return found


def get_fact(state: StateReader, chain: str, tx_hash: bytes) -> Fact | None:
    if not is_valid_chain_id(chain) or len(tx_hash) != HASH_BYTES:
        return None
    found: Fact | None = _read(state, compute_fact_key(chain, tx_hash), decode_fact, "imported fact")
    return found


def _list_sequence(
    state: StateReader,
    chain: str,
    count_of: Callable[[ChainRecord], int],
    get_item: Callable[[int], Any],
    after: int,
    limit: int,
    what: tuple[str, str],
) -> list[Any]:
    """Items `after + 1 ..` of one of `chain`'s dense sequences (at most `limit`, up to its count);
    a missing one is corrupt state."""
    record = get_chain(state, chain)
    if record is None:
        return []
    found = []
    for position in range(after + 1, min(count_of(record), after + limit) + 1):
        item = get_item(position)
        if item is None:
            raise StorageError(f"corrupt {what[0]} in state: {what[1]} {position} is missing")
        found.append(item)
    return found


def list_facts(state: StateReader, chain: str, *, after: int = 0, limit: int = 100) -> list[Fact]:
    """Facts imported from `chain` after the `after`-th, in import order, at most `limit`."""

    def get_indexed(index: int) -> Fact | None:
        tx_hash = state.get_state(compute_fact_index_key(chain, index))
        return None if tx_hash is None else get_fact(state, chain, tx_hash)

    facts: list[Fact] = _list_sequence(
        state, chain, lambda record: record.facts, get_indexed, after, limit, (f"facts of {chain!r}", "fact")
    )
    return facts


def get_outbound_message(state: StateReader, chain: str, seq: int) -> OutboundMessage | None:
    if not is_valid_chain_id(chain) or not 1 <= seq < 2**64:
        return None
    found: OutboundMessage | None = _read(
        state, compute_outbound_key(chain, seq), decode_outbound_message, "outbound message"
    )
    return found


def get_inbound_message(state: StateReader, chain: str, seq: int) -> InboundMessage | None:
    if not is_valid_chain_id(chain) or not 1 <= seq < 2**64:
        return None
    found: InboundMessage | None = _read(
        state, compute_inbound_key(chain, seq), decode_inbound_message, "inbound message"
    )
    return found


def list_outbound(
    state: StateReader, chain: str, *, after: int = 0, limit: int = 100
) -> list[OutboundMessage]:
    """Messages sent to `chain` with seq above `after`, in seq order, at most `limit`."""
    messages: list[OutboundMessage] = _list_sequence(
        state,
        chain,
        lambda record: record.sent,
        lambda seq: get_outbound_message(state, chain, seq),
        after,
        limit,
        (f"channel to {chain!r}", "message"),
    )
    return messages


def list_inbound(state: StateReader, chain: str, *, after: int = 0, limit: int = 100) -> list[InboundMessage]:
    """Messages delivered from `chain` with seq above `after`, in seq order, at most `limit`."""
    messages: list[InboundMessage] = _list_sequence(
        state,
        chain,
        lambda record: record.delivered,
        lambda seq: get_inbound_message(state, chain, seq),
        after,
        limit,
        (f"channel from {chain!r}", "message"),
    )
    return messages
