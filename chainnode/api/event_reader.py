"""Committed events read back from the block store, by height, with the recent heights cached.

Theory of operation: the events of a height are its receipts' events, read from the ledger
(one block decode and one receipt read per transaction) and encoded as JSON once, when a
reader first asks for that height; `EventReader` keeps the recent heights' events in a cache
bounded by a count of events, so every subscriber and long poll of the same height shares one
read.  `read_page` scans forward from a cursor and stops after about `scan_txs_max`
transactions, so a filtered read of a long chain is bounded and goes on from its `next` cursor.
Nothing here does I/O beyond the ledger reads; the HTTP and websocket endpoints over it are
`chainnode.api.events`'.

Cursors bound to the chain.  A position alone (`chainnode.app.events.encode_cursor`, version 1)
means something on every chain, so a cursor kept from another chain's node (a relayer or a
subscriber pointed at the wrong URL, a chain reset with the same id) would be read at a
meaningless position without a word.  The cursors this node gives out are version 2: the
position followed by the first `CHAIN_TAG_BYTES` bytes of the chain's genesis hash (the hash
of its genesis file, so it tells apart chains that share an id).  `decode_cursor` refuses a
version 2 cursor of another chain with `bad_cursor`, naming both chains' tags; a version 1
cursor is still taken as a position (clients that saved one keep working), and every answer
hands them a version 2 cursor to go on from.
"""

from __future__ import annotations

import binascii
import json
import struct
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from chainnode.api.forms import compute_json_value
from chainnode.api.service import LedgerReader
from chainnode.app import events as chain_events
from chainnode.core import types
from chainnode.core.errors import StorageError

BOUND_CURSOR_VERSION = 2
CHAIN_TAG_BYTES = 8
# version, height, tx index, event index, the chain's tag (the genesis hash's first bytes)
_BOUND_CURSOR = struct.Struct(f">BQII{CHAIN_TAG_BYTES}s")
BOUND_CURSOR_CHARS = 2 * _BOUND_CURSOR.size


def compute_chain_tag(genesis_hash: bytes) -> bytes:
    """The chain's tag in its cursors: the first `CHAIN_TAG_BYTES` bytes of its genesis hash."""
    return genesis_hash[:CHAIN_TAG_BYTES]


def encode_bound_cursor(position: chain_events.Position, chain_tag: bytes) -> str:
    """A cursor of `position` on the chain tagged `chain_tag` (version 2: see the docstring)."""
    return _BOUND_CURSOR.pack(
        BOUND_CURSOR_VERSION, position.height, position.tx_index, position.event_index, chain_tag
    ).hex()


def decode_bound_cursor(text: str, chain_tag: bytes) -> chain_events.Position:
    """The position a cursor names on the chain tagged `chain_tag`: a version 2 cursor of this
    chain, or a version 1 cursor (unbound); `BadCursorError` for anything else, with a cursor
    of another chain told apart."""
    if len(text) != BOUND_CURSOR_CHARS:
        return chain_events.decode_cursor(text)
    shown = text[:60]
    if not text.isascii() or text != text.lower():
        raise chain_events.BadCursorError(f"a cursor is lowercase hex, got {shown!r}")
    try:
        data = binascii.unhexlify(text)
    except (binascii.Error, ValueError):
        raise chain_events.BadCursorError(f"a cursor is lowercase hex, got {shown!r}") from None
    version, height, tx_index, event_index, tag = _BOUND_CURSOR.unpack(data)
    if version != BOUND_CURSOR_VERSION:
        raise chain_events.BadCursorError(f"cursor version {version} is not {BOUND_CURSOR_VERSION}")
    if tag != chain_tag:
        raise chain_events.BadCursorError(
            f"the cursor is from another chain (genesis hash {tag.hex()}...); "
            f"this node's chain has genesis hash {chain_tag.hex()}..."
        )
    if height < 1:
        raise chain_events.BadCursorError("a cursor's height is at least 1")
    return chain_events.Position(height, tx_index, event_index)


@dataclass(frozen=True, slots=True)
class CommittedEvent:
    """One event with what filters read, and its JSON object encoded once."""

    position: chain_events.Position
    module: str
    entity: str
    signer: str
    text: str


@dataclass(frozen=True, slots=True)
class Page:
    """What one read found: matching events, where to go on, the head it read up to."""

    events: list[CommittedEvent]
    next: chain_events.Position
    head: int
    caught_up: bool  # read everything up to the head


