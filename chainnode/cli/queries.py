"""What an entity or an operator asks a node: `tx submit`, `tx proof` and every `query`.

`tx submit --file TXS` reads JSON Lines: one object per line, either `{"key": K, "value": "text"}`
or `{"key": K, "value_hex": "..."}`; blank lines and lines starting with `#` are skipped.  Each
line becomes one `records.put` transaction; they are submitted in batches of at most 10,000.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chainnode.cli.args import (
    BATCH_TXS_MAX,
    EXIT_OK,
    PROPOSAL_STATUSES,
    VALID_FOR_BLOCKS,
    add_node_options,
    parse_positive_int,
    raise_if_failed,
    submit_document,
    wait_for_outcome,
)
from chainnode.cli.output import emit

if TYPE_CHECKING:
    from chainnode.sdk.client import Client, Identity


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
    from chainnode.sdk.client import build_transaction
    from chainnode.sdk.errors import ClientError

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
    if args.replicated:
        answer = client.submit_replicated(tx, wait_ms=int(args.timeout * 1000))
        document = {
            **submit_document(str(answer["hash"]), "records.put", tx.signer),
            "holders": answer.get("holders"),
        }
    else:
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


def check_submit_arguments(args: argparse.Namespace) -> None:
    """Exactly one of `--key K --value V` and `--file TXS`: a usage error otherwise."""
    if getattr(args, "run", None) is not run_tx_submit:
        return
    parser: argparse.ArgumentParser = args.parser
    has_pair = args.key is not None or args.value is not None
    if has_pair and args.file is not None:
        parser.error("use either --key/--value or --file, not both")
    if args.file is None and (args.key is None or args.value is None):
        parser.error("give --key K --value V, or --file TXS")
    if args.replicated and args.file is not None:
        parser.error("--replicated takes one transaction (--key/--value), not --file")


def add_commands(commands: Any) -> None:
    """The `tx` and `query` command groups."""
    _add_tx_commands(commands)
    _add_query_commands(commands)


def _add_tx_commands(commands: Any) -> None:
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
    add_node_options(submit, waits=True)
    submit.add_argument("--key", metavar="K", help="the record's key")
    submit.add_argument("--value", metavar="V", help="the record's value (UTF-8 text)")
    submit.add_argument("--file", type=Path, metavar="TXS", help="JSON Lines of key/value")
    submit.add_argument("--wait", action="store_true", help="wait for the commit and print the outcome")
    submit.add_argument(
        "--replicated",
        action="store_true",
        help="return once a quorum of validators' mempools hold it (this node crashing cannot lose it)",
    )
    submit.set_defaults(run=run_tx_submit, parser=submit)
    proof = tx_commands.add_parser("proof", help="fetch a committed transaction's inclusion proof")
    proof.add_argument("hash", type=_tx_hash, metavar="HASH")
    proof.add_argument(
        "--out", type=Path, default=None, metavar="FILE", help="write it here (default: print it)"
    )
    add_node_options(proof)
    proof.set_defaults(run=run_tx_proof)


def _add_query_commands(commands: Any) -> None:
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
        add_node_options(parser)
        parser.set_defaults(run=run_query)
