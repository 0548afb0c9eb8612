"""Shell completion: `chainnode completion bash|zsh` prints shell code, and bash, with that code
loaded, completes commands, subcommands and options from the real parser (a `chainnode` process
answers each request, as in a user's shell)."""

from __future__ import annotations

import shlex
import subprocess
import sys

import pytest

from tests import factories
from tests.factories import run_cli_process


def complete_in_bash(line: str) -> list[str]:
    """What bash offers after `line` (the cursor at its end), with `chainnode completion bash` loaded."""
    words = line.split(" ")
    python = f"PYTHONPATH={shlex.quote(str(factories.REPO))} {shlex.quote(sys.executable)}"
    script = (
        f'chainnode() {{ {python} -m cli "$@"; }}\n'
        'eval "$(chainnode completion bash)"\n'
        f"COMP_LINE={shlex.quote(line)}; COMP_POINT=${{#COMP_LINE}}; COMP_TYPE=9\n"
        f"COMP_WORDS=({' '.join(shlex.quote(word) for word in words)}); COMP_CWORD={len(words) - 1}\n"
        f"_python_argcomplete chainnode {shlex.quote(words[-1])} {shlex.quote(words[-2])}\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    result = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, timeout=60, check=False, cwd=factories.REPO
    )
    assert result.returncode == 0, result.stderr
    return [word.strip() for word in result.stdout.splitlines() if word.strip()]


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_prints_the_shell_code(shell: str) -> None:
    result = run_cli_process("completion", shell)
    assert result.returncode == 0, result.stderr
    assert "_python_argcomplete" in result.stdout and "chainnode" in result.stdout
    if shell == "bash":
        assert "complete " in result.stdout
        checked = subprocess.run(
            ["bash", "-n"], input=result.stdout, capture_output=True, text=True, check=False
        )
        assert checked.returncode == 0, checked.stderr
    assert run_cli_process("completion", "fish").returncode == 2  # not a shell it supports


def test_bash_completes_commands_subcommands_and_options() -> None:
    assert "query" in complete_in_bash("chainnode que")
    assert set(complete_in_bash("chainnode query st")) == {"status"}
    assert "--validators" in complete_in_bash("chainnode devnet --va")
    assert {"propose", "vote", "list"} <= set(complete_in_bash("chainnode council "))
