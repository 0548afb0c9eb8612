"""Argument types and output helpers shared by the `chainnode` command's modules (standard
library only at import time, so `chainnode --help` stays fast)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

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
    from chainnode.sdk.client import ClientError

    if document.get("ok") is False:
        receipt = document.get("receipt") or {}
        raise ClientError(
            f"transaction {document['tx_hash']} was committed but failed: {receipt.get('message', '')}",
            code=str(receipt.get("code_name", "failed")),
        )
