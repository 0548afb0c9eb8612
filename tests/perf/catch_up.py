"""How fast a validator on an empty data directory catches up (a developer's tool).

    python -m tests.perf.catch_up --dir DIR [--txs 20000] [--workers N] [--base-port P] [--load-rate R]

First a chain: `chainnode bench --validators 4 --txs N --workload records --dir DIR` (skipped when
DIR already holds a network, so a second run reuses the same chain).  Then the network again,
with validator-04's data directory emptied (its node.toml, key and certificates kept, as the
wiped-validator cluster test does): the other three start first, and the time runs from
validator-04's process start until its height reaches theirs (a second figure starts at its API's
first answer, leaving Python's start-up and the ledger's creation out).  The chain's transactions over
that time are the catch-up rate, printed with its ratio to C x V (C = `os.cpu_count()`,
V = `chainnode.tools.verify_rate.measure_verify_rate()`, one core's Ed25519 verifications per
second): 1.0 would be every core doing nothing but verifying.

`--workers N` sets `CHAINNODE_CATCH_UP_WORKERS` for validator-04 (`chainnode.node.catch_up_verify`):
0 turns the pool off (every signature verified at execution, on the node's one thread, as before
the pool); unset, one worker per core.  Validators 01-03 run with the default either way.

`--load-rate R`: the network keeps committing while validator-04 catches up: a thread posts
fresh signed `records.put` transactions (signed before the clock starts) to validators 01-03 at
R tx/s, in batches of 100, from before validator-04 starts until it has caught up, which is
then when its height reaches the others' height of that moment (a target that moves).  The
rate printed is the transactions validator-04 holds at that point over the time it took.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from chainnode.core import types
from chainnode.node.catch_up_verify import WORKERS_ENV
from chainnode.node.config import load_node_config
from chainnode.sdk.errors import ClientError
from chainnode.tools.bench_load import sign_workload
from chainnode.tools.devnet import LocalNetwork
from chainnode.tools.verify_rate import measure_verify_rate
from storage.ledger import Ledger

WIPED = "validator-04"
POLL_S = 0.05
CATCH_UP_TIMEOUT_S = 900.0
LOAD_BATCH_TXS = 100
LOAD_SECONDS_MAX = 300  # transactions signed for the load: rate x this


class Load:
    """Posts signed transactions to `nodes` at `rate_tps` until stopped (or they run out)."""

    def __init__(self, network: LocalNetwork, nodes: list[str], items: list[str], rate_tps: int) -> None:
        self.network = network
        self.nodes = nodes
        self.items = items
        self.rate_tps = rate_tps
        self.sent = 0
        self.refused = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        clients = [self.network.client(node_id, timeout_s=10.0) for node_id in self.nodes]
        started = time.monotonic()
        for batch_index, start in enumerate(range(0, len(self.items), LOAD_BATCH_TXS)):
            due = started + start / self.rate_tps
            if self._stop.wait(max(0.0, due - time.monotonic())):
                return
            items = self.items[start : start + LOAD_BATCH_TXS]
            body = ('{"txs":["' + '","'.join(items) + '"]}').encode()
            try:
                clients[batch_index % len(clients)].send("POST", "/v1/transactions", body)
                self.sent += len(items)
            except ClientError:
                self.refused += len(items)


def build_chain(directory: Path, txs: int, base_port: int) -> None:
    command = [sys.executable, "-m", "cli", "bench", "--validators", "4", "--txs", str(txs)]
    command += ["--workload", "records", "--dir", str(directory), "--base-port", str(base_port)]
    report = directory.parent / f"{directory.name}-bench.txt"
    print(f"building the chain: {' '.join(command[2:])} (its report: {report})", flush=True)
    with report.open("w") as out:
        subprocess.run(command, check=True, stdout=out)


def count_txs(data_dir: Path) -> tuple[int, int]:
    """(height, transactions in blocks 1..height) of the ledger in `data_dir`."""
    ledger = Ledger(data_dir / "ledger", read_only=True)
    try:
        height = ledger.get_head().height
        total = 0
        for block_height in range(1, height + 1):
            encoded = ledger.get_block(block_height)
            assert encoded is not None
            total += types.decode_block(encoded, check_body=False).header.tx_count
    finally:
        ledger.close()
    return height, total


def get_height(network: LocalNetwork, node_id: str) -> int:
    try:
        return int(network.client(node_id, timeout_s=2.0).get_status()["height"])
    except ClientError:
        return -1


def restore_env(name: str, saved: str | None) -> None:
    if saved is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = saved


def catch_up(
    network: LocalNetwork, workers: int | None, load_items: list[str] | None = None, load_rate: int = 0
) -> tuple[int, float, float]:
    """Start the others, then the wiped validator; (target height, s from its process start to
    that height, s from its API's first answer to that height).  With `load_items`, they are
    posted to the others at `load_rate` tx/s meanwhile, and the target moves with the others."""
    others = [node.node_id for node in network.nodes if node.node_id != WIPED]
    for node_id in others:
        network.start(node_id)
    network.wait_ready(others)
    load = None
    if load_items:
        load = Load(network, others, load_items, load_rate)
        load.start()
    try:
        return _wait_caught_up(network, others, workers, moving=load is not None)
    finally:
        if load is not None:
            load.stop()
            print(f"  load: {load.sent} txs posted at {load_rate} tx/s ({load.refused} refused)")


def _wait_caught_up(
    network: LocalNetwork, others: list[str], workers: int | None, *, moving: bool
) -> tuple[int, float, float]:
    target = min(get_height(network, node_id) for node_id in others)
    saved = os.environ.get(WORKERS_ENV)
    if workers is not None:
        os.environ[WORKERS_ENV] = str(workers)
    try:
        started = time.monotonic()
        network.start(WIPED)
    finally:
        if workers is not None:
            restore_env(WORKERS_ENV, saved)
    answered: float | None = None
    while time.monotonic() - started < CATCH_UP_TIMEOUT_S:
        height = get_height(network, WIPED)
        if moving and height >= target:
            target = min(get_height(network, node_id) for node_id in others)
        if height >= 0 and answered is None:
            answered = time.monotonic()
        if height >= target:
            done = time.monotonic()
            return target, done - started, done - (answered or started)
        if not network.is_running(WIPED):
            raise SystemExit(f"{WIPED} exited; see its node.log")
        time.sleep(POLL_S)
    raise SystemExit(f"{WIPED} did not reach height {target} in {CATCH_UP_TIMEOUT_S:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dir", type=Path, required=True, help="the network (built there if absent)")
    parser.add_argument("--txs", type=int, default=20_000, help="transactions in the chain built")
    parser.add_argument("--workers", type=int, default=None, help=f"{WORKERS_ENV} for {WIPED} (0: no pool)")
    parser.add_argument("--base-port", type=int, default=28600, help="the bench network's base port")
    parser.add_argument("--load-rate", type=int, default=0, help="tx/s the others commit meanwhile (0: none)")
    args = parser.parse_args()
    directory = args.dir.resolve()
    if not (directory / "genesis.json").exists():
        build_chain(directory, args.txs, args.base_port)
    network = LocalNetwork(directory)
    data_dir = load_node_config(network.get_node(WIPED).config_path).data_dir
    shutil.rmtree(data_dir, ignore_errors=True)  # node.toml, key and certificates stay beside it
    load_items = None
    if args.load_rate > 0:
        count = args.load_rate * LOAD_SECONDS_MAX
        chunks, _ = sign_workload(network, count, label=f"catch-up-load-{time.time_ns()}")
        load_items = [line for path in chunks for line in path.read_text().split()]
    verify_rate = measure_verify_rate()
    try:
        target, elapsed_s, from_ready_s = catch_up(network, args.workers, load_items, args.load_rate)
    finally:
        network.stop_all()
    height, txs = count_txs(data_dir)
    cores = os.cpu_count() or 1
    pool = "default (one worker per core)" if args.workers is None else str(args.workers)
    print(f"{WIPED} caught up {height} blocks ({txs} txs; target {target}), workers {pool}")
    print(f"  {elapsed_s:.2f} s from its process start, {from_ready_s:.2f} s from its API's first answer")
    for label, seconds in (
        ("from its process start", elapsed_s),
        ("from its API's first answer", from_ready_s),
    ):
        rate = txs / seconds
        ratio = rate / (cores * verify_rate)
        print(f"  {label}: {rate:.0f} tx/s, ratio to C x V = {cores} x {verify_rate:.0f}/s: {ratio:.3f}")


if __name__ == "__main__":
    main()
