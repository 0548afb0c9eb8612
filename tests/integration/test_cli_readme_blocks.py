"""The README, executed: every `sh` block not marked `<!-- readme-test: skip ... -->` runs with bash,
in order, as one script, in a fresh directory, and must print what the README says it prints.

That is the quick start (`devnet --txs 2000`), the tour on the devnet (records, proofs, a zone
authority, records sharing, digital assets, events, audit and export, then the devnet stopped)
and the council adding a validator (four validator processes, a proposal, nine votes, then the
spare node).  A block that cannot run here (it installs software, needs other machines or runs
for minutes) carries the marker on the line just before its fence.

Only the ports change (a free range instead of 26600, which a developer's own network may hold):
`devnet` and `network init` get `--base-port`, and the README's 266xx ports move with it.  The
`chainnode` the blocks call is this checkout's (`python -m cli`, through a small script first on
PATH that also asks for the readable view the README shows, since stdout is a pipe here).  Real
processes: marked `cluster`.
"""

from __future__ import annotations

import random
import re
import shlex
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests import factories

pytestmark = pytest.mark.cluster

README_BASE_PORT = 26600
NODES = 5
SKIP_MARKER = "<!-- readme-test: skip"
_BLOCK = re.compile(r"^(<!-- readme-test: skip[^\n]*-->\n)?```sh\n(.*?)^```", re.S | re.M)

# The `chainnode` the README's blocks find first on PATH: this checkout, on the test's ports, with
# the readable view (unless the block asks for JSON or streams), like a terminal would get.
_CHAINNODE = """#!/bin/bash
extra=()
case "$1 $2" in
  "devnet "*|"network init") case " $* " in *" --base-port "*) ;; *) extra+=(--base-port {base});; esac;;
esac
case "$1" in
  node|completion) ;;
  *) case " $* " in *" --json "*|*" --follow "*) ;; *) extra+=(--text);; esac;;
esac
PYTHONPATH={repo} exec {python} -m cli "$@" "${{extra[@]}}"
"""


def find_runnable_blocks(text: str) -> list[str]:
    """The `sh` blocks without the skip marker, in order."""
    return [match.group(2) for match in _BLOCK.finditer(text) if match.group(1) is None]


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

    return re.sub(r"\b266(0\d|1\d)\b", move, script)


def test_a_marker_skips_only_the_block_right_after_it() -> None:
    text = (
        "```sh\necho one\n```\n"
        "<!-- readme-test: skip (needs other hosts) -->\n```sh\necho two\n```\n"
        "<!-- readme-test: skip (a marker before prose marks nothing) -->\nprose\n```sh\necho three\n```\n"
        "```text\necho four\n```\n"
    )
    assert find_runnable_blocks(text) == ["echo one\n", "echo three\n"]


def test_the_markers_leave_the_walkthrough_runnable() -> None:
    text = (factories.REPO / "README.md").read_text(encoding="utf-8")
    blocks = find_runnable_blocks(text)
    assert blocks[0].strip() == "chainnode devnet --validators 4 --txs 2000"
    assert any("kill $DEVNET" in block for block in blocks)
    assert any("council vote" in block for block in blocks)
    # Every marker stands just before a block, and marks it.
    assert text.count(SKIP_MARKER + " (") == len(_BLOCK.findall(text)) - len(blocks)
    skipped = "".join(match.group(2) for match in _BLOCK.finditer(text) if match.group(1))
    assert "pip install" in skipped and "bench" in skipped and "pip install" not in "".join(blocks)


def test_the_readme_runs_top_to_bottom(tmp_path: Path) -> None:
    blocks = find_runnable_blocks((factories.REPO / "README.md").read_text(encoding="utf-8"))
    base = _find_base_port()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "chainnode"
    wrapper.write_text(
        _CHAINNODE.format(
            base=base, repo=shlex.quote(str(factories.REPO)), python=shlex.quote(sys.executable)
        )
    )
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    work = tmp_path / "work"
    work.mkdir()
    prelude = (
        "set -e -o pipefail\n"
        "trap 'kill $(jobs -p) 2>/dev/null; wait' EXIT\n"
        f"export PATH={shlex.quote(str(bin_dir))}:$PATH\n"
    )
    result = subprocess.run(
        ["bash", "-c", prelude + _move_ports("\n".join(blocks), base)],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=420,
        check=False,
    )
    output = result.stdout
    assert result.returncode == 0, output + result.stderr
    # The quick start.
    assert re.search(r"^committed_txs\s+2000\s*$", output, re.M), output
    # The tour.
    assert re.search(r"^valid\s+yes\s*$", output, re.M), output  # verify-proof
    assert "error: grant_revoked: " in result.stderr and "refused, as it should be" in output
    assert re.search(r"^anchored\s+yes\s*$", output, re.M), output  # records verify
    actions = re.findall(r"^\d+\s+\d+\s+(mint|transfer|freeze)\s", output, re.M)
    assert actions == ["mint", "transfer", "freeze"], output  # asset provenance
    assert "a proposal executes at 10 approvals" in output  # council list
    assert re.search(r"^result\s+ok\s*$", output, re.M), output  # audit
    assert "validators stopped" in (work / "devnet.log").read_text()
    # The council example.
    assert "1 of 10 approvals needed (council of 15)" in output, output
    votes = re.findall(r"^(\d+) of 10 (open|executed)$", output, re.M)
    assert votes == [(str(n), "open") for n in range(2, 10)] + [("10", "executed")], output
    assert "validator-05" in output and re.search(r"^size\s+5\b", output, re.M), output
    assert re.search(r"^validator_index\s+4\b", output, re.M), output
    for n in range(1, 5):
        log = (work / "net" / f"validator-0{n}.log").read_text()
        assert "not a current validator" not in log
