"""The state overlay and the chained state commitment."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chainnode.app.state import Overlay, compute_genesis_state_root, compute_state_root
from chainnode.core import codec, crypto, merkle, types
from tests.factories import MapState  # the base under test is the overlay, not this

ROOT = crypto.sha256(b"previous")
WRITE_SET: dict[bytes, bytes | None] = {b"a": b"1", b"b": None, b"c/x": b"3", b"id/e/x": b""}


def test_state_root_matches_its_definition() -> None:
    leaves = [codec.encode((key, WRITE_SET[key])) for key in sorted(WRITE_SET)]
    expected = crypto.hash_tagged("state", ROOT + merkle.compute_root(leaves))
    assert compute_state_root(ROOT, WRITE_SET) == expected


def test_state_root_is_independent_of_insertion_order() -> None:
    rng = random.Random(7)
    items = list(WRITE_SET.items())
    expected = compute_state_root(ROOT, WRITE_SET)
    for _ in range(20):
        rng.shuffle(items)
        assert compute_state_root(ROOT, dict(items)) == expected


@pytest.mark.parametrize(
    "changed",
    [
        {**WRITE_SET, b"a": b"2"},  # another value
        {**WRITE_SET, b"b": b""},  # empty value instead of a deletion
        {**WRITE_SET, b"a": None},  # deletion instead of a value
        {**WRITE_SET, b"d": b"4"},  # one more key
        {k: v for k, v in WRITE_SET.items() if k != b"c/x"},  # one key less
        {(b"A" if k == b"a" else k): v for k, v in WRITE_SET.items()},  # a renamed key
        {},  # nothing written
    ],
)
def test_state_root_is_sensitive_to_any_change(changed: dict[bytes, bytes | None]) -> None:
    assert compute_state_root(ROOT, changed) != compute_state_root(ROOT, WRITE_SET)


def test_state_root_chains_over_the_previous_root() -> None:
    assert compute_state_root(crypto.sha256(b"other"), WRITE_SET) != compute_state_root(ROOT, WRITE_SET)
    first = compute_state_root(ROOT, {b"k": b"1"})
    second = compute_state_root(first, {b"k": b"2"})
    # The same final value reached by another history commits differently.
    direct = compute_state_root(ROOT, {b"k": b"2"})
    assert second != direct
    assert compute_state_root(first, {b"k": b"2"}) == second


def test_genesis_state_root_starts_from_zero() -> None:
    initial = {b"id/e/x": b"record", b"val/set": b"validators"}
    assert compute_genesis_state_root(initial) == compute_state_root(types.ZERO_HASH, dict(initial))
    assert compute_genesis_state_root(initial) != compute_genesis_state_root({})


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.binary(max_size=8), st.one_of(st.none(), st.binary(max_size=8)), max_size=20))
def test_state_root_order_independence_property(write_set: dict[bytes, bytes | None]) -> None:
    reversed_order = dict(reversed(list(write_set.items())))
    assert compute_state_root(ROOT, reversed_order) == compute_state_root(ROOT, write_set)


def test_overlay_reads_its_writes_then_the_base() -> None:
    base = MapState({b"a": b"base-a", b"b": b"base-b"})
    overlay = Overlay(base)
    overlay.put(b"a", b"new-a")
    overlay.delete(b"b")
    overlay.put(b"c", b"new-c")
    assert overlay.get_state(b"a") == b"new-a"
    assert overlay.get_state(b"b") is None
    assert overlay.get_state(b"c") == b"new-c"
    assert overlay.get_state(b"zz") is None
    assert base.values == {b"a": b"base-a", b"b": b"base-b"}, "the base is never written"
    assert list(overlay.write_set().items()) == [(b"a", b"new-a"), (b"b", None), (b"c", b"new-c")]


def test_child_overlay_merges_on_success_and_is_dropped_on_failure() -> None:
    base = MapState({b"a": b"0"})
    block = Overlay(base)
    succeeded = block.child()
    succeeded.put(b"a", b"1")
    assert block.get_state(b"a") == b"0", "a child's writes are invisible before the merge"
    succeeded.merge_into_parent()
    assert block.get_state(b"a") == b"1"

    failed = block.child()
    failed.put(b"a", b"2")
    failed.delete(b"x")
    assert failed.get_state(b"a") == b"2"
    del failed
    assert block.write_set() == {b"a": b"1"}

    nested = block.child()
    assert nested.get_state(b"a") == b"1", "a child reads its parent's pending writes"
    nested.delete(b"a")
    nested.merge_into_parent()
    assert block.write_set() == {b"a": None}
    assert block.get_state(b"a") is None


def test_merging_a_root_overlay_is_a_program_error() -> None:
    with pytest.raises(AssertionError):
        Overlay(MapState({})).merge_into_parent()
