"""Commands an operator runs: `network init`, `node run`, `devnet`, `bench` (its options and command in
`chainnode.cli.bench`)."""

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
from chainnode.cli.bench import add_bench_command
from chainnode.cli.output import add_output_options, emit, get_progress_sink, is_json_output

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

    from chainnode.node import process as node

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


# ---------------------------------------------------------------- status and backup


def run_status(args: argparse.Namespace) -> int:
    """One view (two readings `--interval` apart, for the rates), or `--watch` until Ctrl-C."""
    import time

    from chainnode.core.errors import ConfigError
    from chainnode.sdk.client import Client
    from chainnode.tools import node_status

    if args.interval <= 0:
        raise ConfigError(f"--interval must be positive, not {args.interval}")
    client = Client(args.node, timeout_s=args.timeout)
    if args.watch:
        return _watch_status(args, client)
    first = node_status.take_sample(client)
    time.sleep(args.interval)
    view = node_status.compute_view(first, node_status.take_sample(client))
    emit(args, view, title=f"node {view['node_id']} of {view['chain_id']}")
    return EXIT_OK


def _watch_status(args: argparse.Namespace, client: Any) -> int:
    """Readings every `--interval`: a live terminal view, or one JSON line each."""
    import contextlib
    import time

    from chainnode.sdk.errors import ClientError
    from chainnode.tools import node_status

    live: Any = None
    if not is_json_output(args):
        from rich.live import Live

        live = Live(_render_status(None), auto_refresh=False)
    previous: node_status.StatusSample | None = None
    readings = 0
    with live if live is not None else contextlib.nullcontext(), contextlib.suppress(KeyboardInterrupt):
        while args.count is None or readings < args.count:
            if readings:
                time.sleep(args.interval)
            readings += 1
            try:
                current = node_status.take_sample(client)
            except ClientError as error:  # a node restarting: say so and keep watching
                view: dict[str, Any] = {"error": error.code, "message": error.message}
                previous = None
            else:
                view, previous = node_status.compute_view(previous, current), current
            if live is None:
                print(json.dumps(view), flush=True)
            else:
                live.update(_render_status(view), refresh=True)
    return EXIT_OK


def _render_status(view: dict[str, Any] | None) -> Any:
    """The live view: the node's figures, then the certificates expiring (rich renderables)."""
    from rich.console import Group
    from rich.table import Table

    from chainnode.cli.output import format_value

    figures = Table(show_header=False, box=None, title="chainnode status", title_justify="left")
    if view is None:
        figures.add_row("waiting for the first reading…")
        return figures
    for name in ("node_id", "chain_id", "ready", "height", "view", "changing_view", "peers_connected"):
        figures.add_row(name, format_value(name, view.get(name)))
    for name in ("peers", "mempool_txs", "tx_per_s", "blocks_per_s", "clock_offset_ms", "error", "message"):
        if name in view:
            figures.add_row(name, format_value(name, view[name]))
    certificates = view.get("expiring_certificates") or []
    if not certificates:
        figures.add_row("expiring_certificates", f"none within {view.get('certificate_warning_days')} days")
        return figures
    expiring = Table("subject", "kind", "zone", "not_after", "in days", title="certificates expiring")
    for item in certificates:
        expiring.add_row(
            str(item["subject"]),
            str(item["kind"]),
            str(item["zone"]),
            format_value("not_after_ms", item["not_after_ms"]),
            str(item["expires_in_days"]),
        )
    return Group(figures, expiring)


def run_backup(args: argparse.Namespace) -> int:
    from chainnode.tools.backup import back_up

    report = back_up(args.data_dir, args.out)
    emit(
        args,
        {
            "out_dir": str(report.out_dir),
            "height": report.height,
            "block_hash": report.block_hash.hex(),
            "state_root": report.state_root.hex(),
            "keys": report.keys,
            "bytes_written": report.bytes_written,
            "attempts": report.attempts,
            "elapsed_s": round(report.elapsed_s, 3),
        },
        title=f"backup of {args.data_dir} at height {report.height} written to {report.out_dir}",
    )
    return EXIT_OK


def add_commands(commands: Any) -> None:
    _add_network_commands(commands)
    _add_node_commands(commands)
    _add_devnet_command(commands)
    add_bench_command(commands)  # in chainnode.cli.bench, with its options
    _add_status_command(commands)
    _add_backup_command(commands)


def _add_network_commands(commands: Any) -> None:
    network = commands.add_parser("network", help="bootstrap a network")
    network_commands = network.add_subparsers(dest="network_command", required=True)
    from chainnode.cli import join as cli_join  # standard library only at import time

    cli_join.add_network_commands(network_commands)
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


def _add_node_commands(commands: Any) -> None:
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


def _add_devnet_command(commands: Any) -> None:
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


def _add_status_command(commands: Any) -> None:
    status = commands.add_parser("status", help="a node's height, view, peers, mempool, tx/s, certificates")
    status.add_argument("--node", required=True, metavar="URL", help="the node's API URL")
    status.add_argument(
        "--watch", action="store_true", help="keep watching: a live view (JSON: one line per reading)"
    )
    status.add_argument(
        "--interval",
        type=float,
        default=1.0,
        metavar="S",
        help="seconds between readings (rates are measured over it)",
    )
    status.add_argument(
        "--count",
        type=parse_positive_int,
        default=None,
        metavar="N",
        help="with --watch: stop after N readings",
    )
    status.add_argument(
        "--timeout", type=float, default=10.0, metavar="S", help="seconds to wait for each answer"
    )
    add_output_options(status)
    status.set_defaults(run=run_status)


def _add_backup_command(commands: Any) -> None:
    backup = commands.add_parser("backup", help="a consistent copy of a node's ledger, also while it runs")
    backup.add_argument(
        "--data-dir",
        type=Path,
        required=True,
        metavar="DIR",
        help="the node's data directory (holding ledger/)",
    )
    backup.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="DIR",
        help="a new (or empty) directory: a node data directory",
    )
    add_output_options(backup)
    backup.set_defaults(run=run_backup)
