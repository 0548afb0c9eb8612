"""Committed events as subscribers read them: positions and cursors, the shape of each event
(module, action, entity, keys), and filters.  Pure: no I/O, no clock.

Theory of operation
-------------------
Events are not stored apart from the receipts: a receipt holds the `(name, attributes)`
events its transaction emitted (none when it failed), and the block store keeps the receipts
of a height under height-ordered keys.  So an event is named by where it sits,
`Position(height, tx_index, event_index)`, and the order of positions (lexicographic) is the
order in which the chain committed the events.  Every node that committed the same blocks
has the same events at the same positions, so a position read from one node resumes on
another.

A cursor is a position written as an opaque string: `encode_cursor` / `decode_cursor`.  A
reader passes a cursor as `from` and gets the events at that position and after it; each
event carries the cursor of the position just past it, so resuming from the last event
received yields the next one and never that one again.  That is all "exactly once, in order"
needs from the server.  Positions past a transaction's last event or a block's last
transaction are legal: they mean "the first event after".  Decoding is strict (one version
tag, fixed length, lowercase hex only, height at least 1): a string the node did not make is
refused with `BadCursorError` rather than read as some other position.

The shape of an event: `name` is `<module>.<action>`; `entity` is the entity the event is
about and `keys` the identifiers it touches (a record key, a proposal id, an asset id),
taken from the attributes by `EVENT_SHAPES`.  An event whose name is not in the table is
about its transaction's signer and names its string attributes as keys; a module adds a line
to the table to say better.  The table is presentation only: it never changes what is
committed or hashed.
"""

from __future__ import annotations

import binascii
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from chainnode.core.errors import RemoteError

CURSOR_VERSION = 1
_CURSOR = struct.Struct(">BQII")  # version, height, tx index, event index
CURSOR_CHARS = 2 * _CURSOR.size
FILTER_CHARS_MAX = 128


class BadCursorError(RemoteError):
    """A `from` cursor that this node did not make (wrong length, alphabet or version)."""

    code = "bad_cursor"


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """Where an event sits in the chain; ordered as the chain committed them."""

    height: int  # the block, from 1
    tx_index: int  # the transaction in the block, from 0
    event_index: int  # the event in the transaction's receipt, from 0

    def get_next(self) -> Position:
        """The position just past this event (a cursor to it resumes after this event)."""
        return Position(self.height, self.tx_index, self.event_index + 1)


START = Position(1, 0, 0)  # before the first event of the chain


def encode_cursor(position: Position) -> str:
    """The opaque, stable string of `position` (lowercase hex of a versioned fixed layout)."""
    return _CURSOR.pack(CURSOR_VERSION, position.height, position.tx_index, position.event_index).hex()


def decode_cursor(text: str) -> Position:
    """The position a cursor names; `BadCursorError` for anything `encode_cursor` did not make."""
    shown = text[:40]
    if len(text) != CURSOR_CHARS or not text.isascii() or text != text.lower():
        raise BadCursorError(f"a cursor is {CURSOR_CHARS} lowercase hex characters, got {shown!r}")
    try:
        data = binascii.unhexlify(text)
    except (binascii.Error, ValueError):
        raise BadCursorError(f"a cursor is {CURSOR_CHARS} lowercase hex characters, got {shown!r}") from None
    version, height, tx_index, event_index = _CURSOR.unpack(data)
    if version != CURSOR_VERSION:
        raise BadCursorError(f"cursor version {version} is not {CURSOR_VERSION}")
    if height < 1:
        raise BadCursorError("a cursor's height is at least 1")
    return Position(height, tx_index, event_index)


@dataclass(frozen=True, slots=True)
class EventShape:
    """Which attributes of an event name its entity and its keys."""

    entity: int | None  # position of the entity id among the attributes; None: the signer
    keys: tuple[int, ...]  # positions of the identifiers the event touches


