"""Canonical msgpack encoding with strict decoding.

Theory of operation: every structure on the wire or on disk is a msgpack
array whose first two elements are a type tag and a version, followed by a
fixed number of fields.  Maps and floats are never used, bytes are `bin` and
text is `str`, so a value has exactly one encoding.  `decode` enforces that:
the input must be one complete object, within size limits, with no trailing
bytes, and re-encoding it must reproduce the input byte for byte.  Anything
else raises `DecodeError`; nothing half-decoded ever escapes.

Arrays decode to tuples, so decoded values are immutable and hashable.
"""

from __future__ import annotations

from typing import Any

import msgpack

from chainnode.core.errors import DecodeError

# Size bounds the decoder enforces before it allocates anything large.
DECODE_BYTES_MAX = 64 * 1024 * 1024
_ARRAY_LEN_MAX = 1_000_000
_STR_LEN_MAX = 16 * 1024 * 1024
_BIN_LEN_MAX = 32 * 1024 * 1024

# The unpacker's settings: arrays as tuples, no maps or extension types, bounded lengths.
UNPACK_OPTIONS: dict[str, Any] = {
    "raw": False,
    "use_list": False,
    "strict_map_key": True,
    "max_str_len": _STR_LEN_MAX,
    "max_bin_len": _BIN_LEN_MAX,
    "max_array_len": _ARRAY_LEN_MAX,
    "max_map_len": 0,
    "max_ext_len": 0,
}

Value = None | bool | int | str | bytes | tuple["Value", ...]


# One packer for the process: `msgpack.packb` builds a new `Packer` per call, which is half
# the cost of encoding a receipt or a state leaf (0.8 us against 0.4), and a block encodes
# several per transaction.  Sharing it is safe: `pack` runs in one C call under the GIL (no
# Python code runs inside it for the types allowed here), returns the bytes and empties its
# buffer, also when it raises.
_PACKER = msgpack.Packer(use_bin_type=True, autoreset=True)
pack = _PACKER.pack


def encode(value: Any) -> bytes:
    """Encode a value built from None, bool, int, str, bytes, tuples and lists."""
    return pack(value)  # type: ignore[no-any-return]


def decode(data: bytes, *, bytes_max: int = DECODE_BYTES_MAX) -> Any:
    """Decode exactly one canonical value or raise `DecodeError`."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError(f"expected bytes, got {type(data).__name__}")
    if len(data) > bytes_max:
        raise DecodeError(f"encoding of {len(data)} bytes exceeds the limit of {bytes_max}")
    if len(data) == 0:
        raise DecodeError("empty input")
    try:
        value = msgpack.unpackb(bytes(data), **UNPACK_OPTIONS)
    except msgpack.ExtraData as error:
        raise DecodeError("trailing bytes after the encoded value") from error
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError) as error:
        raise DecodeError(f"not a valid msgpack value ({type(error).__name__}: {error})") from error
    _check_value(value, depth=0)
    if encode(value) != bytes(data):
        raise DecodeError("non-canonical encoding")
    return value


_SCALAR_TYPES = frozenset({type(None), bool, int, str, bytes})


def _check_value(value: Any, depth: int) -> None:
    """Refuse floats (the only non-canonical type msgpack can still produce here) and deep nesting.

    Integers need no range check: msgpack cannot encode one outside [-2**63, 2**64 - 1].
    Exact `type()` checks keep this cheap on the hot path (every gossiped transaction).
    """
    kind = type(value)
    if kind is tuple:
        if depth >= 32:
            raise DecodeError("nesting too deep")
        for item in value:
            if type(item) is not tuple and type(item) in _SCALAR_TYPES:
                continue
            _check_value(item, depth + 1)
        return
    if kind not in _SCALAR_TYPES:
        raise DecodeError(f"type {kind.__name__} is not allowed in canonical encoding")


def decode_struct(data: bytes, tag: int, version: int, arity: int, what: str) -> tuple[Any, ...]:
    """Decode `data` as the array `[tag, version, ...]` of exactly `arity` elements."""
    return expect_struct(decode(data), tag, version, arity, what)


def expect_struct(value: Any, tag: int, version: int, arity: int, what: str) -> tuple[Any, ...]:
    """Check that an already decoded value is the array `[tag, version, ...]`."""
    if not isinstance(value, tuple):
        raise DecodeError(f"{what}: expected an array, got {type(value).__name__}")
    if len(value) != arity:
        raise DecodeError(f"{what}: expected {arity} fields, got {len(value)}")
    if value[0] != tag or isinstance(value[0], bool):
        raise DecodeError(f"{what}: wrong type tag {value[0]!r}, expected {tag}")
    if value[1] != version or isinstance(value[1], bool):
        raise DecodeError(f"{what}: unsupported version {value[1]!r}")
    return value


def expect_int(value: Any, what: str, minimum: int = 0, maximum: int = 2**64 - 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise DecodeError(f"{what}: expected an integer")
    if not minimum <= value <= maximum:
        raise DecodeError(f"{what}: {value} is outside [{minimum}, {maximum}]")
    return value


def expect_bytes(value: Any, what: str, length: int | None = None, length_max: int = 1 << 25) -> bytes:
    if not isinstance(value, bytes):
        raise DecodeError(f"{what}: expected bytes")
    if length is not None and len(value) != length:
        raise DecodeError(f"{what}: expected {length} bytes, got {len(value)}")
    if len(value) > length_max:
        raise DecodeError(f"{what}: {len(value)} bytes exceeds {length_max}")
    return value


def expect_str(value: Any, what: str, length_max: int = 256, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise DecodeError(f"{what}: expected a string")
    if not allow_empty and not value:
        raise DecodeError(f"{what}: must not be empty")
    if len(value) > length_max:
        raise DecodeError(f"{what}: longer than {length_max} characters")
    return value


def expect_tuple(value: Any, what: str, length_max: int = _ARRAY_LEN_MAX) -> tuple[Any, ...]:
    if not isinstance(value, tuple):
        raise DecodeError(f"{what}: expected an array")
    if len(value) > length_max:
        raise DecodeError(f"{what}: more than {length_max} elements")
    return value
