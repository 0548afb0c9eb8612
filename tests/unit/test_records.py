"""The records module's data sharing: grants, writes by grantees, documents, read markers, and
every refusal with its stable code, executed by the real `Executor` over a state in a dict."""

from __future__ import annotations

import hashlib
import itertools
from typing import Any

import pytest

from chainnode.app import events, records, records_sharing
from chainnode.app.execution import DEFAULT_ACTIONS, Executor, SignatureCache
from chainnode.app.state import compute_genesis_state_root
from chainnode.cli import records as cli_records
from chainnode.core import identity_records, types
from tests.factories import MapState, make_key, make_tx

ErrorCode = types.ErrorCode
CHAIN_ID = "records-test"
NOW_MS = 1_750_000_000_000
DAY_MS = 86_400_000
# The namespace owner, a grantee, a grantee by sector (health) and an entity with no grant.
ENTITIES = {
    "hospital": ("health",),
    "university": ("education",),
    "clinic": ("health",),
    "bank": ("cross-border-finance",),
}
KEYS = {name: make_key(name) for name in ENTITIES}
DOCUMENT = b"%PDF-1.7 discharge summary\n"
DOCUMENT_SHA256 = hashlib.sha256(DOCUMENT).digest()


def _entity(name: str, sectors: tuple[str, ...]) -> identity_records.EntityRecord:
    return identity_records.EntityRecord(
        entity_id=name,
        zone="beijing",
        public_key=KEYS[name].public_key,
        roles=("submitter",),
        sectors=sectors,
        not_before_ms=NOW_MS - DAY_MS,
        not_after_ms=NOW_MS + 365 * DAY_MS,
        revoked=False,
        certificate=b"",
    )


class Chain:
    """Blocks executed one after another over a state in a dict (one transaction a block unless
    several are given), the committed state applied after each, as the ledger would."""

    def __init__(self) -> None:
        initial = {
            identity_records.entity_key(name): _entity(name, s).encode() for name, s in ENTITIES.items()
        }
        self.state = MapState(initial)
        self.root = compute_genesis_state_root(initial)
        self.height = 0
        self.executor = Executor(CHAIN_ID, SignatureCache())
        self._nonces = itertools.count()

    def tx(self, signer: str, action: str, *args: Any) -> types.Transaction:
        return make_tx(
            KEYS[signer],
            chain_id=CHAIN_ID,
            signer=signer,
            nonce=next(self._nonces),
            module="records",
            action=action,
            args=args,
        )

    def run(self, *txs: types.Transaction) -> list[types.Receipt]:
        self.height += 1
        result = self.executor.execute_block(
            self.state,
            previous_state_root=self.root,
            height=self.height,
            timestamp_ms=NOW_MS + self.height,
            transactions=txs,
            is_committed=lambda _: False,
        )
        self.state.apply(result.write_set)
        self.root = result.state_root
        return list(result.receipts)

    def do(self, signer: str, action: str, *args: Any) -> types.Receipt:
        (receipt,) = self.run(self.tx(signer, action, *args))
        return receipt

    def ok(self, signer: str, action: str, *args: Any) -> types.Receipt:
        receipt = self.do(signer, action, *args)
        assert receipt.code == 0, receipt.message
        return receipt


def anchor_args(owner: str = "hospital", key: str = "discharge-2026-001", **changes: Any) -> tuple[Any, ...]:
    fields = {"sha256": DOCUMENT_SHA256, "media_type": "application/pdf", "size": len(DOCUMENT), "uri": ""}
    fields.update(changes)
    return (owner, key, fields["sha256"], fields["media_type"], fields["size"], fields["uri"])


# ---------------------------------------------------------------- what works


def test_grantee_writes_into_the_owners_namespace_and_history_names_the_writer() -> None:
    chain = Chain()
    chain.ok("hospital", "put", "trial-7.protocol", b"v1 by the hospital")
    grant = chain.ok("hospital", "grant", "university", "trial-7.", "write", 100)
    assert grant.events == (("records.granted", ("hospital", "university", "trial-7.", "write", 100)),)
    written = chain.ok("university", "put_to", "hospital", "trial-7.protocol", b"v2 by the university")
    assert written.events == (("records.written", ("hospital", "trial-7.protocol", 2, "university")),)
    history = records.get_history(chain.state, "hospital", "trial-7.protocol")
    assert [(item.version, item.value, item.written_by) for item in history] == [
        (1, b"v1 by the hospital", "hospital"),
        (2, b"v2 by the university", "university"),
    ]
    assert history[0].writer == "" and history[1].writer == "university"
    assert records.get_record(chain.state, "hospital", "trial-7.protocol") == history[1]


