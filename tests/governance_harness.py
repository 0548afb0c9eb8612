"""A real pilot network and a block-by-block chain over its genesis state, for the identity and
governance tests (pure, in tests/unit) and the governance API tests (in tests/integration).

`Network` is written once per test module by `chainnode.tools.network.init_network` from a small pilot
definition (five zones, four validators in the first four zones, none in `hainan`, a council of
three with threshold two), so every key and certificate is real and on disk where the CLI expects
it.  `Chain` executes blocks with the real `Executor` over the genesis state held in a dict (the
committed state) and applies each block's write set, as the ledger would.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509

from chainnode.app import genesis
from chainnode.app.authority import compute_council_signer, compute_zone_signer
from chainnode.app.execution import ExecutionResult, Executor, SignatureCache, StateMemo
from chainnode.app.state import compute_genesis_state_root
from chainnode.core import crypto, identity, types
from chainnode.tools import network
from tests.factories import MapState, make_tx

PILOT = """
name = "Governance Test Network"
zones = [
  { id = "beijing", name = "Beijing" },
  { id = "shanghai", name = "Shanghai" },
  { id = "guangdong", name = "Guangdong (Guangzhou)" },
  { id = "sichuan", name = "Sichuan (Chengdu)" },
  { id = "hainan", name = "Hainan (Haikou)" },
]
entities = [
  { id = "pku", name = "PKU", zone = "beijing", sectors = ["education"], roles = ["submitter"] },
  { id = "fudan", name = "FDU", zone = "shanghai", sectors = ["education","health"], roles = ["submitter"] },
  { id = "court-reader", name = "Court Reader", zone = "beijing", sectors = ["law"], roles = ["observer"] },
  { id = "hainan-university", name = "HNU", zone = "hainan", sectors = ["education"], roles = ["submitter"] },
]

[council]
threshold = 2
members = [
  { id = "miit", name = "Ministry of Industry and Information Technology" },
  { id = "moe", name = "Ministry of Education" },
  { id = "pboc", name = "People's Bank of China" },
]
"""
COUNCIL = ("miit", "moe", "pboc")
BLOCK_INTERVAL_MS = 1000


@dataclass
class Network:
    """The files `network init` wrote, loaded."""

    directory: Path
    genesis: genesis.Genesis
    root_certificate: x509.Certificate
    root_key: crypto.SigningKey

    @classmethod
    def create(cls, directory: Path, *, chain_id: str = "gov-net") -> Network:
        pilot_path = directory / "pilot.toml"
        pilot_path.write_text(PILOT)
        layout = network.init_network(
            directory / "net", validators=4, chain_id=chain_id, pilot_path=pilot_path
        )
        out = layout.out_dir
        return cls(
            directory=out,
            genesis=genesis.load_genesis(layout.genesis_path),
            root_certificate=identity.load_certificate(out / "root" / "ca.pem"),
            root_key=crypto.SigningKey.load(out / "root" / "ca.key.pem"),
        )

    def zone_dir(self, zone_id: str) -> Path:
        return self.directory / "zones" / zone_id

    def zone_certificate(self, zone_id: str) -> x509.Certificate:
        return identity.load_certificate(self.zone_dir(zone_id) / "ca.pem")

    def zone_key(self, zone_id: str) -> crypto.SigningKey:
        return crypto.SigningKey.load(self.zone_dir(zone_id) / "ca.key.pem")

    def council_key(self, member_id: str) -> crypto.SigningKey:
        return crypto.SigningKey.load(self.directory / "council" / member_id / "key.pem")

    def entity_key(self, entity_id: str) -> crypto.SigningKey:
        folder = "nodes" if entity_id.startswith("validator-") else "entities"
        return crypto.SigningKey.load(self.directory / folder / entity_id / "key.pem")

    def issue(
        self,
        zone_id: str,
        entity_id: str,
        *,
        roles: tuple[str, ...] = ("submitter",),
        sectors: tuple[str, ...] = ("education",),
        key: crypto.SigningKey | None = None,
        valid_days: int = 365,
        not_before: datetime | None = None,
    ) -> tuple[bytes, crypto.SigningKey]:
        """A certificate (DER) issued by the zone's real authority, and its key."""
        key = key or crypto.SigningKey.generate()
        claims = identity.EntityClaims(entity_id, zone_id, roles, sectors, entity_id.title())
        certificate = identity.issue_entity_certificate(
            self.zone_certificate(zone_id),
            self.zone_key(zone_id),
            claims,
            key.public_key,
            valid_days=valid_days,
            not_before=not_before,
        )
        return identity.certificate_der(certificate), key


