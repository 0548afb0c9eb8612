"""Reading events by position from a ledger held in memory: resuming inside a height, past a
transaction's last event, filters, the scan bound and the cache bound.  Pure: no LevelDB."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import cast

import pytest

from chainnode.api.event_reader import (
    BOUND_CURSOR_CHARS,
    CommittedEvent,
    EventReader,
    compute_chain_tag,
    decode_bound_cursor,
    encode_bound_cursor,
)
from chainnode.api.service import LedgerReader
from chainnode.app.events import START, BadCursorError, EventFilter, Position, encode_cursor
from chainnode.core import types
from tests.factories import make_key, make_tx

CHAIN_ID = "reader-test"
KEY = make_key("reader")
GENESIS_HASH = bytes(range(32))
CHAIN_TAG = compute_chain_tag(GENESIS_HASH)


@dataclass
class _Head:
    height: int
    block_hash: bytes = b"\x00" * 32
    state_root: bytes = b"\x00" * 32
    timestamp_ms: int = 0


@dataclass
class MemoryLedger:
    """The part of a ledger `EventReader` reads: blocks and receipts by height."""

    blocks: dict[int, bytes] = field(default_factory=dict)
    receipts: dict[tuple[int, int], bytes] = field(default_factory=dict)
    block_reads: int = 0

    def append(self, events_per_tx: list[list[tuple[str, tuple[object, ...]]]]) -> None:
        height = len(self.blocks) + 1
        txs = [
            make_tx(KEY, chain_id=CHAIN_ID, signer=f"signer-{height}-{index}", nonce=height * 100 + index)
            for index in range(len(events_per_tx))
        ]
        header = types.BlockHeader(
            chain_id=CHAIN_ID,
            height=height,
            view=0,
            proposer=0,
            timestamp_ms=1000 + height,
            parent_hash=b"\x00" * 32,
            tx_root=types.compute_tx_root(txs),
            receipts_root=b"\x00" * 32,
            state_root=b"\x00" * 32,
            validator_set_hash=b"\x00" * 32,
            tx_count=len(txs),
        )
        self.blocks[height] = types.Block.create(header, txs).encoded
        for index, (tx, emitted) in enumerate(zip(txs, events_per_tx, strict=True)):
            code = 0 if emitted else 7  # a failed transaction emits nothing
            receipt = types.Receipt(tx.hash, code, "" if emitted else "failed", tuple(emitted))
            self.receipts[(height, index)] = receipt.encoded

    def get_head(self) -> _Head:
        return _Head(len(self.blocks))

    def get_genesis_hash(self) -> bytes:
        return GENESIS_HASH

    def get_block(self, height: int) -> bytes | None:
        self.block_reads += 1
        return self.blocks.get(height)

    def get_receipt(self, height: int, index: int) -> bytes | None:
        return self.receipts.get((height, index))


def _put(entity: str, key: str) -> tuple[str, tuple[object, ...]]:
    return ("records.put", (entity, key, 1))


def _build() -> MemoryLedger:
    ledger = MemoryLedger()
    ledger.append([[_put("a", "k1")], [_put("b", "k2")]])  # height 1
    ledger.append([[], [_put("a", "k3"), ("assets.minted", ("c/1", "b", 1))]])  # height 2
    ledger.append([[("governance.rejected", (4,))]])  # height 3
    return ledger


def _keys(events: list[CommittedEvent]) -> list[tuple[int, int, int]]:
    return [(event.position.height, event.position.tx_index, event.position.event_index) for event in events]


def _reader(ledger: MemoryLedger, cache_events_max: int = 1000) -> EventReader:
    return EventReader(lambda: cast(LedgerReader, ledger), cache_events_max)


ALL = [(1, 0, 0), (1, 1, 0), (2, 1, 0), (2, 1, 1), (3, 0, 0)]


def test_every_event_in_order_and_the_failed_transaction_has_none() -> None:
    page = _reader(_build()).read_page(START, EventFilter(), limit=100, scan_txs_max=100)
    assert _keys(page.events) == ALL
    assert page.caught_up and page.next == Position(4, 0, 0) and page.head == 3
    minted = json.loads(page.events[3].text)
    assert (minted["module"], minted["action"], minted["entity"], minted["keys"]) == (
        "assets",
        "minted",
        "b",
        ["c/1"],
    )
    assert minted["signer"] == "signer-2-1" and minted["timestamp_ms"] == 1002
    assert decode_bound_cursor(minted["cursor"], CHAIN_TAG) == Position(2, 1, 2)


def test_every_start_gives_the_events_from_there() -> None:
    ledger = _build()
    reader = _reader(ledger)
    starts = [Position(h, t, e) for h in (1, 2, 3, 4) for t in range(3) for e in range(3)]
    for start in starts:
        page = reader.read_page(start, EventFilter(), limit=100, scan_txs_max=100)
        assert _keys(page.events) == [key for key in ALL if Position(*key) >= start], start
    # Resuming from each event's cursor gives exactly the ones after it.
    for index, key in enumerate(ALL):
        page = reader.read_page(Position(*key).get_next(), EventFilter(), limit=100, scan_txs_max=100)
        assert _keys(page.events) == ALL[index + 1 :]


def test_pages_by_limit_join_up() -> None:
    reader = _reader(_build())
    for limit in (1, 2, 3):
        found: list[CommittedEvent] = []
        position = START
        for _ in range(10):
            page = reader.read_page(position, EventFilter(), limit=limit, scan_txs_max=100)
            found.extend(page.events)
            position = page.next
            if page.caught_up and not page.events:
                break
        assert _keys(found) == ALL, limit


def test_filters_and_the_scan_bound() -> None:
    reader = _reader(_build())
    by_entity = reader.read_page(START, EventFilter(entity="a"), limit=100, scan_txs_max=100)
    assert _keys(by_entity.events) == [(1, 0, 0), (2, 1, 0)]
    by_signer = reader.read_page(START, EventFilter(entity="signer-2-1"), limit=100, scan_txs_max=100)
    assert _keys(by_signer.events) == [(2, 1, 0), (2, 1, 1)]
    by_module = reader.read_page(START, EventFilter(module="governance"), limit=100, scan_txs_max=100)
    assert _keys(by_module.events) == [(3, 0, 0)]
    # With a bound of one transaction, a read covers one height at a time and says where it stopped.
    position, steps = START, 0
    found: list[CommittedEvent] = []
    while True:
        page = reader.read_page(position, EventFilter(module="governance"), limit=100, scan_txs_max=1)
        found.extend(page.events)
        position, steps = page.next, steps + 1
        if page.caught_up:
            break
        assert page.next == Position(steps + 1, 0, 0)
    assert _keys(found) == [(3, 0, 0)] and steps == 3


def test_the_cache_is_bounded_and_serves_repeated_reads() -> None:
    ledger = _build()
    reader = _reader(ledger, cache_events_max=4)
    reader.read_page(START, EventFilter(), limit=100, scan_txs_max=100)
    assert ledger.block_reads == 3
    reader.read_page(Position(3, 0, 0), EventFilter(), limit=100, scan_txs_max=100)
    assert ledger.block_reads == 3  # the newest height is still cached
    reader.read_page(START, EventFilter(), limit=100, scan_txs_max=100)
    assert ledger.block_reads > 3  # the oldest were evicted to stay within 4 entries


# ---------------------------------------------------------------- cursors bound to the chain


def test_a_bound_cursor_round_trips_and_keeps_the_order_of_positions() -> None:
    first, second = Position(7, 0xAB, 0xCD), Position(7, 0xAB, 0xCE)
    text = encode_bound_cursor(first, CHAIN_TAG)
    assert len(text) == BOUND_CURSOR_CHARS and text == text.lower() and text.startswith("02")
    assert decode_bound_cursor(text, CHAIN_TAG) == first
    assert text < encode_bound_cursor(second, CHAIN_TAG)


def test_an_unbound_cursor_of_the_old_form_is_still_a_position() -> None:
    assert decode_bound_cursor(encode_cursor(Position(9, 1, 2)), CHAIN_TAG) == Position(9, 1, 2)


GOOD = encode_bound_cursor(Position(7, 0xAB, 0xCD), CHAIN_TAG)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (encode_bound_cursor(Position(7, 1, 2), b"\xee" * 8), "another chain"),
        (GOOD.upper(), "lowercase hex"),
        ("zz" + GOOD[2:], "lowercase hex"),
        ("03" + GOOD[2:], "version 3"),
        (encode_bound_cursor(Position(0, 0, 0), CHAIN_TAG), "height is at least 1"),
        (GOOD[:-2], "characters"),
        (GOOD + "00", "characters"),
    ],
)
def test_a_cursor_of_another_chain_or_form_is_refused(text: str, message: str) -> None:
    with pytest.raises(BadCursorError) as refused:
        decode_bound_cursor(text, CHAIN_TAG)
    assert message in refused.value.message and refused.value.code == "bad_cursor"


def test_the_reader_gives_cursors_of_its_chain() -> None:
    reader = EventReader(lambda: cast(LedgerReader, _build()), cache_events_max=100)
    first = json.loads(reader.get_height_events(1)[0].text)
    assert first["cursor"] == encode_bound_cursor(Position(1, 0, 1), CHAIN_TAG)
    assert reader.decode_cursor(first["cursor"]) == Position(1, 0, 1)
