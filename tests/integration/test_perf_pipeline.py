"""The hot-path timing tool (tests/perf/pipeline.py) runs end to end on a small workload."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.perf.pipeline import PHASES, run_pipeline


def test_the_pipeline_tool_commits_the_workload_on_both_nodes(tmp_path: Path) -> None:
    seconds = run_pipeline(tmp_path / "network", 300)
    assert set(seconds) == set(PHASES)
    assert all(spent > 0 for spent in seconds.values()), seconds


@pytest.mark.parametrize("mix", ["pilot", "realistic"])
def test_the_pipeline_tool_runs_a_mix_after_its_set_up(tmp_path: Path, mix: str) -> None:
    seconds = run_pipeline(tmp_path / "network", 300, mix=mix)
    assert all(spent > 0 for spent in seconds.values()), seconds
