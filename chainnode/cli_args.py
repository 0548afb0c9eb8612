"""Argument types shared by the `chainnode` command's parsers (standard library only, so
`chainnode --help` stays fast)."""

from __future__ import annotations

import argparse


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
