"""The developer tools of tests/perf (hot-path timing, storage growth) run end to end on small workloads."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.perf.pipeline import PHASES, run_pipeline
from tests.perf.storage_growth import run as run_growth


def test_the_pipeline_tool_commits_the_workload_on_both_nodes(tmp_path: Path) -> None:
    seconds = run_pipeline(tmp_path / "network", 300)
    assert set(seconds) == set(PHASES)
    assert all(spent > 0 for spent in seconds.values()), seconds


@pytest.mark.parametrize("mix", ["pilot", "realistic"])
def test_the_pipeline_tool_runs_a_mix_after_its_set_up(tmp_path: Path, mix: str) -> None:
    seconds = run_pipeline(tmp_path / "network", 300, mix=mix)
    assert all(spent > 0 for spent in seconds.values()), seconds


def test_the_storage_growth_tool_reports_each_tenth(tmp_path: Path) -> None:
    rows = run_growth(tmp_path / "network", 4000, "realistic")  # blocks of 2,000: a row each
    assert [row["txs"] for row in rows] == [2000, 4000]
    assert all(row["disk_bytes_per_tx"] > 0 for row in rows), rows