def _compute_event_text(
    position: chain_events.Position,
    name: str,
    attributes: tuple[object, ...],
    tx: types.Transaction,
    timestamp_ms: int,
    chain_tag: bytes,
) -> tuple[str, str, str]:
    module, action = chain_events.split_name(name)
    entity, keys = chain_events.compute_entity_and_keys(name, attributes, tx.signer)
    body = {
        "cursor": encode_bound_cursor(position.get_next(), chain_tag),
        "height": position.height,
        "tx_index": position.tx_index,
        "event_index": position.event_index,
        "tx_hash": tx.hash.hex(),
        "timestamp_ms": timestamp_ms,
        "signer": tx.signer,
        "name": name,
        "module": module,
        "action": action,
        "entity": entity,
        "keys": list(keys),
        "attributes": compute_json_value(attributes),
    }
    return module, entity, json.dumps(body, separators=(",", ":"))


class EventReader:
    """Events by height from the ledger, with the recent heights cached (see the docstring)."""

    def __init__(self, get_ledger: Callable[[], LedgerReader], cache_events_max: int) -> None:
        self._get_ledger = get_ledger
        self._cache_events_max = cache_events_max
        self._cache: OrderedDict[int, tuple[CommittedEvent, ...]] = OrderedDict()
        self._cached_events = 0
        self._chain_tag: bytes | None = None

    @property
    def chain_tag(self) -> bytes:
        """This chain's tag in cursors (its genesis hash never changes: read once)."""
        if self._chain_tag is None:
            self._chain_tag = compute_chain_tag(self._get_ledger().get_genesis_hash())
        return self._chain_tag

    def encode_cursor(self, position: chain_events.Position) -> str:
        """The cursor of `position` on this chain."""
        return encode_bound_cursor(position, self.chain_tag)

    def decode_cursor(self, text: str) -> chain_events.Position:
        """The position of a cursor of this chain (or an unbound one); `BadCursorError` else."""
        return decode_bound_cursor(text, self.chain_tag)

    def get_height_events(self, height: int) -> tuple[CommittedEvent, ...]:
        """Every event of a committed height, in order."""
        cached = self._cache.get(height)
        if cached is not None:
            self._cache.move_to_end(height)
            return cached
        ledger = self._get_ledger()
        encoded = ledger.get_block(height)
        if encoded is None:
            raise StorageError(f"no block at committed height {height}")
        block = types.decode_block(encoded, check_body=False)
        found: list[CommittedEvent] = []
        for tx_index, tx in enumerate(block.transactions):
            receipt_bytes = ledger.get_receipt(height, tx_index)
            if receipt_bytes is None:
                raise StorageError(f"no receipt at committed height {height}, index {tx_index}")
            receipt = types.decode_receipt(receipt_bytes)
            for event_index, (name, attributes) in enumerate(receipt.events):
                position = chain_events.Position(height, tx_index, event_index)
                module, entity, text = _compute_event_text(
                    position, name, attributes, tx, block.header.timestamp_ms, self.chain_tag
                )
                found.append(CommittedEvent(position, module, entity, tx.signer, text))
        result = tuple(found)
        self._cache[height] = result
        self._cached_events += len(result) + 1
        while self._cached_events > self._cache_events_max and len(self._cache) > 1:
            _, evicted = self._cache.popitem(last=False)
            self._cached_events -= len(evicted) + 1
        return result

    def read_page(
        self,
        start: chain_events.Position,
        event_filter: chain_events.EventFilter,
        *,
        limit: int,
        scan_txs_max: int,
    ) -> Page:
        """Up to `limit` matching events at `start` and after, scanning at most about
        `scan_txs_max` transactions' receipts."""
        head = self._get_ledger().get_head().height
        if start.height > head:
            return Page([], start, head, caught_up=True)
        found: list[CommittedEvent] = []
        scanned = 0
        height = start.height
        while height <= head:
            height_events = self.get_height_events(height)
            for event in height_events:
                if event.position < start:
                    continue
                if event_filter.matches(event.module, event.entity, event.signer):
                    found.append(event)
                    if len(found) >= limit:
                        return Page(found, event.position.get_next(), head, caught_up=False)
            scanned += len(height_events) + 1
            height += 1
            if scanned >= scan_txs_max:
                break
        return Page(found, chain_events.Position(height, 0, 0), head, caught_up=height > head)
