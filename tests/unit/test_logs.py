"""The node's log formatting (`chainnode.node.logs`): JSON lines and text, with the context."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from chainnode.core.errors import ConfigError
from chainnode.node import logs


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    output = io.StringIO()
    # A node built in this process by an earlier test (integration tests run first in CI) bound
    # its context; these tests start from none.
    logs.bind_node_context(None)
    yield output
    logs.bind_node_context(None)
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def test_json_lines_carry_the_context_and_the_traceback(stream: io.StringIO) -> None:
    logs.configure_logging("info", "json", stream)
    logging.getLogger("chainnode.x").info("before any node")
    logs.bind_node_context(lambda: (7, 2))
    with logs.handling_peer("validator-02"):
        logging.getLogger("chainnode.x").warning('a "quoted" %s', "word")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("chainnode.y").exception("failed")
    logging.getLogger("chainnode.x").debug("below the level")
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(r["level"], r["logger"], r["message"], r["height"], r["view"], r["peer"]) for r in records] == [
        ("info", "chainnode.x", "before any node", None, None, None),
        ("warning", "chainnode.x", 'a "quoted" word', 7, 2, "validator-02"),
        ("error", "chainnode.y", "failed", 7, 2, None),
    ]
    assert "ValueError: boom" in records[2]["exception"] and records[0]["time"].endswith("+00:00")


def test_text_puts_the_known_context_in_brackets_and_a_failing_context_is_unknown(
    stream: io.StringIO,
) -> None:
    logs.configure_logging("debug", "text", stream)
    logs.bind_node_context(lambda: (3, 0))
    logging.getLogger("chainnode.x").info("one")

    def closed() -> tuple[int, int]:
        raise RuntimeError("the ledger is closed")

    logs.bind_node_context(closed)
    logging.getLogger("chainnode.x").info("two")
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith(" INFO chainnode.x [height=3 view=0]: one"), lines
    assert lines[1].endswith(" INFO chainnode.x: two"), lines


@pytest.mark.parametrize(
    ("level", "log_format", "word"), [("loud", "text", "level"), ("info", "xml", "format")]
)
def test_bad_level_or_format_is_a_config_error(level: str, log_format: str, word: str) -> None:
    with pytest.raises(ConfigError, match=f"log {word} must be one of"):
        logs.configure_logging(level, log_format, io.StringIO())