def test_sector_grant_lets_every_entity_of_that_sector_write() -> None:
    chain = Chain()
    chain.ok("hospital", "grant", "sector:health", "referrals-", "write", 100)
    chain.ok("clinic", "put_to", "hospital", "referrals-42", b"patient referred")
    assert chain.do("university", "put_to", "hospital", "referrals-43", b"x").code == ErrorCode.NO_GRANT


def test_document_anchor_is_found_by_its_hash() -> None:
    chain = Chain()
    receipt = chain.ok("hospital", "anchor", *anchor_args(uri="https://files.example/discharge.pdf"))
    assert receipt.events == (
        ("records.anchored", ("hospital", "discharge-2026-001", 1, "hospital", DOCUMENT_SHA256)),
    )
    chain.ok("hospital", "put", "discharge-2026-001", b"a later note")
    (found,) = records.find_anchors(chain.state, "hospital", "discharge-2026-001", DOCUMENT_SHA256)
    assert found.version == 1 and found.height == 1 and found.value == b""
    assert found.document == records.Document(
        DOCUMENT_SHA256, "application/pdf", len(DOCUMENT), "https://files.example/discharge.pdf"
    )
    assert records.find_anchors(chain.state, "hospital", "discharge-2026-001", b"\x00" * 32) == []


def test_read_marker_grant_marks_reads_but_does_not_write() -> None:
    chain = Chain()
    chain.ok("hospital", "put", "lab-results", b"ok")
    chain.ok("hospital", "grant", "university", "lab-", "read-marker", 100)
    marked = chain.ok("university", "mark_read", "hospital", "lab-results", 1)
    assert marked.events == (("records.read_marked", ("hospital", "lab-results", 1, "university")),)
    (marker,) = records_sharing.list_read_markers(chain.state, "hospital", "lab-results")
    assert (marker.reader, marker.version, marker.height) == ("university", 1, 3)
    assert chain.do("university", "put_to", "hospital", "lab-results", b"x").code == ErrorCode.WRONG_RIGHT


def test_grant_expires_after_its_height_and_revocation_applies_to_the_next_transaction() -> None:
    chain = Chain()
    chain.ok("hospital", "grant", "university", "", "write", 3)  # height 1
    chain.ok("university", "put_to", "hospital", "a", b"1")  # height 2
    chain.ok("university", "put_to", "hospital", "a", b"2")  # height 3: the last one
    assert chain.do("university", "put_to", "hospital", "a", b"3").code == ErrorCode.GRANT_EXPIRED
    chain.ok("hospital", "grant", "university", "", "write", 100)  # renewed
    revoke = chain.tx("hospital", "revoke", "university", "")
    write = chain.tx("university", "put_to", "hospital", "a", b"4")
    assert [receipt.code for receipt in chain.run(revoke, write)] == [0, ErrorCode.GRANT_REVOKED]
    (grant,) = records_sharing.list_grants(chain.state, "hospital")
    assert (grant.grantee, grant.revoked_height, grant.expires_at_height) == ("university", 6, 100)


def test_owner_writes_its_own_namespace_with_put_to_and_anchor_without_a_grant() -> None:
    chain = Chain()
    chain.ok("hospital", "put_to", "hospital", "k", b"v")
    chain.ok("hospital", "anchor", *anchor_args(key="k"))
    assert [item.writer for item in records.get_history(chain.state, "hospital", "k")] == ["", ""]


# Every records action that writes a version, with a write by an entity other than the
# namespace's owner: (signer, action, args, namespace, key).  A new write action must join it.
WRITES_BY_OTHERS = {
    "put_to": ("university", "put_to", ("hospital", "trial-7.a", b"x"), "hospital", "trial-7.a"),
    "anchor": ("university", "anchor", anchor_args(key="trial-7.b"), "hospital", "trial-7.b"),
    "put_sector": ("clinic", "put_sector", ("health", "beds", b"3"), "sector:health", "beds"),
}


def test_every_write_by_another_entity_is_recorded_with_its_writer() -> None:
    writing = {
        action
        for (module, action) in DEFAULT_ACTIONS
        if module == "records" and action not in ("grant", "revoke", "mark_read")
    }
    assert writing == {"put", *WRITES_BY_OTHERS}, "a records write action is not covered here"
    chain = Chain()
    chain.ok("hospital", "grant", "university", "trial-7.", "write", 100)
    for signer, action, args, namespace, key in WRITES_BY_OTHERS.values():
        chain.ok(signer, action, *args)
        record = records.get_record(chain.state, namespace, key)
        assert record is not None and (record.writer, record.written_by) == (signer, signer), action
    # A second writer of the same sector namespace is told apart from the first.
    chain.ok("hospital", "put_sector", "health", "beds", b"4")
    history = records.get_history(chain.state, "sector:health", "beds")
    assert [item.written_by for item in history] == ["clinic", "hospital"]


