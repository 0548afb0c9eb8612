"""The `chainnode` command.

Theory of operation: one argparse tree, one small function per command.  Only
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
    chainnode network init --validators N --out DIR [--chain-id ID] [--base-port P] [--spare-nodes K]
        [--observers K] [--hosts FILE] [--node NAME=HOST[:P2P_PORT[:API_PORT]]]... [--listen HOST]
        [--data-dir PATH]
    chainnode node run --config PATH [--rebuild]
    chainnode devnet [--validators 4] [--dir DIR] [--txs N] [--base-port P]
        (an existing DIR runs as written: another --validators or --base-port is refused)
    chainnode bench [--validators 4] [--txs N] [--rate R|max] [--out FILE] [--dir DIR] [--base-port P]
    chainnode tx submit --identity DIR --node URL (--key K --value V | --file TXS) [--wait]
    chainnode tx proof HASH --node URL [--out FILE]
    chainnode query status|block [H]|tx HASH|record ENTITY KEY [--version N] --node URL
    chainnode query entity ID|zone ID|zones|validators [--height H]|proposal N|proposals [--status S]
                    |evidence|checkpoint|certificates [--within-days N] --node URL [--limit N --cursor C]
    chainnode --version
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

from chainnode.cli.args import (
    parse_port,
    parse_positive_int,
    raise_if_failed,
    submit_document,
    wait_for_outcome,
)
from chainnode.cli.output import add_output_options, emit

if TYPE_CHECKING:
    from chainnode.sdk.client import Client, Identity

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
VALID_FOR_BLOCKS = 1000
BATCH_TXS_MAX = 10_000
DEVNET_VALIDATORS_DEFAULT = 4
DEVNET_BASE_PORT_DEFAULT = 26600
LOG_LEVELS = ("debug", "info", "warning", "error")
# `chainnode.core.statuses.ProposalStatus`, kept here so `chainnode --help` imports nothing more.
PROPOSAL_STATUSES = ("open", "expired", "executed", "rejected", "failed")


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
    emit(args, summary, title=f"network {summary.get('chain_id')} written to {out_dir}")
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
    directory: Path = args.dir or Path("devnet")
    validators, base_port = _check_devnet_directory(directory, args.validators, args.base_port)
    return devnet.run_devnet(validators=validators, directory=args.dir, txs=args.txs, base_port=base_port)


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

    _setup_logging(args.log_level)
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
    document: dict[str, Any] = {
        "accepted": len(accepted),
        "rejected": len(results) - len(accepted),
        "committed": None,
        "failed": None,
        "results": results,
    }
    if args.wait:
        from chainnode.cli.output import show_progress

        failed = 0
        with show_progress(args, f"waiting for the commit of {len(accepted)} transactions…"):
            for tx_hash in accepted:
                answer = client.wait_for_commit(tx_hash, timeout_s=args.timeout)
                if (answer.get("receipt") or {}).get("code", 0) != 0:
                    failed += 1
        document.update(committed=len(accepted) - failed, failed=failed)
    emit(args, document, title="submitted")
    if document["failed"]:
        raise ClientError(f"{document['failed']} committed transactions failed", code="failed")
    if len(accepted) != len(results):
        raise ClientError(f"{len(results) - len(accepted)} transactions were rejected", code="rejected")
    return EXIT_OK


def run_tx_submit(args: argparse.Namespace) -> int:
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
    document = submit_document(client.submit(tx), "records.put", tx.signer)
    if args.wait:
        document = wait_for_outcome(args, client, document)
    emit(args, document, title="records.put")
    raise_if_failed(document)
    return EXIT_OK


def _require(value: Any, what: str) -> Any:
    from chainnode.core.errors import ChainError

    if value is None:
        raise ChainError(f"no {what}", code="not_found")
    return value


def _get_query_document(client: Client, args: argparse.Namespace) -> tuple[Any, str]:
    """What `chainnode query WHAT` reads from the node (the API's JSON) and its title."""
    what = args.what
    if what == "status":
        return client.get_status(), "status"
    if what == "block":
        return client.get_block(args.height), f"block {args.height}"
    if what == "tx":
        return client.get_transaction(args.hash), f"transaction {args.hash}"
    if what == "record":
        version = f"version {args.version} of " if args.version is not None else ""
        found = client.get_record(args.entity, args.key, args.version)
        return _require(found, f"{version}record {args.key!r} of entity {args.entity!r}"), "record"
    if what == "entity":
        return _require(client.get_entity(args.id), f"entity {args.id!r}"), f"entity {args.id}"
    if what == "zone":
        return _require(client.get_zone(args.id), f"zone {args.id!r}"), f"zone {args.id}"
    if what == "zones":
        return _get_page(client, "/v1/zones", args), "zones"
    if what == "validators":
        return client.get_validators(args.height), "validators"
    if what == "proposal":
        found = client.get_proposal(args.id)
        return _require(found, f"proposal {args.id}"), f"proposal {args.id}"
    if what == "proposals":
        return _get_page(client, "/v1/proposals", args, status=args.status), "proposals"
    if what == "evidence":
        return _get_page(client, "/v1/evidence", args), "evidence"
    if what == "checkpoint":
        return client.send("GET", "/v1/checkpoints/latest").value, "latest stable checkpoint"
    page = _get_page(client, "/v1/certificates/expiring", args, within_days=args.within_days)
    return page, "certificates expiring"


def _get_page(client: Client, path: str, args: argparse.Namespace, **query: Any) -> Any:
    """One page of a list endpoint, the answer whole (its `next_cursor` included)."""
    import urllib.parse

    query.update(limit=args.limit, cursor=args.cursor)
    given = {name: value for name, value in query.items() if value is not None}
    return client.send("GET", path + ("?" + urllib.parse.urlencode(given) if given else "")).value


def run_query(args: argparse.Namespace) -> int:
    from chainnode.sdk.client import Client

    with Client(args.node, timeout_s=args.timeout) as client:
        document, title = _get_query_document(client, args)
    emit(args, document, title=title)
    return EXIT_OK


def run_tx_proof(args: argparse.Namespace) -> int:
    from chainnode.core.errors import ConfigError
    from chainnode.sdk.client import Client

    with Client(args.node, timeout_s=args.timeout) as client:
        proof = client.get_proof(args.hash)
    text = json.dumps(proof, indent=2) + "\n"
    if args.out is None:
        print(text, end="")
        return EXIT_OK
    try:
        args.out.write_text(text, encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot write the proof to {args.out}: {error}") from error
    emit(
        args,
        {"tx_hash": args.hash, "height": proof.get("height"), "out": str(args.out)},
        title=f"proof written; check it with: chainnode verify-proof {args.out} --genesis GENESIS",
    )
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
    emit(
        args,
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
        },
        title="audit",
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
    emit(
        args,
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
        },
        title="the proof is valid",
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
    emit(
        args,
        {
            "out": str(args.out),
            "blocks": summary.blocks,
            "transactions": summary.transactions,
            "height_from": summary.height_from,
            "height_to": summary.height_to,
        },
        title="exported",
    )
    return EXIT_OK


# ---------------------------------------------------------------- the parser


def _add_node_options(parser: argparse.ArgumentParser, *, waits: bool = False) -> None:
    parser.add_argument(
        "--node", required=True, metavar="URL", help="the node's API URL, e.g. http://127.0.0.1:26601"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds to wait for each answer" + (" (and for the commit with --wait)" if waits else ""),
    )
    add_output_options(parser)


def _add_network_commands(commands: Any) -> None:
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
    run.add_argument("--log-level", default="info", choices=LOG_LEVELS, help="log on stderr from this level")
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
    bench.set_defaults(run=run_bench)


def _add_client_commands(commands: Any) -> None:
    tx = commands.add_parser("tx", help="submit transactions, fetch proofs")
    tx_commands = tx.add_subparsers(dest="tx_command", required=True)
    submit = tx_commands.add_parser("submit", help="submit records.put transactions")
    submit.add_argument(
        "--identity",
        type=Path,
        required=True,
        metavar="DIR",
        help="directory with the entity's cert.pem and key.pem",
    )
    _add_node_options(submit, waits=True)
    submit.add_argument("--key", metavar="K", help="the record's key")
    submit.add_argument("--value", metavar="V", help="the record's value (UTF-8 text)")
    submit.add_argument("--file", type=Path, metavar="TXS", help="JSON Lines of key/value")
    submit.add_argument("--wait", action="store_true", help="wait for the commit and print the outcome")
    submit.set_defaults(run=run_tx_submit, parser=submit)
    proof = tx_commands.add_parser("proof", help="fetch a committed transaction's inclusion proof")
    proof.add_argument("hash", type=_tx_hash, metavar="HASH")
    proof.add_argument(
        "--out", type=Path, default=None, metavar="FILE", help="write it here (default: print it)"
    )
    _add_node_options(proof)
    proof.set_defaults(run=run_tx_proof)

    query = commands.add_parser("query", help="read from a node")
    query_commands = query.add_subparsers(dest="what", required=True)
    status = query_commands.add_parser("status", help="the node's status")
    block = query_commands.add_parser("block", help="a block (default: the latest)")
    block.add_argument("height", nargs="?", type=_height, default="latest", metavar="H")
    tx_query = query_commands.add_parser("tx", help="a transaction's status and receipt")
    tx_query.add_argument("hash", type=_tx_hash, metavar="HASH")
    record = query_commands.add_parser("record", help="a record of an entity")
    record.add_argument("entity", metavar="ENTITY")
    record.add_argument("key", metavar="KEY")
    record.add_argument(
        "--version", type=parse_positive_int, default=None, metavar="N", help="default: the latest"
    )
    entity = query_commands.add_parser("entity", help="a registered entity: roles, sectors, validity")
    entity.add_argument("id", metavar="ID")
    zone = query_commands.add_parser("zone", help="a zone and its CA")
    zone.add_argument("id", metavar="ID")
    zones = query_commands.add_parser("zones", help="every zone with its status")
    validators = query_commands.add_parser("validators", help="the validator set and its quorum")
    validators.add_argument(
        "--height",
        type=parse_positive_int,
        default=None,
        metavar="H",
        help="the set certifying block H (default: the next block)",
    )
    proposal = query_commands.add_parser("proposal", help="a council proposal and its votes")
    proposal.add_argument("id", type=parse_positive_int, metavar="N")
    proposals = query_commands.add_parser("proposals", help="council proposals, newest first")
    proposals.add_argument(
        "--status", default=None, choices=PROPOSAL_STATUSES, help="only these (default: all)"
    )
    evidence = query_commands.add_parser("evidence", help="equivocation evidence against validators")
    checkpoint = query_commands.add_parser("checkpoint", help="the latest stable checkpoint")
    certificates = query_commands.add_parser("certificates", help="certificates expiring soon, or expired")
    certificates.add_argument(
        "--within-days", type=parse_positive_int, default=30, metavar="N", help="expiring within N days"
    )
    for parser in (zones, proposals, evidence, certificates):
        parser.add_argument(
            "--limit",
            type=parse_positive_int,
            default=None,
            metavar="N",
            help="items per page (default: 100)",
        )
        parser.add_argument(
            "--cursor",
            default=None,
            metavar="CURSOR",
            help="the previous page's next_cursor (default: first page)",
        )
    for parser in (
        status,
        block,
        tx_query,
        record,
        entity,
        zone,
        zones,
        validators,
        proposal,
        proposals,
        evidence,
        checkpoint,
        certificates,
    ):
        _add_node_options(parser)
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
    audit.add_argument("--genesis", type=Path, required=True, metavar="G", help="the chain's genesis.json")
    audit.add_argument("--report", type=Path, metavar="FILE", help="write the JSON report here")
    audit.add_argument(
        "--from",
        dest="height_from",
        type=parse_positive_int,
        metavar="H",
        help="default: 1 (or the checkpoint's next)",
    )
    audit.add_argument(
        "--to", dest="height_to", type=parse_positive_int, metavar="H", help="default: the head"
    )
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
    add_output_options(audit)
    audit.set_defaults(run=run_audit)

    verify = commands.add_parser("verify-proof", help="verify a transaction's inclusion proof offline")
    verify.add_argument("file", type=Path, metavar="FILE", help="a proof from `chainnode tx proof`")
    verify.add_argument("--genesis", type=Path, required=True, metavar="G", help="the chain's genesis.json")
    verify.add_argument(
        "--checkpoint",
        type=Path,
        metavar="CHECKPOINT",
        help="an audit checkpoint: its validator-set history covers later heights",
    )
    add_output_options(verify)
    verify.set_defaults(run=run_verify_proof)

    export = commands.add_parser("export", help="write blocks, transactions and receipts as JSON Lines")
    export.add_argument("--data-dir", type=Path, required=True, metavar="DIR", help="a node's data directory")
    export.add_argument(
        "--out", type=Path, required=True, metavar="FILE", help="the JSON Lines file to write"
    )
    export.add_argument("--from", dest="height_from", type=parse_positive_int, metavar="H", help="default: 1")
    export.add_argument(
        "--to", dest="height_to", type=parse_positive_int, metavar="H", help="default: the head"
    )
    export.add_argument("--genesis", type=Path, metavar="G", help="to name the certificates' validators")
    add_output_options(export)
    export.set_defaults(run=run_export)


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


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The parsed command line after every usage check; SystemExit (2) for a usage error."""
    args = build_parser().parse_args(argv)
    _check_submit_arguments(args)
    check = getattr(args, "check", None)  # a command's own usage checks (exit 2)
    if check is not None:
        check(args)
    return args


def main(argv: Sequence[str] | None = None) -> int:
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
