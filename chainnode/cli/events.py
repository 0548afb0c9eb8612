"""The `chainnode events` command: read a node's committed events, or follow them.

    chainnode events --node URL [--from CURSOR|head] [--module M] [--entity E] [--limit N] [--follow]
                     [--json|--text]

Without `--follow` it reads every matching event from `--from` (default: the chain's first) up
to the node's head, at most `--limit` of them, and prints one document (`chainnode.cli.output`):
`{"events": [...], "count": N, "next": CURSOR}`, where `next` is the cursor to continue from
(a script runs it again later with `--from NEXT` and misses nothing); on a terminal the events
are a table and `next` a note.  `next: CURSOR` also goes to stderr, so a reader of the readable
view has it too.  With `--follow` it keeps streaming (the SDK's reconnecting websocket,
`chainnode.sdk.events.events`) until interrupted: one line per event on a terminal (position,
`module.action`, entity, keys and the cursor after it), or one JSON object per line with
`--json` or into a pipe (JSON Lines: a stream that never ends is the one exception to one
JSON document per command).  Like the rest of the CLI, only the standard library is imported
until the command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from chainnode.cli.args import parse_positive_int
from chainnode.cli.output import add_output_options, is_json_output

EXIT_OK = 0
EVENTS_PAGE_MAX = 500
EVENTS_MAX_DEFAULT = 10_000


def format_event_line(event: dict[str, Any]) -> str:
    """One event as a terminal line."""
    where = f"{event['height']}/{event['tx_index']}/{event['event_index']}"
    keys = ",".join(str(key) for key in event.get("keys", [])) or "-"
    return f"{where:<14} {event['name']:<28} {event['entity']:<24} {keys:<32} {event['cursor']}"


def _print_line(event: dict[str, Any], as_json: bool) -> None:
    print(json.dumps(event, separators=(",", ":")) if as_json else format_event_line(event), flush=True)


def read_events_document(
    client: Any, *, from_cursor: str | None, module: str | None, entity: str | None, limit: int
) -> dict[str, Any]:
    """Every matching event from `from_cursor` up to the head, at most `limit`: one document."""
    from chainnode.sdk import events as sdk_events

    events: list[dict[str, Any]] = []
    next_cursor = from_cursor
    while len(events) < limit:
        page = sdk_events.get_events_page(
            client,
            from_cursor=next_cursor,
            module=module,
            entity=entity,
            limit=min(EVENTS_PAGE_MAX, limit - len(events)),
        )
        events.extend(page["events"])
        next_cursor = page["next"]
        if page.get("caught_up") and not page["events"]:
            break
    return {"events": events, "count": len(events), "next": next_cursor}


def _render_events(document: dict[str, Any]) -> None:
    from chainnode.cli.output import print_note, print_rows

    rows = [
        {
            "position": f"{event['height']}/{event['tx_index']}/{event['event_index']}",
            "name": event["name"],
            "entity": event["entity"],
            "keys": ",".join(str(key) for key in event.get("keys", [])) or "-",
            "cursor": event["cursor"],
        }
        for event in document["events"]
    ]
    if rows:
        print_rows(rows)
    print_note(f"{document['count']} events; go on with --from {document['next']}")


def run_events(args: argparse.Namespace) -> int:
    from chainnode.cli.output import emit
    from chainnode.sdk import events as sdk_events
    from chainnode.sdk.client import Client

    client = Client(args.node, timeout_s=args.timeout)
    cursor = sdk_events.resolve_head_cursor(client) if args.from_cursor == "head" else args.from_cursor
    if not args.follow:
        document = read_events_document(
            client, from_cursor=cursor, module=args.module, entity=args.entity, limit=args.limit
        )
        emit(args, document, render=_render_events)
        print(f"next: {document['next']}", file=sys.stderr)
        return EXIT_OK
    as_json = is_json_output(args)
    for event in sdk_events.events(client, from_cursor=cursor, module=args.module, entity=args.entity):
        _print_line(event, as_json)
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
    parser.add_argument(
        "--limit",
        type=parse_positive_int,
        default=EVENTS_MAX_DEFAULT,
        metavar="N",
        help="without --follow: at most N events (go on from `next`)",
    )
    parser.add_argument("--follow", action="store_true", help="keep streaming new events")
    add_output_options(parser)
    parser.add_argument("--timeout", type=float, default=30.0, metavar="S", help="per request (seconds)")
    parser.set_defaults(run=run_events)
