"""Committed events read back from the block store, by height, with the recent heights cached.

Theory of operation: the events of a height are its receipts' events, read from the ledger
(one block decode and one receipt read per transaction) and encoded as JSON once, when a
reader first asks for that height; `EventReader` keeps the recent heights' events in a cache
bounded by a count of events, so every subscriber and long poll of the same height shares one
read.  `read_page` scans forward from a cursor and stops after about `scan_txs_max`
transactions, so a filtered read of a long chain is bounded and goes on from its `next` cursor.
Nothing here does I/O beyond the ledger reads; the HTTP and websocket endpoints over it are
`chainnode.api.events`'.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from chainnode.api.forms import compute_json_value
from chainnode.api.service import LedgerReader
from chainnode.app import events as chain_events
from chainnode.core import types
from chainnode.core.errors import StorageError


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
) -> tuple[str, str, str]:
    module, action = chain_events.split_name(name)
    entity, keys = chain_events.compute_entity_and_keys(name, attributes, tx.signer)
    body = {
        "cursor": chain_events.encode_cursor(position.get_next()),
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
                    position, name, attributes, tx, block.header.timestamp_ms
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
