"""A real chain for the audit, proof and export tests.

`build_chain` writes a pilot network with `chainnode.tools.network.init_network`
(real root, zone and entity certificates, a 4-validator genesis), then builds
blocks the way a node commits them: real signed transactions from the pilot
entities, the real `Executor` over the real LevelDB `Ledger`, headers with the
real roots, and commit certificates signed with the validators' own keys from
their node directories.  The ledger sits where a node keeps it
(`nodes/validator-01/data/ledger`).  There is no consensus here: the consensus
engine has its own tests; these chains are what it writes.

Some transactions fail on purpose (a signer without the `submitter` role, bad
arguments), so chains hold failed receipts too.  Even heights carry exactly a
quorum of 3 signatures, odd heights all 4.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import plyvel

from chainnode.api.service import TransactionStatus
from chainnode.app.execution import Executor, SignatureCache
from chainnode.app.genesis import Genesis, load_genesis
from chainnode.app.state import compute_genesis_state_root
from chainnode.core import crypto, identity, quorum, types
from chainnode.sdk.client import Identity, build_transaction
from chainnode.tools.network import init_network
from storage.ledger import Ledger
from tests.factories import load_validator_keys, make_executed_block, sign_commit_certificate

CHAIN_ID = "audit-net"
BLOCK_INTERVAL_MS = 10  # a chain of hundreds of blocks stays within the timestamp drift of now


@dataclass(frozen=True, slots=True)
class BuiltChain:
    network_dir: Path
    genesis_path: Path
    genesis: Genesis
    data_dir: Path  # the node's data directory; the LevelDB is `data_dir / "ledger"`
    heights: int
    tx_hashes: tuple[tuple[bytes, ...], ...]  # per height (index 0 is height 1)

    @property
    def ledger_dir(self) -> Path:
        return self.data_dir / "ledger"


def load_identities(network_dir: Path) -> tuple[list[Identity], Identity]:
    submitters = [Identity.load(directory) for directory in sorted((network_dir / "entities").iterdir())]
    assert all("submitter" in identity.read_claims(e.certificate).roles for e in submitters)
    # A validator node is a registered entity without the submitter role.
    outsider = Identity.load(network_dir / "nodes" / "validator-04")
    assert "submitter" not in identity.read_claims(outsider.certificate).roles
    return submitters, outsider


def build_transactions(
    height: int, count: int, submitters: list[Identity], outsider: Identity
) -> list[types.Transaction]:
    txs = []
    for index in range(count):
        signer = submitters[(height * 7 + index) % len(submitters)]
        args: tuple[object, ...] = (f"meter-{height}-{index}", f"reading {height}.{index}".encode())
        if index == 1 and height % 3 == 0:
            signer = outsider  # no submitter role: a failed receipt (missing_role)
        if index == 2 and height % 4 == 0:
            args = ("",)  # bad arguments: a failed receipt
        txs.append(
            build_transaction(
                signer,
                chain_id=CHAIN_ID,
                module="records",
                action="put",
                args=args,
                valid_until=height + 100,
                nonce=height * 1000 + index,
            )
        )
    return txs


def build_chain(directory: Path, *, heights: int, txs_per_block: int) -> BuiltChain:
    network_dir = directory / "net"
    init_network(network_dir, validators=4, chain_id=CHAIN_ID, base_port=29800)
    genesis = load_genesis(network_dir / "genesis.json")
    keys = load_validator_keys(network_dir, genesis.validators)
    submitters, outsider = load_identities(network_dir)
    data_dir = network_dir / "nodes" / "validator-01" / "data"
    data_dir.mkdir(parents=True)
    ledger = Ledger(data_dir / "ledger")
    initial = genesis.initial_state()
    ledger.initialize(
        genesis_hash=genesis.compute_hash(),
        genesis_time_ms=genesis.genesis_time_ms,
        initial_state=initial,
        state_root=compute_genesis_state_root(initial),
    )
    executor = Executor(CHAIN_ID, SignatureCache())
    tx_hashes = []
    try:
        for height in range(1, heights + 1):
            txs = build_transactions(height, txs_per_block, submitters, outsider)
            commit_block(ledger, executor, genesis, keys, txs)
            tx_hashes.append(tuple(tx.hash for tx in txs))
    finally:
        ledger.close()
    return BuiltChain(network_dir, network_dir / "genesis.json", genesis, data_dir, heights, tuple(tx_hashes))


def commit_block(
    ledger: Ledger,
    executor: Executor,
    genesis: Genesis,
    keys: list[crypto.SigningKey],
    txs: list[types.Transaction],
) -> types.Block:
    head = ledger.get_head()
    height = head.height + 1
    timestamp_ms = head.timestamp_ms + BLOCK_INTERVAL_MS
    result = executor.execute_block(
        ledger,
        previous_state_root=head.state_root,
        height=height,
        timestamp_ms=timestamp_ms,
        transactions=txs,
        is_committed=ledger.is_committed,
    )
    block = make_executed_block(
        result,
        txs,
        chain_id=CHAIN_ID,
        height=height,
        timestamp_ms=timestamp_ms,
        parent_hash=head.block_hash,
        validator_set_hash=genesis.validators.compute_hash(),
    )
    certificate = sign_commit_certificate(block, keys, signers=3 if height % 2 == 0 else 4)
    ledger.commit_block(block, certificate, result.receipts, result.write_set)
    return block


# ---------------------------------------------------------------- raw LevelDB access for tampering
# The key layout of storage/ledger.py.  Block store (`ledger/blocks`): height:u64 + b"b" -> block,
# height:u64 + b"c" -> certificate, height:u64 + b"r" + index:u32 -> receipt.  Main database
# (`ledger`): b"s" + state key -> value, b"mhead" -> head.  A raw key is (subdirectory, key).

RawKey = tuple[str, bytes]


def block_key(height: int) -> RawKey:
    return "blocks", height.to_bytes(8, "big") + b"b"


def certificate_key(height: int) -> RawKey:
    return "blocks", height.to_bytes(8, "big") + b"c"


def receipt_key(height: int, index: int) -> RawKey:
    return "blocks", height.to_bytes(8, "big") + b"r" + index.to_bytes(4, "big")


def open_raw(ledger_dir: Path, store: str = "") -> plyvel.DB:
    return plyvel.DB(str(ledger_dir / store if store else ledger_dir), create_if_missing=False)


class LedgerService:
    """A read-only `chainnode.api.service.NodeService` over a built chain's ledger, to serve it over HTTP."""

    def __init__(self, chain: BuiltChain) -> None:
        self.chain_id = CHAIN_ID
        self.node_id = "validator-01"
        self.genesis = chain.genesis
        self.ledger = Ledger(chain.ledger_dir, read_only=True)

    def close(self) -> None:
        self.ledger.close()

    def get_status(self) -> dict[str, object]:
        head = self.ledger.get_head()
        return {
            "chain_id": self.chain_id,
            "node_id": self.node_id,
            "validator_index": 0,
            "height": head.height,
            "head_hash": head.block_hash.hex(),
            "state_root": head.state_root.hex(),
            "view": 0,
            "peers": [],
            "mempool_txs": 0,
            "genesis_hash": self.ledger.get_genesis_hash().hex(),
        }

    def submit_transactions(self, encoded: object) -> list[object]:
        raise AssertionError("read-only test service")

    def get_transaction_status(self, tx_hash: bytes) -> TransactionStatus:
        location = self.ledger.get_tx_location(tx_hash)
        if location is None:
            return TransactionStatus("unknown")
        return TransactionStatus("committed", location[0], location[1])

    def get_validator_set(self, height: int) -> quorum.ValidatorSet:
        return self.genesis.validators

    def get_evidence(self) -> list[bytes]:
        return []

    def render_metrics(self) -> str:
        return ""
