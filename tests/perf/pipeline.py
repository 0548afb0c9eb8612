"""The hot path of two validators in one process, timed phase by phase (a developer's tool).

    python -m tests.perf.pipeline [--txs 30000] [--mix realistic|pilot|records] [--profile replica|primary]
                                    [--sort tottime|cumulative] [--block-txs N]

A fresh bench network (`chainnode.tools.network.init_network`) and the bench's own signed
workload; two real `Node`s over real LevelDB, not started (no sockets, no consensus
timing): validator-01 plays the primary, validator-02 a replica.  Per block of
`block_txs_max` transactions:

    primary  submit    the API path: decode, admission checks, signature, pool, gossip queue
    replica  gossip    the gossiped batch frame decoded and admitted
    primary  propose   select, execute, build the block
    replica  decode    the compact pre-prepare frame decoded, its block rebuilt from the mempool
    replica  execute   the proposal executed and checked against its header
    both     commit    the block and its results written to the ledger

Figures are CPU microseconds per transaction (`time.process_time`, so LevelDB's own
threads count too).  Both nodes share this process's decoded-transaction map, so the
replica's gossip phase finds the primary's decode: it measures admission without
decoding.  Everything here moves by 2-3% from run to run where a cluster benchmark moves
by 5-10%, which is what it is for: measuring a change to the hot path before running
`chainnode bench`.  With `--profile` the phases of one node run under cProfile.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chainnode.app import governance
from chainnode.core import quorum
from chainnode.node import wire
from chainnode.node.config import load_node_config
from chainnode.node.process import configure_gc
from chainnode.node.runtime import Node
from chainnode.tools.bench import BENCH_CHAIN_ID
from chainnode.tools.bench_load import load_signers, sign_item, sign_workload
from chainnode.tools.bench_mix import MIX_RECORDS, MIXES, SETUP_NONCE_BASE, compute_setup_phases
from chainnode.tools.devnet import LocalNetwork
from chainnode.tools.network import init_network
from chainnode.tools.verify_rate import measure_verify_rate
from consensus.messages import PrePrepare
from tests.factories import propose_next_block

PHASES = (
    ("primary", "submit"),
    ("replica", "gossip"),
    ("primary", "propose"),
    ("replica", "decode"),
    ("replica", "execute"),
    ("primary", "commit"),
    ("replica", "commit"),
)


def sign_setup(network: LocalNetwork, txs: int, mix: str) -> list[list[bytes]]:
    """The mix's set-up phases, signed, each a block's worth of encoded transactions."""
    signers, cast = load_signers(network.directory, network.entity_ids)
    nonce = SETUP_NONCE_BASE
    phases = []
    for phase in compute_setup_phases(cast, txs, "pipeline", mix):
        signed = []
        for item in phase:
            signed.append(sign_item(signers, item, network.chain_id, nonce).encode())
            nonce += 1
        phases.append(signed)
    return phases


def _rebuild(replica: Node, primary_id: str, frame: bytes) -> PrePrepare | None:
    """What the replica does with a compact pre-prepare: decode it, rebuild it from the mempool."""
    compact = wire.decode_frame(frame, frame_bytes_max=1 << 26)
    assert isinstance(compact, wire.CompactPrePrepare)
    return replica.traffic.proposals.on_compact(primary_id, compact)


def run_pipeline(
    directory: Path,
    txs: int,
    profile: str | None = None,
    mix: str = MIX_RECORDS,
    sort: str = "tottime",
    block_txs: int | None = None,
) -> dict[tuple[str, str], float]:
    """Build the network in `directory` (fresh), run `txs` transactions of `mix`; seconds per phase.

    A mix's set-up (entities' grants, collections, the minted pool, open proposals) is committed
    first, a phase per block, untimed, as the bench commits it before its clock starts."""
    init_network(directory, validators=4, chain_id=BENCH_CHAIN_ID, base_port=29600)
    network = LocalNetwork(directory)
    setup = sign_setup(network, txs, mix) if mix != MIX_RECORDS else []
    chunk_paths, _ = sign_workload(network, txs, label="pipeline", mix=mix)
    encoded = [bytes.fromhex(line) for path in chunk_paths for line in path.read_text().split()]
    primary = Node(load_node_config(network.nodes[0].config_path))
    replica = Node(load_node_config(network.nodes[1].config_path))
    configure_gc()
    profiler = cProfile.Profile() if profile else None
    seconds = {phase: 0.0 for phase in PHASES}
    untimed = dict(seconds)  # where the set-up's seconds go

    def timed(role: str, phase: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        profiling = profiler is not None and role == profile
        started = time.process_time()
        if profiling:
            profiler.enable()
        result = call(*args, **kwargs)
        if profiling:
            profiler.disable()
        tally[(role, phase)] += time.process_time() - started
        return result

    def gossip() -> None:
        frame = wire.encode_tx_batch(primary.admission.take_gossip())
        replica.traffic.on_peer_frame(network.nodes[0].node_id, frame)
        while replica.admission.gossip_inbox:
            replica.admission.admit_gossip_slice()

    block_txs = block_txs or governance.get_chain_params(primary.ledger, primary.genesis.params).block_txs_max
    batches = [(False, phase) for phase in setup]
    batches += [(True, encoded[start : start + block_txs]) for start in range(0, len(encoded), block_txs)]
    for counted, batch in batches:
        tally = seconds if counted else untimed  # the set-up runs the same path, untimed
        results = timed("primary", "submit", primary.submit_transactions, batch)
        assert all(result.accepted for result in results), [r for r in results if not r.accepted][:1]
        timed("replica", "gossip", gossip)
        block = timed("primary", "propose", propose_next_block, primary)
        # The primary's signature is not checked here (the engine does that): any 64 bytes.
        frame = timed(
            "primary",
            "propose",
            primary.traffic.proposals.encode,
            PrePrepare(0, block.height, 0, block, bytes(64)),
        )
        message = timed("replica", "decode", _rebuild, replica, network.nodes[0].node_id, frame)
        assert isinstance(message, PrePrepare) and message.block.encoded == block.encoded
        decoded = message.block
        problem = timed("replica", "execute", replica.application.find_block_problem, decoded)
        assert problem is None, problem
        # The ledger keeps what it is given; a real certificate is the engine's business.
        certificate = quorum.CommitCertificate(block.height, 0, block.hash, ((0, bytes(64)),))
        timed("primary", "commit", primary.effects._commit, block, certificate)
        timed("replica", "commit", replica.effects._commit, decoded, certificate)
    assert replica.ledger.get_head() == primary.ledger.get_head()
    primary.ledger.close()
    replica.ledger.close()
    if profiler is not None:
        pstats.Stats(profiler).sort_stats(sort).print_stats(30)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--txs", type=int, default=30_000)
    parser.add_argument("--profile", choices=("primary", "replica"))
    parser.add_argument("--mix", choices=MIXES, default=MIX_RECORDS)
    parser.add_argument("--sort", default="tottime", help="the profile's order (pstats): tottime, cumulative")
    parser.add_argument(
        "--block-txs", type=int, help="transactions per block (default: the chain's block_txs_max)"
    )
    args = parser.parse_args()
    verify_us = 1e6 / measure_verify_rate()
    with tempfile.TemporaryDirectory(prefix="chainnode-pipeline-") as directory:
        seconds = run_pipeline(
            Path(directory), args.txs, args.profile, args.mix, args.sort, block_txs=args.block_txs
        )
    for role in ("primary", "replica"):
        total = 0.0
        for (phase_role, phase), spent in seconds.items():
            if phase_role == role:
                print(f"{role:8s} {phase:8s} {spent / args.txs * 1e6:6.1f} us/tx")
                total += spent
        check = f"one signature check: {verify_us:.1f} us"
        print(f"{role:8s} total    {total / args.txs * 1e6:6.1f} us/tx ({check})")


if __name__ == "__main__":
    main()
