"""The CLI's readable formatting, pure: times, hashes, cells, and how a document splits into views."""

from __future__ import annotations

from typing import Any

import pytest

from chainnode.cli.output import (
    format_time_ms,
    format_value,
    get_display_name,
    short_hash,
    split_document,
)

HASH = "ab" * 32


@pytest.mark.parametrize(
    ("name", "value", "shorten", "expected"),
    [
        ("timestamp_ms", 1_796_185_012_123, False, "2026-12-02T04:16:52.123Z"),
        ("not_after_ms", 1_796_185_012_000, True, "2026-12-02T04:16:52.000Z"),
        ("view_timeout_ms", 2000, False, "2000"),  # a duration, not a time
        ("hash", HASH, False, HASH),
        ("hash", HASH, True, "abababababab…"),
        ("encoded", "00" * 40, False, "000000000000… (40 bytes)"),
        (
            "certificate_pem",
            "-----BEGIN CERTIFICATE-----\nMII\n",
            False,
            "-----BEGIN CERTIFICATE----- … (32 characters)",
        ),
        ("revoked", False, False, "no"),
        ("closed_height", None, False, "-"),
        ("roles", ["issuer", "submitter"], False, "issuer, submitter"),
        ("roles", [], False, "-"),
        ("payload", {"block_txs_max": 500}, False, '{"block_txs_max":500}'),
        ("height", 7, False, "7"),
    ],
)
def test_format_value(name: str, value: Any, shorten: bool, expected: str) -> None:
    assert format_value(name, value, shorten=shorten) == expected


def test_time_and_hash_helpers() -> None:
    assert format_time_ms(0) == "1970-01-01T00:00:00.000Z"
    assert short_hash("not-a-hash") == "not-a-hash"


def test_split_document() -> None:
    pairs, tables, sections = split_document(
        {"height": 3, "receipt": {"code": 0}, "events": [{"name": "x"}], "empty": [], "roles": ["a"]}
    )
    assert pairs == [("height", 3), ("empty", []), ("roles", ["a"])]
    assert tables == [("events", [{"name": "x"}])]
    assert sections == [("receipt", {"code": 0})]


def test_display_names_drop_ms_from_dates_only() -> None:
    assert get_display_name("timestamp_ms", [1_796_185_012_123]) == "timestamp"
    assert get_display_name("view_timeout_ms", [2000]) == "view_timeout_ms"
    assert get_display_name("not_after_ms", [None, 1_796_185_012_123]) == "not_after"
