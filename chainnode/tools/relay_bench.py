"""Measuring one relayer: imports per second, and the delay from commit on A to commit on B.

Theory of operation: `run_relay_bench` drives two running chains through their APIs.  A writer
entity of the source chain writes records (`records.put`, keys unique to the run); a `Relayer`
selecting that entity's record writes carries them to the destination.  Two phases:

- **Throughput**: `records` writes are committed on the source first, then the relayer starts
  from just before them and runs until it has read every committed event; imports per second
  is `records` over that run's time (header updates, proof reads, submissions and commit waits
  included: everything one relayer does).
- **Delay**: `delay_records` writes (at most `records`) are submitted one at a time at
  `delay_rate_per_s` while the relayer follows the chain; the delay of each record is the
  destination block's timestamp minus the source block's.  Both are wall-clock timestamps of
  nodes on the same machine here; across machines the figure also holds their clock offset.

The relayer keeps its place in a temporary state file, so a bench never moves the cursor of a
real relay.  Every wait is bounded by the relayer's own timeouts and `timeout_s`.
"""

from __future__ import annotations

import secrets
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from chainnode.core import types
from chainnode.core.errors import ChainError
from chainnode.sdk.client import Client, Identity, build_transaction
from chainnode.sdk.events import resolve_head_cursor
from chainnode.tools.relay import Imported, RelayConfig, Relayer
from chainnode.tools.relay_state import RelayState, save_relay_state

SUBMIT_BATCH_TXS = 500
DELAY_RECORDS_MAX = 200
DELAY_RATE_PER_S = 20.0
VALID_FOR_BLOCKS = 10_000


class BenchError(ChainError):
    """The bench could not finish (a write not committed, imports missing at the deadline)."""

    code = "bench_failed"


@dataclass(frozen=True, slots=True)
class RelayBenchReport:
    """The figures of one run."""

    records: int
    throughput_s: float
    client_updates: int
    delay_records: int
    delay_rate_per_s: float
    delays_ms: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "throughput_seconds": round(self.throughput_s, 3),
            "imports_per_s": round(self.records / self.throughput_s, 1) if self.throughput_s > 0 else None,
            "client_updates": self.client_updates,
            "delay_records": self.delay_records,
            "delay_rate_per_s": self.delay_rate_per_s,
            "delay_p50_ms": compute_percentile(self.delays_ms, 50),
            "delay_p99_ms": compute_percentile(self.delays_ms, 99),
            "delay_max_ms": max(self.delays_ms) if self.delays_ms else None,
        }


def compute_percentile(values: Sequence[int], percent: float) -> int | None:
    """The nearest-rank percentile (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * percent // 100))
    return ordered[int(rank) - 1]


def _build_puts(
    writer: Identity, chain_id: str, label: str, count: int, valid_until: int
) -> list[types.Transaction]:
    return [
        build_transaction(
            writer,
            chain_id=chain_id,
            module="records",
            action="put",
            args=(f"relay-bench-{label}-{sequence:06d}", f"reading {sequence}".encode()),
            valid_until=valid_until,
        )
        for sequence in range(count)
    ]


def _commit_all(source: Client, transactions: Sequence[types.Transaction], timeout_s: float) -> None:
    for start in range(0, len(transactions), SUBMIT_BATCH_TXS):
        answer = source.submit_batch(transactions[start : start + SUBMIT_BATCH_TXS])
        if answer["rejected"]:
            raise BenchError(f"the source refused writes: {answer['results'][:3]}")
    for tx in transactions:
        receipt = source.wait_for_commit(tx.hash.hex(), timeout_s=timeout_s)["receipt"]
        if receipt["code"] != 0:
            raise BenchError(f"a write failed on the source: {receipt}")


def _start_state(path: Path, source: Client, destination: Client) -> None:
    """A state file whose cursor is the source's head: the relayer carries only what follows."""
    state = RelayState(
        str(source.get_status()["chain_id"]),
        str(destination.get_status()["chain_id"]),
        resolve_head_cursor(source),
        "",
        0,
    )
    save_relay_state(path, state)


