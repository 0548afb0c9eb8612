"""The `chainnode relay` command: carry transactions of one chain into another (issue 14).

    chainnode relay --from URL --to URL --identity DIR [--module M] [--entity E] [--state FILE]
        [--batch N] [--page N] [--threads N] [--wait-ms W] [--timeout S] [--retries N] [--until-caught-up]
    chainnode relay --bench N --writer DIR --from URL --to URL --identity DIR [--state FILE]

`--from` is a node of the source chain, `--to` a node of the destination chain, `--identity` an
entity of the destination chain (its `cert.pem` and `key.pem`) that signs the header updates
and imports.  Every `xchain.send` to the destination chain is carried, and every delivery of
the destination's messages (so a relayer from B to A acknowledges on A what A sent); `--module` and
`--entity` add the transactions with an event of that module and/or about that entity (e.g.
`--module records --entity E`: E's record writes).  `--state` is the file where the relayer
keeps its place (written atomically after every batch); run the command again with the same file
and it goes on where it stopped, without gaps or duplicates.  It runs until SIGTERM or Ctrl-C
(or, with `--until-caught-up`, until it has read every committed event), then prints one
document: what it carried and where it stopped.  Exit 1 with a stable code when the
destination refuses an import (`import_refused`) or a node stays unreachable for `--retries`
rounds.

`--bench N` measures instead (`chainnode.tools.relay_bench`): `--writer` (an entity of the
source chain) writes N records, the relayer carries them, and the document gives imports per
second and the delay from commit on the source to commit on the destination (p50, p99).
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path
from typing import Any

from chainnode.cli.args import EXIT_OK, LOG_LEVELS, parse_positive_int, setup_logging
from chainnode.cli.output import add_output_options, emit

STATE_PATH_DEFAULT = Path("relay-state.json")


def _install_stop_handlers(stop: threading.Event) -> dict[int, Any]:
    """SIGTERM and SIGINT set `stop` (the relayer finishes its request, saves and returns)."""

    def on_signal(signum: int, frame: Any) -> None:
        logging.getLogger("chainnode.relay").info("signal %d: stopping", signum)
        stop.set()

    previous: dict[int, Any] = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous[signum] = signal.signal(signum, on_signal)
    return previous


def run_relay(args: argparse.Namespace) -> int:
    from chainnode.sdk.client import Client, Identity
    from chainnode.tools import relay

    setup_logging(args.log_level)
    config = relay.RelayConfig(
        state_path=args.state,
        selection_module=args.module,
        selection_entity=args.entity,
        events_per_page=args.page,
        batch_txs_max=args.batch,
        wait_ms=args.wait_ms,
        timeout_s=args.timeout,
        retries_max=args.retries,
        fetch_threads=args.threads,
        stop_when_caught_up=args.until_caught_up,
    )
    source = Client(args.source, timeout_s=args.timeout + args.wait_ms / 1000)
    destination = Client(args.destination, timeout_s=args.timeout)
    identity = Identity.load(args.identity)
    stop = threading.Event()
    previous = _install_stop_handlers(stop)
    try:
        if args.bench is not None:
            from chainnode.tools import relay_bench

            writer = Identity.load(args.writer)
            document: dict[str, Any] = relay_bench.run_relay_bench(
                source, destination, identity, writer, config, records=args.bench, stop=stop
            ).to_json()
        else:
            document = relay.Relayer(source, destination, identity, config, stop=stop).run().to_json()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    emit(args, document, title="relay")
    return EXIT_OK


# (option, attribute, lowest, highest): what the API and the relayer's bounds allow.
_RANGES = (
    ("--page", "page", 1, 1000),  # the events API answers at most 1000 per page
    ("--batch", "batch", 1, 1000),
    ("--threads", "threads", 1, 32),
    ("--wait-ms", "wait_ms", 0, 30_000),  # the events API waits at most 30 s
    ("--retries", "retries", 0, 1000),
    ("--timeout", "timeout", 0.1, 600.0),
)


def check_relay_arguments(args: argparse.Namespace) -> None:
    """Usage errors (exit 2): `--bench` without `--writer`, a bound outside its range."""
    if args.bench is not None and args.writer is None:
        args.parser.error("--bench needs --writer DIR (an entity of the source chain)")
    for option, name, lowest, highest in _RANGES:
        if not lowest <= getattr(args, name) <= highest:
            args.parser.error(f"{option} must be within {lowest}..{highest}, got {getattr(args, name)}")


def add_commands(commands: Any) -> None:
    """Mount `relay` on the `chainnode` parser's subcommands."""
    parser = commands.add_parser("relay", help="carry transactions of one chain into another")
    parser.add_argument(
        "--from", dest="source", required=True, metavar="URL", help="a node of the source chain"
    )
    parser.add_argument(
        "--to", dest="destination", required=True, metavar="URL", help="a node of the destination chain"
    )
    parser.add_argument(
        "--identity", type=Path, required=True, metavar="DIR", help="the signing entity on the destination"
    )
    parser.add_argument("--module", metavar="M", help="also carry transactions with an event of this module")
    parser.add_argument(
        "--entity", metavar="E", help="also carry transactions about or signed by this entity"
    )
    parser.add_argument(
        "--state",
        type=Path,
        default=STATE_PATH_DEFAULT,
        metavar="FILE",
        help="where the relayer keeps its place",
    )
    parser.add_argument(
        "--batch", type=parse_positive_int, default=200, metavar="N", help="imports per batch"
    )
    parser.add_argument("--page", type=parse_positive_int, default=500, metavar="N", help="events per read")
    parser.add_argument("--wait-ms", type=int, default=1000, metavar="W", help="long poll of an events read")
    parser.add_argument(
        "--timeout", type=float, default=30.0, metavar="S", help="per request and commit wait"
    )
    parser.add_argument(
        "--retries", type=int, default=30, metavar="N", help="failed rounds in a row before exit 1"
    )
    parser.add_argument(
        "--threads",
        type=parse_positive_int,
        default=4,
        metavar="N",
        help="concurrent proof reads and commit waits",
    )
    parser.add_argument(
        "--until-caught-up", action="store_true", help="stop once every committed event is read"
    )
    parser.add_argument("--bench", type=parse_positive_int, metavar="N", help="measure with N records")
    parser.add_argument(
        "--writer", type=Path, metavar="DIR", help="--bench: the entity writing on the source"
    )
    parser.add_argument(
        "--log-level", default="info", choices=LOG_LEVELS, help="log on stderr from this level"
    )
    add_output_options(parser)
    parser.set_defaults(run=run_relay, check=check_relay_arguments, parser=parser)
