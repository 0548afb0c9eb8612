"""The `chainnode records ...` commands: write, share and read records, anchor and verify documents.

Theory of operation: like the other command modules, only the standard library is imported at
start-up and each command imports the SDK (`chainnode.sdk.records`) when it runs.  `cli/main.py`
mounts the commands with `add_commands`.  Writes sign as the entity in `--identity DIR` and
submit to `--node URL`; `--wait` waits for the commit and fails (exit 1, the receipt's stable
code: `no_grant`, `grant_expired`, `grant_revoked`, `wrong_right`, ...) when the transaction
failed.  Every command prints one document (`chainnode.cli.output`): with `--json` (or into a
pipe) the node's JSON, or for a write the fields every submitting command prints (`tx_hash`,
`action`, `signer`, `status`, `ok`, `height`, `index`, `receipt`); on a terminal a rich
key/value view or table of the same document.

    chainnode records put --identity DIR --node URL --key K (--value V | --value-hex H) [--owner E]
                          [--confidential-to E[,E]]
    chainnode records grant --identity DIR --node URL --grantee E|sector:S --prefix P
                            --right write|read-marker (--expires-at H | --expires-in BLOCKS)
    chainnode records revoke --identity DIR --node URL --grantee E|sector:S --prefix P
    chainnode records anchor FILE --identity DIR --node URL --key K [--owner E] [--uri U] [--media-type T]
    chainnode records mark-read --identity DIR --node URL --entity E --key K --version N
    chainnode records get --node URL --entity E --key K [--version N] [--decrypt --identity DIR]
    chainnode records list --node URL --entity E [--prefix P] [--limit N] [--cursor C]
    chainnode records history --node URL --entity E --key K [--limit N] [--cursor C]
    chainnode records grants --node URL --entity E
    chainnode records verify FILE --node URL --entity E --key K

(every write also takes `[--wait] [--json] [--timeout S]`, every read `[--json]`).  `put` with
`--owner` writes into another entity's namespace (a `write` grant is needed).  `verify` hashes
the local file (SHA-256) and shows every version of the record that anchors it, with height,
transaction and version; a file that is not anchored there fails with `not_anchored` (exit 1).
`put --confidential-to` seals the value on this machine to the named entities and the signer
(`chainnode.sdk.confidential`); `get --decrypt` opens it with `--identity`'s key.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chainnode.cli.args import parse_positive_int, raise_if_failed, submit_document, wait_for_outcome
from chainnode.cli.output import (
    add_output_options,
    emit,
    is_json_output,
    print_note,
    print_pairs,
    print_rows,
)

if TYPE_CHECKING:
    from chainnode.sdk.records import Records

RIGHTS = ("write", "read-marker")  # `chainnode.app.records_sharing.RIGHTS`, kept here so --help stays light
EXPIRES_IN_DEFAULT = 100_000


def _records(args: argparse.Namespace, *, write: bool) -> Records:
    from chainnode.sdk.client import Client, Identity
    from chainnode.sdk.records import Records

    signer = None
    if write or getattr(args, "identity", None) is not None:
        if args.identity is None:
            from chainnode.core.errors import ConfigError

            raise ConfigError("this command signs a transaction: give --identity DIR")
        signer = Identity.load(args.identity)
    return Records(Client(args.node, timeout_s=args.timeout), signer)


def _describe(record: dict[str, Any]) -> dict[str, Any]:
    """A record's JSON in the flat form the tables print."""
    document = record.get("document")
    if document is not None:
        value = f"document sha256={document['sha256']} {document['media_type']} {document['size']} bytes"
        if document.get("uri"):
            value += f" {document['uri']}"
    elif record.get("value") is not None:
        value = repr(record["value"])
    else:
        value = f"0x{record.get('value_hex', '')}"
    return {**record, "value": value, "tx": str(record.get("tx_hash", ""))[:16]}


def _submit(args: argparse.Namespace, records: Records, action: str, call_args: tuple[Any, ...]) -> int:
    signer = records.signer.entity_id if records.signer is not None else None
    document = submit_document(records.submit(action, call_args), f"records.{action}", signer)
    if args.wait:
        document = wait_for_outcome(args, records.client, document)
    emit(args, document, render=_render_submitted)
    raise_if_failed(document)
    return 0


def _render_submitted(document: dict[str, Any]) -> None:
    from chainnode.cli.output import render_document

    render_document(document, title=str(document["action"]))
    if document["status"] == "pending":
        print_note("pending: --wait waits for the commit and prints the outcome")


# ---------------------------------------------------------------- writes


def run_put(args: argparse.Namespace) -> int:
    from chainnode.core.hexstr import parse_hex

    records = _records(args, write=True)
    value = (
        parse_hex(args.value_hex, "--value-hex") if args.value_hex is not None else args.value.encode("utf-8")
    )
    assert records.signer is not None
    if args.confidential_to is not None:
        recipients = sorted({item.strip() for item in args.confidential_to.split(",") if item.strip()})
        value = records.seal(value, recipients)
    if args.owner is None or args.owner == records.signer.entity_id:
        return _submit(args, records, "put", (args.key, value))
    return _submit(args, records, "put_to", (args.owner, args.key, value))