def run_relay_bench(
    source: Client,
    destination: Client,
    identity: Identity,
    writer: Identity,
    config: RelayConfig,
    *,
    records: int,
    delay_records: int = DELAY_RECORDS_MAX,
    delay_rate_per_s: float = DELAY_RATE_PER_S,
    stop: threading.Event | None = None,
    timeout_s: float = 120.0,
) -> RelayBenchReport:
    """Run both phases (see the module docstring) and return their figures."""
    stop = stop or threading.Event()
    chain_id = str(source.get_status()["chain_id"])
    valid_until = int(source.get_status()["height"]) + VALID_FOR_BLOCKS
    label = secrets.token_hex(4)
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as directory:
        state_path = Path(directory) / "state.json"
        bench_config = replace(
            config,
            state_path=state_path,
            selection_module="records",
            selection_entity=writer.entity_id,
            stop_when_caught_up=True,
        )
        # Throughput: everything committed first, then one relayer run over it.
        _start_state(state_path, source, destination)
        _commit_all(source, _build_puts(writer, chain_id, f"{label}-t", records, valid_until), timeout_s)
        started = time.monotonic()
        relayer = Relayer(source, destination, identity, bench_config, stop=stop)
        report = relayer.run()
        throughput_s = time.monotonic() - started
        if report.imported + report.already_imported < records and not stop.is_set():
            raise BenchError(f"{report.imported} of {records} records imported")
        # Delay: writes trickle in while the relayer follows.
        delays = _measure_delays(
            source,
            destination,
            identity,
            replace(bench_config, stop_when_caught_up=False),
            _build_puts(writer, chain_id, f"{label}-d", min(delay_records, records), valid_until),
            delay_rate_per_s,
            stop,
            timeout_s,
        )
    return RelayBenchReport(
        records, throughput_s, report.updates, len(delays), delay_rate_per_s, tuple(delays)
    )


def _measure_delays(
    source: Client,
    destination: Client,
    identity: Identity,
    config: RelayConfig,
    transactions: Sequence[types.Transaction],
    rate_per_s: float,
    stop: threading.Event,
    timeout_s: float,
) -> list[int]:
    """Delays (ms) of `transactions` written at `rate_per_s` while a relayer follows."""
    _start_state(config.state_path, source, destination)
    outcomes: list[Imported] = []
    done = threading.Event()
    relayer_stop = threading.Event()

    def on_imported(outcome: Imported) -> None:
        outcomes.append(outcome)
        if len(outcomes) >= len(transactions):
            relayer_stop.set()
            done.set()

    def write() -> None:
        for tx in transactions:
            if stop.is_set() or relayer_stop.is_set():
                return
            source.submit(tx)
            time.sleep(1 / rate_per_s)

    writer_thread = threading.Thread(target=write, name="relay-bench-writer", daemon=True)
    relayer = Relayer(source, destination, identity, config, stop=relayer_stop, on_imported=on_imported)
    watchdog = threading.Timer(timeout_s, relayer_stop.set)

    def forward_stop() -> None:
        if stop.wait(timeout_s):
            relayer_stop.set()

    external = threading.Thread(target=forward_stop, name="relay-bench-stop", daemon=True)
    writer_thread.start()
    watchdog.start()
    external.start()
    try:
        relayer.run()
    finally:
        relayer_stop.set()
        watchdog.cancel()
        writer_thread.join(timeout=timeout_s)
    if not done.is_set() and not stop.is_set():
        raise BenchError(f"{len(outcomes)} of {len(transactions)} records imported within {timeout_s} s")
    block_times: dict[int, int] = {}
    delays = []
    for outcome in outcomes:
        height = outcome.destination_height
        if height is None:
            continue
        if height not in block_times:
            block_times[height] = int(
                destination.get_block(height, hashes_only=True)["header"]["timestamp_ms"]
            )
        delays.append(block_times[height] - outcome.source.timestamp_ms)
    return delays
