"""Commands an operator runs: `network init`, `node run`, `devnet`, `bench`."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chainnode.cli.args import (
    DEVNET_BASE_PORT_DEFAULT,
    DEVNET_VALIDATORS_DEFAULT,
    EXIT_OK,
    LOG_FORMATS,
    LOG_LEVELS,
    parse_port,
    parse_positive_int,
    setup_logging,
)
from chainnode.cli.output import add_output_options, emit, get_progress_sink, is_json_output, print_json

if TYPE_CHECKING:
    pass


def run_network_init(args: argparse.Namespace) -> int:
    from chainnode.tools import hosts, network

    out_dir: Path = args.out
    from_file = hosts.load_hosts_file(args.hosts) if args.hosts is not None else []
    from_options = [hosts.parse_node_spec(text) for text in args.node]
    layout = network.init_network(
        out_dir,
        validators=args.validators,
        chain_id=args.chain_id,
        base_port=args.base_port,
        spare_nodes=args.spare_nodes,
        observers=args.observers,
        host_entries=hosts.merge_entries(from_file, from_options),
        listen_host=args.listen,
        data_dir=args.data_dir,
    )
    for warning in layout.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    summary = json.loads((out_dir / "network.json").read_text())
    entities = summary.pop("entities", [])
    summary["entities"] = len(entities)
    summary["out_dir"] = str(out_dir)
    emit(args, summary, title=f"network {summary.get('chain_id')} written to {out_dir}")
    return EXIT_OK


def run_node(args: argparse.Namespace) -> int:
    import asyncio

    from chainnode.node import runtime as node

    setup_logging(args.log_level, args.log_format)
    if args.rebuild:
        _set_data_aside_for_rebuild(args.config)
    asyncio.run(node.run_node(args.config))
    return EXIT_OK


def _set_data_aside_for_rebuild(config_path: Path) -> None:
    """`node run --rebuild`: the damaged data directory moves aside; the node catches up."""
    import time

    from chainnode.node.config import load_node_config
    from storage.ledger import set_aside_for_rebuild

    data_dir = load_node_config(config_path).data_dir
    aside = set_aside_for_rebuild(data_dir, now_s=time.time())
    if aside is not None:
        logging.getLogger("chainnode.node.runtime").warning(
            "rebuilding: the data directory %s moved to %s (its vote log, if any, carried over); "
            "starting on an empty ledger, catching up from the peers",
            data_dir,
            aside,
        )


def run_devnet(args: argparse.Namespace) -> int:
    from chainnode.tools import devnet

    setup_logging(args.log_level)
    directory: Path = args.dir or Path("devnet")
    validators, base_port = _check_devnet_directory(directory, args.validators, args.base_port)
    summary = devnet.run_devnet(
        validators=validators,
        directory=args.dir,
        txs=args.txs,
        base_port=base_port,
        progress=get_progress_sink(args),
    )
    if summary is not None:  # the devnet document; progress went to stderr
        emit(args, summary.to_json(), title="devnet summary")
    return EXIT_OK


def _check_devnet_directory(
    directory: Path, validators: int | None, base_port: int | None
) -> tuple[int, int]:
    """The validators and base port to run: a new network's options (defaults 4 and 26600), or the
    existing network's own, which a different `--validators` or `--base-port` does not silently
    override (the directory's nodes keep the ports they were written with)."""
    from chainnode.core.errors import ConfigError

    layout_path = directory / "network.json"
    if not (directory / "genesis.json").exists() or not layout_path.exists():
        return validators or DEVNET_VALIDATORS_DEFAULT, base_port or DEVNET_BASE_PORT_DEFAULT
    try:
        nodes = json.loads(layout_path.read_text(encoding="utf-8"))["nodes"]
        existing = sum(1 for node in nodes if node.get("role", "validator") == "validator")
        existing_port = int(str(nodes[0]["api_url"]).rsplit(":", 1)[1].strip("/")) - 1
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError) as error:
        raise ConfigError(f"{layout_path} is not a network layout: {error}") from error
    remedy = (
        f"run `chainnode devnet --dir {directory}` to start it as it is, or remove {directory} "
        "(or choose another --dir) for a new network"
    )
    if validators is not None and validators != existing:
        raise ConfigError(
            f"{directory} already holds a {existing}-validator network, not {validators}; {remedy}"
        )
    if base_port is not None and base_port != existing_port:
        raise ConfigError(
            f"{directory} already holds a network on ports from {existing_port}, not {base_port}; {remedy}"
        )
    return existing, existing_port


def _rate(text: str) -> int | None:
    """`max` (None: as fast as the nodes accept) or a positive number of transactions per second."""
    return None if text == "max" else parse_positive_int(text)


