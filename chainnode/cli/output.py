"""How every `chainnode` command prints its answer: one JSON document, or a readable view.

Theory of operation: a command builds one JSON-able document (stable field names: the API's own
for reads, `tx_hash` / `status` / `height` / `receipt` plus the created id for writes) and hands it
to `emit`.  With `--json`, or when stdout is not a terminal (a pipe, a file, a test), `emit` prints
exactly that document, once.  On a terminal (or with `--text`) it renders the same document with
rich: scalars as a key/value view, lists of objects as tables, epoch-millisecond times (`*_ms`
fields holding a date) as ISO-8601 UTC, and 64-digit hashes shortened in tables.  So the two modes
can never disagree about what a command found: the readable view is a rendering of the JSON.

rich is imported only when a readable view is printed, so `chainnode --help` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

# Epoch milliseconds from 2001-09-09 to 2286: a `*_ms` field in this range is a point in time, not a
# duration such as `view_timeout_ms`.
_EPOCH_MS_MIN = 1_000_000_000_000
_EPOCH_MS_MAX = 10_000_000_000_000
_HASH_DIGITS = 64
_SHORT_HASH_DIGITS = 12
_CELL_CHARS_MAX = 60


def add_output_options(parser: argparse.ArgumentParser) -> None:
    """`--json` / `--text`: the two ways to override the choice made from stdout."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--json",
        action="store_true",
        help="print one JSON document (the default when stdout is not a terminal)",
    )
    group.add_argument(
        "--text",
        action="store_true",
        help="print the readable view even when stdout is not a terminal",
    )


def is_json_output(args: argparse.Namespace) -> bool:
    if getattr(args, "json", False):
        return True
    if getattr(args, "text", False):
        return False
    return not sys.stdout.isatty()


# ---------------------------------------------------------------- pure formatting


def format_time_ms(value_ms: int) -> str:
    """Epoch milliseconds as ISO-8601 UTC, e.g. `2026-12-02T04:36:52.123Z`."""
    moment = datetime.datetime.fromtimestamp(value_ms / 1000, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value_ms % 1000:03d}Z"


def is_time_field(name: str, value: Any) -> bool:
    return (
        name.endswith("_ms")
        and isinstance(value, int)
        and not isinstance(value, bool)
        and _EPOCH_MS_MIN <= value < _EPOCH_MS_MAX
    )


def is_hash(value: Any) -> bool:
    return (
        isinstance(value, str)
        and len(value) == _HASH_DIGITS
        and all(character in "0123456789abcdef" for character in value)
    )


def short_hash(value: str) -> str:
    """The first digits of a hash, enough to recognise it (`3fa2b9c01d7e…`)."""
    return value[:_SHORT_HASH_DIGITS] + "…" if is_hash(value) else value


def _format_text(value: str, *, shorten: bool) -> str:
    """Hashes short in tables; long hex (encodings, signatures) and PEM summarised everywhere: the
    JSON carries them whole for whoever needs them."""
    if len(value) > _HASH_DIGITS and all(character in "0123456789abcdef" for character in value):
        return f"{value[:_SHORT_HASH_DIGITS]}… ({len(value) // 2} bytes)"
    if value.startswith("-----BEGIN "):
        return value.splitlines()[0] + f" … ({len(value)} characters)"
    return short_hash(value) if shorten else value