def test_list_records_pages_by_prefix_with_a_cursor() -> None:
    chain = Chain()
    for key in ("a-1", "a-2", "a-3", "b-1"):
        chain.ok("hospital", "put", key, key.encode())
    first = records.list_records(chain.state, "hospital", "a-", limit=2)
    assert [item.key for item in first] == ["a-1", "a-2"]
    second = records.list_records(chain.state, "hospital", "a-", after_key=first[-1].key, limit=2)
    assert [item.key for item in second] == ["a-3"]
    assert [item.key for item in records.list_records(chain.state, "hospital")] == [
        "a-1",
        "a-2",
        "a-3",
        "b-1",
    ]


def test_history_pages_after_a_version() -> None:
    chain = Chain()
    for value in (b"1", b"2", b"3"):
        chain.ok("hospital", "put", "k", value)
    assert [item.version for item in records.get_history(chain.state, "hospital", "k", limit=2)] == [1, 2]
    page = records.get_history(chain.state, "hospital", "k", after_version=2, limit=2)
    assert [item.version for item in page] == [3]
    assert records.get_history(chain.state, "hospital", "missing") == []


def test_a_put_keeps_the_four_field_form() -> None:
    """`put` is the hot path: its stored bytes did not change when writers and documents came."""
    chain = Chain()
    receipt = chain.ok("hospital", "put", "k", b"v")
    stored = chain.state.get_state(records.compute_history_key("hospital", "k", 1))
    from chainnode.core import codec

    assert codec.decode(stored or b"") == (1, b"v", 1, receipt.tx_hash)


def test_a_full_grant_list_forgets_revoked_grants_but_never_active_ones() -> None:
    chain = Chain()
    limit = records_sharing.GRANTS_PER_GRANTEE_MAX
    chain.run(*(chain.tx("hospital", "grant", "university", f"p{n}-", "write", 100) for n in range(limit)))
    refused = chain.do("hospital", "grant", "university", "extra-", "write", 100)
    assert (refused.code, "revoke one first" in refused.message) == (ErrorCode.BAD_GRANT, True)
    chain.ok("hospital", "revoke", "university", "p0-")
    chain.ok("hospital", "grant", "university", "extra-", "write", 100)
    prefixes = {grant.prefix for grant in records_sharing.list_grants(chain.state, "hospital")}
    assert "p0-" not in prefixes and {"p1-", "extra-"} <= prefixes and len(prefixes) == limit
    chain.ok("university", "put_to", "hospital", "p1-x", b"still granted")


def test_events_name_the_owner_and_the_keys_they_touch() -> None:
    chain = Chain()
    receipts = [
        chain.ok("hospital", "grant", "university", "trial-", "write", 100),
        chain.ok("university", "put_to", "hospital", "trial-1", b"v"),
        chain.ok("university", "anchor", *anchor_args(key="trial-2")),
        chain.ok("university", "mark_read", "hospital", "trial-1", 1),
        chain.ok("hospital", "revoke", "university", "trial-"),
    ]
    shapes = [
        events.compute_entity_and_keys(name, attributes, "university")
        for receipt in receipts
        for name, attributes in receipt.events
    ]
    assert shapes == [
        ("hospital", ("university", "trial-")),
        ("hospital", ("trial-1", "university")),
        ("hospital", ("trial-2", "university")),
        ("hospital", ("trial-1", "university")),
        ("hospital", ("university", "trial-")),
    ]


# ---------------------------------------------------------------- every refusal, with its code

