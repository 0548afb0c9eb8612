"""The type tags: every number assigned once, in `chainnode.core.tags`, and nowhere else."""

from __future__ import annotations

import importlib
import pkgutil
from collections import Counter
from pathlib import Path

import pytest

from chainnode.core import tags

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("chainnode", "consensus", "storage", "p2p")


def list_modules() -> list[str]:
    names = []
    for package in PACKAGES:
        names.append(package)
        for module in pkgutil.walk_packages([str(ROOT / package)], prefix=f"{package}."):
            names.append(module.name)
    return sorted(names)


def test_no_tag_number_is_used_twice() -> None:
    numbers = Counter(tags.get_tags().values())
    assert numbers, "the registry assigns tags"
    assert [number for number, count in numbers.items() if count > 1] == []


def test_tags_are_small_positive_ints() -> None:
    # A positive fixint is one byte on the wire; the codec's checks expect exact ints.
    for name, number in tags.get_tags().items():
        assert type(number) is int and 0 < number < 128, name


@pytest.mark.parametrize("module_name", list_modules())
def test_a_module_defines_no_tag_of_its_own(module_name: str) -> None:
    """Any `TAG_` a module holds is the registry's, under the registry's name."""
    module = importlib.import_module(module_name)
    registry = tags.get_tags()
    for name, value in vars(module).items():
        if name.startswith("TAG_") and isinstance(value, int):
            assert name in registry, f"{module_name}.{name} = {value} is not assigned in chainnode.core.tags"
            assigned = registry[name]
            assert value == assigned, f"{module_name}.{name} = {value}, the registry assigns {assigned}"
