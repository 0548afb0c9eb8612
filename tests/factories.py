"""The builders the tests share, one of each: transactions, keys and identities, commit
certificates, committed state in a dict, a free port, the CLI in a child process, and a
bounded wait for a condition.

A test module binds these to its own constants (its chain id, its keys) instead of writing
its own copy, so a change to how a transaction is signed or a certificate issued is made
here once.  Nothing here opens a database or a socket except `get_free_port` (a probe) and
`run_cli_process` (a child process); the unit tests use only the pure builders.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509

from chainnode.app.execution import ExecutionResult
from chainnode.core import crypto, identity, quorum, types
from chainnode.sdk.client import Identity, build_transaction

if TYPE_CHECKING:
    from chainnode.node.runtime import Node

REPO = Path(__file__).resolve().parents[1]
VALID_UNTIL_FAR = 10**6  # a height no test chain reaches
WAIT_S = 10.0
POLL_S = 0.01


# ---------------------------------------------------------------- keys and transactions


def make_key(name: str) -> crypto.SigningKey:
    """A signing key derived from `name`: the same name gives the same key in every run."""
    return crypto.SigningKey(crypto.sha256(name.encode()))


def make_tx(
    key: crypto.SigningKey,
    *,
    chain_id: str,
    signer: str = "alice",
    nonce: int = 0,
    valid_until: int = VALID_UNTIL_FAR,
    module: str = "records",
    action: str = "put",
    args: Sequence[Any] = ("k", b"v"),
) -> types.Transaction:
    """A transaction signed with `key` in the name of `signer` (a `records.put` unless told)."""
    return types.Transaction.create(
        key,
        chain_id=chain_id,
        signer=signer,
        nonce=nonce,
        valid_until=valid_until,
        module=module,
        action=action,
        args=args,
    )


def build_put(
    signer: Identity, key: str, value: bytes, *, chain_id: str, valid_until: int, nonce: int | None = None
) -> types.Transaction:
    """A `records.put` of `key` = `value` built and signed by the SDK, as an entity's client does
    (the nonce is random unless given)."""
    return build_transaction(
        signer,
        chain_id=chain_id,
        module="records",
        action="put",
        args=(key, value),
        valid_until=valid_until,
        nonce=nonce,
    )


def load_entity(directory: Path, entity_id: str | None = None) -> Identity:
    """The identity written under `directory / "entities"` (by `network init` or a test
    harness) for `entity_id`, or the first one in name order."""
    entities = directory / "entities"
    return Identity.load(entities / entity_id if entity_id is not None else sorted(entities.iterdir())[0])


def load_validator_keys(network_dir: Path, validators: quorum.ValidatorSet) -> list[crypto.SigningKey]:
    """The validators' own keys from their node directories, in validator-set order."""
    return [
        crypto.SigningKey.load(network_dir / "nodes" / validator.entity_id / "key.pem")
        for validator in validators.validators
    ]


# ---------------------------------------------------------------- blocks and state


def make_executed_block(
    result: ExecutionResult,
    txs: Sequence[types.Transaction],
    *,
    chain_id: str,
    height: int,
    timestamp_ms: int,
    parent_hash: bytes,
    validator_set_hash: bytes,
) -> types.Block:
    """The block a primary proposes for `txs` (view 0, proposer 0), its roots from `result`."""
    header = types.BlockHeader(
        chain_id=chain_id,
        height=height,
        view=0,
        proposer=0,
        timestamp_ms=timestamp_ms,
        parent_hash=parent_hash,
        tx_root=types.compute_tx_root(txs),
        receipts_root=result.receipts_root,
        state_root=result.state_root,
        validator_set_hash=validator_set_hash,
        tx_count=len(txs),
    )
    return types.Block.create(header, txs)


def sign_commit_certificate(
    block: types.Block, keys: Sequence[crypto.SigningKey], *, signers: int | None = None, view: int = 0
) -> quorum.CommitCertificate:
    """A commit certificate for `block` in `view`, signed by the first `signers` of `keys`
    (all of them by default); a key's validator index is its position in `keys`."""
    payload = types.compute_vote_payload(
        types.VoteKind.COMMIT, block.header.chain_id, view, block.height, block.hash
    )
    count = len(keys) if signers is None else signers
    return quorum.CommitCertificate(
        block.height, view, block.hash, tuple((index, keys[index].sign(payload)) for index in range(count))
    )


