"""The stored records of the `assets` module: round trips, strict decoding, key order and
pagination, over a plain `MapState`."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chainnode.app import asset_state
from chainnode.app.asset_state import Asset, Collection, Freeze, ProvenanceEntry
from chainnode.app.state import Overlay
from chainnode.core import codec, tags
from chainnode.core.errors import DecodeError, StorageError
from tests.factories import MapState

HASH = bytes(range(1, 33))
TOKEN = st.from_regex(r"[A-Za-z0-9._-]{1,64}", fullmatch=True)
NAME = st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=64)
COUNT = st.integers(0, 2**32)


@given(
    TOKEN,
    NAME,
    st.sampled_from(asset_state.KINDS),
    st.sampled_from([b"", HASH]),
    st.booleans(),
    COUNT,
    COUNT,
)
def test_collection_round_trips(
    token: str, name: str, kind: str, schema_hash: bytes, paused: bool, tokens: int, units: int
) -> None:
    collection = Collection(
        "c-1", "issuer-1", name, "SYM", kind, schema_hash, 1, paused, tokens, 0, units, 3, 0
    )
    assert asset_state.decode_collection(collection.encode()) == collection


@given(TOKEN, st.integers(0, asset_state.AMOUNT_MAX), st.text(max_size=512), st.integers(1, 2**32 - 1))
def test_asset_and_provenance_round_trip(token: str, units: int, uri: str, history: int) -> None:
    asset = Asset("c-1", token, 7, HASH, uri, 3, units, "pku", "", history)
    assert asset_state.decode_asset(asset.encode()) == asset
    entry = ProvenanceEntry(history, "transfer", "pku", "pku", "fudan", units, 9, HASH)
    assert asset_state.decode_provenance_entry(entry.encode()) == entry
    assert asset_state.decode_freeze(Freeze("zone:beijing", 4).encode()) == Freeze("zone:beijing", 4)


GOOD_ASSET = Asset("c-1", "t-1", 1, HASH, "", 3, 1, "pku", "", 1)


@pytest.mark.parametrize(
    "fields",
    [
        (tags.TAG_ASSET_COLLECTION, 1, "c-1", "t-1", 1, HASH, "", 3, 1, "pku", "", 1),  # wrong tag
        (tags.TAG_ASSET, 2, "c-1", "t-1", 1, HASH, "", 3, 1, "pku", "", 1),  # unknown version
        (tags.TAG_ASSET, 1, "c-1", "t-1", 1, HASH, "", 3, 1, "pku", "", 1, 0),  # an extra field
        (tags.TAG_ASSET, 1, "c-1", "t-1", 1, HASH[:31], "", 3, 1, "pku", "", 1),  # short hash
        (tags.TAG_ASSET, 1, "c-1", "t-1", 0, HASH, "", 3, 1, "pku", "", 1),  # sequence 0
        (tags.TAG_ASSET, 1, "c-1", "t-1", 1, HASH, "", 3, True, "pku", "", 1),  # a bool for an int
        (tags.TAG_ASSET, 1, "c-1", "t-1", 1, HASH, "u" * 513, 3, 1, "pku", "", 1),  # oversize URI
    ],
)
def test_asset_decoding_is_strict(fields: tuple[object, ...]) -> None:
    with pytest.raises(DecodeError):
        asset_state.decode_asset(codec.encode(fields))


def test_provenance_actions_are_the_modules_own() -> None:
    entry = ProvenanceEntry(1, "transfer", "pku", "pku", "fudan", 1, 9, HASH)
    assert asset_state.decode_provenance_entry(entry.encode()) == entry
    with pytest.raises(DecodeError, match="provenance action"):
        asset_state.decode_provenance_entry(ProvenanceEntry(1, "steal", "x", "", "", 0, 9, HASH).encode())


def test_bad_stored_values_are_storage_errors_naming_the_record() -> None:
    state = MapState(
        {
            asset_state.compute_asset_key("c-1", "t-1"): GOOD_ASSET.encode() + b"\x00",  # trailing data
            asset_state.compute_balance_key("c-1", "t-1", "pku"): (0).to_bytes(8, "big"),  # an empty holding
            asset_state.compute_collection_key("c-1"): codec.encode((tags.TAG_ASSET_COLLECTION, 1)),
        }
    )
    for read in (
        lambda: asset_state.get_asset(state, "c-1", "t-1"),
        lambda: asset_state.get_balance(state, "c-1", "t-1", "pku"),
        lambda: asset_state.get_collection(state, "c-1"),
    ):
        with pytest.raises(StorageError, match="corrupt"):
            read()


def test_keys_sort_by_sequence_and_index_and_ids_never_collide() -> None:
    assert asset_state.compute_sequence_key("c", 2) < asset_state.compute_sequence_key("c", 256)
    assert asset_state.compute_history_key("c", "t", 9) < asset_state.compute_history_key("c", "t", 10)
    # NUL separates the parts and never occurs in an id: "c-1"/"2" and "c-12"/"" cannot meet.
    assert asset_state.compute_asset_key("c-1", "2") != asset_state.compute_asset_key("c-12", "")
    assert not asset_state.is_valid_token_id("a/b") and not asset_state.is_valid_token_id("a\x00b")
    assert not asset_state.is_valid_collection_id("Upper")


def test_owned_pages_follow_the_cursor() -> None:
    state = MapState({})
    overlay = Overlay(state)
    for collection_id, token_id in (("a", "2"), ("a", "10"), ("b", "1"), ("a-b", "x")):
        asset_state.put_balance(overlay, collection_id, token_id, "pku", 1)
    asset_state.put_balance(overlay, "a", "2", "fudan", 1)
    state.apply(overlay.write_set())
    seen: list[str] = []
    after = ""
    while True:
        page = asset_state.list_owned(state, "pku", after=after, limit=2)
        seen += [asset_state.compute_asset_id(h.collection_id, h.token_id) for h in page]
        if len(page) < 2:
            break
        after = seen[-1]
    assert seen == ["a/10", "a/2", "a-b/x", "b/1"]
    # Setting a holding to 0 removes it from the index.
    overlay = Overlay(state)
    asset_state.put_balance(overlay, "a", "2", "pku", 0)
    state.apply(overlay.write_set())
    assert [h.token_id for h in asset_state.list_owned(state, "pku", after="", limit=10)] == ["10", "x", "1"]
