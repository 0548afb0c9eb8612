"""The one hex parser: exactly an even number of hex digits, a typed error naming the field."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chainnode.core.errors import RemoteError
from chainnode.core.hexstr import HexError, parse_hex


@pytest.mark.parametrize(
    ("text", "expected"),
    [("", b""), ("00", b"\x00"), ("00ff", b"\x00\xff"), ("ABcd", b"\xab\xcd")],
)
def test_parse_hex_reads_hex_of_either_case(text: str, expected: bytes) -> None:
    assert parse_hex(text, "field") == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (5, "field must be a hex string"),
        (None, "field must be a hex string"),
        (b"00", "field must be a hex string"),
        ("abc", "field is not valid hex"),
        ("zz", "field is not valid hex"),
        ("00 11", "field is not valid hex"),  # bytes.fromhex alone would read this
        (" 00", "field is not valid hex"),
        ("00\n", "field is not valid hex"),
        ("0x00", "field is not valid hex"),
        ("\uff10\uff10", "field is not valid hex"),  # fullwidth digits
        ("\u0660\u0660", "field is not valid hex"),  # Arabic-Indic digits
    ],
)
def test_parse_hex_refuses_anything_else(value: Any, message: str) -> None:
    with pytest.raises(HexError) as refused:
        parse_hex(value, "field")
    assert refused.value.message == message
    assert refused.value.what == "field"
    assert refused.value.code == "bad_hex"
    assert isinstance(refused.value, RemoteError)


def test_parse_hex_checks_an_exact_length() -> None:
    assert parse_hex("ab" * 32, "hash", length=32) == b"\xab" * 32
    with pytest.raises(HexError, match=r"hash must be 32 bytes \(64 hex digits\)$"):
        parse_hex("ab" * 31, "hash", length=32)


def test_parse_hex_lowercase_leaves_one_spelling() -> None:
    assert parse_hex("abcd", "proof field", lowercase=True) == b"\xab\xcd"
    with pytest.raises(HexError, match="proof field must be lowercase hex"):
        parse_hex("ABCD", "proof field", lowercase=True)


@given(st.binary(max_size=64))
def test_parse_hex_reads_what_hex_writes(data: bytes) -> None:
    assert parse_hex(data.hex(), "field", lowercase=True) == data
    assert parse_hex(data.hex().upper(), "field", length=len(data)) == data
