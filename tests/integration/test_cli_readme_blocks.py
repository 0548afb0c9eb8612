"""The README's worked council example, executed: its `sh` blocks run in order with bash in a fresh
directory, four validator processes and then the spare, and must print what the README says.

Only the ports change (a free range instead of 26600, which a developer's own network may hold);
the `chainnode` the blocks call is this checkout's (`python -m cli`).  Real processes: marked
`cluster`.
"""

from __future__ import annotations

import random
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests import factories

pytestmark = pytest.mark.cluster

README_BASE_PORT = 26600
NODES = 5


def find_example_blocks(text: str) -> list[str]:
    """The `sh` blocks from "A worked example" to "Stop the nodes", in order."""
    start = text.index("A worked example, the council adding a validator")
    end = text.index("Stop the nodes with", start)
    return re.findall(r"```sh\n(.*?)```", text[start:end], re.S)


def _is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _find_base_port() -> int:
    rng = random.Random()
    for _ in range(100):
        base = rng.randrange(20_000, 32_000, 2)  # below the ephemeral range
        if all(_is_free(port) for port in range(base, base + 2 * NODES)):
            return base
    raise AssertionError("no free port range")


def _move_ports(script: str, base: int) -> str:
    def move(match: re.Match[str]) -> str:
        return str(base + int(match.group(0)) - README_BASE_PORT)

    script = re.sub(r"\b266(0\d|1\d)\b", move, script)
    return script.replace("--out net", f"--out net --base-port {base}")


def test_the_readme_council_example_adds_a_validator(tmp_path: Path) -> None:
    blocks = find_example_blocks((factories.REPO / "README.md").read_text(encoding="utf-8"))
    assert len(blocks) == 3
    script = _move_ports("\n".join(blocks), _find_base_port())
    prelude = (
        "set -e\n"
        "trap 'kill $(jobs -p) 2>/dev/null; wait' EXIT\n"
        # The README shows a terminal's readable view; here stdout is a pipe, so ask for it.
        'text() { case "$*" in *--json*) ;; council*|query*) echo --text ;; esac; }\n'
        f'chainnode() {{ PYTHONPATH={factories.REPO} {sys.executable} -m cli "$@" $(text "$@"); }}\n'
    )
    result = subprocess.run(
        ["bash", "-c", prelude + script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    output = result.stdout
    assert result.returncode == 0, output + result.stderr
    assert "1 of 10 approvals needed (council of 15)" in output, output
    votes = re.findall(r"^(\d+) of 10 (open|executed)$", output, re.M)
    assert votes == [(str(n), "open") for n in range(2, 10)] + [("10", "executed")], output
    assert "validator-05" in output and re.search(r"^size\s+5\b", output, re.M), output
    assert re.search(r"^validator_index\s+4\b", output, re.M), output
    for n in range(1, 5):
        log = (tmp_path / "net" / f"validator-0{n}.log").read_text()
        assert "not a current validator" not in log
