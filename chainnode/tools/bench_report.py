"""The benchmark's report: its figures, how they are computed, and how they are shown.

Theory of operation
-------------------
Everything here is pure (no process, no clock, no file but the one `write_report` writes):
`chainnode.tools.bench` runs the network and the load and hands over what it observed, per
block the watcher's (commit time, transactions), per transaction its commit time and the
submitter's admitted time.  From those:

- **latency** is commit time minus admitted-submit time (`compute_latencies_ms`; p50/p95/p99 by
  nearest rank, `compute_percentile`);
- **throughput** is measured over the steady state, from the moment 10% of the workload had
  committed to the moment 90% had (`compute_steady_window`), so warm-up and drain do not count;
  a run too short for it falls back to the whole run;
- **sustained throughput** is the rate over the part of that window in which the submitter was
  still sending (`compute_sustained_rate`), since a short run's window also covers the nodes
  draining work they had already verified;
- **slices**: the run cut into ten equal slices of committed transactions, each with its rate.

`BenchReport` holds the figures of one run, `format_report` prints them as a table and
`write_report` writes the JSON that `--out` names.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from chainnode.core.errors import ConfigError
from chainnode.tools.bench_mix import MIX_DEFAULT

STEADY_SKIP_FRACTION = 0.1
# V is measured before the validators start and again after they stop; a machine whose speed
# moved more than this between the two (another tenant, a host that throttles) is named in the
# table, as its ratio to C x V / n is then off by as much.
VERIFY_DRIFT_WARN = 0.10
SUSTAINED_WINDOW_MIN_S = 2.0
SLICES = 10


@dataclass(frozen=True, slots=True)
class ValidatorUsage:
    """What one validator process consumed during the run."""

    node_id: str
    cpu_s: float  # user + system CPU seconds from the start signal to the last commit
    rss_peak_bytes: int  # VmHWM: the process's peak resident set since it started
    disk_bytes: int  # data directory size at the end
    disk_bytes_per_tx: float  # data directory growth during the run per committed transaction
    cpu_us_per_tx: float  # cpu_s per committed transaction


@dataclass(frozen=True, slots=True)
class BenchReport:
    """The figures of one run; `to_json` is what `--out` receives."""

    validators: int
    txs: int  # transactions submitted (with a duration: sent before it passed, at most the signed cap)
    rate: str  # "max" or the target in tx/s
    committed_txs: int
    rejected_txs: int
    submit_retries: int  # items sent again after a full mempool
    duration_s: float  # start signal to the last commit
    committed_tps: float  # over the steady state (10% to 90% committed)
    sustained_tps: float  # over the steady state while the submitter was still sending (0: too short)
    sustained_limit_ratio: float  # sustained_tps / limit_tps
    committed_when_submit_ended: float  # fraction of the workload committed when the submitter finished
    submitted_tps: float  # admitted transactions per second of submission
    latency_ms_p50: float
    latency_ms_p95: float
    latency_ms_p99: float
    latency_ms_max: float
    blocks: int
    blocks_per_s: float  # over the steady state
    block_txs_mean: float
    slice_tps: tuple[float, ...]  # committed rate of each tenth of the workload
    last_vs_first_slice: float  # last tenth's rate / first tenth's rate - 1 (0.0 when unknown)
    verify_per_s_single_core: float  # V
    cpu_count: int  # C
    limit_tps: float  # C * V / n
    limit_ratio: float  # committed_tps / limit_tps
    machine_busy_fraction: float  # share of all cores busy during the run (everything on the box)
    load_average_before: float
    validators_agree: bool  # equal height, head hash and state root at the end
    usage: tuple[ValidatorUsage, ...]
    workload: str
    mix: str = MIX_DEFAULT
    setup_txs: int = 0  # committed before the clock started (not counted anywhere else)
    setup_height: int = 0  # the watched node's height when the clock started
    receipts_ok: dict[str, int] | None = None  # "module.action" -> successful receipts of the workload
    receipts_failed: dict[str, int] | None = None  # error code name -> failed receipts of the workload
    duration_target_s: float | None = None  # --duration: submit until it passed (None: a fixed --txs)
    verify_per_s_single_core_after: float = 0.0  # V again, once the validators stopped (0: not measured)
    verify_drift: float = 0.0  # V after / V before - 1: how far the machine's speed moved
    # A validator's CPU per transaction counted in single-core verifications (mean over the
    # validators, with the mean of both V): what the ratio to C x V / n inverts, and steadier
    # than either when the machine's speed moves, as CPU time and 1 / V move together.
    cpu_per_tx_in_verifications: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The JSON form (tuples become lists), exactly what `--out` writes."""
        value: dict[str, Any] = json.loads(json.dumps(asdict(self)))
        return value


