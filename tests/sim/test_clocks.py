"""One validator with a wrong wall clock, as primary and as replica, in the seeded simulator.

Each replica's wall clock is the true time plus an injected offset (`SimNetwork.clock_offsets_ms`);
timers run on logical (monotonic) time.  Under a steady load, with one validator 10 minutes
fast, 10 minutes slow, or stepped back 5 minutes mid-run, the network must keep committing at
no less than 80% of the rate of the same run with every clock right, every block's time must
stay within the allowed drift of the true time when it commits, and the validators must say
who is wrong and by how much.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from chainnode.core import crypto
from consensus.events import EngineConfig
from tests.sim.harness import CHAIN_ID, WALL_EPOCH_MS, Replica, SimNetwork, make_transaction

CLIENT = crypto.SigningKey(b"\x0e" * 32)
DRIFT_MS = 2_000
RUN_MS = 12_000
TICK_MS = 10
TXS_PER_TICK = 1  # 100 tx/s against blocks of at most ten: the network keeps up when healthy
MINUTE_MS = 60_000


@dataclass
class Run:
    committed_txs: int = 0
    worst_lag_ms: int = 0  # how far a block's time fell behind the true time when it committed
    worst_lead_ms: int = 0  # how far it ran ahead
    diagnostics: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def config() -> EngineConfig:
    return EngineConfig(
        CHAIN_ID,
        proposal_delay_ms=0,
        view_timeout_ms=300,
        rebroadcast_ms=250,
        timestamp_drift_ms_max=DRIFT_MS,
    )


def run(seed: int, *, skewed: int | None, offset_ms: int, step_at_ms: int | None = None) -> Run:
    """Steady load for RUN_MS; `skewed`'s clock is off by `offset_ms` (from `step_at_ms` on, if set)."""
    network = SimNetwork(4, seed, config=config())
    if skewed is not None and step_at_ms is None:
        network.clock_offsets_ms[skewed] = offset_ms
    outcome = Run()
    seen = [0] * len(network.replicas)
    nonce = 0
    while network.now_ms < RUN_MS:
        if skewed is not None and step_at_ms is not None and network.now_ms == step_at_ms:
            network.clock_offsets_ms[skewed] = offset_ms
        txs = [make_transaction(CLIENT, nonce + i) for i in range(TXS_PER_TICK)]
        nonce += TXS_PER_TICK
        for replica in network.replicas:
            replica.app.pending.extend(txs)
        network.tick(TICK_MS)
        true_wall_ms = WALL_EPOCH_MS + network.now_ms
        for index, replica in enumerate(network.replicas):
            for block, _ in replica.chain[seen[index] :]:
                outcome.worst_lag_ms = max(outcome.worst_lag_ms, true_wall_ms - block.header.timestamp_ms)
                outcome.worst_lead_ms = max(outcome.worst_lead_ms, block.header.timestamp_ms - true_wall_ms)
            seen[index] = len(replica.chain)
    network.check_safety()
    outcome.committed_txs = min(
        sum(block.header.tx_count for block, _ in replica.chain) for replica in network.replicas
    )
    outcome.diagnostics = [message for replica in network.replicas for message in replica.diagnostics]
    outcome.warnings = [message for replica in network.replicas for message in replica.warnings]
    return outcome


