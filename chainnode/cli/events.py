"""The `chainnode events` command: read a node's committed events, or follow them.

    chainnode events --node URL [--from CURSOR|head] [--module M] [--entity E] [--follow] [--json|--text]

Without `--follow` it prints every matching event from `--from` (default: the chain's first)
up to the node's head, then the cursor to continue from on stderr (`next: CURSOR`), so a
script can run it again later and miss nothing.  With `--follow` it then keeps streaming
(the SDK's reconnecting websocket, `chainnode.sdk.events.events`) until interrupted.  On a
terminal (or with `--text`) each event is one line: position, `module.action`, entity, keys and
the cursor after it; with `--json`, or when stdout is not a terminal, one JSON object per line
(JSON Lines: a stream, the one exception to the CLI's one JSON document per command).  Like the rest of
the CLI, only the standard library is imported until the command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from chainnode.cli.output import add_output_options, is_json_output

EXIT_OK = 0


def format_event_line(event: dict[str, Any]) -> str:
    """One event as a terminal line."""
    where = f"{event['height']}/{event['tx_index']}/{event['event_index']}"
    keys = ",".join(str(key) for key in event.get("keys", [])) or "-"
    return f"{where:<14} {event['name']:<28} {event['entity']:<24} {keys:<32} {event['cursor']}"


def _print(event: dict[str, Any], as_json: bool) -> None:
    print(json.dumps(event, separators=(",", ":")) if as_json else format_event_line(event), flush=True)


def run_events(args: argparse.Namespace) -> int:
    from chainnode.sdk import events as sdk_events
    from chainnode.sdk.client import Client

    client = Client(args.node, timeout_s=args.timeout)
    as_json = is_json_output(args)
    cursor = sdk_events.resolve_head_cursor(client) if args.from_cursor == "head" else args.from_cursor
    if not args.follow:
        page: dict[str, Any] = {"next": cursor}
        while True:
            page = sdk_events.get_events_page(
                client, from_cursor=page["next"], module=args.module, entity=args.entity, limit=500
            )
            for event in page["events"]:
                _print(event, as_json)
            if page.get("caught_up") and not page["events"]:
                break
        print(f"next: {page['next']}", file=sys.stderr)
        return EXIT_OK
    for event in sdk_events.events(client, from_cursor=cursor, module=args.module, entity=args.entity):
        _print(event, as_json)
    return EXIT_OK


def add_commands(commands: Any) -> None:
    """Mount `events` on the `chainnode` parser's subcommands."""
    parser = commands.add_parser("events", help="read or follow committed events")
    parser.add_argument("--node", required=True, metavar="URL", help="the node's API URL")
    parser.add_argument(
        "--from",
        dest="from_cursor",
        metavar="CURSOR",
        help="start at this cursor (an event's `cursor`, or `next`); `head`: only new events",
    )
    parser.add_argument("--module", metavar="M", help="only events of this module")
    parser.add_argument("--entity", metavar="E", help="only events about this entity or signed by it")
    parser.add_argument("--follow", action="store_true", help="keep streaming new events")
    add_output_options(parser)
    parser.add_argument("--timeout", type=float, default=30.0, metavar="S", help="per request (seconds)")
    parser.set_defaults(run=run_events)
