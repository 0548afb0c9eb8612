"""The `chainnode` command.

Theory of operation: one argparse tree, one small function per command, the commands grouped
by who runs them: `chainnode.cli.operate` (network init, node run, devnet, bench),
`chainnode.cli.queries` (tx submit, tx proof, query), `chainnode.cli.audit` (audit,
verify-proof, export), `governance`, `assets`, `records`, `events`; this module assembles the
parser and runs the command.  Only
the standard library is imported at start-up; each command imports the part of
the project it needs when it runs, so `chainnode --help` stays fast and a
broken optional module cannot break unrelated commands.

Output (`chainnode.cli.output`): one answer per command, a readable view on a terminal (`--text`
forces it) or exactly one JSON document with `--json` or when stdout is not a terminal.  Every
option's help shows its default (`_HelpFormatter`).

Exit codes: 0 on success; 1 when a command fails with a typed
`chainnode.core.errors.ChainError` (printed as one line `error: <code>: <message>`
on stderr, never a traceback); 2 for usage errors (argparse); 130 on Ctrl-C.

Commands (`authority ...` and `council ...` are described in `chainnode.cli.governance`):
    chainnode authority issue|register|renew|revoke --zone-dir DIR/zones/<zone> ...
    chainnode council propose|vote|list --member-dir DIR/council/<member> --node URL ...
    chainnode records put|grant|revoke|anchor|mark-read|get|list|history|grants|verify ...
    chainnode asset create-collection|mint|transfer|...|provenance ...   (`chainnode.cli.assets`)
    chainnode xchain chains|client CHAIN|fact CHAIN TXHASH|facts|outbound|inbound CHAIN|send DEST ...
    chainnode network init --validators N --out DIR [--chain-id ID] [--base-port P] [--spare-nodes K]
        [--observers K] [--hosts FILE] [--node NAME=HOST[:P2P_PORT[:API_PORT]]]... [--listen HOST]
        [--data-dir PATH]
    chainnode node run --config PATH [--rebuild] [--log-format text|json] [--log-level L]
    chainnode status --node URL [--watch [--count N]] [--interval S]   (`chainnode.cli.operate`)
    chainnode backup --data-dir DIR --out DIR2   (a running node's ledger; `chainnode.tools.backup`)
    chainnode devnet [--validators 4] [--dir DIR] [--txs N] [--base-port P]
        (an existing DIR runs as written: another --validators or --base-port is refused)
    chainnode bench [--validators 4] [--txs N] [--rate R|max] [--out FILE] [--dir DIR] [--base-port P]
    chainnode tx submit --identity DIR --node URL (--key K --value V | --file TXS) [--wait]
    chainnode tx proof HASH --node URL [--out FILE]
    chainnode query status|block [H]|tx HASH|record ENTITY KEY [--version N] --node URL
    chainnode query entity ID|zone ID|zones|validators [--height H]|proposal N|proposals [--status S]
                    |evidence|checkpoint|certificates [--within-days N] --node URL [--limit N --cursor C]
    chainnode --version
    chainnode completion bash|zsh      (shell code that completes commands and options)
    chainnode audit (--data-dir DIR | --node URL) --genesis G [--report FILE] [--from H] [--to H]
                    [--resume CHECKPOINT] [--save-checkpoint CHECKPOINT] [--workers N]
    chainnode verify-proof FILE --genesis G [--checkpoint CHECKPOINT]
    chainnode export --data-dir DIR --out FILE.jsonl [--from H] [--to H] [--genesis G]
    chainnode relay --from URL --to URL --identity DIR [--module M --entity E] [--state FILE]
        (`chainnode.cli.relay`)
    chainnode light sync|status|verify-proof ... --state DIR   (`chainnode.cli.light`)
    chainnode events --node URL [--from CURSOR|head] [--module M] [--entity E] [--limit N] [--follow]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from chainnode.cli.args import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
)

if TYPE_CHECKING:
    pass


# ---------------------------------------------------------------- the parser


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's default in its help, unless there is none to tell (None, False) or the text
    already says it; an option without text still shows its default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or default in (None, False, argparse.SUPPRESS)
            or default == []
            or not action.option_strings
        ):
            return text
        return f"{text} (default: %(default)s)".strip()


class _Parser(argparse.ArgumentParser):
    """The parser of every command and subcommand (`add_subparsers` makes them of this class)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


class _VersionAction(argparse.Action):
    """`--version`: read from the installed package's metadata only when asked."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        from importlib import metadata

        try:
            version = metadata.version("chainnode")
        except metadata.PackageNotFoundError:
            version = "unknown (not installed)"
        print(f"chainnode {version}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="chainnode", description="A permissioned blockchain node for the pilot network.")
    parser.add_argument("--version", action=_VersionAction, help="print the installed version and exit")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from chainnode.cli import audit as cli_audit  # standard library only at import time
    from chainnode.cli import operate as cli_operate  # standard library only at import time
    from chainnode.cli import queries as cli_queries  # standard library only at import time

    cli_operate.add_commands(commands)
    cli_queries.add_commands(commands)
    cli_audit.add_commands(commands)
    from chainnode.cli import governance as cli_governance  # standard library only at import time

    cli_governance.add_commands(commands)
    from chainnode.cli import assets as cli_assets  # standard library only at import time

    cli_assets.add_commands(commands)
    from chainnode.cli import records as cli_records  # standard library only at import time

    cli_records.add_commands(commands)
    from chainnode.cli import events as cli_events  # standard library only at import time

    cli_events.add_commands(commands)
    from chainnode.cli import relay as cli_relay  # standard library only at import time

    cli_relay.add_commands(commands)
    from chainnode.cli import light as cli_light  # standard library only at import time

    cli_light.add_commands(commands)
    from chainnode.cli import xchain as cli_xchain  # standard library only at import time

    cli_xchain.add_commands(commands)
    from chainnode.cli import completion as cli_completion  # standard library only at import time

    cli_completion.add_commands(commands)
    return parser


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The parsed command line after every usage check; SystemExit (2) for a usage error."""
    args = build_parser().parse_args(argv)
    from chainnode.cli.queries import check_submit_arguments

    check_submit_arguments(args)
    check = getattr(args, "check", None)  # a command's own usage checks (exit 2)
    if check is not None:
        check(args)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    from chainnode.cli.completion import answer_completion_request, is_completion_request

    if argv is None and is_completion_request():  # the shell asks for completions: answer, exit
        answer_completion_request(build_parser())
    try:
        args = parse_arguments(argv)
    except SystemExit as exit_request:
        code = exit_request.code
        return code if isinstance(code, int) else EXIT_USAGE
    from chainnode.core.errors import ChainError

    try:
        result: int = args.run(args)
    except ChainError as error:
        message = " ".join(error.message.split())
        print(f"error: {error.code}: {message}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return result


if __name__ == "__main__":
    raise SystemExit(main())
