"""The relayer's pure parts: which transactions it carries, which headers it sends, its state file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chainnode.app.events import Position, encode_cursor
from chainnode.cli.main import main
from chainnode.core.errors import ChainError, ConfigError
from chainnode.sdk.errors import ClientError
from chainnode.tools.relay import ClientUpdateError, RelayError, is_transient_failure
from chainnode.tools.relay_bench import compute_percentile
from chainnode.tools.relay_select import (
    RECEIVED_EVENT,
    SEND_EVENT,
    Selection,
    UpdateStep,
    plan_client_updates,
    select_transactions,
)
from chainnode.tools.relay_state import (
    STATE_VERSION,
    RelayState,
    load_relay_state,
    parse_relay_state,
    save_relay_state,
)

SOURCE = "chain-a"
DESTINATION = "chain-b"


def make_event(
    height: int,
    tx_index: int,
    event_index: int,
    name: str,
    *,
    entity: str = "hospital-01",
    signer: str = "hospital-01",
    attributes: tuple[Any, ...] = (),
) -> dict[str, Any]:
    """An event as `GET /v1/events` gives it (the fields the relayer reads)."""
    module, _, action = name.partition(".")
    return {
        "cursor": encode_cursor(Position(height, tx_index, event_index + 1)),
        "height": height,
        "tx_index": tx_index,
        "event_index": event_index,
        "tx_hash": f"{height:032x}{tx_index:032x}",
        "timestamp_ms": 1_700_000_000_000 + height,
        "signer": signer,
        "name": name,
        "module": module,
        "action": action,
        "entity": entity,
        "keys": [],
        "attributes": list(attributes),
    }


# ---------------------------------------------------------------- selection


def test_sends_to_the_destination_are_carried_and_sends_elsewhere_are_not() -> None:
    events = [
        make_event(3, 0, 0, SEND_EVENT, attributes=(DESTINATION, 1, "hospital-01", "00")),
        make_event(3, 1, 0, SEND_EVENT, attributes=("chain-c", 1, "hospital-01", "00")),
        make_event(4, 0, 0, "records.put", attributes=("hospital-01", "k", 1)),
    ]
    selected = select_transactions(events, Selection(DESTINATION))
    assert [(item.height, item.tx_index) for item in selected] == [(3, 0)]


def test_deliveries_of_the_destinations_messages_are_carried_back_as_acknowledgements() -> None:
    events = [
        make_event(5, 0, 0, "xchain.imported", attributes=(DESTINATION, 3, "ab", "xchain", "send", "x")),
        make_event(5, 0, 1, RECEIVED_EVENT, attributes=(DESTINATION, 1, "court-02", "00")),
        make_event(5, 1, 0, "xchain.imported", attributes=("chain-c", 3, "cd", "xchain", "send", "y")),
        make_event(5, 1, 1, RECEIVED_EVENT, attributes=("chain-c", 1, "court-03", "00")),
    ]
    selected = select_transactions(events, Selection(DESTINATION))
    assert [(item.height, item.tx_index, item.cursor) for item in selected] == [(5, 0, events[1]["cursor"])]


@pytest.mark.parametrize(
    ("module", "entity", "expected"),
    [
        ("records", None, [(4, 0), (5, 0)]),
        ("records", "hospital-01", [(4, 0)]),
        (None, "bank-02", [(5, 0), (6, 0)]),  # the event's entity or its signer
        ("assets", None, [(6, 0)]),
        (None, None, []),
    ],
)
def test_module_and_entity_select_like_the_events_filter(
    module: str | None, entity: str | None, expected: list[tuple[int, int]]
) -> None:
    events = [
        make_event(4, 0, 0, "records.put", attributes=("hospital-01", "k", 1)),
        make_event(5, 0, 0, "records.put", entity="bank-02", signer="bank-02"),
        make_event(6, 0, 0, "assets.minted", entity="school-03", signer="bank-02"),
    ]
    selected = select_transactions(events, Selection(DESTINATION, module, entity))
    assert [(item.height, item.tx_index) for item in selected] == expected


def test_a_transaction_is_selected_once_with_the_cursor_past_its_last_event() -> None:
    events = [
        make_event(7, 2, 0, "records.put"),
        make_event(7, 2, 1, "records.granted"),
        make_event(7, 3, 0, "governance.voted", entity="council-01", signer="council-01"),
    ]
    (selected,) = select_transactions(events, Selection(DESTINATION, "records", None))
    assert selected.tx_hash == events[0]["tx_hash"]
    assert selected.cursor == events[1]["cursor"]
    assert selected.timestamp_ms == events[0]["timestamp_ms"]


def test_the_last_relayed_transaction_is_skipped_when_its_events_straddle_pages() -> None:
    first_page = [make_event(8, 0, 0, "records.put")]
    second_page = [make_event(8, 0, 1, "records.written"), make_event(9, 0, 0, "records.put")]
    selection = Selection(DESTINATION, "records", None)
    (carried,) = select_transactions(first_page, selection)
    again = select_transactions(second_page, selection, skip=carried.tx_hash)
    assert [item.height for item in again] == [9]


# ---------------------------------------------------------------- light-client updates


@pytest.mark.parametrize(
    ("client", "target", "changes", "expected"),
    [
        # Unchanged set: one header straight to the target, however far.
        (0, 40, [], [UpdateStep(40, None)]),
        (40, 40, [], []),
        (41, 40, [], []),
        # Block 10 wrote a new set: header 10 by the old set, 11 with the proof, then the target.
        (3, 40, [10], [UpdateStep(10, None), UpdateStep(11, 10), UpdateStep(40, None)]),
        # The client is at the change already: straight to the header after it, with the proof.
        (10, 40, [10], [UpdateStep(11, 10), UpdateStep(40, None)]),
        # The change is followed already.
        (11, 40, [10], [UpdateStep(40, None)]),
        # A change at the target is effective after it: not needed yet.
        (3, 10, [10], [UpdateStep(10, None)]),
        # The target is the first header of the new set.
        (3, 11, [10], [UpdateStep(10, None), UpdateStep(11, 10)]),
        # Two changes in a row (4 -> 5 -> 4): each proven at its own height, none skipped.
        (
            0,
            30,
            [12, 13, 20],
            [
                UpdateStep(12, None),
                UpdateStep(13, 12),
                UpdateStep(14, 13),
                UpdateStep(20, None),
                UpdateStep(21, 20),
                UpdateStep(30, None),
            ],
        ),
        # Duplicates and order in the list do not matter.
        (
            0,
            15,
            [12, 5, 12],
            [
                UpdateStep(5, None),
                UpdateStep(6, 5),
                UpdateStep(12, None),
                UpdateStep(13, 12),
                UpdateStep(15, None),
            ],
        ),
    ],
)
def test_plan_client_updates(
    client: int, target: int, changes: list[int], expected: list[UpdateStep]
) -> None:
    assert plan_client_updates(client, target, changes) == expected


@given(
    client=st.integers(0, 60),
    target=st.integers(1, 80),
    changes=st.lists(st.integers(1, 80), max_size=8),
)
def test_every_plan_follows_the_light_client_rules(client: int, target: int, changes: list[int]) -> None:
    """Each step is above the last; a header that names a new set comes right after the block that
    wrote it, with that block's proof; no change in range is skipped; the target is reached."""
    steps = plan_client_updates(client, target, changes)
    height = client
    for step in steps:
        assert step.height > height
        crossed = [change for change in set(changes) if height <= change < step.height]
        if step.change_height is None:
            assert crossed == [], (step, crossed)
        else:
            assert (step.change_height, step.height) == (height, height + 1)
            assert crossed == [height]
        height = step.height
    assert height >= target


