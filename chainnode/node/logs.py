"""The node's logs: one line per record, human text or JSON, with the chain's context in each.

Theory of operation.  The standard library's `logging` does the work; this module only sets up
the root logger's one handler (`configure_logging`) with a formatter and a filter.  The filter
stamps every record with the node's context as it stands when the record is made: the committed
`height` and the consensus `view` (read through the callable the running node binds with
`bind_node_context`, so the context costs nothing until a line is logged) and the `peer` whose
frame is being handled (a context variable the node sets around each frame, `handling_peer`).
A record made before a node is bound, or by a part that knows no peer, carries null there.

Two formats: `text` (the default: a terminal, or a file a person reads) puts the context in
brackets after the logger's name; `json` writes one JSON object per line with the keys `time`
(ISO 8601, UTC, milliseconds), `level`, `logger`, `message`, `height`, `view`, `peer`, and
`exception` when the record carries a traceback, for log collectors.  The environment variables
`CHAINNODE_LOG_FORMAT` and `CHAINNODE_LOG_LEVEL` give the defaults a container sets once.
A filter must never fail: a context that cannot be read (the ledger just closed) is null.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from typing import TextIO

from chainnode.core.errors import ConfigError

LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")
FORMAT_VARIABLE = "CHAINNODE_LOG_FORMAT"
LEVEL_VARIABLE = "CHAINNODE_LOG_LEVEL"

_peer: contextvars.ContextVar[str | None] = contextvars.ContextVar("chainnode_log_peer", default=None)
_get_node_context: Callable[[], tuple[int, int]] | None = None


def bind_node_context(get_context: Callable[[], tuple[int, int]] | None) -> None:
    """Read (height, view) from `get_context` for every record from now on (None: no node)."""
    global _get_node_context  # noqa: PLW0603 -- one process runs one node; its records share it
    _get_node_context = get_context


@contextlib.contextmanager
def handling_peer(peer_id: str) -> Iterator[None]:
    """Records made inside name `peer_id` as their peer."""
    token = _peer.set(peer_id)
    try:
        yield
    finally:
        _peer.reset(token)


class ContextFilter(logging.Filter):
    """Stamps `height`, `view` and `peer` on every record (None where unknown)."""

    def filter(self, record: logging.LogRecord) -> bool:
        height: int | None = None
        view: int | None = None
        get_context = _get_node_context
        if get_context is not None:
            try:
                height, view = get_context()
            except Exception:  # a log line must never fail: the context is then unknown
                height = view = None
        record.height = height
        record.view = view
        record.peer = _peer.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line (see the module docstring for its keys)."""

    def format(self, record: logging.LogRecord) -> str:
        document = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "height": getattr(record, "height", None),
            "view": getattr(record, "view", None),
            "peer": getattr(record, "peer", None),
        }
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """`time LEVEL logger [height=… view=… peer=…]: message`, the context only where known."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(context)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        parts = [
            f"{key}={value}"
            for key in ("height", "view", "peer")
            if (value := getattr(record, key, None)) is not None
        ]
        record.context = f" [{' '.join(parts)}]" if parts else ""
        return super().format(record)


def get_default_format() -> str:
    return os.environ.get(FORMAT_VARIABLE, "text")


def get_default_level() -> str:
    return os.environ.get(LEVEL_VARIABLE, "info")


def configure_logging(level: str, log_format: str, stream: TextIO | None = None) -> None:
    """The root logger logs from `level` to `stream` (stderr) in `log_format`, replacing any
    handler set before; a bad level or format (from the environment) is a `ConfigError`."""
    if level not in LOG_LEVELS:
        raise ConfigError(
            f"log level must be one of {', '.join(LOG_LEVELS)}, not {level!r} ({LEVEL_VARIABLE}?)"
        )
    if log_format not in LOG_FORMATS:
        raise ConfigError(
            f"log format must be one of {', '.join(LOG_FORMATS)}, not {log_format!r} ({FORMAT_VARIABLE}?)"
        )
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
