"""The state of the `xchain` module: its key layout, the records it keeps and their readers, and
the msgpack form of an inclusion proof that `xchain.import` carries.  Pure: no I/O.

Theory of operation is in `chainnode.app.xchain`; this module is what the module, governance
(`register_chain`, `remove_chain`), the API and the SDK share.

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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chainnode import light
from chainnode.app.state import StateReader
from chainnode.core import codec, crypto
from chainnode.core.codec import expect_bytes, expect_int, expect_str, expect_tuple
from chainnode.core.errors import DecodeError, StorageError

MODULE = "xchain"
CHAIN_ID_CHARS_MAX = 64
PAYLOAD_BYTES_MAX = 4096
STEPS_MAX = 32  # header updates per `xchain.update_client`
VALIDATOR_SET_BYTES_MAX = 12 * 1024
HASH_BYTES = 32
_LAYOUT_VERSION = 1

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


def compute_payload_hash(payload: bytes) -> bytes:
    """SHA-256 of a message's payload (what outbound records and events name)."""
    return crypto.sha256(payload)


def compute_args_hash(args: tuple[Any, ...]) -> bytes:
    """SHA-256 of the canonical encoding of a transaction's arguments (what a fact keeps of them)."""
    return crypto.sha256(codec.encode(args))


# ---------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class ChainRecord:
    """A registered counterparty chain and the counters of its channel."""

    chain_id: str
    genesis_hash: bytes
    genesis_state_root: bytes
    registered_height: int  # the height of the block that executed `register_chain`
    removed_height: int  # 0 while registered
    facts: int  # source transactions imported from the chain
    sent: int  # the last outbound sequence number used (0: none sent)
    delivered: int  # the last inbound sequence number delivered (0: none)
    acknowledged: int  # outbound messages the chain acknowledged

    @property
    def is_active(self) -> bool:
        return self.removed_height == 0

    def encode(self) -> bytes:
        return codec.encode(
            (
                _LAYOUT_VERSION,
                self.chain_id,
                self.genesis_hash,
                self.genesis_state_root,
                self.registered_height,
                self.removed_height,
                self.facts,
                self.sent,
                self.delivered,
                self.acknowledged,
            )
        )


def decode_chain_record(data: bytes) -> ChainRecord:
    fields = _expect_version(codec.decode(data), "chain record", 10)
    return ChainRecord(
        chain_id=expect_str(fields[1], "chain id", CHAIN_ID_CHARS_MAX),
        genesis_hash=expect_bytes(fields[2], "genesis hash", HASH_BYTES),
        genesis_state_root=expect_bytes(fields[3], "genesis state root", HASH_BYTES),
        registered_height=expect_int(fields[4], "registered height"),
        removed_height=expect_int(fields[5], "removed height"),
        facts=expect_int(fields[6], "facts"),
        sent=expect_int(fields[7], "sent"),
        delivered=expect_int(fields[8], "delivered"),
        acknowledged=expect_int(fields[9], "acknowledged"),
    )


@dataclass(frozen=True, slots=True)
class Fact:
    """A transaction proven committed on a counterparty chain, recorded once."""

    source_chain: str
    height: int  # of the source block
    tx_hash: bytes  # of the source transaction
    block_hash: bytes  # of the source block
    module: str  # the source transaction's module, action, signer and arguments' hash
    action: str
    signer: str
    args_hash: bytes  # `compute_args_hash(tx.args)`
    events: tuple[tuple[str, tuple[Any, ...]], ...]  # the source receipt's events
    importer: str  # the entity that signed the import
    local_height: int  # the height of the block that imported it here
    local_tx_hash: bytes  # the import transaction
    index: int  # the n-th fact imported from the chain, from 1

    def encode(self) -> bytes:
        return codec.encode(
            (
                _LAYOUT_VERSION,
                self.source_chain,
                self.height,
                self.tx_hash,
                self.block_hash,
                self.module,
                self.action,
                self.signer,
                self.args_hash,
                self.events,
                self.importer,
                self.local_height,
                self.local_tx_hash,
                self.index,
            )
        )


