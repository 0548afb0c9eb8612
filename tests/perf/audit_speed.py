"""How fast `chainnode audit` replays a chain, and where its CPU goes (a developer's tool).

    python -m tests.perf.audit_speed --dir DIR [--runs 3] [--workers N]

First a chain: `chainnode bench --validators 4 --txs 40000 --rate max --workload pilot --dir DIR
--base-port 23000` (any workload; the bench leaves validator-01's data in
DIR/nodes/validator-01/data).  Each run audits that data directory from DIR/genesis.json in this
process, as `chainnode audit --data-dir` does, and prints one line: the audit's time and tx/s
(the report's `elapsed_s`, which leaves out measuring V), V (the report's
`single_core_verify_per_s`), the ratio tx/s / (C x V) with C = `os.cpu_count()`, and the CPU
seconds of this process's audit thread (with the data directory's copy, without measuring V) and
of the pool's workers.  On a machine shared with other work the wall figures move with the load
(printed); the CPU seconds much less.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path

from chainnode.app.genesis import load_genesis
from chainnode.tools.audit import audit_chain


def run_once(chain_dir: Path, workers: int | None) -> str:
    genesis = load_genesis(chain_dir / "genesis.json")
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    thread_started_s = time.thread_time()
    report, _ = audit_chain(genesis, data_dir=chain_dir / "nodes" / "validator-01" / "data", workers=workers)
    thread_s = time.thread_time() - thread_started_s
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    workers_s = children.ru_utime + children.ru_stime - children_before.ru_utime - children_before.ru_stime
    document = report.to_json()
    cores = os.cpu_count() or 1
    verify_per_s = report.single_core_verify_per_s or 0.0
    ratio = document["tx_per_s"] / (cores * verify_per_s) if verify_per_s else 0.0
    load = os.getloadavg()[0]
    return (
        f"{document['result']}  {report.transactions} tx in {report.blocks} blocks  "
        f"audit {report.elapsed_s:.2f} s  {document['tx_per_s']:,.0f} tx/s  V {verify_per_s:,.0f}/s  "
        f"{ratio:.2f} x C x V (C={cores})  CPU: audit thread {thread_s - report.verify_rate_measure_s:.2f} s "
        f"(+{report.verify_rate_measure_s:.2f} s measuring V), pool {workers_s:.2f} s  load {load:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dir", type=Path, required=True, help="a bench's network directory")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None, help="default: one per core")
    args = parser.parse_args()
    for _ in range(args.runs):
        print(run_once(args.dir, args.workers), flush=True)


if __name__ == "__main__":
    main()
