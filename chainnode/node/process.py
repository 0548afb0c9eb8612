"""The node process: run one `Node` until a signal or a storage failure, with the collector tuned.

Theory of operation.  `run_node` loads the configuration, builds and starts the node, then waits
for whichever comes first: SIGINT or SIGTERM, or the node's fatal handler (`Node.failed`, set once
a ledger write failed).  Either way it stops the node (the API and p2p close, the ledger is
closed) and, after a storage failure, raises the `StorageError` it stopped on, so
`chainnode node run` prints that one line and exits non-zero.  `configure_gc` runs once start-up
has built its long-lived objects: they are frozen out of the cyclic collector's scans, and the
collector runs less often (see `GC_THRESHOLDS`).
"""

from __future__ import annotations

import asyncio
import gc
import signal
from pathlib import Path

from chainnode.node.config import load_node_config
from chainnode.node.runtime import Node

# The cyclic collector's thresholds for a running node (CPython's defaults: 700, 10, 10).
# A node holds a few hundred thousand long-lived objects (pooled and memoised
# transactions, caches), almost none of them in reference cycles; with the defaults
# a full collection (~0.1 s) ran every few seconds under load, and all collections
# together took ~13% of a validator's CPU (`chainnode_gc_seconds_total`).  Measured
# on a validator over the first 100k transactions of a bench run: (5000, 20, 100)
# 0.67 s, most of it in a generation-1 collection (~50 ms, walking every pooled
# transaction) every ~15k transactions; (5000, 200, 100) 0.41 s; (20000, 50, 100)
# 0.53 s (large young generations are walked cold); (2000, 500, 100) 0.32 s.  Young
# cycles (asyncio, exceptions) still go at the next young collection; older ones at
# a generation-1 collection, about every 100k transactions.
GC_THRESHOLDS = (2_000, 500, 100)


def configure_gc() -> None:
    """Collect less often, and never scan what start-up built (genesis, modules, config)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def run_node(config_path: Path) -> None:
    """Run one node until SIGINT or SIGTERM; raise the `StorageError` it stopped on, if any
    (the CLI prints it as one line and exits non-zero)."""
    config = load_node_config(config_path)
    node = Node(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await node.start()
    configure_gc()
    waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(node.failed.wait())]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await node.stop()
    if node.failure is not None:
        raise node.failure
