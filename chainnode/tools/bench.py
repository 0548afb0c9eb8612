"""The benchmark: committed throughput and latency of a local validator network.

Theory of operation
-------------------
`run_bench` measures what an operator would measure, from outside the nodes:

1. **Set-up, not timed.**  A fresh pilot network is written into a temporary
   directory (or `--dir`), this machine's single-core Ed25519 verification
   rate V is measured with PyNaCl, and the whole workload is signed (see
   `chainnode.tools.bench_load`: the `pilot` mix of records, record sharing and
   digital assets, or `records` alone, the workload of the earlier figures).
2. **The validators** are started as OS processes by `devnet.LocalNetwork`,
   exactly as an operator runs them (real mutual TLS, real LevelDB).  For the
   `pilot` mix the set-up (collections, grants, the assets the workload moves)
   is committed before the clock starts.
3. **The load** (`chainnode.tools.bench_load`): a separate submitter process posts
   pre-signed batches through the public API, at a fixed rate or as fast as
   accepted (backing off per `Retry-After` on a full mempool), and records
   when each transaction was admitted.
4. **The watcher** (a thread of this process) follows the last validator's
   blocks every ~20 ms and stamps each transaction with its commit time (the
   last, not the first: the first is the primary of view 0, the busiest node,
   and the watcher's requests should not slow it down).
5. **The report.**  Latency is commit time minus admitted-submit time
   (p50/p95/p99, nearest rank, over all transactions).  Throughput is measured
   over the steady state: from the moment 10% of the workload had committed to
   the moment 90% had, so warm-up and drain do not count; the same window gives
   blocks per second.  Because the nodes admit (verify) a transaction long
   before it commits, a short run's window also covers the nodes draining work
   they had already verified; the report therefore also gives the rate over
   the part of that window in which the submitter was still sending
   (`sustained_tps`) and how much had committed when it finished.  The run is
   also cut into ten equal slices of committed transactions, each with its own
   rate, to show degradation.  Per validator:
   CPU seconds during the run (`/proc/<pid>/stat`), peak resident memory
   (`VmHWM` of `/proc/<pid>/status`) and data-directory growth per committed
   transaction.  The physical limit is C * V / n (every validator verifies
   every transaction once; n validators share C cores); the report states the
   committed rate as a fraction of it.
6. **The receipts**, after the validators stopped: the watched node's ledger is
   read and its receipts counted by module and action and, for failures, by
   code.  The workload is built so that every transaction succeeds in any
   commit order: a failure is a bug of the bench, and the report shows it.

Clocks: every timestamp is `time.monotonic()`, which on Linux is one clock for
all processes of the machine, so submitter and watcher times compare directly.
Every wait is bounded in time and count.
"""

from __future__ import annotations

import array
import json
import math
import multiprocessing
import os
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from chainnode.core import types
from chainnode.core.errors import ChainError, ConfigError
from chainnode.node.config import load_node_config
from chainnode.tools.bench_load import (
    BenchError,
    CommitWatcher,
    SubmitPlan,
    run_setup,
    run_submitter,
    sign_workload,
)
from chainnode.tools.bench_mix import (
    MIX_PILOT,
    MIXES,
    PILOT_MIX,
    READY_TIMEOUT_S,
    WorkItem,
    build_cast,
    compute_setup_phases,
)
from chainnode.tools.devnet import DevnetError, LocalNetwork, load_submitters
from chainnode.tools.export import open_ledger_snapshot
from chainnode.tools.verify_rate import measure_verify_rate

