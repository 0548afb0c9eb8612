"""Application state: the read interface, write overlays, the state commitment, the module interface.

Theory of operation
-------------------
State is a flat, byte-keyed map; each application module owns a key prefix
(`id/` identity, `val/` validators, `rec/` records, ...).  Block execution never
writes to storage directly.  It reads through a `StateReader` (the ledger, or
any other overlay) and collects its writes in an `Overlay`:

- one block overlay over the committed state collects the block's write set;
- each transaction runs in a `child()` of the block overlay, which is merged
  into its parent when the transaction succeeds and simply dropped when it
  fails, so a failed transaction leaves no trace except its receipt.

The block's write set (`key -> new value`, or `None` for a deletion) is what the
ledger applies in the same atomic batch as the block, and what the state
commitment covers.

State commitment (DESIGN.md section 4): the chained commitment

    state_root(h) = H_state(state_root(h - 1) || MerkleRoot(sorted write set of block h))

where each Merkle leaf is `codec.encode((key, value_or_None))` and the leaves are
ordered by key.  It is cheap and any auditor recomputes it by replaying the chain;
two nodes with equal roots at h applied identical changes since genesis.  It is
kept behind `compute_state_root` so that an authenticated state tree with proofs
of current values can replace it without touching consensus or storage.

Module interface: a module action is an `Action` (signer kind, required role,
argument check, apply function).  Signers come in three kinds (`SignerKind`):
entities (signer id = entity id), zone authorities (`zone:<zone id>`, the key
of the zone CA certificate registered on chain) and council members
(`council:<member id>`, the key in the council record written at genesis); an
action names the one kind that may sign it.  Actions signal an expected failure by raising
`TransactionError` with a stable `types.ErrorCode`; the executor turns it into a
failed receipt.  Any other exception is a bug and is not caught.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from chainnode.core import codec, crypto, identity_records, merkle, types
from chainnode.core.errors import ValidationError
from chainnode.core.fastinit import install_fast_init
from chainnode.core.statuses import ZoneStatus

Event = tuple[str, tuple[Any, ...]]


class StateReader(Protocol):
    """Anything that can read a state value: the ledger, an overlay, a test map."""

    def get_state(self, key: bytes) -> bytes | None: ...


class Overlay:
    """Pending writes over a base reader; reads see the pending writes first.

    A pending value of `None` is a deletion: the key reads as absent even when
    the base holds it.
    """

    __slots__ = ("_base", "_is_merged", "_pending")

    def __init__(self, base: StateReader) -> None:
        self._base = base
        self._pending: dict[bytes, bytes | None] = {}
        self._is_merged = False

    def get_state(self, key: bytes) -> bytes | None:
        if key in self._pending:
            return self._pending[key]
        return self._base.get_state(key)

    def put(self, key: bytes, value: bytes) -> None:
        assert isinstance(key, bytes) and isinstance(value, bytes), "state keys and values are bytes"
        self._pending[key] = value

    def delete(self, key: bytes) -> None:
        assert isinstance(key, bytes), "state keys are bytes"
        self._pending[key] = None

    def write_set(self) -> dict[bytes, bytes | None]:
        """The pending writes, ordered by key."""
        pending = self._pending
        return {key: pending[key] for key in sorted(pending)}  # keys only: cheaper to sort than items

    def child(self) -> Overlay:
        """A nested overlay (one transaction): `merge_into_parent` on success, drop on failure."""
        return Overlay(self)

    def merge_into_parent(self) -> None:
        parent = self._base
        assert isinstance(parent, Overlay), "only a child overlay can be merged into its parent"
        assert not self._is_merged, "an overlay is merged at most once"
        parent._pending.update(self._pending)
        self._is_merged = True


def compute_state_root(previous_root: bytes, write_set: Mapping[bytes, bytes | None]) -> bytes:
    """The chained state commitment of DESIGN.md section 4 after applying `write_set`.

    `H_state(previous_root || merkle_root)` where the Merkle leaves are the
    encodings of `(key, value or None)` sorted by key.  The order in which the
    write set was built does not matter; any change of a key, a value or a
    deletion, or of the previous root, changes the result.  This function is
    the only place that defines the commitment, so an authenticated state tree
    can replace it later.
    """
    assert len(previous_root) == crypto.HASH_BYTES, "a state root is 32 bytes"
    encode = codec.encode
    leaves = [encode((key, write_set[key])) for key in sorted(write_set)]
    return crypto.hash_tagged("state", previous_root + merkle.compute_root(leaves))


def compute_genesis_state_root(initial_state: Mapping[bytes, bytes]) -> bytes:
    """The state root at height 0: the genesis state as the first write set."""
    return compute_state_root(types.ZERO_HASH, initial_state)


# ---------------------------------------------------------------- module interface


class TransactionError(ValidationError):
    """An expected, deterministic failure of one transaction; becomes a failed receipt."""

    def __init__(self, error_code: types.ErrorCode, message: str) -> None:
        super().__init__(message, code=error_code.label)
        self.error_code = error_code


class SignerKind(enum.StrEnum):
    """Who may sign a transaction; the signer id's prefix (none for entities) names the kind."""

    ENTITY = "entity"
    ZONE = "zone"  # signer id `zone:<zone id>`
    COUNCIL = "council"  # signer id `council:<member id>`


@dataclass(frozen=True, slots=True)
class Signer:
    """An authenticated signer, as found in state at the start of the block."""

    kind: SignerKind
    name: str  # entity id, zone id or council member id (without the prefix)
    public_key: bytes  # raw Ed25519 key the signature was checked against
    entity: identity_records.EntityRecord | None  # the record, for entity signers only
    zone_status: ZoneStatus  # of the signer's zone (ACTIVE for council members)
    not_before_ms: int  # validity window of the signer's certificate (entity or zone CA)
    not_after_ms: int


@install_fast_init
@dataclass(frozen=True, slots=True)
class ExecutionContext:
    """What an action may know besides state and the transaction itself."""

    height: int  # height of the block being executed
    timestamp_ms: int  # the block's timestamp; the only clock an action may read
    tx_index: int  # position of the transaction in its block
    signer: Signer  # the authenticated signer (state at the start of the block)


@dataclass(frozen=True, slots=True)
class Action:
    """One `(module, action)` of the state machine."""

    role: str  # the role an entity signer's certificate must carry ("" for zone and council)
    check_args: Callable[[tuple[Any, ...]], None]  # raises TransactionError(BAD_ARGUMENTS)
    apply: Callable[[Overlay, types.Transaction, ExecutionContext], Sequence[Event]]
    signer_kind: SignerKind = SignerKind.ENTITY  # the only kind of signer that may sign it
    # True when `apply` never raises `TransactionError` (every check is in `check_args` and
    # the executor's own checks): it then writes straight into the block's overlay instead
    # of a per-transaction child that is merged on success.
    cannot_fail: bool = False
