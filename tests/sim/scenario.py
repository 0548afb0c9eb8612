"""Seeded fault scenarios over real engines, and the soak command.

One seed decides everything: the validator count (every n from 4 to 10, and
13, in turn: `SIZES[seed % len(SIZES)]`, since quorum arithmetic differs with
n mod 3), which validators are Byzantine (at most f) and how they lie
(silence, an equivocating primary, conflicting votes, garbage and absurd view
numbers, a split-brain primary that shows each half of the network its own
block with its own votes, split-brain voters that vote for each half's
block), the network's
drop, duplicate and delay rates, and a schedule of partitions, heals and
crash-restarts of honest validators (never more than f faulty at once).
After the chaos phase the network heals and every crashed validator
restarts; then every honest validator must commit every transaction within
a bounded time, on one chain.  Safety (no two honest validators commit
different blocks at a height, contiguous heights) is checked after every
tick, and every commit certificate is verified at the end.

Replay one seed exactly, or soak many:

    python -m tests.sim.scenario --seed 1234
    python -m tests.sim.scenario --seeds 10000 --start 0
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import dataclass, field

from chainnode.core import crypto, quorum
from consensus.events import EngineConfig
from tests.sim.harness import BEHAVIORS, CHAIN_ID, SimNetwork

TICK_MS = 10
CHAOS_MS = 8_000
EVENT_EVERY_MS = 400
LIVENESS_MS_MAX = 60_000  # after the heal, everything commits within this much logical time
CLIENT = crypto.SigningKey(b"\x0b" * 32)
SIZES = (4, 5, 6, 7, 8, 9, 10, 13)  # every validator count governance reaches in the pilot, and 13
LIARS = ("silent", "equivocate", "conflicting-votes", "garbage", "split-brain-primary", "split-brain-voter")


class SimulationError(AssertionError):
    """A violated invariant; the message names the seed and the command that replays it."""


@dataclass
class Outcome:
    seed: int
    size: int
    byzantine: dict[int, str]
    events: list[str] = field(default_factory=list)
    height: int = 0
    views_max: int = 0
    heal_to_done_ms: int = 0
    evidence: int = 0


def replay_command(seed: int) -> str:
    return f"python -m tests.sim.scenario --seed {seed}"


def build_network(seed: int) -> tuple[SimNetwork, Outcome, random.Random]:
    rng = random.Random(f"scenario-{seed}")
    size = SIZES[seed % len(SIZES)]
    faults_max = quorum.compute_faults_max(size)
    config = EngineConfig(
        CHAIN_ID,
        proposal_delay_ms=0,
        view_timeout_ms=300,
        rebroadcast_ms=250,
        view_timeout_doublings_max=4,
        checkpoint_interval=4,
        sync_grace_ms=100,
        sync_timeout_ms=500,
    )
    network = SimNetwork(
        size,
        seed,
        config=config,
        drop_probability=rng.choice([0.0, 0.02, 0.1, 0.25]),
        duplicate_probability=rng.choice([0.0, 0.1]),
        delay_ms_max=rng.choice([0, 20, 100, 400]),
    )
    byzantine: dict[int, str] = {}
    for index in rng.sample(range(size), rng.randint(0, faults_max)):
        name = rng.choice(LIARS)
        network.replicas[index].behavior = BEHAVIORS[name]()
        byzantine[index] = name
    return network, Outcome(seed, size, byzantine), rng


def _chaos_event(network: SimNetwork, outcome: Outcome, rng: random.Random, crashed: set[int]) -> None:
    faults_max = network.validators.faults_max
    honest = [i for i in range(outcome.size) if i not in outcome.byzantine]
    choice = rng.random()
    if choice < 0.25:
        group = set(rng.sample(range(outcome.size), rng.randint(1, outcome.size // 2)))
        network.partition(group)
        outcome.events.append(f"{network.now_ms}ms partition {sorted(group)}")
    elif choice < 0.45:
        network.heal()
        outcome.events.append(f"{network.now_ms}ms heal")
    elif choice < 0.7 and len(outcome.byzantine) + len(crashed) < faults_max:
        victim = rng.choice([i for i in honest if i not in crashed])
        network.crash(victim)
        crashed.add(victim)
        outcome.events.append(f"{network.now_ms}ms crash v{victim}")
    elif crashed:
        revived = rng.choice(sorted(crashed))
        network.restart(revived)
        crashed.discard(revived)
        outcome.events.append(f"{network.now_ms}ms restart v{revived}")


def _check(network: SimNetwork, outcome: Outcome, *, certificates: bool = False) -> None:
    try:
        network.check_safety(verify_certificates=certificates)
    except AssertionError as error:
        raise SimulationError(describe(outcome, f"safety: {error}")) from None


def describe(outcome: Outcome, problem: str) -> str:
    events = "; ".join(outcome.events[-12:])
    return (
        f"seed {outcome.seed}: {problem}\n  validators {outcome.size}, byzantine {outcome.byzantine}\n"
        f"  last events: {events}\n  replay: {replay_command(outcome.seed)}"
    )


def run_scenario(seed: int) -> Outcome:
    network, outcome, rng = build_network(seed)
    txs = network.submit(24, CLIENT)
    crashed: set[int] = set()
    while network.now_ms < CHAOS_MS:
        network.tick(TICK_MS)
        _check(network, outcome)
        if network.now_ms % EVENT_EVERY_MS == 0:
            _chaos_event(network, outcome, rng, crashed)
        if network.now_ms == CHAOS_MS // 2:
            txs += network.submit(24, CLIENT, nonce_base=1_000)
    network.heal()
    network.drop_probability = 0.0
    for index in sorted(crashed):
        network.restart(index)
    outcome.events.append(f"{network.now_ms}ms heal all, restart {sorted(crashed)}")
    healed_ms = network.now_ms
    wanted = {tx.hash for tx in txs}
    while True:
        network.tick(TICK_MS)
        _check(network, outcome)
        honest = network.honest()
        heads = {replica.engine.head.block_hash for replica in honest}
        committed = {tx.hash for block, _ in honest[0].chain for tx in block.transactions}
        if len(heads) == 1 and wanted <= committed:
            break
        if network.now_ms - healed_ms > LIVENESS_MS_MAX:
            heights = {replica.name: (replica.engine.head.height, replica.engine.view) for replica in honest}
            missing = len(wanted - committed)
            raise SimulationError(
                describe(
                    outcome,
                    f"liveness: {missing} transactions not committed {LIVENESS_MS_MAX} ms after "
                    f"the heal; (height, view) per honest validator: {heights}",
                )
            )
    _check(network, outcome, certificates=True)
    outcome.height = network.honest()[0].engine.head.height
    outcome.views_max = max(replica.engine.view for replica in network.honest())
    outcome.heal_to_done_ms = network.now_ms - healed_ms
    outcome.evidence = sum(len(replica.evidence) for replica in network.honest())
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run seeded consensus fault scenarios.")
    parser.add_argument("--seed", type=int, help="replay exactly this seed, with its event log")
    parser.add_argument("--seeds", type=int, default=100, help="how many seeds to run")
    parser.add_argument("--start", type=int, default=0, help="first seed")
    parser.add_argument(
        "--size", type=int, choices=SIZES, help="soak only the seeds whose validator count is this"
    )
    arguments = parser.parse_args(argv)
    if arguments.seed is not None:
        try:
            outcome = run_scenario(arguments.seed)
        except SimulationError as failure:
            print(failure, file=sys.stderr)
            return 1
        print(f"seed {outcome.seed}: ok; {outcome}")
        return 0
    started = time.monotonic()
    seeds = range(arguments.start, arguments.start + arguments.seeds)
    if arguments.size is not None:
        seeds = range(seeds_of_size(arguments.size, arguments.start), seeds.stop, len(SIZES))
    failures, runs, faults = 0, 0, 0
    for seed in seeds:
        try:
            outcome = run_scenario(seed)
        except SimulationError as failure:
            failures += 1
            print(failure, file=sys.stderr, flush=True)
        else:
            faults += len(outcome.byzantine) + sum(1 for event in outcome.events if " crash " in event)
            faults += sum(1 for event in outcome.events if " partition " in event)
        runs += 1
    elapsed = time.monotonic() - started
    size = "all sizes" if arguments.size is None else f"n = {arguments.size}"
    print(
        f"{runs} seeds ({size}) from {arguments.start}: {failures} failed, "
        f"{faults} faults injected in the passing ones, {elapsed:.0f} s"
    )
    return 1 if failures else 0


def seeds_of_size(size: int, start: int) -> int:
    """The first seed at or after `start` that runs `size` validators."""
    return start + (SIZES.index(size) - start) % len(SIZES)


if __name__ == "__main__":
    raise SystemExit(main())
