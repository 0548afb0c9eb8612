"""What cross-chain imports cost in block execution (a developer's tool).

    python -m tests.perf.xchain_execution [--imports 400] [--repeat 3]

Two real chains over `network init` genesis files (4 validators each; `tests.light_harness`):
chain A commits `--imports` `records.put` transactions in blocks of 100; chain B's council
registers A, one `xchain.update_client` step brings B's client to A's head, and B executes one
block holding an `xchain.import` of every one of them with the real executor.  Each import
checks its own signature, the source block's four commit signatures and two Merkle paths
against B's on-chain light client.  Printed: the execution time of the update and of the import
block (the best of `--repeat` runs, one core) and the import transactions' sizes, beside this
machine's Ed25519 verification rate at that moment (the figures scale with it).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from chainnode.app import governance, xchain_registry, xchain_state
from chainnode.core import crypto
from tests.governance_harness import Network
from tests.light_harness import CertifiedChain

SOURCE_BLOCK_TXS = 100


def measure_verify_rate(count: int = 5000) -> float:
    key = crypto.SigningKey(b"\x01" * 32)
    message = b"x" * 32
    signature = key.sign(message)
    started = time.perf_counter()
    for _ in range(count):
        crypto.verify(key.public_key, message, signature)
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--imports", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="xchain-perf-"))
    (directory / "a").mkdir()
    (directory / "b").mkdir()
    a = CertifiedChain(Network.create(directory / "a", chain_id="chain-a"))
    b = CertifiedChain(Network.create(directory / "b", chain_id="chain-b"))
    payload = xchain_registry.compute_register_chain_payload(a.net.genesis)
    assert b.run_one(b.council_tx("miit", "propose", "register_chain", payload, 50)).ok
    assert b.run_one(b.council_tx("moe", "vote", governance.get_proposal_count(b.state), True)).ok
    puts = [a.put("pku", f"key-{index}") for index in range(options.imports)]
    for start in range(0, len(puts), SOURCE_BLOCK_TXS):
        a.run(*puts[start : start + SOURCE_BLOCK_TXS])
    proofs = [
        a.compute_proof(height, index)
        for height in range(1, a.height + 1)
        for index in range(len(a.blocks[height].transactions))
    ]
    steps = ((a.header_bytes(a.height), a.certificate_bytes(a.height), None),)
    update = b.entity_tx("pku", "xchain", "update_client", "chain-a", steps)
    update_s = []
    for _ in range(options.repeat):
        started = time.perf_counter()
        assert b.execute(update).receipts[0].ok
        update_s.append(time.perf_counter() - started)
    assert b.run_one(update).ok
    imports = [
        b.entity_tx("pku", "xchain", "import", "chain-a", xchain_state.encode_proof_args(p)) for p in proofs
    ]
    import_s = []
    for _ in range(options.repeat):
        b.executor.signatures = type(b.executor.signatures)()  # each run checks the signatures again
        started = time.perf_counter()
        result = b.execute(*imports)
        import_s.append(time.perf_counter() - started)
        assert all(receipt.ok for receipt in result.receipts)
    sizes = [len(tx.encoded) for tx in imports]
    print(f"Ed25519 verifications/s on this core now: {measure_verify_rate():.0f}")
    print(f"update_client, one step (4 signatures): {min(update_s) * 1000:.1f} ms to execute")
    print(
        f"{len(imports)} imports in one block: {min(import_s):.2f} s to execute, "
        f"{len(imports) / min(import_s):.0f} imports/s on one core"
    )
    print(f"import transaction size: {min(sizes)}..{max(sizes)} bytes")


if __name__ == "__main__":
    main()