CASES = {
    # name: (skewed validator, offset, step at)
    "primary 10 min fast": (0, 10 * MINUTE_MS, None),
    "primary 10 min slow": (0, -10 * MINUTE_MS, None),
    "primary stepped back 5 min": (0, -5 * MINUTE_MS, RUN_MS // 3),
    "replica 10 min fast": (2, 10 * MINUTE_MS, None),
    "replica 10 min slow": (2, -10 * MINUTE_MS, None),
    "replica stepped back 5 min": (2, -5 * MINUTE_MS, RUN_MS // 3),
    # Validator 1 is the primary of view 1: it proposes its first block through NEW-VIEW.
    "next primary 10 min fast, first block in NEW-VIEW": (1, 10 * MINUTE_MS, None),
}


@pytest.fixture(scope="module")
def baseline() -> Run:
    return run(31, skewed=None, offset_ms=0)


@pytest.mark.parametrize("name", sorted(CASES))
def test_one_wrong_clock_neither_stalls_the_network_nor_moves_chain_time(baseline: Run, name: str) -> None:
    skewed, offset_ms, step_at_ms = CASES[name]
    outcome = run(31, skewed=skewed, offset_ms=offset_ms, step_at_ms=step_at_ms)
    assert outcome.committed_txs >= 0.8 * baseline.committed_txs, (outcome.committed_txs, baseline)
    # Chain time: never ahead of the true time by more than the drift, never behind it by more
    # than the drift plus the time a view change takes to replace the wrong clock.
    assert outcome.worst_lead_ms <= DRIFT_MS, outcome.worst_lead_ms
    assert outcome.worst_lag_ms <= DRIFT_MS + 2_000, outcome.worst_lag_ms
    # Someone names the wrong clock: the replicas refusing its blocks, or it refusing theirs.
    named = [w for w in outcome.warnings if f"v{skewed} proposed it" in w or "v0 proposed it" in w]
    assert named, outcome.diagnostics[-10:]
    assert any("ms ahead of our clock" in w or "ms behind our clock" in w for w in named)


def test_baseline_commits_everything_and_warns_of_nothing(baseline: Run) -> None:
    assert baseline.committed_txs >= (RUN_MS // TICK_MS - 100) * TXS_PER_TICK
    assert baseline.warnings == []
    assert baseline.worst_lead_ms <= 0 and baseline.worst_lag_ms <= 100


def test_a_fast_primary_is_refused_with_its_offset_in_new_view_too() -> None:
    # Seven validators tolerate the two faults: a crashed primary of view 0, and validator 1,
    # which takes over through NEW-VIEW with its clock 10 minutes fast.
    network = SimNetwork(7, 32, config=config())
    network.clock_offsets_ms[1] = 10 * MINUTE_MS
    network.crash(0)
    txs = network.submit(20, CLIENT)
    for _ in range(3_000):
        network.tick(TICK_MS)
        network.check_safety()
        if all(
            {tx.hash for tx in txs} <= {t.hash for b, _ in r.chain for t in b.transactions}
            for r in network.replicas[2:]
        ):
            break
    else:
        pytest.fail("not committed")
    for replica in network.replicas[2:]:
        for block, _ in replica.chain:
            assert block.header.proposer != 1, "a block dated 10 minutes ahead was committed"
        assert replica.engine.clock_offsets_ms[1] >= 10 * MINUTE_MS - 1_000
        assert any("ms ahead of our clock (v1 proposed it" in d for d in replica.diagnostics)


def committed(replica: Replica) -> set[bytes]:
    return {tx.hash for block, _ in replica.chain for tx in block.transactions}


def test_a_primary_behind_the_chain_accepts_its_own_new_view_block() -> None:
    # Validator 1's clock is 3 s slow (more than the 2 s drift), and the chain's last block is
    # recent: its NEW-VIEW block is dated parent + 1, which the others accept and which is 3 s
    # ahead of its own clock.  It must not refuse (and so not PREPARE) its own proposal.
    network = SimNetwork(7, 33, config=config())
    first = network.submit(10, CLIENT)
    for _ in range(300):
        network.tick(TICK_MS)
        if all(len(replica.chain) >= 1 for replica in network.replicas):
            break
    assert {tx.hash for tx in first} <= committed(network.replicas[1])
    network.clock_offsets_ms[1] = -3_000  # from now on: the chain's time is ahead of its clock
    network.crash(0)  # the primary of view 0: validator 1 takes over through NEW-VIEW
    later = network.submit(10, CLIENT, nonce_base=100)
    for _ in range(1_000):
        network.tick(TICK_MS)
        if {tx.hash for tx in later} <= committed(network.replicas[1]):
            break
    else:
        pytest.fail("not committed after the view change")
    network.check_safety()
    proposers = {block.header.proposer for block, _ in network.replicas[1].chain[1:]}
    assert proposers == {1}, proposers
    own_refusals = [w for w in network.replicas[1].warnings if "v1 proposed it" in w]
    assert not own_refusals, own_refusals
    own_prepares = [block for block, cert in network.replicas[2].chain[1:] if 1 in dict(cert.signatures)]
    assert own_prepares, "validator 1 signed none of its own blocks"
