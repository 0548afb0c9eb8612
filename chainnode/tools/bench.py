"""The benchmark: committed throughput and latency of a local validator network.

Theory of operation
-------------------
`run_bench` measures what an operator would measure, from outside the nodes:

1. **Set-up, not timed.**  A fresh pilot network is written into a temporary
   directory (or `--dir`), this machine's single-core Ed25519 verification
   rate V is measured with PyNaCl, and the whole workload is signed (see
   `chainnode.tools.bench_load`: the `realistic` mix of records, document
   anchors, grants, assets and council votes, the `pilot` mix of records, record
   sharing and digital assets, or `records` alone, the workload of the earlier
   figures).
2. **The validators** are started as OS processes by `devnet.LocalNetwork`,
   exactly as an operator runs them (real mutual TLS, real LevelDB).  For the
   `realistic` and `pilot` mixes the set-up (collections, grants, the assets
   the workload moves, the proposals the council votes on) is committed before
   the clock starts.
3. **The load** (`chainnode.tools.bench_load`): a separate submitter process posts
   pre-signed batches through the public API, at a fixed rate or as fast as
   accepted (backing off per `Retry-After` on a full mempool), and records
   when each transaction was admitted.  With a duration (`--duration`) it
   stops sending once the duration has passed; `--txs` is then the cap of
   signed transactions, and the run counts only what was sent.
4. **The watcher** (a thread of this process) follows the last validator's
   blocks every ~20 ms and stamps each transaction with its commit time (the
   last, not the first: the first is the primary of view 0, the busiest node,
   and the watcher's requests should not slow it down).
5. **The report** (`chainnode.tools.bench_report`).  Latency is commit time minus admitted-submit time
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
import math
import multiprocessing
import os
import shutil
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, replace
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
    load_signers,
    run_setup,
    run_submitter,
    sign_workload,
)
from chainnode.tools.bench_mix import (
    MIX_DEFAULT,
    MIXES,
    READY_TIMEOUT_S,
    WorkItem,
    compute_setup_phases,
    describe_workload,
)
from chainnode.tools.bench_report import (
    SLICES,
    BenchReport,
    ValidatorUsage,
    add_verify_after,
    compute_busy_fraction,
    compute_latencies_ms,
    compute_percentile,
    compute_rank_time,
    compute_rate,
    compute_steady_window,
    compute_sustained_rate,
    format_report,
    write_report,
)
from chainnode.tools.devnet import DevnetError, LocalNetwork
from chainnode.tools.export import open_ledger_snapshot
from chainnode.tools.verify_rate import measure_verify_rate

# What the CLI and the tests import from here, the report's names (now in bench_report) included.
__all__ = [
    "BenchConfig",
    "BenchReport",
    "ValidatorUsage",
    "add_verify_after",
    "compute_percentile",
    "compute_rank_time",
    "compute_rate",
    "compute_sustained_rate",
    "count_receipts",
    "format_report",
    "get_directory_bytes",
    "get_machine_cpu_ticks",
    "get_process_cpu_s",
    "get_process_rss_peak_bytes",
    "parse_proc_cpu_s",
    "parse_proc_rss_peak_bytes",
    "resolve_txs",
    "run_bench",
    "write_report",
]

BENCH_CHAIN_ID = "pilot-bench"
SUBMIT_BATCH_TXS_DEFAULT = 500
TXS_DEFAULT = 10_000
CONNECT_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class BenchConfig:
    """What to run."""

    validators: int = 4
    txs: int = TXS_DEFAULT
    rate_tps: int | None = None  # None: submit as fast as the nodes accept
    directory: Path | None = None  # None: a temporary directory, removed after a successful run
    base_port: int = 27600
    batch_txs: int = SUBMIT_BATCH_TXS_DEFAULT
    timeout_s: float | None = None  # None: scaled with the workload
    mix: str = MIX_DEFAULT  # `realistic`, `pilot` (records, sharing, assets) or `records` (puts only)
    duration_s: float | None = None  # submit until it has passed; `txs` is then the cap (None: all txs)


def resolve_txs(txs: int | None, rate_tps: int | None, duration_s: float | None) -> int:
    """The transactions to sign: `--txs` when given; with `--duration` and a rate, what the rate
    sends in the duration; otherwise the default 10 000 (at max rate with a duration: the cap)."""
    if txs is not None:
        return txs
    if duration_s is not None and rate_tps is not None:
        return max(1, math.ceil(rate_tps * duration_s))
    return TXS_DEFAULT


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
        raise ConfigError(f"the workload is one of {', '.join(MIXES)}, not {config.mix!r}")
    if config.duration_s is not None and not config.duration_s > 0:
        raise ConfigError("the duration must be a positive number of seconds")
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
    report = add_verify_after(report, verify_rate, measure_verify_rate())  # the validators are gone
    watched = load_node_config(network.nodes[-1].config_path).data_dir
    ok, failed = count_receipts(watched, height_after=report.setup_height)
    report = replace(report, receipts_ok=ok, receipts_failed=failed)
    if temporary:
        shutil.rmtree(directory, ignore_errors=True)
    return report


def _plan_setup(network: LocalNetwork, config: BenchConfig, label: str) -> list[list[WorkItem]]:
    """The mix's set-up phases (none for the records mix)."""
    _, cast = load_signers(network.directory, network.entity_ids)
    problem = cast.find_problem(config.mix)
    if problem is not None:
        raise ConfigError(f"{problem}; use --workload records for this network")
    return compute_setup_phases(cast, config.txs, label, config.mix)


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
        config.duration_s,
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
        busy = compute_busy_fraction(baseline.machine_ticks, get_machine_cpu_ticks())
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
    default_s = 120.0 + (config.duration_s or 0.0) + config.txs / 500
    timeout_s = config.timeout_s if config.timeout_s is not None else default_s
    deadline = time.monotonic() + timeout_s
    tally: dict[str, Any] | None = None
    while True:
        if tally is None and pipe.poll(0.1):
            tally = pipe.recv()
        elif tally is not None:
            time.sleep(0.1)
        expected = int(tally["sent"]) - int(tally["rejected"]) if tally is not None else config.txs
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
    latencies_ms = compute_latencies_ms(watcher.committed_at, accepted_at, hashes)
    committed_tps, window_from, window_to, steady_blocks = compute_steady_window(
        commits, committed, started, finished
    )
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
    accepted = int(tally["sent"]) - int(tally["rejected"])
    return BenchReport(
        validators=config.validators,
        txs=int(tally["sent"]),
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
        workload=describe_workload(config.mix),
        mix=config.mix,
        duration_target_s=config.duration_s,
    )
