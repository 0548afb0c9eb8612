"""A page of a prefix listing costs its own size: the readers hand the cursor to `iter_state`
as a start key, so the state is read from the cursor on, not from the start of the prefix.

Each test counts the entries `iter_state` yields for a page deep inside a long listing; a
reader that walks from the start of the prefix and skips to the cursor reads hundreds."""

from __future__ import annotations

from collections.abc import Iterator

from chainnode.app import asset_state, records, records_sharing
from chainnode.app.state import Overlay
from chainnode.core import codec
from tests.factories import MapState
from tests.unit.test_records import DOCUMENT_SHA256, Chain, anchor_args

ENTRIES = 300
LIMIT = 10


class CountingState:
    """A state that counts the entries its listings yield."""

    def __init__(self, state: MapState) -> None:
        self.state = state
        self.entries_read = 0
        self.point_reads = 0

    def get_state(self, key: bytes) -> bytes | None:
        self.point_reads += 1
        return self.state.get_state(key)

    def iter_state(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        for item in self.state.iter_state(prefix, start=start):
            self.entries_read += 1
            yield item


def test_a_records_page_after_a_deep_cursor_reads_only_its_page() -> None:
    chain = Chain()
    keys = [f"r-{index:04d}" for index in range(ENTRIES)]
    chain.run(*(chain.tx("hospital", "put", key, b"v") for key in keys))
    counting = CountingState(chain.state)
    page = records.list_records(counting, "hospital", "r-", after_key=keys[250], limit=LIMIT)
    assert [item.key for item in page] == keys[251 : 251 + LIMIT]
    assert counting.entries_read <= LIMIT
    # The cursor need not be a key that exists, nor one inside the prefix.
    assert [
        item.key for item in records.list_records(counting, "hospital", "r-", after_key="r-0250x")
    ] == keys[251:]
    assert records.list_records(counting, "hospital", "r-", after_key="s") == []


def _holdings_state() -> MapState:
    """Holder `pku` holds one unit of each of ENTRIES tokens; token `t-0000` has ENTRIES holders."""
    state = MapState({})
    overlay = Overlay(state)
    for index in range(ENTRIES):
        asset_state.put_balance(overlay, "tickets", f"t-{index:04d}", "pku", 1)
        asset_state.put_balance(overlay, "tickets", "t-0000", f"holder-{index:04d}", 2)
    state.apply(overlay.write_set())
    return state


def test_a_page_of_owned_assets_after_a_deep_cursor_reads_only_its_page() -> None:
    counting = CountingState(_holdings_state())
    page = asset_state.list_owned(counting, "pku", after="tickets/t-0250", limit=LIMIT)
    assert [holding.token_id for holding in page] == [f"t-{index:04d}" for index in range(251, 251 + LIMIT)]
    assert counting.entries_read <= LIMIT


def test_a_page_of_holders_after_a_deep_cursor_reads_only_its_page() -> None:
    counting = CountingState(_holdings_state())
    page = asset_state.list_holders(counting, "tickets", "t-0000", after="holder-0250", limit=LIMIT)
    assert [holding.holder for holding in page] == [
        f"holder-{index:04d}" for index in range(251, 251 + LIMIT)
    ]
    assert all(holding.amount == 2 for holding in page)
    assert counting.entries_read <= LIMIT
    first = asset_state.list_holders(counting, "tickets", "t-0000", limit=2)
    assert [holding.holder for holding in first] == ["holder-0000", "holder-0001"]


def _grant(prefix: str, right: str) -> tuple[object, ...]:
    # The stored form of one grant: prefix, right, expiry, granted and revoked heights, tx hash.
    return (prefix, right, 100, 1, 0, b"\x01" * 32)


def test_a_page_of_grants_after_a_deep_cursor_reads_only_its_page() -> None:
    state = MapState({})
    grantees = [f"grantee-{index:04d}" for index in range(ENTRIES)]
    for grantee in grantees:
        grants = [_grant("trial-", "write")]
        if grantee == "grantee-0250":
            grants.insert(0, _grant("other-", "read-marker"))  # two grants of one grantee
        state.values[records_sharing.compute_grant_key("hospital", grantee)] = codec.encode(tuple(grants))
    counting = CountingState(state)
    page = records_sharing.list_grants(counting, "hospital", after_grantee="grantee-0250", limit=LIMIT)
    assert [(grant.grantee, grant.prefix) for grant in page[:2]] == [
        ("grantee-0250", "other-"),
        ("grantee-0250", "trial-"),
    ]
    assert [grant.grantee for grant in page[2:]] == grantees[251 : 251 + LIMIT - 2]
    assert counting.entries_read <= LIMIT
    after_one = records_sharing.list_grants(
        counting, "hospital", after_grantee="grantee-0250", after_prefix="other-", limit=2
    )
    assert [(grant.grantee, grant.prefix) for grant in after_one] == [
        ("grantee-0250", "trial-"),
        ("grantee-0251", "trial-"),
    ]


def test_a_page_of_read_markers_after_a_deep_cursor_reads_only_its_page() -> None:
    state = MapState({})
    readers = [f"reader-{index:04d}" for index in range(ENTRIES)]
    for reader in readers:
        state.values[records_sharing.compute_marker_key("hospital", "k", reader)] = codec.encode(
            (1, 5, b"\x01" * 32)
        )
    counting = CountingState(state)
    page = records_sharing.list_read_markers(counting, "hospital", "k", after="reader-0250", limit=LIMIT)
    assert [marker.reader for marker in page] == readers[251 : 251 + LIMIT]
    assert counting.entries_read <= LIMIT


def test_a_page_of_anchors_after_a_deep_cursor_reads_only_the_versions_after_it() -> None:
    chain = Chain()
    txs = []
    for index in range(ENTRIES // 2):  # versions alternate: a value, then an anchor of the document
        txs.append(chain.tx("hospital", "put", "scan", f"value {index}".encode()))
        txs.append(chain.tx("hospital", "anchor", *anchor_args(key="scan")))
    chain.run(*txs)
    counting = CountingState(chain.state)
    page = records.find_anchors(counting, "hospital", "scan", DOCUMENT_SHA256, after_version=250, limit=LIMIT)
    assert [item.version for item in page] == list(range(252, 252 + 2 * LIMIT, 2))
    assert counting.point_reads <= 3 * LIMIT
    every = records.find_anchors(chain.state, "hospital", "scan", DOCUMENT_SHA256)
    assert [item.version for item in every] == list(range(2, ENTRIES + 1, 2))
