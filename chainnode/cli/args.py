"""Argument types and output helpers shared by the `chainnode` command's modules (standard
library only at import time, so `chainnode --help` stays fast)."""

from __future__ import annotations

import argparse
import json
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


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


def wait_and_report(client: Client, tx_hash: str, timeout_s: float) -> None:
    """Wait for the commit, print the answer, and fail when the receipt is not OK."""
    from chainnode.sdk.client import ClientError

    answer = client.wait_for_commit(tx_hash, timeout_s=timeout_s)
    print_json(answer)
    receipt = answer.get("receipt") or {}
    if receipt.get("code", 0) != 0:
        raise ClientError(
            f"transaction {tx_hash} was committed but failed: {receipt.get('message', '')}",
            code=str(receipt.get("code_name", "failed")),
        )