def run_grant(args: argparse.Namespace) -> int:
    records = _records(args, write=True)
    expires_at = args.expires_at
    if expires_at is None:
        expires_at = int(records.client.get_status()["height"]) + args.expires_in
    return _submit(args, records, "grant", (args.grantee, args.prefix, args.right, expires_at))


def run_revoke(args: argparse.Namespace) -> int:
    return _submit(args, _records(args, write=True), "revoke", (args.grantee, args.prefix))


def run_anchor(args: argparse.Namespace) -> int:
    from chainnode.sdk.records import compute_file_digest

    records = _records(args, write=True)
    assert records.signer is not None
    digest = compute_file_digest(args.file, args.media_type)
    owner = args.owner or records.signer.entity_id
    if not is_json_output(args):
        print_note(f"{args.file}: sha256 {digest.sha256.hex()}, {digest.size} bytes, {digest.media_type}")
    return _submit(
        args, records, "anchor", (owner, args.key, digest.sha256, digest.media_type, digest.size, args.uri)
    )


def run_mark_read(args: argparse.Namespace) -> int:
    return _submit(args, _records(args, write=True), "mark_read", (args.entity, args.key, args.version))


# ---------------------------------------------------------------- reads


def run_get(args: argparse.Namespace) -> int:
    from chainnode.core.errors import ChainError

    records = _records(args, write=args.decrypt)
    record = records.get(args.entity, args.key, args.version)
    if record is None:
        what = f"version {args.version} of " if args.version is not None else ""
        raise ChainError(f"no {what}record {args.key!r} of entity {args.entity!r}", code="not_found")
    if args.decrypt:
        from chainnode.sdk import confidential

        assert records.signer is not None
        sealed = bytes.fromhex(str(record["value_hex"]))
        plain = confidential.open_sealed(sealed, records.signer.entity_id, records.signer.key)
        try:
            text: str | None = plain.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        record = {
            **record,
            "value_hex": plain.hex(),
            "value": text,
            "sealed_to": confidential.read_recipients(sealed),
        }
    emit(
        args,
        record,
        render=lambda answer: print_pairs(
            [(k, v) for k, v in _describe(answer).items() if k not in ("tx", "value_hex", "document")]
        ),
    )
    return 0


_LIST_COLUMNS = ("key", "version", "height", "writer", "value")
_HISTORY_COLUMNS = ("version", "height", "writer", "tx", "value")


def _print_page(args: argparse.Namespace, page: dict[str, Any], columns: tuple[str, ...]) -> int:
    def render(answer: dict[str, Any]) -> None:
        print_rows([_describe(item) for item in answer.get("items", [])], columns)
        if answer.get("next_cursor") is not None:
            print_note(f"(more: --cursor {answer['next_cursor']})")

    emit(args, page, render=render)
    return 0


def run_list(args: argparse.Namespace) -> int:
    records = _records(args, write=False)
    page = records.list_records(args.entity, args.prefix, limit=args.limit, cursor=args.cursor)
    return _print_page(args, page, _LIST_COLUMNS)


def run_history(args: argparse.Namespace) -> int:
    records = _records(args, write=False)
    return _print_page(
        args, records.history(args.entity, args.key, limit=args.limit, cursor=args.cursor), _HISTORY_COLUMNS
    )


def run_grants(args: argparse.Namespace) -> int:
    grants = _records(args, write=False).grants(args.entity)
    columns = ("grantee", "prefix", "right", "expires_at_height", "status", "revoked_height")
    emit(
        args,
        {"owner": args.entity, "grants": grants},
        render=lambda answer: print_rows(answer["grants"], columns),
    )
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from chainnode.core.errors import ChainError

    verification = _records(args, write=False).verify_file(args.file, args.entity, args.key)
    digest = verification.digest
    document = {
        "file": str(args.file),
        "sha256": digest.sha256.hex(),
        "size": digest.size,
        "entity": args.entity,
        "key": args.key,
        "anchored": verification.is_anchored,
        "anchors": verification.anchors,
    }
    emit(args, document, render=_render_verification)
    if not verification.is_anchored:
        raise ChainError(
            f"{args.file} (sha256 {digest.sha256.hex()}) is not anchored in {args.entity}/{args.key}",
            code="not_anchored",
        )
    return 0


def _render_verification(document: dict[str, Any]) -> None:
    print_pairs([(name, value) for name, value in document.items() if name != "anchors"])
    rows = [
        {
            "version": anchor["version"],
            "height": anchor["height"],
            "tx_hash": anchor["tx_hash"],
            "writer": anchor["writer"],
            "media_type": anchor["document"]["media_type"],
            "size_on_chain": anchor["document"]["size"],
        }
        for anchor in document["anchors"]
    ]
    if rows:
        print_rows(rows, title=f"\nanchored in {document['entity']}/{document['key']}")


# ---------------------------------------------------------------- the parser


