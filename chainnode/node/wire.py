"""The node-to-node protocol carried in p2p frames.

Each frame is one canonical msgpack array whose tag says what it is:
consensus messages (`consensus.messages.MESSAGE_TAGS`: pre-prepare, vote,
view change, new view), a peer's committed height (status), block-sync
requests and responses, and batches of gossiped transactions.  A batch sent with
`TAG_TX_BATCH_ACKED` asks the receiver to answer a `TxAck` naming the ones it
pooled (or already held); the node sends such batches for submissions that wait
until a quorum of validators' mempools hold them (`chainnode.node.replication`).
A primary sends its proposal as a `CompactPrePrepare`: the header and the transaction
ids, which replicas fill from their mempools, fetching the bodies they lack with
`TxFetch` / `TxBodies` (`chainnode.node.proposals`).
`decode_frame` is strict and raises `DecodeError` on anything else; the node
drops such frames and counts them, it never crashes on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chainnode.core import codec, crypto, quorum, types
from chainnode.core.codec import expect_bytes, expect_int, expect_tuple
from chainnode.core.errors import DecodeError
from chainnode.core.tags import (
    TAG_BLOCK_REQUEST,
    TAG_BLOCK_RESPONSE,
    TAG_COMPACT_PRE_PREPARE,
    TAG_STATUS,
    TAG_TX_ACK,
    TAG_TX_BATCH,
    TAG_TX_BATCH_ACKED,
    TAG_TX_BODIES,
    TAG_TX_FETCH,
)
from consensus.messages import MESSAGE_TAGS, Message, PrePrepare, decode_message_fields

VERSION = 1

TX_BATCH_MAX = 10_000
GOSSIP_BYTES_MAX = 4 * 1024 * 1024
BLOCKS_PER_RESPONSE_MAX = 64
BLOCK_TXS_MAX = 1_000_000  # what `types.decode_block` accepts


@dataclass(frozen=True, slots=True)
class Status:
    height: int  # the sender's committed height
    wall_ms: int  # the sender's wall clock when it sent this (see `chainnode.node.peer_clocks`)


@dataclass(frozen=True, slots=True)
class BlockRequest:
    height_min: int
    height_max: int


@dataclass(frozen=True, slots=True)
class BlockResponse:
    blocks: tuple[tuple[types.Block, quorum.CommitCertificate], ...]


@dataclass(frozen=True, slots=True)
class TxBatch:
    transactions: tuple[bytes, ...]  # encoded, decoded and admitted one by one by the receiver
    wants_ack: bool = False  # answer a TxAck naming those pooled


@dataclass(frozen=True, slots=True)
class TxAck:
    tx_hashes: tuple[bytes, ...]  # of a TxBatch that wanted an answer: the ones now in our mempool


@dataclass(frozen=True, slots=True)
class CompactPrePrepare:
    """A `PrePrepare` whose block travels as its header and its transactions' ids."""

    view: int
    height: int
    proposer: int
    header: types.BlockHeader
    tx_ids: tuple[bytes, ...]  # in block order; `header.tx_count` of them
    signature: bytes


@dataclass(frozen=True, slots=True)
class TxFetch:
    """The bodies of a proposed block's transactions at `indexes`, please."""

    block_hash: bytes
    indexes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class TxBodies:
    """The answer to a `TxFetch`: encoded transactions at `indexes` of the block."""

    block_hash: bytes
    indexes: tuple[int, ...]
    bodies: tuple[bytes, ...]  # one per index


Frame = (
    Message | Status | BlockRequest | BlockResponse | TxBatch | TxAck | CompactPrePrepare | TxFetch | TxBodies
)


def encode_status(height: int, wall_ms: int) -> bytes:
    return codec.encode((TAG_STATUS, VERSION, height, wall_ms))


def encode_block_request(height_min: int, height_max: int) -> bytes:
    return codec.encode((TAG_BLOCK_REQUEST, VERSION, height_min, height_max))


def encode_block_response(items: list[tuple[bytes, bytes]]) -> bytes:
    """`items` are (encoded block, encoded certificate) pairs straight from storage."""
    return codec.encode((TAG_BLOCK_RESPONSE, VERSION, tuple(items)))


def encode_tx_batch(transactions: list[bytes], *, wants_ack: bool = False) -> bytes:
    return codec.encode((TAG_TX_BATCH_ACKED if wants_ack else TAG_TX_BATCH, VERSION, tuple(transactions)))


def encode_tx_ack(tx_hashes: list[bytes]) -> bytes:
    return codec.encode((TAG_TX_ACK, VERSION, tuple(tx_hashes)))


def encode_compact_pre_prepare(message: PrePrepare) -> bytes:
    block = message.block
    return codec.encode(
        (
            TAG_COMPACT_PRE_PREPARE,
            VERSION,
            message.view,
            message.height,
            message.proposer,
            block.header.to_fields(),
            tuple(tx.hash for tx in block.transactions),
            message.signature,
        )
    )


def encode_tx_fetch(block_hash: bytes, indexes: list[int]) -> bytes:
    return codec.encode((TAG_TX_FETCH, VERSION, block_hash, tuple(indexes)))


