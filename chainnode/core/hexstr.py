"""The one parser of hex text: whatever arrives as hex (API bodies and paths, genesis files,
proofs, a node's answers to the tools, CLI arguments) is read by `parse_hex`.

Strict on purpose: a string of an even number of hex digits and nothing else, no whitespace,
no `0x`, no separators, so that one value has few spellings and a stray character is refused
rather than skipped.  `bytes.fromhex` alone is not enough: it skips whitespace between bytes.
`lowercase=True` leaves exactly one spelling, for formats whose text is itself signed or
compared (proofs).  A refusal is a `HexError` naming the field, which callers either pass on
(the API answers its code, `bad_hex`) or turn into their own typed error.
"""

from __future__ import annotations

from typing import Any

from chainnode.core.errors import RemoteError


class HexError(RemoteError):
    """Text that should be hex and is not (or has the wrong length); `what` names the field."""

    code = "bad_hex"

    def __init__(self, message: str, *, what: str) -> None:
        super().__init__(message)
        self.what = what


def parse_hex(text: Any, what: str, *, length: int | None = None, lowercase: bool = False) -> bytes:
    """The bytes spelled by `text`, an even number of hex digits (lowercase only if asked);
    exactly `length` bytes if given.  `what` names the field in the error."""
    if not isinstance(text, str):
        raise HexError(f"{what} must be a hex string", what=what)
    try:
        data = bytes.fromhex(text)
    except ValueError:
        data = None
    # Whitespace is the one thing fromhex skips; it makes the text longer than its bytes.
    if data is None or len(text) != 2 * len(data):
        raise HexError(f"{what} is not valid hex", what=what)
    if lowercase and text != text.lower():
        raise HexError(f"{what} must be lowercase hex", what=what)
    if length is not None and len(data) != length:
        raise HexError(f"{what} must be {length} bytes ({2 * length} hex digits)", what=what)
    return data
