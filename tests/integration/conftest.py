"""Fixtures shared by the integration tests of the API, the client SDK, health, the HTTP guard
and the hot path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.api_harness import LocalService


@pytest.fixture
def service(tmp_path: Path) -> Iterator[LocalService]:
    """A node service over a real ledger in `tmp_path`, without a network."""
    node = LocalService(tmp_path)
    yield node
    node.close()