def decode_fact(data: bytes) -> Fact:
    fields = _expect_version(codec.decode(data), "fact", 14)
    events = []
    for raw in expect_tuple(fields[9], "fact events", 256):
        event = expect_tuple(raw, "fact event", 2)
        if len(event) != 2:
            raise DecodeError("fact event: expected (name, attributes)")
        events.append((expect_str(event[0], "event name", 64), expect_tuple(event[1], "event attributes")))
    return Fact(
        source_chain=expect_str(fields[1], "source chain", CHAIN_ID_CHARS_MAX),
        height=expect_int(fields[2], "fact height", 1),
        tx_hash=expect_bytes(fields[3], "fact tx hash", HASH_BYTES),
        block_hash=expect_bytes(fields[4], "fact block hash", HASH_BYTES),
        module=expect_str(fields[5], "fact module", 32),
        action=expect_str(fields[6], "fact action", 64),
        signer=expect_str(fields[7], "fact signer", 128),
        args_hash=expect_bytes(fields[8], "fact args hash", HASH_BYTES),
        events=tuple(events),
        importer=expect_str(fields[10], "fact importer", 128),
        local_height=expect_int(fields[11], "fact local height", 1),
        local_tx_hash=expect_bytes(fields[12], "fact local tx hash", HASH_BYTES),
        index=expect_int(fields[13], "fact index", 1),
    )


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """A message sent to a counterparty chain by `xchain.send`."""

    dest_chain: str
    seq: int  # from 1 per destination
    sender: str  # the entity that sent it
    payload_hash: bytes
    height: int  # the height of the block that sent it
    tx_hash: bytes  # the `xchain.send` transaction (what a relayer proves on the other side)
    acknowledged_height: int  # the height here at which its delivery was proven; 0 until then

    def encode(self) -> bytes:
        return codec.encode(
            (
                _LAYOUT_VERSION,
                self.dest_chain,
                self.seq,
                self.sender,
                self.payload_hash,
                self.height,
                self.tx_hash,
                self.acknowledged_height,
            )
        )


