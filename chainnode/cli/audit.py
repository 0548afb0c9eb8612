"""What an auditor runs: `audit`, `verify-proof`, `export`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chainnode.cli.args import (
    EXIT_FAILURE,
    EXIT_OK,
    parse_positive_int,
)
from chainnode.cli.output import add_output_options, emit

if TYPE_CHECKING:
    pass


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
    proof = read_proof_file(args.file)
    validator_sets = None
    if args.checkpoint is not None:
        from chainnode.tools.audit import ReplayState, StateValidatorSets, load_checkpoint

        checkpoint = load_checkpoint(args.checkpoint)
        if checkpoint.genesis_hash != genesis.compute_hash():
            raise ConfigError(f"{args.checkpoint} is a checkpoint of another chain")
        validator_sets = StateValidatorSets(ReplayState(dict(checkpoint.state)), checkpoint.height + 1)
    result = verify_proof(proof, genesis, validator_sets)
    emit(args, compute_proof_document(result), title="the proof is valid")
    return EXIT_OK


def compute_proof_document(result: Any) -> dict[str, Any]:
    """What a verified proof (`chainnode.app.proof.ProofResult`) shows: one document."""
    return {
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


def read_proof_file(path: Path) -> Any:
    """The JSON of a proof file (`chainnode tx proof --out`); `ConfigError` if it cannot be read."""
    from chainnode.core.errors import ConfigError

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ConfigError(f"cannot read the proof {path}: {error}") from error


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


def add_commands(commands: Any) -> None:
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
