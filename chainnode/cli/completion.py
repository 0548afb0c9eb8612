"""`chainnode completion bash|zsh`: the shell code that completes the command's words.

Theory of operation: argcomplete completes from the same argparse tree that parses the command
line, so a new command or option is completable the moment it exists.  The script this command
prints (argcomplete's `shellcode`) makes the shell run `chainnode` itself with `_ARGCOMPLETE` set
and the line typed so far; `chainnode.cli.main.main` sees that variable before anything else,
builds the parser and lets argcomplete answer (and exit) instead of running a command.  Only
then is argcomplete imported, so neither `chainnode --help` nor any command pays for it.

    chainnode completion bash > ~/.local/share/bash-completion/completions/chainnode
    eval "$(chainnode completion zsh)"    # in ~/.zshrc, after compinit

The script is shell code, not a document: this command has no `--json`.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

SHELLS = ("bash", "zsh")
COMPLETION_VARIABLE = "_ARGCOMPLETE"  # set by the shell code when it asks for completions


def is_completion_request() -> bool:
    """True when the shell's completion code runs `chainnode` to ask for the next words."""
    return COMPLETION_VARIABLE in os.environ


def answer_completion_request(parser: argparse.ArgumentParser) -> None:
    """Print the completions of the line in the environment and exit the process (argcomplete)."""
    import argcomplete

    argcomplete.autocomplete(parser)


def run_completion(args: argparse.Namespace) -> int:
    from argcomplete.shell_integration import shellcode

    print(shellcode(["chainnode"], shell=args.shell), end="")
    return 0


def add_commands(commands: Any) -> None:
    """Mount `completion` on the `chainnode` parser's subcommands."""
    parser = commands.add_parser("completion", help="print shell code that completes chainnode's commands")
    parser.add_argument("shell", choices=SHELLS, help="the shell to complete in")
    parser.set_defaults(run=run_completion)
