"""The `chainnode asset ...` commands: digital assets (the `assets` module) from a terminal.

Theory of operation: like the rest of the CLI, only the standard library is imported at start-up
and each command imports the SDK (`chainnode.sdk.assets`) when it runs.  `cli.py` mounts the
group with `add_commands` and runs `args.check(args)` (usage checks, exit 2) before
`args.run(args)`.

    chainnode asset create-collection --identity DIR --node URL --collection C --name N --symbol S
                                      [--kind unique|editioned] [--schema-hash HEX]
    chainnode asset mint --identity DIR --node URL --collection C --token T --owner E
                         (--metadata-hash HEX | --metadata-file FILE) [--uri U] [--amount N]
    chainnode asset transfer --identity DIR --node URL --collection C --token T --to E [--from E] [--amount N]
    chainnode asset approve --identity DIR --node URL --collection C --token T (--spender E | --clear)
    chainnode asset approve-all --identity DIR --node URL --collection C --operator E [--revoke]
    chainnode asset burn --identity DIR --node URL --collection C --token T [--amount N]
    chainnode asset freeze|unfreeze (--identity DIR | --zone-dir DIR) --node URL --collection C
                                    --token T --holder E
    chainnode asset pause|unpause --identity DIR --node URL --collection C
    chainnode asset show --node URL --collection C --token T
    chainnode asset owned ENTITY --node URL [--limit N] [--cursor CURSOR]
    chainnode asset collection C --node URL [--limit N] [--cursor CURSOR]
    chainnode asset provenance --node URL --collection C --token T [--limit N] [--cursor CURSOR]

Every action command takes `[--wait] [--json|--text] [--timeout S]` and prints one document
(`chainnode.cli.output`): the fields of every submitting command (`tx_hash`, `action`, `signer`,
`status`, `ok`, `height`, `index`, `receipt`) and the ids it made or touched (`asset_id`, the first,
and `asset_ids`); `--wait` waits for the commit and fails (exit 1, with the receipt's stable code,
e.g. `error: asset_frozen: ...`) when the transaction failed.  Queries print the API's answer:
one JSON document with `--json` (or into a pipe), tables and key/value views on a terminal.
`freeze` / `unfreeze` with `--zone-dir` sign as the holder's zone authority (`zone_freeze` /
`zone_unfreeze`).
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path
from typing import Any

from chainnode.cli.args import parse_positive_int, submit_document
from chainnode.cli.output import add_output_options, emit, print_note, print_pairs, print_rows

KINDS = ("unique", "editioned")  # `chainnode.app.asset_state.KINDS`, kept here for a fast --help


# ---------------------------------------------------------------- output


def _parse_hash(text: str, what: str) -> bytes:
    from chainnode.core.hexstr import HexError, parse_hex

    try:
        return parse_hex(text, what, length=32)
    except HexError as error:
        raise argparse.ArgumentTypeError(f"{what} is 64 hex digits (SHA-256): {text!r}") from error


def _metadata_hash(text: str) -> bytes:
    return _parse_hash(text, "--metadata-hash")


def _schema_hash(text: str) -> bytes:
    return _parse_hash(text, "--schema-hash")


# ---------------------------------------------------------------- actions


def _open(args: argparse.Namespace) -> Any:
    from chainnode.sdk.assets import Assets
    from chainnode.sdk.client import AuthoritySigner, Client, Identity

    signer: Any = None
    if getattr(args, "zone_dir", None) is not None:
        signer = AuthoritySigner.load_zone(args.zone_dir)
    elif getattr(args, "identity", None) is not None:
        signer = Identity.load(args.identity)
    return Assets(Client(args.node, timeout_s=args.timeout), signer, timeout_s=args.timeout)


def _report(args: argparse.Namespace, assets: Any, submitted: Any) -> int:
    """The submit document (`chainnode.cli.args.submit_document`) with the assets it names."""
    from chainnode.cli.output import print_note, render_document

    signer = getattr(assets.signer, "entity_id", None) or getattr(assets.signer, "signer_id", None)
    document = submit_document(submitted.tx_hash, f"assets.{submitted.action}", signer)
    if submitted.status is not None:
        receipt = submitted.status.get("receipt") or {}
        document.update(
            status=submitted.status.get("status"),
            ok=receipt.get("code", 0) == 0,
            height=submitted.status.get("height"),
            index=submitted.status.get("index"),
            receipt=receipt,
        )
    document["asset_id"] = submitted.asset_ids[0] if submitted.asset_ids else None
    document["asset_ids"] = list(submitted.asset_ids)

    def render(answer: dict[str, Any]) -> None:
        render_document(
            {name: value for name, value in answer.items() if name != "asset_ids"}, title=answer["action"]
        )
        if answer["status"] == "pending":
            print_note("pending: --wait waits for the commit and prints the outcome")

    emit(args, document, render=render)
    return 0


def run_action(args: argparse.Namespace) -> int:
    from chainnode.cli.output import show_progress

    assets = _open(args)
    doing = "waiting for the commit" if args.wait else "submitting"
    with show_progress(args, f"{args.asset_command}: {doing}…"):
        submitted = _submit_action(args, assets)
    return _report(args, assets, submitted)


def _submit_action(args: argparse.Namespace, assets: Any) -> Any:
    """Sign and submit the action `args` names (with `--wait`, until it is committed)."""
    wait = args.wait
    command = args.asset_command
    if command == "create-collection":
        submitted = assets.create_collection(
            args.collection, args.name, args.symbol, kind=args.kind, schema_hash=args.schema_hash, wait=wait
        )
    elif command == "mint":
        metadata_hash = args.metadata_hash
        if args.metadata_file is not None:
            from chainnode.core.errors import ConfigError

            try:
                metadata_hash = hashlib.sha256(Path(args.metadata_file).read_bytes()).digest()
            except OSError as error:
                raise ConfigError(f"cannot read {args.metadata_file}: {error}") from error
        submitted = assets.mint(
            args.collection,
            args.token,
            owner=args.owner,
            metadata_hash=metadata_hash,
            uri=args.uri,
            amount=args.amount,
            wait=wait,
        )
    elif command == "transfer":
        submitted = assets.transfer(
            args.collection, args.token, args.to, amount=args.amount, from_holder=args.source, wait=wait
        )
    elif command == "approve":
        submitted = assets.approve(args.collection, args.token, "" if args.clear else args.spender, wait=wait)
    elif command == "approve-all":
        submitted = assets.approve_all(args.collection, args.operator, not args.revoke, wait=wait)
    elif command == "burn":
        submitted = assets.burn(args.collection, args.token, amount=args.amount, wait=wait)
    elif command in ("freeze", "unfreeze"):
        method = assets.freeze if command == "freeze" else assets.unfreeze
        submitted = method(args.collection, args.token, args.holder, wait=wait)
    else:
        method = assets.pause if command == "pause" else assets.unpause
        submitted = method(args.collection, wait=wait)
    return submitted


# ---------------------------------------------------------------- queries


def _require(value: Any, what: str) -> Any:
    from chainnode.sdk.errors import ClientError

    if value is None:
        raise ClientError(f"no {what}", code="not_found", status=404)
    return value


def run_show(args: argparse.Namespace) -> int:
    asset = _require(
        _open(args).get_asset(args.collection, args.token), f"asset {args.collection}/{args.token}"
    )

    def render(answer: dict[str, Any]) -> None:
        print_pairs([(k, v) for k, v in answer.items() if k not in ("holders", "holders_truncated")])
        print_rows(answer["holders"], ("holder", "amount", "frozen_by"), title="\nholders")

    emit(args, asset, render=render)
    return 0


def _print_next(page: dict[str, Any]) -> None:
    if page.get("next_cursor"):
        print_note(f"more: --cursor {page['next_cursor']}")


def run_owned(args: argparse.Namespace) -> int:
    page = _open(args).list_owned(args.entity, limit=args.limit, cursor=args.cursor)

    def render(answer: dict[str, Any]) -> None:
        print_rows(answer["assets"], ("asset_id", "amount", "frozen_by"))
        _print_next(answer)

    emit(args, page, render=render)
    return 0


def run_collection(args: argparse.Namespace) -> int:
    assets = _open(args)
    collection = _require(assets.get_collection(args.collection), f"collection {args.collection}")
    page = assets.list_collection_assets(args.collection, limit=args.limit, cursor=args.cursor)

    def render(answer: dict[str, Any]) -> None:
        print_pairs([(k, v) for k, v in answer.items() if k not in ("stats", "assets", "next_cursor")])
        print_pairs(list(answer["stats"].items()), title="\nstats")
        print_rows(answer["assets"], ("seq", "asset_id", "owner", "units", "burned"), title="\nassets")
        _print_next(answer)

    emit(args, {**collection, "assets": page["assets"], "next_cursor": page["next_cursor"]}, render=render)
    return 0


def run_provenance(args: argparse.Namespace) -> int:
    page = _open(args).get_provenance(args.collection, args.token, limit=args.limit, cursor=args.cursor)

    def render(answer: dict[str, Any]) -> None:
        print_rows(
            [{"#": e["index"], **e} for e in answer["entries"]],
            ("#", "height", "action", "actor", "from", "to", "amount", "tx_hash"),
        )
        _print_next(answer)

    emit(args, page, render=render)
    return 0


# ---------------------------------------------------------------- usage checks


def check_action(args: argparse.Namespace) -> None:
    parser: argparse.ArgumentParser = args.parser
    command = args.asset_command
    if command in ("freeze", "unfreeze"):
        if (args.identity is None) == (args.zone_dir is None):
            parser.error("give either --identity (the issuer) or --zone-dir (the holder's zone authority)")
    elif args.identity is None:
        parser.error("--identity is required")
    if command == "mint" and (args.metadata_hash is None) == (args.metadata_file is None):
        parser.error("give either --metadata-hash HEX or --metadata-file FILE")
    if command == "approve" and (args.spender is None) == (not args.clear):
        parser.error("give either --spender ENTITY or --clear")


# ---------------------------------------------------------------- the parser


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--node", required=True, metavar="URL", help="the node's API URL")
    parser.add_argument(
        "--timeout", type=float, default=30.0, metavar="S", help="seconds per answer and commit"
    )
    add_output_options(parser)


def _add_action(
    subcommands: Any, name: str, help_text: str, *, zone: bool = False
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subcommands.add_parser(name, help=help_text)
    parser.add_argument("--identity", type=Path, default=None, metavar="DIR", help="holds cert.pem, key.pem")
    if zone:
        parser.add_argument(
            "--zone-dir", type=Path, default=None, metavar="DIR", help="holds ca.pem, ca.key.pem"
        )
    _add_common(parser)
    parser.add_argument("--wait", action="store_true", help="wait for the commit; fail if the receipt failed")
    parser.add_argument("--collection", required=True, metavar="ID", help="the collection's id")
    parser.set_defaults(run=run_action, check=check_action, parser=parser)
    return parser


def add_commands(commands: Any) -> None:
    """Mount `asset` on the `chainnode` parser's subcommands."""
    asset = commands.add_parser(
        "asset", help="digital assets: collections, mint, transfer, freeze, provenance"
    )
    subcommands = asset.add_subparsers(dest="asset_command", required=True)
    _add_action_commands(subcommands)
    _add_query_commands(subcommands)


