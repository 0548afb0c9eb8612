"""The state that governance reads besides its proposals (the identity records of entities, zones
and the council, the validator set and its history, the chain parameters) and the one writer of
the validator set.

Theory of operation: every reader is a point read that decodes one value with the record's
strict decoder; only genesis and the state machine write these keys, so a value that does not
decode is a corrupt data directory (`StorageError`), never a failed transaction.  The validator
history is one entry per change (`val/from/<h>`) plus the ascending list of those heights
(`val/changes`), so the set that certifies any height is found with two point reads;
`apply_validator_set` is its one writer.  The layout is in `chainnode.app.governance`'s theory
of operation.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar

from chainnode.app import genesis
from chainnode.app.state import Event, Overlay, StateReader
from chainnode.core import codec, identity_records, quorum
from chainnode.core.codec import expect_int, expect_str, expect_tuple
from chainnode.core.errors import DecodeError, StorageError

_VALIDATOR_CHANGES_KEY = b"val/changes"

_Record = TypeVar("_Record")


# Decoded records by (decoder, stored bytes), oldest first.  A record decodes the same way
# every time (the decoders are pure, the records frozen), and the same few (recipients' entity
# records, their zones, the chain parameters) are read for many transactions: an asset mint or
# transfer decoded its recipient's entity and zone records anew each time (~25 us each).
DECODED_RECORDS_MAX = 4096
_decoded: OrderedDict[tuple[Callable[[bytes], object], bytes], object] = OrderedDict()


def get_decoded(
    state: StateReader, key: bytes, decode: Callable[[bytes], _Record], what: str
) -> _Record | None:
    """The value at `key` decoded by `decode`; None if absent, `StorageError` if it does not decode."""
    stored = state.get_state(key)
    if stored is None:
        return None
    memo_key = (decode, stored)
    try:
        return _decoded[memo_key]  # type: ignore[return-value]  # stored by this decoder, below
    except KeyError:
        pass
    try:
        record = decode(stored)
    except DecodeError as error:
        # Only genesis and the state machine write these keys: a bad value is a corrupt data directory.
        raise StorageError(f"corrupt {what} in state: {error.message}") from error
    if len(_decoded) >= DECODED_RECORDS_MAX:
        _decoded.popitem(last=False)
    _decoded[memo_key] = record
    return record


def get_entity_record(state: StateReader, entity_id: str) -> identity_records.EntityRecord | None:
    return get_decoded(
        state,
        identity_records.entity_key(entity_id),
        identity_records.decode_entity_record,
        f"entity {entity_id!r}",
    )


def get_zone_record(state: StateReader, zone_id: str) -> identity_records.ZoneRecord | None:
    return get_decoded(
        state, identity_records.zone_key(zone_id), identity_records.decode_zone_record, f"zone {zone_id!r}"
    )


def get_council_member(state: StateReader, member_id: str) -> identity_records.CouncilRecord | None:
    return get_decoded(
        state,
        identity_records.council_key(member_id),
        identity_records.decode_council_record,
        "council member",
    )


def _decode_council(data: bytes) -> tuple[int, tuple[str, ...]]:
    value = expect_tuple(codec.decode(data), "council", 2)
    if len(value) != 2:
        raise DecodeError("council: expected (threshold, member ids)")
    members = tuple(expect_str(item, "council member id", 64) for item in expect_tuple(value[1], "members"))
    return expect_int(value[0], "council threshold", 1, max(1, len(members))), members


def get_council(state: StateReader) -> tuple[int, tuple[str, ...]] | None:
    """(threshold M, member ids) as written at genesis; None in a state without a council."""
    return get_decoded(state, identity_records.COUNCIL_KEY, _decode_council, "council")


def get_validator_set(state: StateReader) -> quorum.ValidatorSet:
    """The set that certifies the next block (the one stored at `identity_records.VALIDATOR_SET_KEY`)."""
    validators = get_decoded(
        state, identity_records.VALIDATOR_SET_KEY, quorum.decode_validator_set, "validator set"
    )
    if validators is None:
        raise StorageError("the state holds no validator set")
    return validators


def _decode_heights(data: bytes) -> tuple[int, ...]:
    return tuple(
        expect_int(item, "validator change height", 1) for item in expect_tuple(codec.decode(data), "heights")
    )


def get_validator_change_heights(state: StateReader) -> tuple[int, ...]:
    """Ascending heights from which a (new) validator set applies; always starts with 1."""
    return get_decoded(state, _VALIDATOR_CHANGES_KEY, _decode_heights, "validator change heights") or (1,)


def get_validator_set_at(state: StateReader, height: int) -> quorum.ValidatorSet:
    """The validator set that certifies block `height` (heights below 1 read as 1).

    Exact for every height up to the next one to be committed; for later heights it is the
    latest known set, which a later change may still replace.
    """
    heights = get_validator_change_heights(state)
    start = heights[max(0, bisect.bisect_right(heights, max(height, 1)) - 1)]
    validators = get_decoded(
        state, identity_records.validator_history_key(start), quorum.decode_validator_set, "validator history"
    )
    if validators is None:
        if heights == (1,):
            # A state written before the history existed (an older data directory): the set has
            # never changed, so the current one is the answer for every height.
            return get_validator_set(state)
        raise StorageError(f"the validator history has no entry for height {start}")
    return validators


def get_chain_params(state: StateReader, fallback: genesis.ChainParams | None = None) -> genesis.ChainParams:
    """The parameters in force: the last `set_params`, else genesis', else `fallback` or defaults."""
    params = get_decoded(
        state, identity_records.CHAIN_PARAMS_KEY, genesis.decode_chain_params, "chain parameters"
    )
    if params is not None:
        return params
    return fallback if fallback is not None else genesis.ChainParams()


def apply_validator_set(overlay: Overlay, height: int, validators: quorum.ValidatorSet) -> Event:
    """Make `validators` the set from `height + 1` on (the block at `height` is being executed)."""
    encoded = validators.encode()
    overlay.put(identity_records.VALIDATOR_SET_KEY, encoded)
    overlay.put(identity_records.validator_history_key(height + 1), encoded)
    heights = get_validator_change_heights(overlay)
    if heights[-1] != height + 1:
        assert heights[-1] < height + 1, "validator changes are recorded in height order"
        overlay.put(_VALIDATOR_CHANGES_KEY, codec.encode((*heights, height + 1)))
    return ("validators.changed", (height + 1, validators.size, validators.compute_hash()))
