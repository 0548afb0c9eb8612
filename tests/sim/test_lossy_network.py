"""Seeded runs of four real engines over a lossy, duplicating, reordering network.

Every seed must end with all replicas on one chain holding every
transaction, and no two replicas may ever commit different blocks at a
height.  A failure names its seed, and
`pytest 'tests/sim/test_lossy_network.py::test_lossy_network_stays_safe_and_live[SEED]'`
replays it exactly, because nothing in the run reads a clock or global randomness.
"""

from __future__ import annotations

import pytest

from chainnode.core import crypto
from tests.sim.harness import SimNetwork

CLIENT = crypto.SigningKey(b"\x09" * 32)
TXS = 45  # five blocks of at most ten
ROUNDS_MAX = 2_000  # 20 simulated seconds of 10 ms ticks


@pytest.mark.parametrize("seed", range(150))
def test_lossy_network_stays_safe_and_live(seed: int) -> None:
    network = SimNetwork(4, seed, drop_probability=0.1, duplicate_probability=0.1)
    network.submit(TXS, CLIENT)
    for _ in range(ROUNDS_MAX):
        network.tick()
        network.check_safety(verify_certificates=False)
        if all(not replica.app.pending for replica in network.replicas):
            break
    else:
        heights = [replica.engine.head.height for replica in network.replicas]
        pytest.fail(f"seed {seed}: no progress to the end, heights {heights}")
    network.check_safety()
    committed = {tx.hash for block, _ in network.replicas[0].chain for tx in block.transactions}
    assert len(committed) == TXS
    heads = {replica.engine.head for replica in network.replicas}
    assert len(heads) == 1, f"seed {seed}: replicas ended on different heads {heads}"