# name -> (transactions that succeed first, as (signer, action, args), the refused one, its code)
REFUSALS: dict[
    str, tuple[list[tuple[str, str, tuple[Any, ...]]], tuple[str, str, tuple[Any, ...]], ErrorCode]
] = {
    "no grant": ([], ("university", "put_to", ("hospital", "k", b"v")), ErrorCode.NO_GRANT),
    "grant over another prefix": (
        [("hospital", "grant", ("university", "trial-", "write", 100))],
        ("university", "put_to", ("hospital", "other", b"v")),
        ErrorCode.NO_GRANT,
    ),
    "grant to someone else": (
        [("hospital", "grant", ("clinic", "", "write", 100))],
        ("university", "put_to", ("hospital", "k", b"v")),
        ErrorCode.NO_GRANT,
    ),
    "expired grant": (
        [("hospital", "grant", ("university", "", "write", 1))],
        ("university", "put_to", ("hospital", "k", b"v")),
        ErrorCode.GRANT_EXPIRED,
    ),
    "revoked grant": (
        [("hospital", "grant", ("university", "", "write", 100)), ("hospital", "revoke", ("university", ""))],
        ("university", "put_to", ("hospital", "k", b"v")),
        ErrorCode.GRANT_REVOKED,
    ),
    "wrong right": (
        [("hospital", "grant", ("university", "", "read-marker", 100))],
        ("university", "anchor", anchor_args(key="k")),
        ErrorCode.WRONG_RIGHT,
    ),
    "read marker without a grant": (
        [("hospital", "put", ("k", b"v"))],
        ("bank", "mark_read", ("hospital", "k", 1)),
        ErrorCode.NO_GRANT,
    ),
    "read marker of an unknown version": (
        [("hospital", "put", ("k", b"v")), ("hospital", "grant", ("bank", "", "read-marker", 100))],
        ("bank", "mark_read", ("hospital", "k", 2)),
        ErrorCode.UNKNOWN_RECORD,
    ),
    "oversize value by a grantee": (
        [("hospital", "grant", ("university", "", "write", 100))],
        ("university", "put_to", ("hospital", "k", b"x" * (records.VALUE_BYTES_MAX + 1))),
        ErrorCode.VALUE_TOO_LARGE,
    ),
    "oversize value by the owner": (
        [],
        ("hospital", "put", ("k", b"x" * (records.VALUE_BYTES_MAX + 1))),
        ErrorCode.VALUE_TOO_LARGE,
    ),
    "document hash of 31 bytes": (
        [],
        ("hospital", "anchor", anchor_args(sha256=b"\x01" * 31)),
        ErrorCode.BAD_DOCUMENT,
    ),
    "document hash as hex text": (
        [],
        ("hospital", "anchor", anchor_args(sha256=DOCUMENT_SHA256.hex())),
        ErrorCode.BAD_DOCUMENT,
    ),
    "negative document size": ([], ("hospital", "anchor", anchor_args(size=-1)), ErrorCode.BAD_DOCUMENT),
    "document size not an integer": (
        [],
        ("hospital", "anchor", anchor_args(size="12")),
        ErrorCode.BAD_DOCUMENT,
    ),
    "media type without a subtype": (
        [],
        ("hospital", "anchor", anchor_args(media_type="pdf")),
        ErrorCode.BAD_DOCUMENT,
    ),
    "URI not printable": ([], ("hospital", "anchor", anchor_args(uri="a\nb")), ErrorCode.BAD_DOCUMENT),
    "revoke an unknown grant": ([], ("hospital", "revoke", ("university", "")), ErrorCode.UNKNOWN_GRANT),
    "revoke twice": (
        [("hospital", "grant", ("university", "", "write", 100)), ("hospital", "revoke", ("university", ""))],
        ("hospital", "revoke", ("university", "")),
        ErrorCode.GRANT_REVOKED,
    ),
    "grant to oneself": ([], ("hospital", "grant", ("hospital", "", "write", 100)), ErrorCode.BAD_GRANT),
    "grant already expired": (
        [("hospital", "put", ("k", b"v"))],
        ("hospital", "grant", ("university", "", "write", 1)),
        ErrorCode.BAD_GRANT,
    ),
    "grant to an unknown sector": (
        [],
        ("hospital", "grant", ("sector:mining", "", "write", 9)),
        ErrorCode.BAD_GRANT,
    ),
    "grant to an unknown entity": (
        [],
        ("hospital", "grant", ("nobody", "", "write", 9)),
        ErrorCode.UNKNOWN_ENTITY,
    ),
    "grant of an unknown right": (
        [],
        ("hospital", "grant", ("university", "", "read", 9)),
        ErrorCode.BAD_ARGUMENTS,
    ),
    "grant prefix with a slash": (
        [],
        ("hospital", "grant", ("university", "a/", "write", 9)),
        ErrorCode.BAD_ARGUMENTS,
    ),
    "put_to a sector namespace": (
        [],
        ("university", "put_to", ("sector:health", "k", b"v")),
        ErrorCode.BAD_ARGUMENTS,
    ),
    "put_to with two arguments": ([], ("university", "put_to", ("hospital", "k")), ErrorCode.BAD_ARGUMENTS),
    "read marker of version 0": (
        [],
        ("hospital", "mark_read", ("hospital", "k", 0)),
        ErrorCode.BAD_ARGUMENTS,
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refusal_has_its_stable_code_and_writes_nothing(case: str) -> None:
    setup, (signer, action, args), code = REFUSALS[case]
    chain = Chain()
    for setup_signer, setup_action, setup_args in setup:
        chain.ok(setup_signer, setup_action, *setup_args)
    before = dict(chain.state.values)
    receipt = chain.do(signer, action, *args)
    assert (ErrorCode(receipt.code), receipt.events) == (code, ())
    assert receipt.message
    assert chain.state.values == before


def test_every_records_code_has_a_refusal_case() -> None:
    records_codes = {code for code in ErrorCode if 40 <= code < 50}
    assert records_codes <= {code for *_, code in REFUSALS.values()}


def test_the_cli_offers_the_rights_the_module_knows() -> None:
    assert cli_records.RIGHTS == records_sharing.RIGHTS
