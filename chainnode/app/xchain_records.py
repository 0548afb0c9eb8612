"""The records of the `xchain` module and their encodings: registered chains, imported facts,
outbound and inbound messages and fork evidence.  Pure: no I/O.

Theory of operation: each record is a frozen dataclass with its canonical encoding, a
fixed-arity msgpack array whose first item is its layout version (1), and a strict decoder
(version, arity, types, bounds) that raises `DecodeError`, beside the bounds they obey and the
hashes they keep of a payload and of a transaction's arguments.  Where the records live in
state, and every read of them, is `chainnode.app.xchain_state`'s; the rules that write them are
in `chainnode.app.xchain`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chainnode.core import codec, crypto
from chainnode.core.codec import expect_bytes, expect_int, expect_str, expect_tuple
from chainnode.core.errors import DecodeError

CHAIN_ID_CHARS_MAX = 64
PAYLOAD_BYTES_MAX = 4096
HASH_BYTES = 32
_LAYOUT_VERSION = 1


def compute_payload_hash(payload: bytes) -> bytes:
    """SHA-256 of a message's payload (what outbound records and events name)."""
    return crypto.sha256(payload)


def compute_args_hash(args: tuple[Any, ...]) -> bytes:
    """SHA-256 of the canonical encoding of a transaction's arguments (what a fact keeps of them)."""
    return crypto.sha256(codec.encode(args))


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