def decode_outbound_message(data: bytes) -> OutboundMessage:
    fields = _expect_version(codec.decode(data), "outbound message", 8)
    return OutboundMessage(
        dest_chain=expect_str(fields[1], "destination chain", CHAIN_ID_CHARS_MAX),
        seq=expect_int(fields[2], "sequence number", 1),
        sender=expect_str(fields[3], "sender", 128),
        payload_hash=expect_bytes(fields[4], "payload hash", HASH_BYTES),
        height=expect_int(fields[5], "height", 1),
        tx_hash=expect_bytes(fields[6], "tx hash", HASH_BYTES),
        acknowledged_height=expect_int(fields[7], "acknowledged height"),
    )


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A message from a counterparty chain, delivered here in sequence order."""

    source_chain: str
    seq: int
    sender: str  # the entity of the source chain that sent it
    payload: bytes
    source_height: int  # the source block that sent it
    source_tx_hash: bytes  # the source `xchain.send` transaction
    height: int  # the height of the block that delivered it here
    tx_hash: bytes  # the `xchain.import` that delivered it (what a relayer proves back as the ack)

    def encode(self) -> bytes:
        return codec.encode(
            (
                _LAYOUT_VERSION,
                self.source_chain,
                self.seq,
                self.sender,
                self.payload,
                self.source_height,
                self.source_tx_hash,
                self.height,
                self.tx_hash,
            )
        )


def decode_inbound_message(data: bytes) -> InboundMessage:
    fields = _expect_version(codec.decode(data), "inbound message", 9)
    return InboundMessage(
        source_chain=expect_str(fields[1], "source chain", CHAIN_ID_CHARS_MAX),
        seq=expect_int(fields[2], "sequence number", 1),
        sender=expect_str(fields[3], "sender", 128),
        payload=expect_bytes(fields[4], "payload", length_max=PAYLOAD_BYTES_MAX),
        source_height=expect_int(fields[5], "source height", 1),
        source_tx_hash=expect_bytes(fields[6], "source tx hash", HASH_BYTES),
        height=expect_int(fields[7], "height", 1),
        tx_hash=expect_bytes(fields[8], "tx hash", HASH_BYTES),
    )


@dataclass(frozen=True, slots=True)
class ForkEvidence:
    """Two headers certified at one height of a counterparty chain: why its client halted."""

    height: int
    known_header: bytes  # the header the client had accepted at that height
    known_certificate: bytes
    other_header: bytes  # the conflicting one
    other_certificate: bytes
    local_height: int  # the height here at which the fork was seen

    def encode(self) -> bytes:
        return codec.encode(
            (
                _LAYOUT_VERSION,
                self.height,
                self.known_header,
                self.known_certificate,
                self.other_header,
                self.other_certificate,
                self.local_height,
            )
        )


def decode_fork_evidence(data: bytes) -> ForkEvidence:
    fields = _expect_version(codec.decode(data), "fork evidence", 7)
    return ForkEvidence(
        height=expect_int(fields[1], "fork height"),
        known_header=expect_bytes(fields[2], "known header"),
        known_certificate=expect_bytes(fields[3], "known certificate"),
        other_header=expect_bytes(fields[4], "other header"),
        other_certificate=expect_bytes(fields[5], "other certificate"),
        local_height=expect_int(fields[6], "local height"),
    )


def _expect_version(value: Any, what: str, arity: int) -> tuple[Any, ...]:
    fields = expect_tuple(value, what, arity)
    if len(fields) != arity or fields[0] != _LAYOUT_VERSION:
        raise DecodeError(f"{what}: expected version {_LAYOUT_VERSION} and {arity} fields")
    return fields


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


def list_facts(state: StateReader, chain: str, *, after: int = 0, limit: int = 100) -> list[Fact]:
    """Facts imported from `chain` after the `after`-th, in import order, at most `limit`."""
    record = get_chain(state, chain)
    if record is None:
        return []
    found = []
    for index in range(after + 1, min(record.facts, after + limit) + 1):
        tx_hash = state.get_state(compute_fact_index_key(chain, index))
        fact = None if tx_hash is None else get_fact(state, chain, tx_hash)
        if fact is None:
            raise StorageError(f"corrupt facts of {chain!r} in state: fact {index} is missing")
        found.append(fact)
    return found


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
    record = get_chain(state, chain)
    if record is None:
        return []
    found = []
    for seq in range(after + 1, min(record.sent, after + limit) + 1):
        message = get_outbound_message(state, chain, seq)
        if message is None:
            raise StorageError(f"corrupt channel to {chain!r} in state: message {seq} is missing")
        found.append(message)
    return found


def list_inbound(state: StateReader, chain: str, *, after: int = 0, limit: int = 100) -> list[InboundMessage]:
    """Messages delivered from `chain` with seq above `after`, in seq order, at most `limit`."""
    record = get_chain(state, chain)
    if record is None:
        return []
    found = []
    for seq in range(after + 1, min(record.delivered, after + limit) + 1):
        message = get_inbound_message(state, chain, seq)
        if message is None:
            raise StorageError(f"corrupt channel from {chain!r} in state: message {seq} is missing")
        found.append(message)
    return found


# ---------------------------------------------------------------- the proof as transaction arguments

# An inclusion proof (`chainnode.app.proof`, JSON with hex strings) travels in `xchain.import` as
# one msgpack array of its fields in `PROOF_FIELDS` order, hex turned into bytes and the audit
# paths into arrays of bytes: half the size of the hex, and canonical like every argument.
_PROOF_HEX_FIELDS = frozenset(
    {"tx_hash", "block_hash", "block_header", "commit_certificate", "transaction", "receipt"}
)
_PROOF_PATH_FIELDS = frozenset({"tx_proof", "receipt_proof"})
PROOF_PATH_MAX = 64


def encode_proof_args(proof: Mapping[str, Any]) -> tuple[Any, ...]:
    """The argument form of a proof JSON; `ValueError` if a field is missing or not of its type."""
    from chainnode.app.proof import PROOF_FIELDS

    items: list[Any] = []
    for name in PROOF_FIELDS:
        if name not in proof:
            raise ValueError(f"the proof has no field {name!r}")
        value = proof[name]
        if name in _PROOF_HEX_FIELDS:
            items.append(bytes.fromhex(value))
        elif name in _PROOF_PATH_FIELDS:
            items.append(tuple(bytes.fromhex(item) for item in value))
        else:
            items.append(value)
    return tuple(items)


def decode_proof_args(value: Any) -> dict[str, Any] | None:
    """The proof JSON of an argument made by `encode_proof_args`; None if it is not of that form.

    Only the shape is checked here; `chainnode.app.proof.verify_proof_for_chain` checks the rest
    (the JSON is strict lowercase hex, so a proof has one spelling in either form).
    """
    from chainnode.app.proof import PROOF_FIELDS

    if not isinstance(value, tuple) or len(value) != len(PROOF_FIELDS):
        return None
    proof: dict[str, Any] = {}
    for name, item in zip(PROOF_FIELDS, value, strict=True):
        if name in _PROOF_HEX_FIELDS:
            if not isinstance(item, bytes):
                return None
            proof[name] = item.hex()
        elif name in _PROOF_PATH_FIELDS:
            if not (
                isinstance(item, tuple)
                and len(item) <= PROOF_PATH_MAX
                and all(isinstance(node, bytes) for node in item)
            ):
                return None
            proof[name] = [node.hex() for node in item]
        elif name == "chain_id":
            if not isinstance(item, str):
                return None
            proof[name] = item
        else:
            if not isinstance(item, int) or isinstance(item, bool):
                return None
            proof[name] = item
    return proof


def compute_steps_args(
    steps: Sequence[tuple[bytes, bytes, bytes | None]],
) -> tuple[tuple[bytes, bytes, bytes | None], ...]:
    """The `steps` argument of `xchain.update_client`: (header, certificate, change proof or None)."""
    return tuple(
        (bytes(header), bytes(certificate), None if change is None else bytes(change))
        for header, certificate, change in steps
    )