# ---------------------------------------------------------------- the state file


def test_a_missing_state_file_is_a_fresh_start(tmp_path: Path) -> None:
    state = load_relay_state(tmp_path / "relay.json", SOURCE, DESTINATION)
    assert state == RelayState(SOURCE, DESTINATION, None, "", 0)


def test_a_saved_state_loads_back_and_nothing_else_is_left_beside_it(tmp_path: Path) -> None:
    path = tmp_path / "relay.json"
    save_relay_state(path, RelayState(SOURCE, DESTINATION, "ab" * 21, "cd" * 32, 7))
    save_relay_state(path, RelayState(SOURCE, DESTINATION, "ef" * 21, "01" * 32, 9))
    assert load_relay_state(path, SOURCE, DESTINATION) == RelayState(
        SOURCE, DESTINATION, "ef" * 21, "01" * 32, 9
    )
    assert [item.name for item in tmp_path.iterdir()] == ["relay.json"]


def test_a_temporary_file_left_by_a_crash_does_not_change_what_loads(tmp_path: Path) -> None:
    path = tmp_path / "relay.json"
    save_relay_state(path, RelayState(SOURCE, DESTINATION, "ab" * 21, "", 3))
    (tmp_path / ".relay.json.x1y2.tmp").write_bytes(b'{"version": 1, "cursor": "torn')
    assert load_relay_state(path, SOURCE, DESTINATION).relayed == 3


