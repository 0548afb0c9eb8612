"""Does the ledger slow as the chain grows?  One node's write path over a long chain, per tenth
(a developer's tool).

    python -m tests.perf.storage_growth [--txs 1000000] [--mix realistic|pilot|records] [--dir DIR]

A fresh bench network and the bench's own signed workload (`--mix`, the realistic one by
default); one real `Node` over a real LevelDB ledger, not started: each block of
`block_txs_max` transactions is submitted through the API path, proposed (executed) and
committed, as the primary of a cluster does, without the network.  Per tenth of the
transactions it prints the CPU microseconds per transaction of the node's own thread and of
LevelDB's background thread (compaction, read from `/proc/self/task/*/stat`), what the main
database compacted in that tenth (LevelDB's `leveldb.stats`, MB read and written) and the ledger's
bytes on disk per transaction so far.  Compaction work in MB does not depend on how busy the
machine is, which is what makes this tool a measure of a storage layout: the issue asks for
compaction CPU per transaction flat from the first 100k to the last.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import threading
import time
from pathlib import Path

from chainnode.app import governance
from chainnode.core import quorum
from chainnode.node.config import load_node_config
from chainnode.node.process import configure_gc
from chainnode.node.runtime import Node
from chainnode.tools.bench import BENCH_CHAIN_ID
from chainnode.tools.bench_load import sign_workload
from chainnode.tools.bench_mix import MIX_REALISTIC, MIXES
from chainnode.tools.devnet import LocalNetwork
from chainnode.tools.network import init_network
from tests.factories import propose_next_block
from tests.perf.pipeline import sign_setup

TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def get_thread_cpu_s() -> dict[int, float]:
    """CPU seconds (user + system) of each thread of this process, by native thread id."""
    seconds = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        seconds[int(task.name)] = (int(fields[11]) + int(fields[12])) / TICKS_PER_S
    return seconds


def get_compacted_mb(node: Node) -> tuple[float, float]:
    """MB read and written by the main database's compactions so far (`leveldb.stats`)."""
    stats = node.ledger._db.get_property(b"leveldb.stats")
    read = written = 0.0
    for line in (stats or b"").decode().splitlines():
        match = re.match(r"\s*\d+\s+\d+\s+[\d.]+\s+[\d.]+\s+([\d.]+)\s+([\d.]+)\s*$", line)
        if match:
            read += float(match.group(1))
            written += float(match.group(2))
    return read, written


def get_directory_bytes(directory: Path) -> int:
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())


def run(directory: Path, txs: int, mix: str) -> list[dict[str, float]]:
    """Build the network in `directory`, commit `txs` transactions of `mix`; the rows printed."""
    init_network(directory, validators=4, chain_id=BENCH_CHAIN_ID, base_port=29500)
    network = LocalNetwork(directory)
    setup = sign_setup(network, txs, mix) if mix != "records" else []
    chunk_paths, _ = sign_workload(network, txs, label="growth", mix=mix)
    encoded = [bytes.fromhex(line) for path in chunk_paths for line in path.read_text().split()]
    node = Node(load_node_config(network.nodes[0].config_path))
    configure_gc()
    main_thread = threading.get_native_id()
    block_txs = governance.get_chain_params(node.ledger, node.genesis.params).block_txs_max
    data_dir = network.nodes[0].config_path.parent / "data"

    def commit(batch: list[bytes]) -> None:
        results = node.submit_transactions(batch)
        assert all(result.accepted for result in results), [r for r in results if not r.accepted][:1]
        node.admission.take_gossip()
        block = propose_next_block(node)
        assert len(block.transactions) == len(batch)
        certificate = quorum.CommitCertificate(block.height, 0, block.hash, ((0, bytes(64)),))
        node.effects._commit(block, certificate)

    for phase in setup:
        commit(phase)
    tenth = max(txs // 10, block_txs)
    print(f"{txs} txs of the {mix} mix, blocks of {block_txs}; per tenth:")
    print("  txs      node us/tx  leveldb bg us/tx  compacted MB read/written  disk B/tx  wall s")
    before_cpu = get_thread_cpu_s()
    before_mb = get_compacted_mb(node)
    before_wall = time.monotonic()
    start_bytes = get_directory_bytes(data_dir)
    rows: list[dict[str, float]] = []
    done = counted = 0
    next_report = tenth
    for start in range(0, len(encoded), block_txs):
        batch = encoded[start : start + block_txs]
        commit(batch)
        done += len(batch)
        if done >= next_report or done == len(encoded):
            next_report += tenth
            count = done - counted
            counted = done
            cpu = get_thread_cpu_s()
            node_s = cpu.get(main_thread, 0.0) - before_cpu.get(main_thread, 0.0)
            background_s = sum(
                seconds - before_cpu.get(tid, 0.0) for tid, seconds in cpu.items() if tid != main_thread
            )
            mb = get_compacted_mb(node)
            disk = get_directory_bytes(data_dir) - start_bytes
            print(
                f"  {done:8d} {node_s / count * 1e6:10.1f} {background_s / count * 1e6:17.1f}"
                f"   {mb[0] - before_mb[0]:10.1f} / {mb[1] - before_mb[1]:8.1f}"
                f"   {disk / done:9.0f} {time.monotonic() - before_wall:7.1f}",
                flush=True,
            )
            rows.append({"txs": done, "compacted_mb": mb[1] - before_mb[1], "disk_bytes_per_tx": disk / done})
            before_cpu, before_mb, before_wall = cpu, mb, time.monotonic()
    assert node.ledger.get_head().height > 0
    node.ledger.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--txs", type=int, default=1_000_000)
    parser.add_argument("--mix", choices=MIXES, default=MIX_REALISTIC)
    parser.add_argument("--dir", type=Path, help="keep the network here (default: a temporary directory)")
    args = parser.parse_args()
    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=False)
        run(args.dir, args.txs, args.mix)
        return
    with tempfile.TemporaryDirectory(prefix="chainnode-growth-") as directory:
        run(Path(directory), args.txs, args.mix)


if __name__ == "__main__":
    main()
