"""Import rules between the layers, checked on the source (README, Layout; DESIGN.md section 2).

The layers are an import-linter contract in pyproject.toml, checked here by the real
`lint-imports` on the real tree (imports inside functions included), and shown to fail on a
planted violation.  On top of it, `consensus/` must stay sans-I/O: besides `chainnode.core` it
imports only pure standard-library modules, and never the global random generator or a clock,
so the seeded simulator can drive it.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("chainnode", "consensus", "storage", "p2p", "config")
# What consensus may import from the standard library: no I/O, no clock, no threads.
CONSENSUS_STDLIB = {"__future__", "collections", "dataclasses", "enum", "typing", "random", "bisect", "heapq"}


def run_lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    lint = Path(sys.executable).with_name("lint-imports")
    return subprocess.run(
        [str(lint), "--no-cache", "--config", str(root / "pyproject.toml")],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_layers_hold_on_the_real_tree() -> None:
    result = run_lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("path", "line"),
    [
        ("consensus/engine.py", "from storage import ledger"),  # a sibling of the middle layer
        ("chainnode/app/records.py", "from chainnode.node import runtime"),  # upwards
        ("chainnode/core/codec.py", "from chainnode.app import state"),  # the core imports nothing above
    ],
)
def test_a_planted_violation_breaks_the_contract(tmp_path: Path, path: str, line: str) -> None:
    for name in PACKAGES:
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    planted = tmp_path / path
    # Inside a function, where a lazy import would hide from a top-level scan.
    planted.write_text(planted.read_text() + f"\n\ndef _planted() -> None:\n    {line}  # noqa\n")
    result = run_lint_imports(tmp_path)
    assert result.returncode != 0, result.stdout
    assert "BROKEN" in result.stdout and path.removesuffix(".py").replace("/", ".") in result.stdout


def imports_of(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node.lineno))
    return found


@pytest.mark.parametrize("path", sorted((ROOT / "consensus").rglob("*.py")), ids=lambda p: p.name)
def test_consensus_imports_only_the_core_and_pure_modules(path: Path) -> None:
    for name, line in imports_of(path):
        top = name.split(".")[0]
        if top in {"chainnode", "consensus"}:
            allowed = top == "consensus" or name.startswith("chainnode.core")
            assert allowed, f"{path.name}:{line} imports {name}"
        else:
            assert top in CONSENSUS_STDLIB, f"{path.name}:{line} imports {name}, which may do I/O"


def test_consensus_uses_no_global_random_or_clock() -> None:
    for path in sorted((ROOT / "consensus").rglob("*.py")):
        text = path.read_text()
        calls = ("random.random(", "random.randint(", "random.choice(", "random.shuffle(", "time.time(")
        for forbidden in calls:
            assert forbidden not in text, f"{path.name} calls {forbidden}"
        for name, line in imports_of(path):
            if name == "random":
                assert "import random\n" in text and "from random" not in text, f"{path.name}:{line}"


def test_the_scan_sees_imports_inside_functions(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    import asyncio\n    from time import monotonic\n")
    assert {name for name, _ in imports_of(bad)} == {"asyncio", "time"}


# ---------------------------------------------------------------- no import circles


_CIRCLES_SCRIPT = """
import json, sys
import grimp

graph = grimp.build_graph(*sys.argv[1:], cache_dir=None)
circles, state, path = [], {}, []  # state: 1 on the current path, 2 done


def visit(module):
    state[module] = 1
    path.append(module)
    for imported in sorted(graph.find_modules_directly_imported_by(module)):
        if state.get(imported) == 1:
            circles.append([*path[path.index(imported):], imported])
        elif imported not in state:
            visit(imported)
    path.pop()
    state[module] = 2


sys.setrecursionlimit(10_000)
for module in sorted(graph.modules):
    if module not in state:
        visit(module)
print(json.dumps(circles))
"""


def find_circles(root: Path) -> list[list[str]]:
    """Every import circle between modules of the house at `root` (imports inside functions
    included), found on the graph of grimp, the library import-linter itself reads the tree with
    (in a child process, so that it reads `root` and not the modules this process imported)."""
    result = subprocess.run(
        [sys.executable, "-c", _CIRCLES_SCRIPT, *PACKAGES],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    circles: list[list[str]] = json.loads(result.stdout)
    return circles


def test_no_import_circle_on_the_real_tree() -> None:
    assert find_circles(ROOT) == []


def test_a_planted_circle_is_found(tmp_path: Path) -> None:
    copy = tmp_path / "house"
    for package in PACKAGES:
        shutil.copytree(ROOT / package, copy / package, ignore=shutil.ignore_patterns("__pycache__"))
    quorum = copy / "chainnode" / "core" / "quorum.py"
    # A function-level import back up: quorum imports codec, so codec importing quorum closes a circle.
    codec = copy / "chainnode" / "core" / "codec.py"
    codec.write_text(
        codec.read_text() + "\n\ndef _planted() -> None:\n    from chainnode.core import quorum  # noqa\n"
    )
    assert quorum.exists()
    circles = find_circles(copy)
    assert any(circle[0] in ("chainnode.core.codec", "chainnode.core.quorum") for circle in circles), circles
