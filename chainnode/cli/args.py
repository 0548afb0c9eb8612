"""Argument types and output helpers shared by the `chainnode` command's modules (standard
library only at import time, so `chainnode --help` stays fast)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from chainnode.cli.output import add_output_options

if TYPE_CHECKING:
    from chainnode.sdk.client import Client


def parse_positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def parse_port(text: str) -> int:
    value = parse_positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port: {value}")
    return value


def submit_document(tx_hash: str, action: str, signer: str | None) -> dict[str, Any]:
    """The document a command that submits a transaction prints, before any wait: pending."""
    return {
        "tx_hash": tx_hash,
        "action": action,
        "signer": signer,
        "status": "pending",
        "ok": None,
        "height": None,
        "index": None,
        "receipt": None,
    }


def wait_for_outcome(args: argparse.Namespace, client: Client, document: dict[str, Any]) -> dict[str, Any]:
    """Wait (up to `--timeout`) for the commit of `document["tx_hash"]`; the document with its outcome."""
    from chainnode.cli.output import show_progress

    tx_hash = str(document["tx_hash"])
    with show_progress(args, f"waiting for the commit of {tx_hash[:12]}…"):
        answer = client.wait_for_commit(tx_hash, timeout_s=args.timeout)
    receipt = answer.get("receipt") or {}
    return {
        **document,
        "status": answer.get("status"),
        "ok": receipt.get("code", 0) == 0,
        "height": answer.get("height"),
        "index": answer.get("index"),
        "receipt": receipt,
    }


def raise_if_failed(document: dict[str, Any]) -> None:
    """Exit 1 with the receipt's stable code when a committed transaction failed (after printing)."""
    from chainnode.sdk.errors import ClientError

    if document.get("ok") is False:
        receipt = document.get("receipt") or {}
        raise ClientError(
            f"transaction {document['tx_hash']} was committed but failed: {receipt.get('message', '')}",
            code=str(receipt.get("code_name", "failed")),
        )


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


LOG_FORMATS = ("text", "json")


def setup_logging(level: str | None, log_format: str | None = None) -> None:
    """Logs on stderr (`chainnode.node.logs`); None takes the environment's default, else info/text."""
    from chainnode.node import logs

    logs.configure_logging(
        level or logs.get_default_level(), log_format or logs.get_default_format(), stream=sys.stderr
    )


def add_node_options(parser: argparse.ArgumentParser, *, waits: bool = False) -> None:
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