def run_bench(args: argparse.Namespace) -> int:
    from chainnode.tools import bench

    setup_logging(args.log_level)
    report = bench.run_bench(
        bench.BenchConfig(
            validators=args.validators,
            txs=args.txs,
            rate_tps=args.rate,
            directory=args.dir,
            base_port=args.base_port,
            batch_txs=args.batch,
            mix=args.mix,
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


def add_commands(commands: Any) -> None:
    network = commands.add_parser("network", help="bootstrap a network")
    network_commands = network.add_subparsers(dest="network_command", required=True)
    init = network_commands.add_parser("init", help="write keys, certificates, genesis and configs")
    init.add_argument(
        "--validators", type=parse_positive_int, required=True, metavar="N", help="genesis validators (4..)"
    )
    init.add_argument("--out", type=Path, required=True, metavar="DIR", help="a new directory to write")
    init.add_argument("--chain-id", default="pilot-net", metavar="ID", help="the chain's name")
    init.add_argument(
        "--base-port", type=parse_port, default=26600, metavar="P", help="node i: p2p P+2i, API P+2i+1"
    )
    init.add_argument(
        "--spare-nodes",
        type=int,
        default=0,
        metavar="K",
        help="extra validator nodes outside the genesis set, for the council to add later",
    )
    init.add_argument(
        "--observers",
        type=int,
        default=0,
        metavar="K",
        help="non-voting full nodes (observer-01, ...) that follow the chain, serve the API and forward",
    )
    init.add_argument(
        "--hosts",
        type=Path,
        metavar="FILE",
        help="one line per node: NAME=HOST[:P2P_PORT[:API_PORT]] [listen=HOST] (default: all on 127.0.0.1)",
    )
    init.add_argument(
        "--node",
        action="append",
        default=[],
        metavar="NAME=HOST[:P2P_PORT[:API_PORT]]",
        help="a node's address (repeatable; overrides the hosts file for that node)",
    )
    init.add_argument(
        "--listen",
        metavar="HOST",
        help="what every node binds unless its entry says listen=HOST (e.g. 0.0.0.0 in containers)",
    )
    init.add_argument(
        "--data-dir",
        default="data",
        metavar="PATH",
        help="every node's data directory in node.toml: relative to the node's directory "
        "or absolute (a container's data volume)",
    )
    add_output_options(init)
    init.set_defaults(run=run_network_init)

    node = commands.add_parser("node", help="run a node")
    node_commands = node.add_subparsers(dest="node_command", required=True)
    run = node_commands.add_parser("run", help="run a validator node until interrupted")
    run.add_argument("--config", type=Path, required=True, metavar="PATH", help="the node's node.toml")
    run.add_argument(
        "--log-level",
        default=None,
        choices=LOG_LEVELS,
        help="log on stderr from this level (default: $CHAINNODE_LOG_LEVEL, else info)",
    )
    run.add_argument(
        "--log-format",
        default=None,
        choices=LOG_FORMATS,
        help="text: one human line per record; json: one JSON object per line with level, logger, "
        "message, height, view, peer (default: $CHAINNODE_LOG_FORMAT, else text)",
    )
    run.add_argument(
        "--rebuild",
        action="store_true",
        help="move a damaged data directory aside (to <data>.corrupt-<time>) and catch up from the peers",
    )
    run.set_defaults(run=run_node)

    devnet = commands.add_parser("devnet", help="run a local network in one command")
    devnet.add_argument(
        "--validators",
        type=parse_positive_int,
        default=None,
        metavar="N",
        help="validators of a new network (default: 4); an existing --dir keeps its own count",
    )
    devnet.add_argument(
        "--dir", type=Path, default=None, metavar="DIR", help="the network directory (default: ./devnet)"
    )
    devnet.add_argument(
        "--txs",
        type=parse_positive_int,
        default=None,
        metavar="N",
        help="submit N transactions, check every validator committed them, stop (default: run until Ctrl-C)",
    )
    devnet.add_argument(
        "--base-port",
        type=parse_port,
        default=None,
        metavar="P",
        help="a new network's ports, node i: p2p P+2i, API P+2i+1 (default: 26600); "
        "an existing --dir keeps its own",
    )
    devnet.add_argument("--log-level", default="info", choices=LOG_LEVELS, help="log from this level")
    add_output_options(devnet)
    devnet.set_defaults(run=run_devnet)

    bench = commands.add_parser("bench", help="measure throughput and latency of a local network")
    bench.add_argument("--validators", type=parse_positive_int, default=4, metavar="N", help="validators")
    bench.add_argument(
        "--txs", type=parse_positive_int, default=10_000, metavar="N", help="transactions to submit"
    )
    bench.add_argument(
        "--rate",
        type=_rate,
        default=None,
        metavar="R|max",
        help="submit R tx/s, or as fast as the nodes accept (max, the default)",
    )
    bench.add_argument(
        "--batch", type=parse_positive_int, default=500, metavar="N", help="transactions per submit request"
    )
    bench.add_argument(
        "--mix",
        choices=["pilot", "records"],
        default="pilot",
        help="pilot: 80%% records.put, 10%% record sharing, 10%% assets (the default); "
        "records: records.put only, the workload of the earlier figures",
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
