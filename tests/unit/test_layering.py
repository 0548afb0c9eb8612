"""Import rules between packages, checked on the source (DESIGN.md section 2).

`consensus/` must stay sans-I/O: no asyncio, sockets, aiohttp, plyvel, wall
clock or global randomness, so the seeded simulator can drive it.  Storage
and p2p may use the leaf modules of `chainnode` but not the node wiring.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

IO_MODULES = {
    "asyncio",
    "aiohttp",
    "plyvel",
    "socket",
    "ssl",
    "time",
    "datetime",
    "selectors",
    "threading",
    "multiprocessing",
    "subprocess",
    "os",
    "urllib",
    "http",
    "requests",
}
LEAF_MODULES = {
    "chainnode.core.codec",
    "chainnode.core.crypto",
    "chainnode.core.errors",
    "chainnode.core.merkle",
    "chainnode.core.types",
}


def imports_of(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node.lineno))
            found.extend((f"{node.module}.{alias.name}", node.lineno) for alias in node.names)
    return found


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", sources("consensus"), ids=lambda p: p.name)
def test_consensus_imports_nothing_that_does_io(path: Path) -> None:
    for name, line in imports_of(path):
        top = name.split(".")[0]
        assert top not in IO_MODULES, f"{path.name}:{line} imports {name}"
        if top == "random":
            # Only the type, to receive an injected random.Random; never the module functions.
            assert name in {"random", "random.Random"}, f"{path.name}:{line} imports {name}"
        if top in {"chainnode", "storage", "p2p", "cli"}:
            module = name if name in LEAF_MODULES else name.rsplit(".", 1)[0]
            assert module in LEAF_MODULES or name in LEAF_MODULES or name == "chainnode", (
                f"{path.name}:{line} imports {name}, which is not a leaf module"
            )


def test_consensus_uses_no_global_random_or_clock() -> None:
    for path in sources("consensus"):
        text = path.read_text()
        for forbidden in ("random.random(", "random.randint(", "random.choice(", "time.time(", "monotonic("):
            assert forbidden not in text, f"{path.name} calls {forbidden}"


@pytest.mark.parametrize("package", ["storage", "p2p"])
def test_lower_layers_do_not_import_the_node(package: str) -> None:
    for path in sources(package):
        for name, line in imports_of(path):
            assert not name.startswith(("chainnode.node.runtime", "chainnode.api.server", "chainnode.tools.devnet", "cli")), (
                f"{path.name}:{line} imports {name}"
            )


def test_the_rule_catches_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import asyncio\nfrom time import monotonic\n")
    names = {name for name, _ in imports_of(bad)}
    assert {"asyncio", "time", "time.monotonic"} <= names