BENCH_CHAIN_ID = "pilot-bench"
SUBMIT_BATCH_TXS_DEFAULT = 500
STEADY_SKIP_FRACTION = 0.1
SUSTAINED_WINDOW_MIN_S = 2.0
SLICES = 10
CONNECT_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class BenchConfig:
    """What to run."""

    validators: int = 4
    txs: int = 10_000
    rate_tps: int | None = None  # None: submit as fast as the nodes accept
    directory: Path | None = None  # None: a temporary directory, removed after a successful run
    base_port: int = 27600
    batch_txs: int = SUBMIT_BATCH_TXS_DEFAULT
    timeout_s: float | None = None  # None: scaled with the workload
    mix: str = MIX_PILOT  # `pilot` (records, sharing, assets) or `records` (records.put only)


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
    txs: int
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
    mix: str = MIX_PILOT
    setup_txs: int = 0  # committed before the clock started (not counted anywhere else)
    setup_height: int = 0  # the watched node's height when the clock started
    receipts_ok: dict[str, int] | None = None  # "module.action" -> successful receipts of the workload
    receipts_failed: dict[str, int] | None = None  # error code name -> failed receipts of the workload

    def to_json(self) -> dict[str, Any]:
        """The JSON form (tuples become lists), exactly what `--out` writes."""
        value: dict[str, Any] = json.loads(json.dumps(asdict(self)))
        return value


# ---------------------------------------------------------------- pure figures


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


def parse_proc_cpu_s(stat_text: str, ticks_per_s: int) -> float:
    """User + system CPU seconds from the text of /proc/<pid>/stat."""
    # The command name (field 2) may hold spaces or parentheses: split after the last ')'.
    fields = stat_text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / ticks_per_s


def parse_proc_rss_peak_bytes(status_text: str) -> int:
    """VmHWM (peak resident set) in bytes from the text of /proc/<pid>/status."""
    for line in status_text.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def get_process_cpu_s(pid: int) -> float:
    return parse_proc_cpu_s(Path(f"/proc/{pid}/stat").read_text(), os.sysconf("SC_CLK_TCK"))


def get_process_rss_peak_bytes(pid: int) -> int:
    return parse_proc_rss_peak_bytes(Path(f"/proc/{pid}/status").read_text())


def get_machine_cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all cores from /proc/stat."""
    fields = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def get_directory_bytes(directory: Path) -> int:
    total = 0
    for root, _, files in os.walk(directory):
        for name in files:
            try:
                total += (Path(root) / name).stat().st_size
            except OSError:
                continue  # LevelDB removed a file while we walked
    return total


# ---------------------------------------------------------------- the run


def run_bench(config: BenchConfig) -> BenchReport:
    """Run one benchmark and return its figures; `BenchError` when it cannot complete."""
    if config.validators < 1 or config.txs < 1 or config.batch_txs < 1:
        raise ConfigError("validators, txs and batch size must be positive")
    if config.rate_tps is not None and config.rate_tps < 1:
        raise ConfigError("the rate must be a positive number of tx/s, or max")
    if config.mix not in MIXES:
        raise ConfigError(f"the mix is one of {', '.join(MIXES)}, not {config.mix!r}")
    temporary = config.directory is None
    directory = (
        Path(tempfile.mkdtemp(prefix="chainnode-bench-")) if temporary else Path(config.directory or ".")
    )
    directory = directory.resolve()
    if (directory / "genesis.json").exists():
        raise ConfigError(f"{directory} already holds a network; the benchmark needs a fresh directory")
    from chainnode.tools.network import init_network

    load_average = os.getloadavg()[0]
    init_network(directory, validators=config.validators, chain_id=BENCH_CHAIN_ID, base_port=config.base_port)
    verify_rate = measure_verify_rate()
    network = LocalNetwork(directory)
    label = f"b{int(time.time())}"
    setup = _plan_setup(network, config, label)
    chunk_paths, hashes = sign_workload(network, config.txs, label=label, mix=config.mix)
    network.start_all()
    try:
        report = _measure(network, config, setup, chunk_paths, hashes, verify_rate, load_average)
    except ChainError as error:
        raise BenchError(f"{error.message} (network kept in {directory})") from error
    finally:
        network.stop_all()
    watched = load_node_config(network.nodes[-1].config_path).data_dir
    ok, failed = count_receipts(watched, height_after=report.setup_height)
    report = replace(report, receipts_ok=ok, receipts_failed=failed)
    if temporary:
        shutil.rmtree(directory, ignore_errors=True)
    return report


def _plan_setup(network: LocalNetwork, config: BenchConfig, label: str) -> list[list[WorkItem]]:
    """The pilot mix's set-up phases (none for the records mix)."""
    if config.mix != MIX_PILOT:
        return []
    cast = build_cast(load_submitters(network.directory, network.entity_ids))
    problem = cast.find_problem()
    if problem is not None:
        raise ConfigError(f"{problem}; use --mix records for this network")
    return compute_setup_phases(cast, config.txs, label)


