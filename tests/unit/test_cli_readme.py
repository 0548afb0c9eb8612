"""The README cannot drift from the CLI: every `chainnode` command in its `sh` blocks parses.

Each command line of a ```sh block (continuations joined; comments, redirections, pipes and
`&` cut off; shell variables given example values) goes through the real parser and the command's
own usage checks, so a renamed command or option, or a missing required one, fails here.  Lines
that are synopses (`[--opt]`, `a|b` alternatives) are skipped.  This checks the commands, not
their effect; the CLI integration tests run them against a node.
"""

from __future__ import annotations

import re
import shlex

import pytest

from chainnode.cli.main import parse_arguments
from tests import factories

NODE_URL = "http://127.0.0.1:26601"
VARIABLES = {
    "$NODE": NODE_URL,
    "$N": f"--node {NODE_URL}",
    "$H": "devnet/entities/pku-hospital-3",
    "$U": "devnet/entities/tsinghua",
    "$member": "miit",
    "$n": "01",
    "$TX": "ab" * 32,
    "URL": NODE_URL,  # in `--node URL`
}
_CUT = re.compile(r"\s(#|\||>|2>|&|;)")


def find_readme_commands(text: str) -> list[str]:
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            start = line.find("chainnode ")
            if start < 0:
                continue
            command = line[start:]
            cut = _CUT.search(command)
            command = command[: cut.start()] if cut else command
            command = re.sub(r"\$\([^)]*\)", "SUBSTITUTED", command)  # `$(date +%F)` in an argument
            if "[" in command or re.search(r"\w\|\w", command):
                continue  # a synopsis, not a command
            for name in sorted(VARIABLES, key=len, reverse=True):
                command = re.sub(r"(?<![\w$])" + re.escape(name) + r"\b", VARIABLES[name], command)
            commands.append(command.strip())
    return commands


COMMANDS = find_readme_commands((factories.REPO / "README.md").read_text(encoding="utf-8"))


def test_the_readme_has_commands() -> None:
    assert len(COMMANDS) >= 20
    assert any(command.startswith("chainnode council vote") for command in COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_a_readme_command_parses(command: str) -> None:
    argv = shlex.split(command)[1:]
    try:
        parse_arguments(argv)
    except SystemExit as exit_request:
        pytest.fail(f"the README's `{command}` does not parse (exit {exit_request.code})")
