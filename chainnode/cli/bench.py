"""`chainnode bench`: its options and the command (the benchmark itself is `chainnode.tools.bench`).

`--workload` names the transaction mix (`realistic`, the default; `pilot`; `records`); `--mix`
is its deprecated alias (same destination, a warning on stderr).  `--duration S` submits until
S seconds have passed instead of every signed transaction; `--txs` is then the cap of the
transactions signed ahead (default: what `--rate` sends in the duration, 10 000 at max rate).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from chainnode.cli.args import EXIT_OK, LOG_LEVELS, parse_port, parse_positive_int, setup_logging
from chainnode.cli.output import add_output_options, is_json_output, print_json

# The mixes of `chainnode.tools.bench_mix.MIXES`, the default first (not imported: `--help` stays quick).
WORKLOADS = ("realistic", "pilot", "records")


def parse_rate(text: str) -> int | None:
    """`max` (None: as fast as the nodes accept) or a positive number of transactions per second."""
    return None if text == "max" else parse_positive_int(text)


def parse_duration(text: str) -> float:
    """A positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds: {text}")
    return value


class _DeprecatedAlias(argparse.Action):
    """Stores like the option it stands for, and says on stderr which option that is."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        print(f"warning: {option_string} is deprecated; use --workload", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_bench_command(commands: Any) -> None:
    bench = commands.add_parser("bench", help="measure throughput and latency of a local network")
    bench.add_argument("--validators", type=parse_positive_int, default=4, metavar="N", help="validators")
    bench.add_argument(
        "--txs",
        type=parse_positive_int,
        default=None,
        metavar="N",
        help="transactions to sign and submit (default: 10000); with --duration the cap of signed "
        "transactions (default: rate x duration, 10000 at max rate)",
    )
    bench.add_argument(
        "--rate",
        type=parse_rate,
        default=None,
        metavar="R|max",
        help="submit R tx/s, or as fast as the nodes accept (max, the default)",
    )
    bench.add_argument(
        "--duration",
        type=parse_duration,
        default=None,
        metavar="S",
        help="submit for S seconds (a long run) instead of until all --txs are sent; stops early "
        "when the --txs signed ahead run out",
    )
    bench.add_argument(
        "--batch", type=parse_positive_int, default=500, metavar="N", help="transactions per submit request"
    )
    bench.add_argument(
        "--workload",
        choices=WORKLOADS,
        default="realistic",
        help="realistic (the default): per 1000 txs 700 records.put, 150 document anchors, 30 grants, "
        "60 asset mints, 59 transfers, 1 council vote; pilot: 80%% records.put, 10%% record sharing, "
        "10%% assets; records: records.put only, the workload of the earlier figures",
    )
    bench.add_argument(
        "--mix",
        dest="workload",
        choices=WORKLOADS,
        default=argparse.SUPPRESS,
        action=_DeprecatedAlias,
        help="deprecated alias of --workload",
    )
    bench.add_argument("--out", type=Path, default=None, metavar="FILE", help="write the JSON report")
    bench.add_argument(
        "--dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="a fresh directory for the network (default: a temporary one)",
    )
    bench.add_argument(
        "--base-port", type=parse_port, default=27600, metavar="P", help="node i: p2p P+2i, API P+2i+1"
    )
    bench.add_argument("--log-level", default="warning", choices=LOG_LEVELS, help="log from this level")
    add_output_options(bench)
    bench.set_defaults(run=run_bench)


def run_bench(args: argparse.Namespace) -> int:
    from chainnode.tools import bench

    setup_logging(args.log_level)
    report = bench.run_bench(
        bench.BenchConfig(
            validators=args.validators,
            txs=bench.resolve_txs(args.txs, args.rate, args.duration),
            rate_tps=args.rate,
            directory=args.dir,
            base_port=args.base_port,
            batch_txs=args.batch,
            mix=args.workload,
            duration_s=args.duration,
        )
    )
    if is_json_output(args):
        print_json(report.to_json())
    else:
        print(bench.format_report(report))
    if args.out is not None:
        bench.write_report(report, args.out)
        print(f"report written to {args.out}", file=sys.stderr)
    return EXIT_OK
