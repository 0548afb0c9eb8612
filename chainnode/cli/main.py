"""The `chainnode` command.

Theory of operation: one argparse tree, one small function per command.  Only
the standard library is imported at start-up; each command imports the part of
the project it needs when it runs, so `chainnode --help` stays fast and a
broken optional module cannot break unrelated commands.

Exit codes: 0 on success; 1 when a command fails with a typed
`chainnode.core.errors.ChainError` (printed as one line `error: <code>: <message>`
on stderr, never a traceback); 2 for usage errors (argparse); 130 on Ctrl-C.

Commands (`authority ...` and `council ...` are described in `chainnode.cli.governance`):
    chainnode authority issue|register|renew|revoke --zone-dir DIR/zones/<zone> ...
    chainnode council propose|vote|list --member-dir DIR/council/<member> --node URL ...
    chainnode records put|grant|revoke|anchor|mark-read|get|list|history|grants|verify ...
    chainnode asset create-collection|mint|transfer|...|provenance ...   (`chainnode.cli.assets`)
    chainnode network init --validators N --out DIR [--chain-id ID] [--base-port P] [--spare-nodes K]
        [--observers K] [--hosts FILE] [--node NAME=HOST[:P2P_PORT[:API_PORT]]]... [--listen HOST]
        [--data-dir PATH]
    chainnode node run --config PATH [--rebuild]
    chainnode devnet [--validators 4] [--dir DIR] [--txs N] [--base-port P]
    chainnode bench [--validators 4] [--txs N] [--rate R|max] [--out FILE] [--dir DIR] [--base-port P]
    chainnode tx submit --identity DIR --node URL (--key K --value V | --file TXS) [--wait]
    chainnode query status|block [H]|tx HASH|record ENTITY KEY [--version N] --node URL
    chainnode audit (--data-dir DIR | --node URL) --genesis G [--report FILE] [--from H] [--to H]
                    [--resume CHECKPOINT] [--save-checkpoint CHECKPOINT] [--workers N]
    chainnode verify-proof FILE --genesis G [--checkpoint CHECKPOINT]
    chainnode export --data-dir DIR --out FILE.jsonl [--from H] [--to H] [--genesis G]

`tx submit --file TXS` reads JSON Lines: one object per line, either
`{"key": K, "value": "text"}` or `{"key": K, "value_hex": "..."}`; blank lines and
lines starting with `#` are skipped.  Each line becomes one `records.put`
transaction; they are submitted in batches of at most 10,000.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chainnode.cli.args import parse_port, parse_positive_int, print_json, wait_and_report

if TYPE_CHECKING:
    from chainnode.sdk.client import Client, Identity

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
VALID_FOR_BLOCKS = 1000
BATCH_TXS_MAX = 10_000


# ---------------------------------------------------------------- argument types


def _height(text: str) -> str:
    if text != "latest" and not (text.isascii() and text.isdigit()):
        raise argparse.ArgumentTypeError(f"a height is a non-negative integer or 'latest': {text!r}")
    return text


def _tx_hash(text: str) -> str:
    from chainnode.core.hexstr import HexError, parse_hex

    try:
        parse_hex(text, "a transaction hash", length=32)
    except HexError as error:
        raise argparse.ArgumentTypeError(f"a transaction hash is 64 hex digits: {text!r}") from error
    return text.lower()


# ---------------------------------------------------------------- output


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


# ---------------------------------------------------------------- commands


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
    print_json(summary)
    return EXIT_OK


def run_node(args: argparse.Namespace) -> int:
    import asyncio

    from chainnode.node import runtime as node

    _setup_logging(args.log_level)
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

    _setup_logging(args.log_level)
    return devnet.run_devnet(
        validators=args.validators, directory=args.dir, txs=args.txs, base_port=args.base_port
    )


def _rate(text: str) -> int | None:
    """`max` (None: as fast as the nodes accept) or a positive number of transactions per second."""
    return None if text == "max" else parse_positive_int(text)


def run_bench(args: argparse.Namespace) -> int:
    from chainnode.tools import bench

    _setup_logging(args.log_level)
    report = bench.run_bench(
        bench.BenchConfig(
            validators=args.validators,
            txs=args.txs,
            rate_tps=args.rate,
            directory=args.dir,
            base_port=args.base_port,
            batch_txs=args.batch,
        )
    )
    print(bench.format_report(report))
    if args.out is not None:
        bench.write_report(report, args.out)
        print(f"report written to {args.out}")
    return EXIT_OK


def _read_tx_file(path: Path) -> list[tuple[str, bytes]]:
    from chainnode.core.errors import ConfigError
    from chainnode.core.hexstr import HexError, parse_hex

    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read {path}: {error}") from error
    items: list[tuple[str, bytes]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            value = json.loads(line)
            key = value["key"]
            data = (
                parse_hex(value["value_hex"], "value_hex")
                if "value_hex" in value
                else str(value["value"]).encode("utf-8")
            )
        except HexError as error:
            raise ConfigError(f"{path}:{number}: {error.message}") from error
        except (ValueError, TypeError, KeyError) as error:
            raise ConfigError(
                f'{path}:{number}: expected {{"key": ..., "value": ...}} or '
                f'{{"key": ..., "value_hex": ...}} ({type(error).__name__}: {error})'
            ) from error
        if not isinstance(key, str):
            raise ConfigError(f"{path}:{number}: key must be a string")
        items.append((key, data))
    if not items:
        raise ConfigError(f"{path}: no transactions in the file")
    return items


def _submit_file(
    client: Client, signer: Identity, chain_id: str, valid_until: int, args: argparse.Namespace
) -> int:
    from chainnode.core.statuses import TxStatus
    from chainnode.sdk.client import ClientError, build_transaction

    items = _read_tx_file(args.file)
    txs = [
        build_transaction(
            signer,
            chain_id=chain_id,
            module="records",
            action="put",
            args=(key, value),
            valid_until=valid_until,
        )
        for key, value in items
    ]
    results: list[dict[str, Any]] = []
    for start in range(0, len(txs), BATCH_TXS_MAX):
        answer = client.submit_batch(txs[start : start + BATCH_TXS_MAX])
        results.extend(answer.get("results", []))
    accepted = [item["hash"] for item in results if item.get("status") == TxStatus.PENDING]
    print_json({"accepted": len(accepted), "rejected": len(results) - len(accepted), "results": results})
    if args.wait:
        failed = 0
        for tx_hash in accepted:
            answer = client.wait_for_commit(tx_hash, timeout_s=args.timeout)
            if (answer.get("receipt") or {}).get("code", 0) != 0:
                failed += 1
        print_json({"committed": len(accepted), "failed": failed})
        if failed:
            raise ClientError(f"{failed} committed transactions failed", code="failed")
    if len(accepted) != len(results):
        raise ClientError(f"{len(results) - len(accepted)} transactions were rejected", code="rejected")
    return EXIT_OK


def run_tx_submit(args: argparse.Namespace) -> int:
    from chainnode.core.statuses import TxStatus
    from chainnode.sdk.client import Client, Identity, build_transaction

    signer = Identity.load(args.identity)
    client = Client(args.node, timeout_s=args.timeout)
    status = client.get_status()
    chain_id = str(status["chain_id"])
    valid_until = int(status["height"]) + VALID_FOR_BLOCKS
    if args.file is not None:
        return _submit_file(client, signer, chain_id, valid_until, args)
    tx = build_transaction(
        signer,
        chain_id=chain_id,
        module="records",
        action="put",
        args=(args.key, args.value.encode("utf-8")),
        valid_until=valid_until,
    )
    tx_hash = client.submit(tx)
    print_json({"hash": tx_hash, "status": TxStatus.PENDING})
    if args.wait:
        wait_and_report(client, tx_hash, args.timeout)
    return EXIT_OK


def run_query(args: argparse.Namespace) -> int:
    from chainnode.sdk.client import Client

    client = Client(args.node, timeout_s=args.timeout)
    if args.what == "status":
        print_json(client.get_status())
    elif args.what == "block":
        print_json(client.get_block(args.height))
    elif args.what == "tx":
        print_json(client.get_transaction(args.hash))
    else:
        record = client.get_record(args.entity, args.key, args.version)
        if record is None:
            from chainnode.core.errors import ChainError

            what = f"version {args.version} of " if args.version is not None else ""
            raise ChainError(f"no {what}record {args.key!r} of entity {args.entity!r}", code="not_found")
        print_json(record)
    return EXIT_OK


def run_audit(args: argparse.Namespace) -> int:
    from chainnode.app.genesis import load_genesis
    from chainnode.core.errors import ConfigError
    from chainnode.tools.audit import audit_chain, load_checkpoint, save_checkpoint

    genesis = load_genesis(args.genesis)
    checkpoint = load_checkpoint(args.resume) if args.resume is not None else None
    start = (checkpoint.height if checkpoint is not None else 0) + 1
    if args.height_from is not None and args.height_from != start:
        raise ConfigError(
            f"--from {args.height_from}: the state before a height is only known by replaying up to it; "
            f"start at {start}, or resume from a checkpoint at height {args.height_from - 1}"
        )
    if args.height_to is not None and args.height_to < start:
        raise ConfigError(f"--to {args.height_to} is below the first height to audit, {start}")
    report, final = audit_chain(
        genesis,
        data_dir=args.data_dir,
        node_url=args.node,
        height_to=args.height_to,
        checkpoint=checkpoint,
        workers=args.workers,
        timeout_s=args.timeout,
    )
    document = report.to_json()
    if args.report is not None:
        args.report.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    if final is not None and args.save_checkpoint is not None:
        save_checkpoint(args.save_checkpoint, final)
    print_json(
        {
            key: document[key]
            for key in (
                "result",
                "height_from",
                "height_to",
                "blocks",
                "transactions",
                "elapsed_s",
                "tx_per_s",
                "verify_per_s",
                "single_core_verify_per_s",
                "workers",
                "first_failure",
            )
        }
    )
    if report.failure is not None:
        print(f"error: audit_failed: {report.failure.describe()}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def run_verify_proof(args: argparse.Namespace) -> int:
    from chainnode.app.genesis import load_genesis
    from chainnode.app.proof import verify_proof
    from chainnode.core.errors import ConfigError

    genesis = load_genesis(args.genesis)
    try:
        proof = json.loads(args.file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ConfigError(f"cannot read the proof {args.file}: {error}") from error
    validator_sets = None
    if args.checkpoint is not None:
        from chainnode.app.proof import StateValidatorSets
        from chainnode.tools.audit import ReplayState, load_checkpoint

        checkpoint = load_checkpoint(args.checkpoint)
        if checkpoint.genesis_hash != genesis.compute_hash():
            raise ConfigError(f"{args.checkpoint} is a checkpoint of another chain")
        validator_sets = StateValidatorSets(ReplayState(dict(checkpoint.state)), checkpoint.height + 1)
    result = verify_proof(proof, genesis, validator_sets)
    print_json(
        {
            "valid": True,
            "chain_id": result.chain_id,
            "height": result.height,
            "block_hash": result.block_hash.hex(),
            "tx_hash": result.transaction.hash.hex(),
            "tx_index": result.tx_index,
            "receipt_code": result.receipt.code,
            "receipt_message": result.receipt.message,
            "commit_signatures": result.signatures,
        }
    )
    return EXIT_OK


def run_export(args: argparse.Namespace) -> int:
    from chainnode.app.genesis import load_genesis
    from chainnode.tools.export import export_jsonl

    validators = load_genesis(args.genesis).validators if args.genesis is not None else None
    summary = export_jsonl(
        args.data_dir,
        args.out,
        height_from=args.height_from or 1,
        height_to=args.height_to,
        validators=validators,
    )
    print_json(
        {
            "out": str(args.out),
            "blocks": summary.blocks,
            "transactions": summary.transactions,
            "height_from": summary.height_from,
            "height_to": summary.height_to,
        }
    )
    return EXIT_OK


# ---------------------------------------------------------------- the parser


def _add_node_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--node", required=True, metavar="URL", help="the node's API URL, e.g. http://127.0.0.1:26601"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds to wait for each answer (and for a commit with --wait)",
    )


def _add_network_commands(commands: Any) -> None:
    network = commands.add_parser("network", help="bootstrap a network")
    network_commands = network.add_subparsers(dest="network_command", required=True)
    init = network_commands.add_parser("init", help="write keys, certificates, genesis and configs")
    init.add_argument("--validators", type=parse_positive_int, required=True, metavar="N")
    init.add_argument("--out", type=Path, required=True, metavar="DIR")
    init.add_argument("--chain-id", default="pilot-net", metavar="ID")
    init.add_argument("--base-port", type=parse_port, default=26600, metavar="P")
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
        help="every node's data directory in node.toml: relative to the node's directory (default: data) "
        "or absolute (a container's data volume)",
    )
    init.set_defaults(run=run_network_init)

    node = commands.add_parser("node", help="run a node")
    node_commands = node.add_subparsers(dest="node_command", required=True)
    run = node_commands.add_parser("run", help="run a validator node until interrupted")
    run.add_argument("--config", type=Path, required=True, metavar="PATH")
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    run.add_argument(
        "--rebuild",
        action="store_true",
        help="move a damaged data directory aside (to <data>.corrupt-<time>) and catch up from the peers",
    )
    run.set_defaults(run=run_node)

    devnet = commands.add_parser("devnet", help="run a local network in one command")
    devnet.add_argument("--validators", type=parse_positive_int, default=4, metavar="N")
    devnet.add_argument("--dir", type=Path, default=None, metavar="DIR")
    devnet.add_argument("--txs", type=parse_positive_int, default=None, metavar="N")
    devnet.add_argument("--base-port", type=parse_port, default=26600, metavar="P")
    devnet.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    devnet.set_defaults(run=run_devnet)

    bench = commands.add_parser("bench", help="measure throughput and latency of a local network")
    bench.add_argument("--validators", type=parse_positive_int, default=4, metavar="N")
    bench.add_argument("--txs", type=parse_positive_int, default=10_000, metavar="N")
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
    bench.add_argument("--out", type=Path, default=None, metavar="FILE", help="write the JSON report")
    bench.add_argument(
        "--dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="a fresh directory for the network (default: a temporary one)",
    )
    bench.add_argument("--base-port", type=parse_port, default=27600, metavar="P")
    bench.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    bench.set_defaults(run=run_bench)


def _add_client_commands(commands: Any) -> None:
    tx = commands.add_parser("tx", help="submit transactions")
    tx_commands = tx.add_subparsers(dest="tx_command", required=True)
    submit = tx_commands.add_parser("submit", help="submit records.put transactions")
    submit.add_argument(
        "--identity",
        type=Path,
        required=True,
        metavar="DIR",
        help="directory with the entity's cert.pem and key.pem",
    )
    _add_node_options(submit)
    submit.add_argument("--key", metavar="K")
    submit.add_argument("--value", metavar="V")
    submit.add_argument("--file", type=Path, metavar="TXS", help="JSON Lines of key/value")
    submit.add_argument("--wait", action="store_true", help="wait for the commit")
    submit.set_defaults(run=run_tx_submit, parser=submit)

    query = commands.add_parser("query", help="read from a node")
    query_commands = query.add_subparsers(dest="what", required=True)
    status = query_commands.add_parser("status", help="the node's status")
    _add_node_options(status)
    block = query_commands.add_parser("block", help="a block (default: the latest)")
    block.add_argument("height", nargs="?", type=_height, default="latest", metavar="H")
    _add_node_options(block)
    tx_query = query_commands.add_parser("tx", help="a transaction's status and receipt")
    tx_query.add_argument("hash", type=_tx_hash, metavar="HASH")
    _add_node_options(tx_query)
    record = query_commands.add_parser("record", help="a record of an entity")
    record.add_argument("entity", metavar="ENTITY")
    record.add_argument("key", metavar="KEY")
    record.add_argument("--version", type=parse_positive_int, default=None, metavar="N")
    _add_node_options(record)
    for parser in (status, block, tx_query, record):
        parser.set_defaults(run=run_query)


def _add_audit_commands(commands: Any) -> None:
    audit = commands.add_parser("audit", help="replay and verify a chain from the genesis file")
    where = audit.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help="a node's data (or LevelDB) directory; copied first, also while the node runs",
    )
    where.add_argument("--node", metavar="URL", help="a node's API URL")
    audit.add_argument("--genesis", type=Path, required=True, metavar="G")
    audit.add_argument("--report", type=Path, metavar="FILE", help="write the JSON report here")
    audit.add_argument("--from", dest="height_from", type=parse_positive_int, metavar="H")
    audit.add_argument("--to", dest="height_to", type=parse_positive_int, metavar="H")
    audit.add_argument(
        "--resume",
        type=Path,
        metavar="CHECKPOINT",
        help="start from a checkpoint this command saved (trusted: see the docs)",
    )
    audit.add_argument(
        "--save-checkpoint",
        type=Path,
        metavar="CHECKPOINT",
        help="after a clean audit, save the replayed state to resume from",
    )
    audit.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="signature-checking processes (default: one per core; 0: none)",
    )
    audit.add_argument("--timeout", type=float, default=30.0, metavar="S", help="per API request")
    audit.set_defaults(run=run_audit)

    verify = commands.add_parser("verify-proof", help="verify a transaction's inclusion proof offline")
    verify.add_argument("file", type=Path, metavar="FILE")
    verify.add_argument("--genesis", type=Path, required=True, metavar="G")
    verify.add_argument(
        "--checkpoint",
        type=Path,
        metavar="CHECKPOINT",
        help="an audit checkpoint: its validator-set history covers later heights",
    )
    verify.set_defaults(run=run_verify_proof)

    export = commands.add_parser("export", help="write blocks, transactions and receipts as JSON Lines")
    export.add_argument("--data-dir", type=Path, required=True, metavar="DIR")
    export.add_argument("--out", type=Path, required=True, metavar="FILE")
    export.add_argument("--from", dest="height_from", type=parse_positive_int, metavar="H")
    export.add_argument("--to", dest="height_to", type=parse_positive_int, metavar="H")
    export.add_argument("--genesis", type=Path, metavar="G", help="to name the certificates' validators")
    export.set_defaults(run=run_export)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chainnode", description="A permissioned blockchain node for the pilot network."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_network_commands(commands)
    _add_client_commands(commands)
    _add_audit_commands(commands)
    from chainnode.cli import governance as cli_governance  # standard library only at import time

    cli_governance.add_commands(commands)
    from chainnode.cli import assets as cli_assets  # standard library only at import time

    cli_assets.add_commands(commands)
    from chainnode.cli import records as cli_records  # standard library only at import time

    cli_records.add_commands(commands)
    from chainnode.cli import events as cli_events  # standard library only at import time

    cli_events.add_commands(commands)
    return parser


def _check_submit_arguments(args: argparse.Namespace) -> None:
    """Exactly one of `--key K --value V` and `--file TXS`: a usage error otherwise."""
    if getattr(args, "run", None) is not run_tx_submit:
        return
    parser: argparse.ArgumentParser = args.parser
    has_pair = args.key is not None or args.value is not None
    if has_pair and args.file is not None:
        parser.error("use either --key/--value or --file, not both")
    if args.file is None and (args.key is None or args.value is None):
        parser.error("give --key K --value V, or --file TXS")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        _check_submit_arguments(args)
        check = getattr(args, "check", None)  # a command's own usage checks (exit 2)
        if check is not None:
            check(args)
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
