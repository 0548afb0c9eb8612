"""Event cursors (strict, typed errors), the shape of events and their filters: pure."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chainnode.app import events
from chainnode.app.events import BadCursorError, EventFilter, Position, decode_cursor, encode_cursor
from chainnode.core.errors import RemoteError

positions = st.builds(
    Position,
    st.integers(min_value=1, max_value=2**64 - 1),
    st.integers(min_value=0, max_value=2**32 - 1),
    st.integers(min_value=0, max_value=2**32 - 1),
)


@given(positions)
def test_cursor_round_trip(position: Position) -> None:
    text = encode_cursor(position)
    assert decode_cursor(text) == position
    assert len(text) == events.CURSOR_CHARS and text == text.lower()


@given(positions, positions)
def test_cursor_text_keeps_the_order_of_positions(first: Position, second: Position) -> None:
    assert (encode_cursor(first) < encode_cursor(second)) == (first < second)


def test_positions_order_as_the_chain_commits() -> None:
    assert Position(1, 5, 9) < Position(2, 0, 0) < Position(2, 1, 0) < Position(2, 1, 1)
    assert Position(3, 4, 5).get_next() == Position(3, 4, 6)
    assert Position(1, 0, 0) == events.START


GOOD = encode_cursor(Position(7, 0xAB, 0xCD))


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        (GOOD[:-1], "short"),
        (GOOD + "0", "long"),
        (GOOD.upper(), "uppercase"),
        (GOOD[:-2] + "zz", "not hex"),
        (GOOD[:-2] + "é0"[:2], "not ascii"),
        ("02" + GOOD[2:], "unknown version"),
        (encode_cursor(Position(7, 0, 0)).replace("0000000000000007", "0000000000000000", 1), "height 0"),
        (" " + GOOD[1:], "space"),
        ("0x" + GOOD[2:], "prefix"),
    ],
)
def test_bad_cursors_are_refused(text: str, why: str) -> None:
    with pytest.raises(BadCursorError) as refused:
        decode_cursor(text)
    assert refused.value.code == "bad_cursor", why


@given(st.text(max_size=40))
def test_any_text_decodes_or_is_refused_typed(text: str) -> None:
    try:
        position = decode_cursor(text)
    except BadCursorError:
        return
    assert encode_cursor(position) == text  # one text per position: nothing else is accepted


@pytest.mark.parametrize(
    ("name", "attributes", "signer", "entity", "keys"),
    [
        ("records.put", ("pku", "lab", 3), "pku", "pku", ("lab",)),
        ("records.put_sector", ("health", "beds", 2, "pku"), "pku", "pku", ("health", "beds")),
        ("authority.registered", ("ruc", "beijing", 99), "zone:beijing", "ruc", ("beijing",)),
        (
            "governance.proposed",
            (4, "add_validator", "moe", 100),
            "council:moe",
            "moe",
            ("4", "add_validator"),
        ),
        ("governance.rejected", (4,), "council:moe", "council:moe", ("4",)),
        ("validators.changed", (5, 4, b"\x00"), "council:moe", "council:moe", ()),
        # Not in the table: about the signer, keyed by its other string attributes.
        ("assets.transfer", ("col", 7, "pku", "ruc"), "pku", "pku", ("col", "ruc")),
        # A shape whose attributes are shorter or of another type than the table says.
        ("records.put", (), "pku", "pku", ()),
        ("records.put", (b"x", True), "pku", "pku", ()),
    ],
)
def test_entity_and_keys(
    name: str, attributes: tuple[object, ...], signer: str, entity: str, keys: tuple[str, ...]
) -> None:
    assert events.compute_entity_and_keys(name, attributes, signer) == (entity, keys)


def test_split_name() -> None:
    assert events.split_name("records.put") == ("records", "put")
    assert events.split_name("governance.zone_admitted") == ("governance", "zone_admitted")
    assert events.split_name("odd") == ("odd", "")


@pytest.mark.parametrize(
    ("event_filter", "module", "entity", "signer", "expected"),
    [
        (EventFilter(), "records", "pku", "pku", True),
        (EventFilter(module="records"), "records", "pku", "pku", True),
        (EventFilter(module="records"), "assets", "pku", "pku", False),
        (EventFilter(module="record"), "records", "pku", "pku", False),
        (EventFilter(entity="ruc"), "authority", "ruc", "zone:beijing", True),
        (EventFilter(entity="zone:beijing"), "authority", "ruc", "zone:beijing", True),
        (EventFilter(entity="pku"), "authority", "ruc", "zone:beijing", False),
        (EventFilter(module="authority", entity="ruc"), "authority", "ruc", "zone:beijing", True),
        (EventFilter(module="records", entity="ruc"), "authority", "ruc", "zone:beijing", False),
    ],
)
def test_filters(event_filter: EventFilter, module: str, entity: str, signer: str, expected: bool) -> None:
    assert event_filter.matches(module, entity, signer) is expected


def test_filter_values() -> None:
    assert events.parse_filter_value(None, "module") is None
    assert events.parse_filter_value("", "module") is None
    assert events.parse_filter_value("records", "module") == "records"
    for bad in ("x" * 129, "a\0b"):
        with pytest.raises(RemoteError) as refused:
            events.parse_filter_value(bad, "module")
        assert refused.value.code == "bad_request"


def test_the_shapes_name_attributes_the_modules_declare() -> None:
    """Every event the assets module declares has a shape whose positions exist."""
    from chainnode.app import assets

    for name, attributes in assets.EVENTS.items():
        shape = events.EVENT_SHAPES[name]
        assert shape.entity is None or shape.entity < len(attributes), name
        assert all(index < len(attributes) for index in shape.keys), name
    transfer = ("trade-certs/lc-1", "baic-motor", "icbc-shanghai", 1)
    assert events.compute_entity_and_keys("assets.transferred", transfer, "baic-motor") == (
        "icbc-shanghai",
        ("trade-certs/lc-1",),
    )