def _add_action_commands(subcommands: Any) -> None:
    """The commands that sign and submit a transaction."""
    create = _add_action(subcommands, "create-collection", "create a collection (issuer role)")
    create.add_argument("--name", required=True, metavar="NAME", help="the display name")
    create.add_argument("--symbol", required=True, metavar="SYMBOL", help="a short symbol")
    create.add_argument("--kind", choices=KINDS, default="unique", help="one owner, or units")
    create.add_argument(
        "--schema-hash",
        type=_schema_hash,
        default=b"",
        metavar="HEX",
        help="SHA-256 of a metadata schema (default: none)",
    )

    mint = _add_action(subcommands, "mint", "mint an asset (the collection's issuer)")
    mint.add_argument("--token", required=True, metavar="ID", help="the token's id in the collection")
    mint.add_argument("--owner", required=True, metavar="ENTITY", help="the first holder")
    mint.add_argument(
        "--metadata-hash", type=_metadata_hash, default=None, metavar="HEX", help="SHA-256 of the metadata"
    )
    mint.add_argument("--metadata-file", type=Path, default=None, metavar="FILE", help="hashed with SHA-256")
    mint.add_argument("--uri", default="", metavar="URI", help="where the metadata lives (default: none)")
    mint.add_argument("--amount", type=parse_positive_int, default=1, metavar="N", help="units")

    transfer = _add_action(subcommands, "transfer", "transfer units of an asset")
    transfer.add_argument("--token", required=True, metavar="ID", help="the token's id in the collection")
    transfer.add_argument("--to", required=True, metavar="ENTITY", help="the new holder")
    transfer.add_argument("--from", dest="source", default=None, metavar="ENTITY", help="default: the signer")
    transfer.add_argument("--amount", type=parse_positive_int, default=1, metavar="N", help="units")

    approve = _add_action(subcommands, "approve", "approve one entity to transfer a unique asset")
    approve.add_argument("--token", required=True, metavar="ID", help="the token's id in the collection")
    approve.add_argument("--spender", default=None, metavar="ENTITY", help="who may transfer it")
    approve.add_argument("--clear", action="store_true", help="withdraw the approval")

    approve_all = _add_action(
        subcommands, "approve-all", "approve an operator for all your assets of a collection"
    )
    approve_all.add_argument("--operator", required=True, metavar="ENTITY", help="who may transfer them")
    approve_all.add_argument("--revoke", action="store_true", help="withdraw the operator")

    burn = _add_action(subcommands, "burn", "burn units you hold")
    burn.add_argument("--token", required=True, metavar="ID", help="the token's id in the collection")
    burn.add_argument("--amount", type=parse_positive_int, default=1, metavar="N", help="units")

    for name, help_text in (("freeze", "freeze a holding"), ("unfreeze", "lift a freeze you set")):
        parser = _add_action(subcommands, name, help_text, zone=True)
        parser.add_argument("--token", required=True, metavar="ID", help="the token's id in the collection")
        parser.add_argument("--holder", required=True, metavar="ENTITY", help="whose holding")
    for name, help_text in (("pause", "pause a collection"), ("unpause", "resume a paused collection")):
        _add_action(subcommands, name, help_text)


