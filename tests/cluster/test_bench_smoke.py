"""Smoke test of `chainnode bench`: a few hundred transactions through real validator processes.

No timing is asserted (the machine is shared); the test checks that a run
completes and that its report is coherent: everything committed, latencies
ordered, every validator measured, a positive ratio to the verification limit,
and every receipt of the workload a success, counted by module and action: the
realistic mix (the default) with each of its kinds, a council vote included, the
pilot mix (chosen with the deprecated `--mix`), the records mix with puts only, and
a `--duration` run that stops sending when the duration has passed.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from chainnode.core.errors import ConfigError
from chainnode.tools import bench, bench_mix
from cli import main
from tests.cluster.conftest import find_free_base_port

pytestmark = pytest.mark.cluster

VALIDATORS = 4
TXS = 300


def _check_report(report: dict[str, object], *, txs: int, rate: str, mix: str) -> None:
    assert report["txs"] == txs and report["rate"] == rate and report["mix"] == mix
    assert report["workload"] == bench_mix.describe_workload(mix)
    assert report["committed_txs"] == txs and report["rejected_txs"] == 0
    p50, p95, p99 = report["latency_ms_p50"], report["latency_ms_p95"], report["latency_ms_p99"]
    assert isinstance(p50, float) and isinstance(p95, float) and isinstance(p99, float)
    assert 0 <= p50 <= p95 <= p99 <= report["latency_ms_max"]  # type: ignore[operator]
    assert report["committed_tps"] > 0 and report["limit_ratio"] > 0  # type: ignore[operator]
    assert report["verify_per_s_single_core"] > 0 and report["cpu_count"] >= 1  # type: ignore[operator]
    assert report["verify_per_s_single_core_after"] > 0  # type: ignore[operator]
    assert report["cpu_per_tx_in_verifications"] > 0  # type: ignore[operator]
    assert report["blocks"] >= 1 and report["block_txs_mean"] > 0  # type: ignore[operator]
    assert report["validators_agree"] is True
    usage = report["usage"]
    assert isinstance(usage, list) and len(usage) == VALIDATORS
    for item in usage:
        assert item["cpu_s"] > 0 and item["rss_peak_bytes"] > 0 and item["disk_bytes_per_tx"] > 0
    # Every transaction of the workload committed with a successful receipt, and only those.
    assert report["receipts_failed"] == {}
    if mix == "records":
        assert report["receipts_ok"] == {"records.put": txs} and report["setup_txs"] == 0
        return
    expected: dict[str, int] = {}
    for kind in bench_mix.MIX_TABLES[mix]:
        name = "assets.transfer" if kind == "assets.transfer_editioned" else kind
        expected[name] = expected.get(name, 0) + bench_mix.count_kind(txs, kind, mix)
    assert report["receipts_ok"] == dict(sorted(expected.items()))
    assert all(count > 0 for count in expected.values()), "every kind of the mix ran"
    assert report["setup_txs"] > 0 and report["setup_height"] > 0  # type: ignore[operator]


@pytest.mark.parametrize(("option", "mix"), [("--workload", "realistic"), ("--mix", "pilot")])
def test_bench_command_at_max_rate_writes_a_coherent_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, mix: str
) -> None:
    base_port = find_free_base_port(2 * VALIDATORS, random.Random())
    out = tmp_path / "report.json"
    code = main(
        [
            "bench",
            option,
            mix,
            "--validators",
            str(VALIDATORS),
            "--txs",
            str(TXS),
            "--rate",
            "max",
            "--batch",
            "50",
            "--dir",
            str(tmp_path / "network"),
            "--base-port",
            str(base_port),
            "--out",
            str(out),
            "--text",  # the readable report (into a pipe the command prints the JSON report)
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "committed/limit" in printed and "validator-04" in printed
    assert f"mix {mix}" in printed and "receipts failed      none" in printed
    report = json.loads(out.read_text())
    _check_report(report, txs=TXS, rate="max", mix=mix)
    assert report["duration_target_s"] is None


def test_bench_at_a_fixed_rate_for_a_duration(tmp_path: Path) -> None:
    base_port = find_free_base_port(2 * VALIDATORS, random.Random())
    report = bench.run_bench(
        bench.BenchConfig(
            validators=VALIDATORS,
            txs=TXS,
            rate_tps=200,
            base_port=base_port,
            batch_txs=20,
            mix="records",
            duration_s=1.0,
        )
    )
    # At 200 tx/s in batches of 20 the batches due at 0.0, 0.1, ... 0.9 s leave: 200 of the 300.
    _check_report(report.to_json(), txs=200, rate="200", mix="records")
    assert report.duration_target_s == 1.0 and report.submitted_tps <= 400


def test_bench_refuses_a_directory_that_holds_a_network(tmp_path: Path) -> None:
    (tmp_path / "genesis.json").write_text("{}")
    with pytest.raises(ConfigError, match="fresh directory"):
        bench.run_bench(bench.BenchConfig(txs=10, directory=tmp_path))
