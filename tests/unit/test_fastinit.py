"""The faster __init__ for frozen, slotted dataclasses behaves like the generated one."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pytest

from chainnode.core import types
from chainnode.core.fastinit import install_fast_init


@install_fast_init
@dataclass(frozen=True, slots=True)
class Pair:
    left: int
    right: str
    total: int = field(init=False, compare=False)

    def __post_init__(self) -> None:
        Pair.__dict__["total"].__set__(self, self.left + len(self.right))


def test_positional_and_keyword_construction_equal_and_post_init_runs() -> None:
    by_position = Pair(2, "abc")
    by_name = Pair(right="abc", left=2)
    assert by_position == by_name and by_position.total == 5
    assert repr(by_position) == "Pair(left=2, right='abc', total=5)"
    with pytest.raises(TypeError):
        Pair(1)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Pair(1, "x", 3)  # type: ignore[call-arg]


def test_instances_stay_frozen() -> None:
    pair = Pair(1, "x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        pair.left = 2  # type: ignore[misc]
    receipt = types.Receipt(b"\x00" * 32, 0, "", ())
    with pytest.raises(dataclasses.FrozenInstanceError):
        receipt.code = 1  # type: ignore[misc]
    assert types.decode_receipt(receipt.encode()) == receipt


def test_only_frozen_slotted_dataclasses_without_defaults() -> None:
    with pytest.raises(TypeError, match="not a frozen, slotted dataclass"):

        @install_fast_init
        @dataclass(slots=True)
        class Mutable:
            value: int

    with pytest.raises(TypeError, match="defaults"):

        @install_fast_init
        @dataclass(frozen=True, slots=True)
        class WithDefault:
            value: int = 0