def _add_query_commands(subcommands: Any) -> None:
    """The commands that read the node."""
    show = subcommands.add_parser("show", help="one asset with its holders")
    _add_common(show)
    show.add_argument("--collection", required=True, metavar="ID", help="the collection's id")
    show.add_argument("--token", required=True, metavar="ID", help="the token's id in the collection")
    show.set_defaults(run=run_show)
    owned = subcommands.add_parser("owned", help="what an entity holds")
    owned.add_argument("entity", metavar="ENTITY")
    collection = subcommands.add_parser("collection", help="a collection, its statistics and its assets")
    collection.add_argument("collection", metavar="ID")
    provenance = subcommands.add_parser("provenance", help="every action on an asset, oldest first")
    provenance.add_argument("--collection", required=True, metavar="ID", help="the collection's id")
    provenance.add_argument("--token", required=True, metavar="ID", help="the token's id in the collection")
    for parser, run in ((owned, run_owned), (collection, run_collection), (provenance, run_provenance)):
        _add_common(parser)
        parser.add_argument(
            "--limit",
            type=parse_positive_int,
            default=None,
            metavar="N",
            help="items per page (default: the node's)",
        )
        parser.add_argument(
            "--cursor", default=None, metavar="CURSOR", help="next_cursor of the previous page"
        )
        parser.set_defaults(run=run)