def compute_verify_figures(
    usage: Sequence[ValidatorUsage], verify_before: float, verify_after: float
) -> tuple[float, float]:
    """(drift of V between the two measurements, mean CPU per tx in verifications)."""
    if verify_before <= 0 or verify_after <= 0:
        return 0.0, 0.0
    drift = verify_after / verify_before - 1
    cpu_us = [item.cpu_us_per_tx for item in usage if item.cpu_us_per_tx > 0]
    if not cpu_us:
        return round(drift, 3), 0.0
    verify_mean = (verify_before + verify_after) / 2
    return round(drift, 3), round(sum(cpu_us) / len(cpu_us) * verify_mean / 1e6, 3)


def add_verify_after(report: BenchReport, verify_before: float, verify_after: float) -> BenchReport:
    """`report` with V measured again after the run, its drift and the CPU in verifications."""
    drift, cpu_in_verifications = compute_verify_figures(report.usage, verify_before, verify_after)
    return replace(
        report,
        verify_per_s_single_core_after=round(verify_after, 0),
        verify_drift=drift,
        cpu_per_tx_in_verifications=cpu_in_verifications,
    )


def compute_busy_fraction(before: tuple[int, int], after: tuple[int, int]) -> float:
    """The share of all cores busy between two (busy, total) readings of /proc/stat."""
    total = after[1] - before[1]
    return round((after[0] - before[0]) / total, 3) if total > 0 else 0.0