def format_value(name: str, value: Any, *, shorten: bool = False) -> str:
    """One field as text: times in ISO-8601 UTC, hashes short when `shorten`, `-` for nothing."""
    if value is None:
        return "-"
    if is_time_field(name, value):
        return format_time_ms(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return _format_text(value, shorten=shorten)
    if isinstance(value, list) and all(not isinstance(item, dict | list) for item in value):
        return ", ".join(format_value(name, item, shorten=shorten) for item in value) or "-"
    if isinstance(value, dict | list):
        text = json.dumps(value, separators=(",", ":"))
        return text if len(text) <= _CELL_CHARS_MAX or not shorten else text[: _CELL_CHARS_MAX - 1] + "…"
    return str(value)


def get_display_name(name: str, values: Sequence[Any]) -> str:
    """A field's label: `timestamp_ms` reads `timestamp` once its values are shown as dates."""
    if name.endswith("_ms") and any(is_time_field(name, value) for value in values):
        return name.removesuffix("_ms")
    return name


def split_document(
    document: dict[str, Any],
) -> tuple[list[tuple[str, Any]], list[tuple[str, list[dict[str, Any]]]], list[tuple[str, dict[str, Any]]]]:
    """A document's scalar fields, its lists of objects (tables) and its nested objects (sections)."""
    pairs: list[tuple[str, Any]] = []
    tables: list[tuple[str, list[dict[str, Any]]]] = []
    sections: list[tuple[str, dict[str, Any]]] = []
    for name, value in document.items():
        if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
            tables.append((name, value))
        elif isinstance(value, dict) and value and len(value) <= 40:
            sections.append((name, value))
        else:
            pairs.append((name, value))
    return pairs, tables, sections


def get_table_columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Every field of the rows, in first-seen order."""
    columns: list[str] = []
    for row in rows:
        for name in row:
            if name not in columns:
                columns.append(name)
    return columns


# ---------------------------------------------------------------- printing


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


def _get_console() -> Any:
    from rich.console import Console

    # Not a terminal (`--text` into a pipe): wide, so columns are not folded for a reader to parse.
    return Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 200)


def print_pairs(pairs: Sequence[tuple[str, Any]], *, title: str | None = None) -> None:
    from rich.table import Table

    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for name, value in pairs:
        table.add_row(get_display_name(name, [value]), format_value(name, value))
    _print_titled(table, title)


def print_rows(
    rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, *, title: str | None = None
) -> None:
    """Rows of objects as a table: the header is the upper-cased field names."""
    from rich.table import Table

    names = list(columns) if columns is not None else get_table_columns(rows)
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in names:
        table.add_column(get_display_name(name, [row.get(name) for row in rows]).upper(), overflow="fold")
    for row in rows:
        table.add_row(*(format_value(name, row.get(name), shorten=True) for name in names))
    _print_titled(table, title)


def _print_titled(table: Any, title: str | None) -> None:
    """The title on its own line (a table's own title would wrap at the table's width)."""
    console = _get_console()
    if title is not None:
        console.print(title, style="bold", highlight=False, markup=False)
    console.print(table)


def print_note(text: str) -> None:
    """A line for the reader of the readable view (progress, a hint), never part of the JSON."""
    _get_console().print(text, style="dim")


def get_progress_sink(args: argparse.Namespace) -> Callable[[str], None]:
    """Where a long-running command (devnet, bench) reports progress: stderr, never the answer on
    stdout; dim lines through rich when a person watches stderr, plain lines otherwise."""
    if not sys.stderr.isatty():

        def print_plain(text: str) -> None:
            print(text, file=sys.stderr, flush=True)

        return print_plain
    from rich.console import Console

    console = Console(stderr=True, highlight=False)

    def print_dim(text: str) -> None:
        console.print(text, style="dim")

    return print_dim


@contextlib.contextmanager
def show_progress(args: argparse.Namespace, text: str) -> Iterator[None]:
    """A spinner on stderr while a command waits, when a person is watching (never into a pipe)."""
    if is_json_output(args) or not sys.stderr.isatty():
        yield
        return
    from rich.console import Console

    with Console(stderr=True).status(text):
        yield


def render_document(document: Any, *, title: str | None = None) -> None:
    """The generic readable view: scalars as key/value, lists of objects as tables, objects nested."""
    if isinstance(document, list):
        print_rows(document, title=title)
        return
    if not isinstance(document, dict):
        print(format_value("", document))
        return
    pairs, tables, sections = split_document(document)
    if pairs:
        print_pairs(pairs, title=title)
    for name, section in sections:
        section_pairs, section_tables, nested = split_document(section)
        print_pairs([*section_pairs, *nested], title=f"\n{name}")
        for table_name, rows in section_tables:
            print_rows(rows, title=f"\n{name}.{table_name}")
    for name, rows in tables:
        print_rows(rows, title=f"\n{name} ({len(rows)})")


def emit(
    args: argparse.Namespace,
    document: Any,
    *,
    title: str | None = None,
    render: Callable[[Any], None] | None = None,
) -> None:
    """Print the command's one document: JSON, or its readable view (`render`, or the generic one)."""
    if is_json_output(args):
        print_json(document)
    elif render is not None:
        render(document)
    else:
        render_document(document, title=title)