@dataclass
class Chain:
    """Blocks executed one after another over the network's genesis state."""

    net: Network
    state: MapState = field(init=False)
    height: int = field(init=False, default=0)
    time_ms: int = field(init=False)
    state_root: bytes = field(init=False)
    committed: set[bytes] = field(init=False, default_factory=set)
    executor: Executor = field(init=False)
    # Admission's signer memo, kept across checks and emptied at every commit, like the node's.
    admission_memo: StateMemo = field(init=False, default_factory=StateMemo)
    _nonces: Iterator[int] = field(init=False, default_factory=itertools.count)

    def __post_init__(self) -> None:
        initial = self.net.genesis.initial_state()
        self.state = MapState(initial)
        self.time_ms = self.net.genesis.genesis_time_ms
        self.state_root = compute_genesis_state_root(initial)
        self.executor = Executor(self.net.genesis.chain_id, SignatureCache())

    def tx(
        self,
        signer: str,
        key: crypto.SigningKey,
        module: str,
        action: str,
        *args: Any,
        valid_until: int | None = None,
    ) -> types.Transaction:
        return make_tx(
            key,
            chain_id=self.net.genesis.chain_id,
            signer=signer,
            nonce=next(self._nonces),
            valid_until=self.height + 100 if valid_until is None else valid_until,
            module=module,
            action=action,
            args=args,
        )

    def entity_tx(
        self, entity_id: str, module: str, action: str, *args: Any, key: crypto.SigningKey | None = None
    ) -> types.Transaction:
        return self.tx(entity_id, key or self.net.entity_key(entity_id), module, action, *args)

    def zone_tx(self, zone_id: str, action: str, *args: Any) -> types.Transaction:
        return self.tx(compute_zone_signer(zone_id), self.net.zone_key(zone_id), "authority", action, *args)

    def council_tx(self, member_id: str, action: str, *args: Any) -> types.Transaction:
        return self.tx(
            compute_council_signer(member_id), self.net.council_key(member_id), "governance", action, *args
        )

    def put(
        self, entity_id: str, key: str = "k", *, signing_key: crypto.SigningKey | None = None
    ) -> types.Transaction:
        return self.entity_tx(entity_id, "records", "put", key, b"value", key=signing_key)

    def execute(self, *txs: types.Transaction, timestamp_ms: int | None = None) -> ExecutionResult:
        """Execute the next block without committing it (raises `InvalidBlockError` if refused)."""
        return self.executor.execute_block(
            self.state,
            previous_state_root=self.state_root,
            height=self.height + 1,
            timestamp_ms=self.time_ms + BLOCK_INTERVAL_MS if timestamp_ms is None else timestamp_ms,
            transactions=txs,
            is_committed=self.committed.__contains__,
        )

    def run(self, *txs: types.Transaction, timestamp_ms: int | None = None) -> list[types.Receipt]:
        """Execute and commit the next block; its receipts."""
        result = self.execute(*txs, timestamp_ms=timestamp_ms)
        self.height += 1
        self.time_ms = self.time_ms + BLOCK_INTERVAL_MS if timestamp_ms is None else timestamp_ms
        self.state.apply(result.write_set)
        self.admission_memo.clear()  # as the node does at every commit
        self.state_root = result.state_root
        self.committed.update(tx.hash for tx in txs)
        return list(result.receipts)

    def run_one(self, tx: types.Transaction, *, timestamp_ms: int | None = None) -> types.Receipt:
        (receipt,) = self.run(tx, timestamp_ms=timestamp_ms)
        return receipt

    def check(self, tx: types.Transaction) -> tuple[types.ErrorCode, str]:
        """Mempool admission of `tx` for the next block."""
        return self.executor.check_transaction(
            self.state,
            tx,
            height=self.height + 1,
            timestamp_ms=self.time_ms + BLOCK_INTERVAL_MS,
            is_committed=self.committed.__contains__,
            memo=self.admission_memo,
        )


def codes(receipts: list[types.Receipt]) -> list[types.ErrorCode]:
    return [types.ErrorCode(receipt.code) for receipt in receipts]


def event_names(receipt: types.Receipt) -> list[str]:
    return [name for name, _ in receipt.events]