# name -> shape.  Attribute orders are those the modules emit (see each module's `apply`).
EVENT_SHAPES: dict[str, EventShape] = {
    "records.put": EventShape(0, (1,)),  # (entity, key, version)
    "records.put_sector": EventShape(3, (0, 1)),  # (sector, key, version, writer)
    "records.written": EventShape(0, (1, 3)),  # (owner, key, version, writer)
    "records.anchored": EventShape(0, (1, 3)),  # (owner, key, version, writer, sha256)
    "records.granted": EventShape(0, (1, 2)),  # (owner, grantee, prefix, right, expires_at_height)
    "records.revoked": EventShape(0, (1, 2)),  # (owner, grantee, prefix)
    "records.read_marked": EventShape(0, (1, 3)),  # (owner, key, version, reader)
    "authority.registered": EventShape(0, (1,)),  # (entity, zone, not_after_ms)
    "authority.renewed": EventShape(0, ()),  # (entity, not_after_ms, rotated)
    "authority.revoked": EventShape(0, ()),  # (entity, from_height, reason)
    "validators.changed": EventShape(None, ()),  # (from_height, size, hash)
    "governance.proposed": EventShape(2, (0, 1)),  # (proposal, kind, member, expires_at_height)
    "governance.voted": EventShape(1, (0,)),  # (proposal, member, approve, approvals, needed)
    "governance.executed": EventShape(None, (0, 1)),  # (proposal, kind)
    "governance.rejected": EventShape(None, (0,)),  # (proposal,)
    "governance.failed": EventShape(None, (0,)),  # (proposal, message)
    "governance.zone_admitted": EventShape(None, (0,)),  # (zone, name)
    "governance.params_changed": EventShape(None, ()),
    # Digital assets (`chainnode.app.assets.EVENTS`): about the receiving or holding entity.
    "assets.collection_created": EventShape(1, (0, 2)),  # (collection, issuer, kind)
    "assets.minted": EventShape(1, (0,)),  # (asset_id, owner, amount)
    "assets.uri_set": EventShape(None, (0,)),  # (asset_id, uri)
    "assets.transferred": EventShape(2, (0,)),  # (asset_id, from, to, amount)
    "assets.approved": EventShape(2, (0,)),  # (asset_id, owner, spender)
    "assets.approved_all": EventShape(2, (0,)),  # (collection, owner, operator, approved)
    "assets.burned": EventShape(1, (0,)),  # (asset_id, holder, amount)
    "assets.frozen": EventShape(1, (0,)),  # (asset_id, holder, by)
    "assets.unfrozen": EventShape(1, (0,)),  # (asset_id, holder, by)
    "assets.paused": EventShape(1, (0,)),  # (collection, issuer)
    "assets.unpaused": EventShape(1, (0,)),  # (collection, issuer)
    # Cross-chain exchange (`chainnode.app.xchain.EVENTS`): keyed by the counterparty chain.
    "xchain.chain_registered": EventShape(None, (0,)),  # (chain, genesis_hash, validators)
    "xchain.chain_removed": EventShape(None, (0,)),  # (chain,)
    "xchain.client_updated": EventShape(None, (0, 2)),  # (chain, from, to, header_hash, skipped)
    "xchain.client_validators_changed": EventShape(None, (0, 1)),  # (chain, from_height, set_hash)
    "xchain.fork_detected": EventShape(None, (0, 1)),  # (chain, height, known_hash, other_hash)
    "xchain.imported": EventShape(5, (0, 1)),  # (chain, height, tx_hash, module, action, signer)
    "xchain.sent": EventShape(2, (0, 1)),  # (dest, seq, sender, payload_hash)
    "xchain.received": EventShape(2, (0, 1)),  # (source, seq, sender, payload_hash)
    "xchain.acknowledged": EventShape(None, (0, 1)),  # (dest, seq)
}


def _as_key(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (str, int)):
        return str(value)
    return None


def compute_entity_and_keys(name: str, attributes: Sequence[Any], signer: str) -> tuple[str, tuple[str, ...]]:
    """The entity an event is about and the keys it touches (see `EVENT_SHAPES`)."""
    shape = EVENT_SHAPES.get(name)
    if shape is None:
        keys = tuple(value for value in attributes if isinstance(value, str) and value != signer)
        return signer, keys
    entity = signer
    if shape.entity is not None and shape.entity < len(attributes):
        named = attributes[shape.entity]
        if isinstance(named, str):
            entity = named
    shaped: list[str] = []
    for index in shape.keys:
        if index < len(attributes):
            key = _as_key(attributes[index])
            if key is not None:
                shaped.append(key)
    return entity, tuple(shaped)


def split_name(name: str) -> tuple[str, str]:
    """(module, action) of an event name `<module>.<action>` (no dot: the action is empty)."""
    module, _, action = name.partition(".")
    return module, action


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which events a reader wants: a module and an entity (None: any)."""

    module: str | None = None
    entity: str | None = None

    def matches(self, module: str, entity: str, signer: str) -> bool:
        """The module must be equal; the entity must be the event's entity or its signer."""
        if self.module is not None and module != self.module:
            return False
        return self.entity is None or self.entity in (entity, signer)


def parse_filter_value(text: str | None, what: str) -> str | None:
    """A filter's value from a query string: None when absent or empty, else 1..128 characters."""
    if text is None or text == "":
        return None
    if len(text) > FILTER_CHARS_MAX or "\0" in text:
        raise RemoteError(f"{what} must be 1..{FILTER_CHARS_MAX} characters without NUL", code="bad_request")
    return text