class MapState:
    """Committed state in a dict (a copy of `values`), with the ledger's `get_state` and
    `iter_state`; `apply` plays the ledger's part of applying a write set."""

    def __init__(self, values: dict[bytes, bytes]) -> None:
        self.values = dict(values)

    def get_state(self, key: bytes) -> bytes | None:
        return self.values.get(key)

    def iter_state(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        for key in sorted(self.values):
            if key.startswith(prefix) and (start is None or key >= start):
                yield key, self.values[key]

    def apply(self, write_set: dict[bytes, bytes | None]) -> None:
        for key, value in write_set.items():
            if value is None:
                self.values.pop(key, None)
            else:
                self.values[key] = value


# ---------------------------------------------------------------- certificates


def make_claims(
    entity_id: str = "pku-hospital-3",
    zone: str = "beijing",
    *,
    roles: tuple[str, ...] = ("submitter", "issuer"),
    sectors: tuple[str, ...] = ("health", "education"),
    name: str = "Peking University Third Hospital",
) -> identity.EntityClaims:
    return identity.EntityClaims(entity_id=entity_id, zone=zone, roles=roles, sectors=sectors, name=name)


@dataclass(frozen=True, slots=True)
class Pki:
    """A root CA and zone CAs under it, with their keys, held in memory."""

    root: x509.Certificate
    root_key: crypto.SigningKey
    zones: dict[str, x509.Certificate]
    zone_keys: dict[str, crypto.SigningKey]

    def issue(
        self,
        claims: identity.EntityClaims,
        *,
        key: crypto.SigningKey | None = None,
        valid_days: int = identity.ENTITY_VALID_DAYS,
        not_before: datetime | None = None,
    ) -> tuple[x509.Certificate, crypto.SigningKey]:
        """An entity certificate issued by the zone the claims name, and its key (fresh unless given)."""
        key = key or crypto.SigningKey.generate()
        certificate = identity.issue_entity_certificate(
            self.zones[claims.zone],
            self.zone_keys[claims.zone],
            claims,
            key.public_key,
            valid_days=valid_days,
            not_before=not_before,
        )
        return certificate, key


def create_pki(
    name: str = "Test Network",
    zones: Iterable[tuple[str, str]] = (("beijing", "Beijing"),),
    *,
    valid_days: int | None = None,
) -> Pki:
    """A root CA called `name` with fresh keys and one zone CA per (zone id, zone name);
    `valid_days` for all of them, else each kind's default."""
    days: dict[str, int] = {} if valid_days is None else {"valid_days": valid_days}
    root_key = crypto.SigningKey.generate()
    root = identity.create_root_ca(name, root_key, **days)
    certificates: dict[str, x509.Certificate] = {}
    keys: dict[str, crypto.SigningKey] = {}
    for zone_id, zone_name in zones:
        keys[zone_id] = crypto.SigningKey.generate()
        certificates[zone_id] = identity.create_zone_ca(
            root, root_key, zone_id=zone_id, zone_name=zone_name, key=keys[zone_id], **days
        )
    return Pki(root, root_key, certificates, keys)


# ---------------------------------------------------------------- processes, ports and waiting


def get_free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (racy against other processes)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_cli_process(*args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    """`python -m cli *args` in a child process from the repository, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


async def wait_until(predicate: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    """Poll `predicate` on the event loop until it holds; AssertionError naming `what` past the deadline."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(POLL_S)


def propose_next_block(node: Node) -> types.Block:
    """What a `chainnode.node.runtime.Node` proposes on its head as the primary of view 0, with a
    timestamp 100 ms after the head's (tests and tools drive unstarted nodes with it)."""
    head = node.ledger.get_head()
    block = node.application.propose_block(
        height=head.height + 1,
        view=0,
        proposer=0,
        timestamp_ms=head.timestamp_ms + 100,
        parent_hash=head.block_hash,
    )
    assert block is not None, "the pool holds nothing to propose"
    return block
