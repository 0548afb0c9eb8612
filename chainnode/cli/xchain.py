"""The `chainnode xchain ...` commands: cross-chain exchange (the `xchain` module) from a terminal.

Theory of operation: like the rest of the CLI, only the standard library is imported at start-up
and each command imports the SDK (`chainnode.sdk.xchain`) when it runs.  Queries print the API's
answer (`chainnode.api.xchain`): one JSON document with `--json` (or into a pipe), tables and
key/value views on a terminal.  `send` signs `xchain.send` as the entity of `--identity` and
prints the submit document (`chainnode.cli.args.submit_document`); `--wait` waits for the commit
and fails (exit 1, with the receipt's stable code, e.g. `error: unknown_chain: ...`) when the
transaction failed.  Carrying messages and facts to the other chain is the relayer's job
(`chainnode relay`); counterparty chains are registered by the council
(`chainnode council propose --kind register_chain --genesis FILE`).

    chainnode xchain chains --node URL [--limit N] [--cursor C]
    chainnode xchain client CHAIN --node URL
    chainnode xchain fact CHAIN TXHASH --node URL
    chainnode xchain facts|outbound|inbound CHAIN --node URL [--limit N] [--cursor C]
    chainnode xchain send DEST (--payload TEXT | --payload-hex HEX | --payload-file FILE)
                          --identity DIR --node URL [--wait]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from chainnode.cli.args import parse_positive_int, raise_if_failed, submit_document
from chainnode.cli.output import add_output_options, emit, print_note, print_pairs, print_rows

PAYLOAD_BYTES_MAX = 4096  # `chainnode.app.xchain_state.PAYLOAD_BYTES_MAX`, kept here for a fast --help


def _open(args: argparse.Namespace, *, signed: bool = False) -> Any:
    from chainnode.sdk.client import Client, Identity
    from chainnode.sdk.xchain import Xchain

    signer = Identity.load(args.identity) if signed else None
    return Xchain(Client(args.node, timeout_s=args.timeout), signer, timeout_s=args.timeout)


def _require(value: Any, what: str) -> Any:
    from chainnode.sdk.errors import ClientError

    if value is None:
        raise ClientError(f"no {what}", code="not_found", status=404)
    return value


def _print_next(page: dict[str, Any]) -> None:
    if page.get("next_cursor"):
        print_note(f"more: --cursor {page['next_cursor']}")


def _client_row(chain: dict[str, Any]) -> dict[str, Any]:
    client = chain.get("client") or {}
    return {
        "chain_id": chain["chain_id"],
        "status": chain["status"],
        "client_height": client.get("height"),
        "halted": client.get("halted") or None,
        "facts": chain["facts"],
        "sent": chain["sent"],
        "acknowledged": chain["acknowledged"],
        "delivered": chain["delivered"],
    }


# ---------------------------------------------------------------- queries


def run_chains(args: argparse.Namespace) -> int:
    page = _open(args).get_chains(limit=args.limit, cursor=args.cursor)

    def render(answer: dict[str, Any]) -> None:
        if not answer["chains"]:
            print_note("no counterparty chain is registered (the council registers one: register_chain)")
        print_rows([_client_row(chain) for chain in answer["chains"]])
        _print_next(answer)

    emit(args, page, render=render)
    return 0


def run_client(args: argparse.Namespace) -> int:
    chain = _require(_open(args).get_chain(args.chain), f"registered chain {args.chain!r}")

    def render(answer: dict[str, Any]) -> None:
        print_pairs(
            [(name, value) for name, value in answer.items() if name not in ("client", "head", "fork")],
            title=f"chain {answer['chain_id']}",
        )
        if answer.get("client") is not None:
            print_pairs(list(answer["client"].items()), title="\nlight client")
        if answer.get("fork") is not None:
            print_pairs(list(answer["fork"].items()), title="\nfork evidence (the client is halted)")

    emit(args, chain, render=render)
    return 0


def run_fact(args: argparse.Namespace) -> int:
    fact = _require(
        _open(args).get_fact(args.chain, args.tx_hash), f"fact of {args.tx_hash} from {args.chain!r}"
    )

    def render(answer: dict[str, Any]) -> None:
        print_pairs([(name, value) for name, value in answer.items() if name != "receipt"], title="fact")
        print_rows(
            [
                {"name": event["name"], "attributes": event["attributes"]}
                for event in answer["receipt"]["events"]
            ],
            ("name", "attributes"),
            title="\nevents of the source receipt",
        )

    emit(args, fact, render=render)
    return 0


def run_list(args: argparse.Namespace) -> int:
    xchain = _open(args)
    what = args.xchain_command
    method = {"facts": xchain.get_facts, "outbound": xchain.get_outbound, "inbound": xchain.get_inbound}[what]
    page = method(args.chain, limit=args.limit, cursor=args.cursor)
    columns = {
        "facts": ("index", "height", "tx_hash", "module", "action", "signer", "local_height"),
        "outbound": ("seq", "sender", "payload_hash", "height", "tx_hash", "acknowledged"),
        "inbound": ("seq", "sender", "payload_hash", "source_height", "source_tx_hash", "height"),
    }[what]
    field = "facts" if what == "facts" else "messages"

    def render(answer: dict[str, Any]) -> None:
        print_rows(answer[field], columns)
        _print_next(answer)

    emit(args, page, render=render)
    return 0


def _read_payload(args: argparse.Namespace) -> bytes:
    from chainnode.core.errors import ConfigError

    payload: bytes
    if args.payload is not None:
        payload = args.payload.encode()
    elif args.payload_hex is not None:
        from chainnode.core.hexstr import HexError, parse_hex

        try:
            payload = parse_hex(args.payload_hex, "--payload-hex")
        except HexError as error:
            raise ConfigError(error.message) from error
    else:
        try:
            payload = Path(args.payload_file).read_bytes()
        except OSError as error:
            raise ConfigError(f"cannot read {args.payload_file}: {error}") from error
    if len(payload) > PAYLOAD_BYTES_MAX:
        raise ConfigError(f"a payload is at most {PAYLOAD_BYTES_MAX} bytes, got {len(payload)}")
    return payload


def run_send(args: argparse.Namespace) -> int:
    from chainnode.cli.output import render_document

    xchain = _open(args, signed=True)
    submitted = xchain.send(args.dest, _read_payload(args), wait=args.wait)
    document = submit_document(submitted.tx_hash, "xchain.send", xchain.signer.entity_id)
    document["seq"] = None
    if submitted.status is not None:
        receipt = submitted.status.get("receipt") or {}
        document.update(
            status=submitted.status.get("status"),
            ok=receipt.get("code", 0) == 0,
            height=submitted.status.get("height"),
            index=submitted.status.get("index"),
            receipt=receipt,
        )
        for event in receipt.get("events", []):
            if event.get("name") == "xchain.sent" and len(event.get("attributes", [])) >= 2:
                document["seq"] = event["attributes"][1]

    def render(answer: dict[str, Any]) -> None:
        render_document(answer, title="xchain.send")
        if answer["status"] == "pending":
            print_note("pending: --wait waits for the commit and prints the outcome")

    emit(args, document, render=render)
    raise_if_failed(document)
    return 0


# ---------------------------------------------------------------- the parser


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--node", required=True, metavar="URL", help="the node's API URL")
    parser.add_argument(
        "--timeout", type=float, default=30.0, metavar="S", help="seconds per answer and commit"
    )
    add_output_options(parser)


def _add_page(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--limit", type=parse_positive_int, default=None, metavar="N", help="items per page")
    parser.add_argument("--cursor", default=None, metavar="C", help="the previous page's next_cursor")


def add_commands(commands: Any) -> None:
    """Mount `xchain` on the `chainnode` parser's subcommands."""
    group = commands.add_parser(
        "xchain", help="cross-chain exchange: counterparty chains, imported facts, messages"
    )
    subcommands = group.add_subparsers(dest="xchain_command", required=True)
    chains = subcommands.add_parser("chains", help="registered counterparty chains and their clients")
    _add_common(chains)
    _add_page(chains)
    chains.set_defaults(run=run_chains)
    client = subcommands.add_parser("client", help="one chain's light client, head and fork evidence")
    client.add_argument("chain", metavar="CHAIN")
    _add_common(client)
    client.set_defaults(run=run_client)
    fact = subcommands.add_parser("fact", help="the fact of one imported source transaction")
    fact.add_argument("chain", metavar="CHAIN")
    fact.add_argument("tx_hash", metavar="TXHASH")
    _add_common(fact)
    fact.set_defaults(run=run_fact)
    for name, help_text in (
        ("facts", "facts imported from a chain, in import order"),
        ("outbound", "messages sent to a chain, with their acknowledgement"),
        ("inbound", "messages delivered from a chain, with their payloads"),
    ):
        listing = subcommands.add_parser(name, help=help_text)
        listing.add_argument("chain", metavar="CHAIN")
        _add_common(listing)
        _add_page(listing)
        listing.set_defaults(run=run_list)
    send = subcommands.add_parser("send", help="send a message to a registered chain")
    send.add_argument("dest", metavar="DEST")
    payload = send.add_mutually_exclusive_group(required=True)
    payload.add_argument("--payload", default=None, metavar="TEXT", help="the payload as UTF-8 text")
    payload.add_argument("--payload-hex", default=None, metavar="HEX", help="the payload as hex")
    payload.add_argument(
        "--payload-file", type=Path, default=None, metavar="FILE", help="the payload's bytes"
    )
    send.add_argument("--identity", type=Path, required=True, metavar="DIR", help="holds cert.pem, key.pem")
    _add_common(send)
    send.add_argument("--wait", action="store_true", help="wait for the commit; fail if the receipt failed")
    send.set_defaults(run=run_send)