def compute_percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending sequence (0.0 when it is empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


def compute_rank_time(commits: Sequence[tuple[float, int]], rank: int, started: float) -> float:
    """When the `rank`-th transaction (1-based, in commit order) committed; `started` for rank 0.

    `commits` are (commit time, transactions) per block, in height order.
    """
    if rank <= 0:
        return started
    cumulative = 0
    for stamp, count in commits:
        cumulative += count
        if cumulative >= rank:
            return stamp
    return math.nan


def compute_rate(commits: Sequence[tuple[float, int]], rank_from: int, rank_to: int, started: float) -> float:
    """Transactions per second between the commits of ranks `rank_from` and `rank_to`.

    0.0 when both ranks fall into one block (no time passes between them) or
    a rank was never reached.
    """
    seconds = compute_rank_time(commits, rank_to, started) - compute_rank_time(commits, rank_from, started)
    if not seconds > 0:
        return 0.0
    return (rank_to - rank_from) / seconds


def compute_sustained_rate(
    commits: Sequence[tuple[float, int]], window_from: float, window_to: float, submit_finished: float
) -> tuple[float, float]:
    """(committed tx/s from `window_from` until the submitter finished or `window_to`, whichever
    comes first; the fraction of the committed transactions that had committed when it finished).

    In a short run the submitter hands every transaction over long before they commit, and the
    steady window then also measures the nodes draining what they had already admitted
    (verified): faster than they can take in new work.  The rate is 0.0 when less than
    `SUSTAINED_WINDOW_MIN_S` remains.
    """
    total = sum(count for _, count in commits)
    done_by_submit_end = sum(count for stamp, count in commits if stamp <= submit_finished)
    fraction = done_by_submit_end / total if total else 0.0
    end = min(window_to, submit_finished)
    if not end - window_from >= SUSTAINED_WINDOW_MIN_S:
        return 0.0, fraction
    inside = sum(count for stamp, count in commits if window_from < stamp <= end)
    return inside / (end - window_from), fraction


def compute_latencies_ms(
    committed_at: Mapping[bytes, float], accepted_at: Sequence[float], hashes: Sequence[bytes]
) -> list[float]:
    """Commit time minus admitted time of every committed transaction, in ms, ascending.

    `hashes[i]` was admitted at `accepted_at[i]` (NaN: never admitted).
    """
    return sorted(
        (committed_at[tx_hash] - accepted_at[index]) * 1000
        for index, tx_hash in enumerate(hashes)
        if tx_hash in committed_at and not math.isnan(accepted_at[index])
    )


def compute_steady_window(
    commits: Sequence[tuple[float, int]], committed: int, started: float, finished: float
) -> tuple[float, float, float, int]:
    """(committed tx/s, window start, window end, blocks in the window) over the steady state:
    from the commit of the first 10% of the `committed` transactions to that of the first 90%.

    Too few blocks for a steady state (a tiny run): the whole run, `started` to `finished`.
    """
    rank_from = math.ceil(committed * STEADY_SKIP_FRACTION)
    rank_to = math.floor(committed * (1 - STEADY_SKIP_FRACTION))
    committed_tps = compute_rate(commits, rank_from, rank_to, started)
    window_from = compute_rank_time(commits, rank_from, started)
    window_to = compute_rank_time(commits, rank_to, started)
    steady_blocks = sum(1 for stamp, _ in commits if window_from < stamp <= window_to)
    if committed_tps == 0.0 and finished > started:
        return committed / (finished - started), started, finished, len(commits)
    return committed_tps, window_from, window_to, steady_blocks


def format_report(report: BenchReport) -> str:
    """The human-readable table printed on the terminal."""
    mib = 1024 * 1024
    lines = [
        f"chainnode bench: {report.validators} validators, {report.txs} txs, rate {report.rate}, "
        + ("" if report.duration_target_s is None else f"for {report.duration_target_s:g} s, ")
        + f"mix {report.mix} ({report.setup_txs} set-up txs committed before the clock)",
        f"  committed            {report.committed_txs} txs ({report.rejected_txs} rejected, "
        f"{report.submit_retries} retried after a full mempool) in {report.duration_s:.1f} s",
        f"  throughput (steady)  {report.committed_tps:.0f} tx/s committed; "
        f"submitted at {report.submitted_tps:.0f} tx/s",
        "  while submitting     "
        + (
            f"{report.sustained_tps:.0f} tx/s committed ({report.sustained_limit_ratio:.1%} of C*V/n)"
            if report.sustained_tps > 0
            else "too short to measure"
        )
        + f"; the submitter finished at {report.committed_when_submit_ended:.0%} committed",
        f"  latency              p50 {report.latency_ms_p50:.0f} ms   p95 {report.latency_ms_p95:.0f} ms   "
        f"p99 {report.latency_ms_p99:.0f} ms   max {report.latency_ms_max:.0f} ms",
        f"  blocks               {report.blocks} ({report.blocks_per_s:.1f}/s steady, "
        f"{report.block_txs_mean:.0f} txs mean)",
        "  per tenth (tx/s)     "
        + " ".join(f"{rate:.0f}" for rate in report.slice_tps)
        + f"   (last vs first {report.last_vs_first_slice:+.1%})",
        f"  Ed25519 verify V     {report.verify_per_s_single_core:.0f}/s on one core"
        + (
            f" ({report.verify_per_s_single_core_after:.0f}/s after the run, {report.verify_drift:+.1%})"
            if report.verify_per_s_single_core_after > 0
            else ""
        )
        + f"; C = {report.cpu_count} cores",
        f"  limit C*V/n          {report.limit_tps:.0f} tx/s; committed/limit = {report.limit_ratio:.1%}",
        f"  machine              {report.machine_busy_fraction:.0%} busy during the run; "
        f"load average before {report.load_average_before:.2f}",
        f"  cpu per tx           {report.cpu_per_tx_in_verifications:.2f} single-core verifications' worth "
        "per validator (1.00 would be the bound)",
        "  agreement            "
        + ("all validators agree" if report.validators_agree else "VALIDATORS DISAGREE"),
        "  receipts ok          "
        + ", ".join(f"{name} {count}" for name, count in (report.receipts_ok or {}).items()),
        "  receipts failed      "
        + (", ".join(f"{code} {count}" for code, count in report.receipts_failed.items()) or "none")
        if report.receipts_failed is not None
        else "  receipts failed      not counted",
        "  validator            cpu s   cpu us/tx   peak RSS MiB   disk MiB   disk B/tx",
    ]
    if abs(report.verify_drift) > VERIFY_DRIFT_WARN:
        lines.insert(
            1,
            f"  WARNING: V moved {report.verify_drift:+.0%} during the run (the machine's speed changed): "
            "the ratio to C*V/n is off by as much; the cpu per tx in verifications is steadier",
        )
    for item in report.usage:
        lines.append(
            f"  {item.node_id:<18} {item.cpu_s:7.1f}   {item.cpu_us_per_tx:9.0f}   "
            f"{item.rss_peak_bytes / mib:12.1f}   "
            f"{item.disk_bytes / mib:8.1f}   {item.disk_bytes_per_tx:9.1f}"
        )
    return "\n".join(lines)


def write_report(report: BenchReport, path: Path) -> None:
    try:
        path.write_text(json.dumps(report.to_json(), indent=2) + "\n")
    except OSError as error:
        raise ConfigError(f"cannot write {path}: {error}") from error