def test_the_state_of_another_relay_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "relay.json"
    save_relay_state(path, RelayState(SOURCE, DESTINATION, None, "", 0))
    with pytest.raises(ConfigError) as refused:
        load_relay_state(path, SOURCE, "chain-c")
    assert refused.value.code == "relay_state_mismatch"


def test_a_state_that_cannot_be_written_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot write the relay state"):
        save_relay_state(tmp_path / "missing" / "relay.json", RelayState(SOURCE, DESTINATION, None, "", 0))


def _good_json() -> dict[str, Any]:
    return RelayState(SOURCE, DESTINATION, None, "", 0).to_json()


@pytest.mark.parametrize(
    "change",
    [
        {"version": STATE_VERSION + 1},
        {"relayed": -1},
        {"relayed": True},
        {"cursor": 5},
        {"last_relayed": None},
        {"extra": 1},
    ],
)
def test_a_state_that_was_not_written_by_the_relayer_is_refused(change: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        parse_relay_state({**_good_json(), **change})


@pytest.mark.parametrize("content", [b"", b"not json", b"[1, 2]", b"\xff\xfe"])
def test_an_unreadable_state_file_is_a_config_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "relay.json"
    path.write_bytes(content)
    with pytest.raises(ConfigError):
        load_relay_state(path, SOURCE, DESTINATION)


@given(
    cursor=st.none() | st.text(max_size=50),
    last=st.text(max_size=64),
    relayed=st.integers(0, 2**40),
)
def test_state_json_round_trips(cursor: str | None, last: str, relayed: int) -> None:
    state = RelayState(SOURCE, DESTINATION, cursor, last, relayed)
    assert parse_relay_state(json.loads(json.dumps(state.to_json()))) == state


# ---------------------------------------------------------------- the bench's figures and the command


@pytest.mark.parametrize(
    ("values", "percent", "expected"),
    [
        ([], 50, None),
        ([7], 99, 7),
        ([5, 1, 4, 2, 3], 50, 3),
        (list(range(1, 101)), 99, 99),
        (list(range(1, 101)), 100, 100),
        ([10, 20], 50, 10),
    ],
)
def test_percentiles_are_nearest_rank(values: list[int], percent: float, expected: int | None) -> None:
    assert compute_percentile(values, percent) == expected


@pytest.mark.parametrize(
    ("option", "value"),
    [("--page", "1001"), ("--batch", "0"), ("--threads", "64"), ("--wait-ms", "-1"), ("--retries", "-2")],
)
def test_relay_bounds_outside_their_range_are_usage_errors(
    option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["relay", "--from", "http://127.0.0.1:1", "--to", "http://127.0.0.1:2", "--identity", "x"]
    assert main([*argv, option, value]) == 2
    assert option in capsys.readouterr().err


def test_bench_without_a_writer_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "relay",
            "--from",
            "http://127.0.0.1:1",
            "--to",
            "http://127.0.0.1:2",
            "--identity",
            "x",
            "--bench",
            "5",
        ]
    )
    assert code == 2
    assert "--bench needs --writer" in capsys.readouterr().err


# ---------------------------------------------------------------- which failures are retried


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (ClientError("connection refused", code="unreachable"), True),
        (ClientError("no answer", code="timeout"), True),
        (ClientError("cut short", code="bad_response"), True),
        (ClientError("busy", code="mempool_full", status=503), True),
        (ClientError("slow down", code="too_many_requests", status=429), True),
        (ClientError("node failed", code="internal", status=500), True),
        (ClientError("not a proof", code="bad_proof"), False),
        (ClientError("bad cursor", code="bad_cursor", status=400), False),
        (ClientUpdateError("raced another relayer"), True),
        (RelayError("refused", code="import_refused"), False),
        (RelayError("not registered", code="unknown_chain"), False),
    ],
)
def test_only_failures_a_later_try_can_cure_are_retried(error: ChainError, retried: bool) -> None:
    assert is_transient_failure(error) is retried