def encode_tx_bodies(block_hash: bytes, indexes: list[int], bodies: list[bytes]) -> bytes:
    return codec.encode((TAG_TX_BODIES, VERSION, block_hash, tuple(indexes), tuple(bodies)))


def decode_frame(data: bytes, *, frame_bytes_max: int) -> Frame:
    value = codec.decode(data, bytes_max=frame_bytes_max)
    if not isinstance(value, tuple) or len(value) < 2:
        raise DecodeError("frame: expected an array with a type tag")
    tag = value[0]
    if tag in MESSAGE_TAGS:
        return decode_message_fields(value)
    if tag == TAG_STATUS:
        fields = codec.expect_struct(value, TAG_STATUS, VERSION, 4, "status")
        return Status(expect_int(fields[2], "status height"), expect_int(fields[3], "status wall clock"))
    if tag == TAG_BLOCK_REQUEST:
        fields = codec.expect_struct(value, TAG_BLOCK_REQUEST, VERSION, 4, "block request")
        height_min = expect_int(fields[2], "request height_min")
        height_max = expect_int(fields[3], "request height_max")
        if height_max < height_min:
            raise DecodeError("block request: empty range")
        return BlockRequest(height_min, height_max)
    if tag == TAG_BLOCK_RESPONSE:
        fields = codec.expect_struct(value, TAG_BLOCK_RESPONSE, VERSION, 3, "block response")
        items = expect_tuple(fields[2], "response blocks", BLOCKS_PER_RESPONSE_MAX)
        blocks = []
        for item in items:
            pair = expect_tuple(item, "response item", 2)
            if len(pair) != 2:
                raise DecodeError("block response: expected [block, certificate] pairs")
            block = types.decode_block(expect_bytes(pair[0], "response block"))
            certificate = quorum.decode_commit_certificate(expect_bytes(pair[1], "response certificate"))
            blocks.append((block, certificate))
        return BlockResponse(tuple(blocks))
    if tag in (TAG_TX_BATCH, TAG_TX_BATCH_ACKED):
        fields = codec.expect_struct(value, tag, VERSION, 3, "tx batch")
        items = expect_tuple(fields[2], "tx batch", TX_BATCH_MAX)
        return TxBatch(
            tuple(expect_bytes(item, "gossiped tx", length_max=types.TX_BYTES_MAX) for item in items),
            wants_ack=tag == TAG_TX_BATCH_ACKED,
        )
    if tag == TAG_TX_ACK:
        fields = codec.expect_struct(value, TAG_TX_ACK, VERSION, 3, "tx ack")
        items = expect_tuple(fields[2], "tx ack", TX_BATCH_MAX)
        return TxAck(tuple(expect_bytes(item, "acked tx hash", 32) for item in items))
    if tag in (TAG_COMPACT_PRE_PREPARE, TAG_TX_FETCH, TAG_TX_BODIES):
        return _decode_proposal_frame(tag, value)
    raise DecodeError(f"frame: unknown type tag {tag!r}")


def _decode_proposal_frame(tag: int, value: tuple[Any, ...]) -> Frame:
    if tag == TAG_COMPACT_PRE_PREPARE:
        fields = codec.expect_struct(value, TAG_COMPACT_PRE_PREPARE, VERSION, 8, "compact pre-prepare")
        header = types.block_header_from_fields(fields[5])
        ids = expect_tuple(fields[6], "compact pre-prepare tx ids", BLOCK_TXS_MAX)
        tx_ids = tuple(expect_bytes(item, "compact pre-prepare tx id", 32) for item in ids)
        if len(tx_ids) != header.tx_count:
            raise DecodeError(
                f"compact pre-prepare: header counts {header.tx_count} transactions, not {len(ids)}"
            )
        return CompactPrePrepare(
            expect_int(fields[2], "pre-prepare view"),
            expect_int(fields[3], "pre-prepare height"),
            expect_int(fields[4], "pre-prepare proposer", 0, 1023),
            header,
            tx_ids,
            expect_bytes(fields[7], "pre-prepare signature", crypto.SIGNATURE_BYTES),
        )
    if tag == TAG_TX_FETCH:
        fields = codec.expect_struct(value, TAG_TX_FETCH, VERSION, 4, "tx fetch")
        items = expect_tuple(fields[3], "tx fetch indexes", BLOCK_TXS_MAX)
        return TxFetch(
            expect_bytes(fields[2], "tx fetch block hash", 32),
            tuple(expect_int(item, "tx fetch index", 0, BLOCK_TXS_MAX - 1) for item in items),
        )
    fields = codec.expect_struct(value, TAG_TX_BODIES, VERSION, 5, "tx bodies")
    indexes = expect_tuple(fields[3], "tx bodies indexes", BLOCK_TXS_MAX)
    bodies = expect_tuple(fields[4], "tx bodies", BLOCK_TXS_MAX)
    if len(indexes) != len(bodies):
        raise DecodeError(f"tx bodies: {len(indexes)} indexes for {len(bodies)} bodies")
    return TxBodies(
        expect_bytes(fields[2], "tx bodies block hash", 32),
        tuple(expect_int(item, "tx bodies index", 0, BLOCK_TXS_MAX - 1) for item in indexes),
        tuple(expect_bytes(item, "tx body", length_max=types.TX_BYTES_MAX) for item in bodies),
    )