def _add_common(parser: argparse.ArgumentParser, *, write: bool) -> None:
    parser.add_argument("--node", required=True, metavar="URL", help="the node's API URL")
    parser.add_argument(
        "--identity",
        type=Path,
        required=write,
        default=None,
        metavar="DIR",
        help="the entity's directory (cert.pem, key.pem)",
    )
    parser.add_argument(
        "--timeout", type=float, default=10.0, metavar="S", help="seconds per answer and commit"
    )
    add_output_options(parser)
    if write:
        parser.add_argument(
            "--wait", action="store_true", help="wait for the commit; fail if the receipt failed"
        )


def add_commands(commands: Any) -> None:
    """Mount `records` on the `chainnode` parser's subcommands."""
    records = commands.add_parser("records", help="records: write, share, read, anchor and verify documents")
    sub = records.add_subparsers(dest="records_command", required=True)

    put = sub.add_parser("put", help="write a version of a key (into --owner's namespace with a grant)")
    _add_common(put, write=True)
    put.add_argument("--key", required=True, metavar="K", help="the record's key")
    value = put.add_mutually_exclusive_group(required=True)
    value.add_argument("--value", metavar="TEXT", help="the value as UTF-8 text")
    value.add_argument("--value-hex", metavar="HEX", help="the value as hex bytes")
    put.add_argument("--owner", default=None, metavar="ENTITY", help="another entity's namespace")
    put.add_argument(
        "--confidential-to",
        default=None,
        metavar="E[,E]",
        help="seal the value on this machine to these entities (and you): the chain holds ciphertext",
    )
    put.set_defaults(run=run_put)

    grant = sub.add_parser("grant", help="grant an entity or a sector a right over a key prefix")
    revoke = sub.add_parser("revoke", help="revoke a grant (from the next transaction on)")
    for parser in (grant, revoke):
        _add_common(parser, write=True)
        parser.add_argument(
            "--grantee", required=True, metavar="ENTITY|sector:S", help="who the grant is for"
        )
        parser.add_argument("--prefix", required=True, metavar="P", help='key prefix ("" for every key)')
    grant.add_argument("--right", required=True, choices=RIGHTS, help="what the grantee may do")
    expiry = grant.add_mutually_exclusive_group()
    expiry.add_argument(
        "--expires-at", type=parse_positive_int, default=None, metavar="H", help="last height"
    )
    expiry.add_argument(
        "--expires-in", type=parse_positive_int, default=EXPIRES_IN_DEFAULT, metavar="BLOCKS", help="from now"
    )
    grant.set_defaults(run=run_grant)
    revoke.set_defaults(run=run_revoke)

    anchor = sub.add_parser("anchor", help="anchor a document by its SHA-256, media type and size")
    _add_common(anchor, write=True)
    anchor.add_argument("file", type=Path, metavar="FILE")
    anchor.add_argument("--key", required=True, metavar="K", help="the record's key")
    anchor.add_argument("--owner", default=None, metavar="ENTITY", help="another entity's namespace")
    anchor.add_argument("--uri", default="", metavar="URI", help="where the document can be fetched")
    anchor.add_argument("--media-type", default=None, metavar="TYPE", help="default: guessed from the name")
    anchor.set_defaults(run=run_anchor)

    mark = sub.add_parser("mark-read", help="record on chain that you read a version")
    _add_common(mark, write=True)
    mark.add_argument("--entity", required=True, metavar="OWNER", help="the record's owner")
    mark.add_argument("--key", required=True, metavar="K", help="the record's key")
    mark.add_argument(
        "--version", required=True, type=parse_positive_int, metavar="N", help="the version read"
    )
    mark.set_defaults(run=run_mark_read)
    _add_read_commands(sub)


def _add_read_commands(sub: Any) -> None:
    get = sub.add_parser("get", help="a record's latest or given version")
    listing = sub.add_parser("list", help="an entity's records by key prefix")
    history = sub.add_parser("history", help="every version of a record, with its writer")
    grants = sub.add_parser("grants", help="the grants an entity made")
    verify = sub.add_parser("verify", help="hash a local file and show where it is anchored")
    for parser in (get, listing, history, grants, verify):
        _add_common(parser, write=False)
        parser.add_argument("--entity", required=True, metavar="E", help="the owner (an entity or sector:S)")
    for parser in (get, history, verify):
        parser.add_argument("--key", required=True, metavar="K", help="the record's key")
    for parser in (listing, history):
        parser.add_argument(
            "--limit", type=parse_positive_int, default=100, metavar="N", help="items per page"
        )
        parser.add_argument(
            "--cursor", default=None, metavar="C", help="the next_cursor of the previous page"
        )
    get.add_argument(
        "--version", type=parse_positive_int, default=None, metavar="N", help="default: the latest"
    )
    get.add_argument("--decrypt", action="store_true", help="open a confidential value with --identity's key")
    listing.add_argument("--prefix", default="", metavar="P", help="only keys starting with P (default: all)")
    verify.add_argument("file", type=Path, metavar="FILE")
    get.set_defaults(run=run_get)
    listing.set_defaults(run=run_list)
    history.set_defaults(run=run_history)
    grants.set_defaults(run=run_grants)
    verify.set_defaults(run=run_verify)