def count_receipts(data_dir: Path, *, height_after: int) -> tuple[dict[str, int], dict[str, int]]:
    """The receipts of the blocks above `height_after` in a (stopped) node's ledger: successes by
    "module.action", failures by error code."""
    ok: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    with open_ledger_snapshot(data_dir) as ledger:
        for height in range(height_after + 1, ledger.get_head().height + 1):
            block_encoded = ledger.get_block(height)
            if block_encoded is None:
                raise BenchError(f"the watched node's ledger has no block {height}")
            block = types.decode_block(block_encoded, check_body=False)
            for index, tx in enumerate(block.transactions):
                receipt_encoded = ledger.get_receipt(height, index)
                if receipt_encoded is None:
                    failed["no_receipt"] += 1
                    continue
                code = types.decode_receipt(receipt_encoded).code
                if code == types.ErrorCode.OK:
                    ok[f"{tx.module}.{tx.action}"] += 1
                else:
                    failed[types.ErrorCode(code).label if code in _CODES else f"code_{code}"] += 1
    return dict(sorted(ok.items())), dict(sorted(failed.items()))


_CODES = frozenset(int(code) for code in types.ErrorCode)


def _wait_connected(network: LocalNetwork, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    peers_wanted = len(network.nodes) - 1
    while time.monotonic() < deadline:
        statuses = network.get_statuses()
        if len(statuses) == len(network.nodes) and all(
            len(s["peers"]) >= peers_wanted for s in statuses.values()
        ):
            return
        time.sleep(0.1)
    raise DevnetError(f"the validators did not all connect within {timeout_s:.0f} s")


@dataclass(frozen=True, slots=True)
class _Baseline:
    cpu_s: dict[str, float]
    disk_bytes: dict[str, int]
    machine_ticks: tuple[int, int]


def _take_baseline(network: LocalNetwork, data_dirs: dict[str, Path]) -> _Baseline:
    return _Baseline(
        {node_id: get_process_cpu_s(process.pid) for node_id, process in network.processes.items()},
        {node_id: get_directory_bytes(path) for node_id, path in data_dirs.items()},
        get_machine_cpu_ticks(),
    )


def _measure(
    network: LocalNetwork,
    config: BenchConfig,
    setup: list[list[WorkItem]],
    chunk_paths: list[Path],
    hashes: list[bytes],
    verify_rate: float,
    load_average: float,
) -> BenchReport:
    network.wait_ready()
    _wait_connected(network, CONNECT_TIMEOUT_S)
    data_dirs = {node.node_id: load_node_config(node.config_path).data_dir for node in network.nodes}
    plan = SubmitPlan(
        tuple(node.api_url for node in network.nodes),
        tuple(str(path) for path in chunk_paths),
        config.txs,
        config.batch_txs,
        config.rate_tps,
    )
    context = multiprocessing.get_context("spawn")
    parent_pipe, child_pipe = context.Pipe()
    submitter = context.Process(target=run_submitter, args=(plan, child_pipe), name="bench-submitter")
    submitter.start()
    try:
        # The set-up commits while the submitter loads the workload; the clock has not started.
        setup_height = run_setup(network, setup, timeout_s=CONNECT_TIMEOUT_S + config.txs / 1000)
        if not parent_pipe.poll(READY_TIMEOUT_S + config.txs / 10_000) or parent_pipe.recv() != "ready":
            raise BenchError("the submitter did not load the workload in time")
        baseline = _take_baseline(network, data_dirs)
        started = time.monotonic()
        watcher = CommitWatcher(network.nodes[-1].api_url, started)
        watcher_thread = threading.Thread(
            target=watcher.run, args=(setup_height,), name="bench-watcher", daemon=True
        )
        watcher_thread.start()
        parent_pipe.send("go")
        tally = _wait_until_committed(network, config, parent_pipe, submitter, watcher)
        finished = watcher.commits[-1][0] if watcher.commits else time.monotonic()
        usage = _get_usage(network, data_dirs, baseline, len(watcher.committed_at))
        busy = _compute_busy_fraction(baseline.machine_ticks, get_machine_cpu_ticks())
        watcher.stop.set()
        watcher_thread.join(timeout=10)
    finally:
        if submitter.is_alive():
            submitter.terminate()
        submitter.join(timeout=10)
    agree = _wait_agreement(network, timeout_s=10.0)
    report = _build_report(
        config, watcher, tally, hashes, started, finished, usage, verify_rate, load_average, busy, agree
    )
    return replace(report, setup_txs=sum(len(phase) for phase in setup), setup_height=setup_height)


def _wait_until_committed(
    network: LocalNetwork,
    config: BenchConfig,
    pipe: Connection,
    submitter: multiprocessing.process.BaseProcess,
    watcher: CommitWatcher,
) -> dict[str, Any]:
    """Block until every admitted transaction is committed on the watched node; the submit tally."""
    timeout_s = config.timeout_s if config.timeout_s is not None else 120.0 + config.txs / 500
    deadline = time.monotonic() + timeout_s
    tally: dict[str, Any] | None = None
    while True:
        if tally is None and pipe.poll(0.1):
            tally = pipe.recv()
        elif tally is not None:
            time.sleep(0.1)
        expected = config.txs - (int(tally["rejected"]) if tally is not None else 0)
        if tally is not None and len(watcher.committed_at) >= expected:
            return tally
        if watcher.error:
            raise BenchError(f"the commit watcher failed: {watcher.error}")
        for node in network.nodes:
            if not network.is_running(node.node_id):
                raise BenchError(f"validator {node.node_id} exited during the run; see its node.log")
        if tally is None and not submitter.is_alive():
            raise BenchError(f"the submitter exited with code {submitter.exitcode} before reporting")
        if time.monotonic() > deadline:
            raise BenchError(
                f"only {len(watcher.committed_at)} of {expected} transactions committed "
                f"within {timeout_s:.0f} s"
            )


def _get_usage(
    network: LocalNetwork, data_dirs: dict[str, Path], baseline: _Baseline, committed: int
) -> tuple[ValidatorUsage, ...]:
    usage = []
    for node_id, process in network.processes.items():
        disk_bytes = get_directory_bytes(data_dirs[node_id])
        cpu_s = get_process_cpu_s(process.pid) - baseline.cpu_s[node_id]
        usage.append(
            ValidatorUsage(
                node_id=node_id,
                cpu_s=round(cpu_s, 2),
                rss_peak_bytes=get_process_rss_peak_bytes(process.pid),
                disk_bytes=disk_bytes,
                disk_bytes_per_tx=round((disk_bytes - baseline.disk_bytes[node_id]) / max(committed, 1), 1),
                cpu_us_per_tx=round(cpu_s * 1e6 / max(committed, 1), 1),
            )
        )
    return tuple(usage)


def _compute_busy_fraction(before: tuple[int, int], after: tuple[int, int]) -> float:
    total = after[1] - before[1]
    return round((after[0] - before[0]) / total, 3) if total > 0 else 0.0


def _wait_agreement(network: LocalNetwork, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        statuses = network.get_statuses()
        heads = {(s["height"], s["head_hash"], s["state_root"]) for s in statuses.values()}
        if len(statuses) == len(network.nodes) and len(heads) == 1:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def _build_report(
    config: BenchConfig,
    watcher: CommitWatcher,
    tally: dict[str, Any],
    hashes: list[bytes],
    started: float,
    finished: float,
    usage: tuple[ValidatorUsage, ...],
    verify_rate: float,
    load_average: float,
    busy: float,
    agree: bool,
) -> BenchReport:
    commits = [(stamp, count) for stamp, count in watcher.commits if count > 0]
    committed = len(watcher.committed_at)
    accepted_at = array.array("d")
    accepted_at.frombytes(tally["accepted_at"])
    latencies_ms = sorted(
        (watcher.committed_at[tx_hash] - accepted_at[index]) * 1000
        for index, tx_hash in enumerate(hashes)
        if tx_hash in watcher.committed_at and not math.isnan(accepted_at[index])
    )
    rank_from = math.ceil(committed * STEADY_SKIP_FRACTION)
    rank_to = math.floor(committed * (1 - STEADY_SKIP_FRACTION))
    committed_tps = compute_rate(commits, rank_from, rank_to, started)
    window_from = compute_rank_time(commits, rank_from, started)
    window_to = compute_rank_time(commits, rank_to, started)
    steady_blocks = sum(1 for stamp, _ in commits if window_from < stamp <= window_to)
    if committed_tps == 0.0 and finished > started:
        # Too few blocks for a steady state (a tiny run): fall back to the whole run.
        committed_tps = committed / (finished - started)
        window_from, window_to, steady_blocks = started, finished, len(commits)
    slice_txs = committed / SLICES
    slices = tuple(
        round(compute_rate(commits, round(k * slice_txs), round((k + 1) * slice_txs), started), 1)
        for k in range(SLICES)
    )
    cpu_count = os.cpu_count() or 1
    limit_tps = cpu_count * verify_rate / config.validators
    submit_s = float(tally["finished"]) - float(tally["started"])
    sustained_tps, committed_when_submit_ended = compute_sustained_rate(
        commits, window_from, window_to, float(tally["finished"])
    )
    accepted = config.txs - int(tally["rejected"])
    return BenchReport(
        validators=config.validators,
        txs=config.txs,
        rate="max" if config.rate_tps is None else str(config.rate_tps),
        committed_txs=committed,
        rejected_txs=int(tally["rejected"]),
        submit_retries=int(tally["retries"]),
        duration_s=round(finished - started, 3),
        committed_tps=round(committed_tps, 1),
        sustained_tps=round(sustained_tps, 1),
        sustained_limit_ratio=round(sustained_tps / limit_tps, 3) if limit_tps > 0 else 0.0,
        committed_when_submit_ended=round(committed_when_submit_ended, 3),
        submitted_tps=round(accepted / submit_s, 1) if submit_s > 0 else 0.0,
        latency_ms_p50=round(compute_percentile(latencies_ms, 0.50), 1),
        latency_ms_p95=round(compute_percentile(latencies_ms, 0.95), 1),
        latency_ms_p99=round(compute_percentile(latencies_ms, 0.99), 1),
        latency_ms_max=round(latencies_ms[-1], 1) if latencies_ms else 0.0,
        blocks=len(commits),
        blocks_per_s=round(steady_blocks / (window_to - window_from), 2) if window_to > window_from else 0.0,
        block_txs_mean=round(committed / len(commits), 1) if commits else 0.0,
        slice_tps=slices,
        last_vs_first_slice=round(slices[-1] / slices[0] - 1, 3) if slices and slices[0] > 0 else 0.0,
        verify_per_s_single_core=round(verify_rate, 0),
        cpu_count=cpu_count,
        limit_tps=round(limit_tps, 1),
        limit_ratio=round(committed_tps / limit_tps, 3) if limit_tps > 0 else 0.0,
        machine_busy_fraction=busy,
        load_average_before=round(load_average, 2),
        validators_agree=agree,
        usage=usage,
        workload=_describe_workload(config.mix),
        mix=config.mix,
    )


def _describe_workload(mix: str) -> str:
    if mix != MIX_PILOT:
        return "records.put (meter readings, document records, status) from the pilot's submitter entities"
    return "per 100 txs: " + ", ".join(f"{count} {kind}" for kind, count in PILOT_MIX.items())


def format_report(report: BenchReport) -> str:
    """The human-readable table printed on the terminal."""
    mib = 1024 * 1024
    lines = [
        f"chainnode bench: {report.validators} validators, {report.txs} txs, rate {report.rate}, "
        f"mix {report.mix} ({report.setup_txs} set-up txs committed before the clock)",
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
        f"  Ed25519 verify V     {report.verify_per_s_single_core:.0f}/s on one core; "
        f"C = {report.cpu_count} cores",
        f"  limit C*V/n          {report.limit_tps:.0f} tx/s; committed/limit = {report.limit_ratio:.1%}",
        f"  machine              {report.machine_busy_fraction:.0%} busy during the run; "
        f"load average before {report.load_average_before:.2f}",
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
