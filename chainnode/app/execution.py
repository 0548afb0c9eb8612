"""Deterministic block execution and mempool admission checks.

Theory of operation
-------------------
`Executor.execute_block` is a pure function of (committed state, block): it
reads through a `StateReader`, writes into an `Overlay`, and returns the
receipts, the write set and the new state root.  It never touches storage; the
node commits the result with `Ledger.commit_block` in one atomic batch.

Two kinds of failure, on purpose:

- **The block is refused** (`InvalidBlockError`) when a transaction is not
  authentic or is replayed: wrong chain id, signer not registered, signature
  that does not verify, a tx hash already committed or present twice in the
  block.  A proposer must never include such data; if a failed receipt were
  enough, a Byzantine proposer could burn someone else's tx hash (or make up
  transactions in someone's name) and get it committed.
- **The transaction fails** (a receipt with a stable `ErrorCode`, its writes
  dropped, the block stays valid) for everything that depends on state or time
  and that an honest proposer may not foresee: the signer's certificate revoked,
  not yet valid or expired at the block's timestamp, `valid_until` passed,
  missing role, unknown module or action, bad arguments, a module rule.

Signers (`chainnode.app.state.SignerKind`): an entity (signer id = entity id), a
zone authority (`zone:<zone id>`) or a council member (`council:<member id>`),
resolved by `authority.get_signer`.  A signer the state does not know refuses
the block, like any unauthenticated data.  **Signers are resolved in the state
at the start of the block**, not in the block's own pending writes, so identity
changes (register, renew, revoke, zone suspension) take effect from the next
block and every transaction of a block is judged against the same identities
that mempool admission used.  A signer that is known but may not act fails its
transaction: a revoked certificate (`revoked_from_height` reached), a suspended
or removed zone (its authority and all its entities: `zone_not_active`), a
certificate outside its validity at the block time, an action meant for another
kind of signer (`wrong_signer_kind`), or an entity without the action's role.

Checks run in that order for every transaction, so the outcome never depends on
which check a node happens to run first.  Signatures are verified once per
(tx hash, signer key, signature) and cached (`SignatureCache`), so a transaction
verified at mempool admission is not verified again when its block executes.
The cache key includes the key and the signature bytes, not only the tx hash
(which covers the body but not the signature): otherwise a proposer could pair
a cached tx body with a garbage signature, and nodes with and without that
cache entry would disagree about the block.  Likewise an action's argument check, a pure
function of what the tx hash covers, runs once per tx hash while the hash is remembered
(`Executor._check_args`): at admission, not again when the block executes.

Module dispatch is the table `{(module, action): Action}` (see
`chainnode.app.state.Action`); `records` is the first module.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from chainnode.app import assets, authority, governance, records, records_sharing, xchain
from chainnode.app.state import (
    Action,
    ExecutionContext,
    Overlay,
    Signer,
    SignerKind,
    StateReader,
    TransactionError,
    compute_state_root,
)
from chainnode.core import crypto, identity_records, types
from chainnode.core.errors import DecodeError, StorageError, ValidationError
from chainnode.core.statuses import ZoneStatus

ErrorCode = types.ErrorCode
SIGNATURE_CACHE_ENTRIES_MAX = 40_000  # covers a full mempool (8 blocks) and the block in flight
ARGS_CHECKED_MAX = SIGNATURE_CACHE_ENTRIES_MAX  # tx hashes whose arguments passed, the same span

DEFAULT_ACTIONS: Mapping[tuple[str, str], Action] = {
    **records.ACTIONS,
    **records_sharing.ACTIONS,
    **authority.ACTIONS,
    **governance.ACTIONS,
    **assets.ACTIONS,
    **xchain.ACTIONS,
}


@dataclass(frozen=True, slots=True)
class ExecutionResult:
    """The outcome of executing one block over a given state."""

    receipts: tuple[types.Receipt, ...]  # one per transaction, in block order
    write_set: dict[bytes, bytes | None]  # key-sorted; None deletes the key
    state_root: bytes  # commitment after applying `write_set`
    receipts_root: bytes  # RFC 6962 root over the encoded receipts


class InvalidBlockError(ValidationError):
    """The block must be refused: it carries unauthenticated or replayed data."""

    code = "invalid_block"

    def __init__(self, message: str, *, error_code: types.ErrorCode, tx_index: int) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.tx_index = tx_index


class SignatureCache:
    """A bounded set of (tx hash, public key, signature) already verified; first in, first out.

    An entry is made at admission and asked for once more when the block executes, so
    recency carries no information: hits do not reorder (an LRU's `move_to_end` per hit
    cost ~1 us per transaction).  The bound covers the mempool and the block in flight.
    """

    __slots__ = ("_entries", "_entries_max")

    def __init__(self, entries_max: int = SIGNATURE_CACHE_ENTRIES_MAX) -> None:
        assert entries_max > 0
        self._entries_max = entries_max
        # tx hash -> (public key, signature) that verified for it.
        self._entries: OrderedDict[bytes, tuple[bytes, bytes]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def is_verified(self, tx_hash: bytes, public_key: bytes, signature: bytes) -> bool:
        entry = self._entries.get(tx_hash)
        return entry is not None and entry == (public_key, signature)

    def mark_verified(self, tx_hash: bytes, public_key: bytes, signature: bytes) -> None:
        entries = self._entries
        if tx_hash in entries:
            entries.move_to_end(tx_hash)  # verified again after all: the newest entry
        entries[tx_hash] = (public_key, signature)
        if len(entries) > self._entries_max:
            entries.popitem(last=False)


class StateMemo:
    """Lookups that depend only on the state being checked against and its height.

    `signers`: `authority.get_signer` by signer id.  `authorized`: the action of each
    (signer id, module, action) whose signer and action checks (`Executor._authorize`
    without the per-transaction ones: expiry, arguments) have passed at that height.
    Execution uses a fresh memo per block; mempool admission keeps one across calls
    and the caller empties it whenever the state changes (the node: at every commit).
    """

    __slots__ = ("authorized", "signers")

    def __init__(self) -> None:
        self.signers: dict[str, Signer | None] = {}
        self.authorized: dict[tuple[str, str, str], Action] = {}

    def clear(self) -> None:
        self.signers.clear()
        self.authorized.clear()


def get_entity(state: StateReader, entity_id: str) -> identity_records.EntityRecord | None:
    """The signer's registered record, or None."""
    stored = state.get_state(identity_records.entity_key(entity_id))
    if stored is None:
        return None
    try:
        return identity_records.decode_entity_record(stored)
    except DecodeError as error:
        # Entity records are written by genesis and the identity module only.
        raise StorageError(f"corrupt entity record for {entity_id!r} in state: {error.message}") from error


def _check_expiry(tx: types.Transaction, height: int) -> None:
    if tx.valid_until < height:
        raise TransactionError(
            ErrorCode.EXPIRED, f"valid until height {tx.valid_until}, block height is {height}"
        )


class Executor:
    """Admission checks and deterministic block execution for one chain."""

    def __init__(
        self,
        chain_id: str,
        signatures: SignatureCache,
        actions: Mapping[tuple[str, str], Action] = DEFAULT_ACTIONS,
    ) -> None:
        self.chain_id = chain_id
        self.signatures = signatures
        # Tx hashes whose arguments passed their action's `check_args`, first in first out:
        # admission checks them and the block's execution would check them again (~4.5 us a
        # transaction of the realistic mix).  `check_args` is a pure function of the module,
        # the action and the arguments, which the hash covers, so a hit answers what a call
        # would; a miss (evicted, or never admitted here) calls it.
        self._args_checked: OrderedDict[bytes, None] = OrderedDict()
        self._actions = dict(actions)
        self._modules = frozenset(module for module, _ in self._actions)

    # ------------------------------------------------------------ shared checks

    def is_signature_valid(self, tx: types.Transaction, public_key: bytes) -> bool:
        """Verify once per (tx hash, key, signature), then answer from the cache."""
        if self.signatures.is_verified(tx.hash, public_key, tx.signature):
            return True
        if not crypto.verify(public_key, tx.hash, tx.signature):
            return False
        self.signatures.mark_verified(tx.hash, public_key, tx.signature)
        return True

    def _authenticate(
        self, state: StateReader, tx: types.Transaction, signers: dict[str, Signer | None]
    ) -> tuple[Signer | None, ErrorCode, str]:
        """The checks whose failure makes a block invalid (except replay, checked by callers).

        `signers` memoises `authority.get_signer` over `state` (`StateMemo.signers`).
        """
        if tx.chain_id != self.chain_id:
            return None, ErrorCode.WRONG_CHAIN, f"chain id {tx.chain_id!r} is not {self.chain_id!r}"
        try:
            signer = signers[tx.signer]
        except KeyError:
            signer = signers[tx.signer] = authority.get_signer(state, tx.signer)
        if signer is None:
            return None, ErrorCode.UNKNOWN_SIGNER, f"signer {tx.signer!r} is not registered"
        if not self.is_signature_valid(tx, signer.public_key):
            return None, ErrorCode.BAD_SIGNATURE, f"signature does not verify for {tx.signer!r}"
        return signer, ErrorCode.OK, ""

    def _authorize(self, tx: types.Transaction, signer: Signer, *, height: int, timestamp_ms: int) -> Action:
        """The checks whose failure yields a failed receipt; returns the action to apply."""
        if signer.entity is not None and signer.entity.is_revoked_at(height):
            raise TransactionError(ErrorCode.SIGNER_REVOKED, f"the certificate of {tx.signer!r} is revoked")
        if signer.zone_status != ZoneStatus.ACTIVE:
            raise TransactionError(
                ErrorCode.ZONE_NOT_ACTIVE, f"the zone of {tx.signer!r} is {signer.zone_status}"
            )
        if timestamp_ms < signer.not_before_ms:
            raise TransactionError(
                ErrorCode.SIGNER_NOT_YET_VALID,
                f"the certificate of {tx.signer!r} is valid from {signer.not_before_ms} ms",
            )
        if timestamp_ms > signer.not_after_ms:
            raise TransactionError(
                ErrorCode.SIGNER_EXPIRED,
                f"the certificate of {tx.signer!r} expired at {signer.not_after_ms} ms",
            )
        _check_expiry(tx, height)
        action = self._actions.get((tx.module, tx.action))
        if action is None:
            if tx.module not in self._modules:
                raise TransactionError(ErrorCode.UNKNOWN_MODULE, f"unknown module {tx.module!r}")
            raise TransactionError(
                ErrorCode.UNKNOWN_ACTION, f"module {tx.module!r} has no action {tx.action!r}"
            )
        if action.signer_kind != signer.kind:
            raise TransactionError(
                ErrorCode.WRONG_SIGNER_KIND,
                f"{tx.module}.{tx.action} is signed by a {action.signer_kind} signer, not a {signer.kind}",
            )
        if signer.kind == SignerKind.ENTITY and not (signer.entity and signer.entity.has_role(action.role)):
            raise TransactionError(
                ErrorCode.MISSING_ROLE,
                f"{tx.module}.{tx.action} needs the role {action.role!r}, which {tx.signer!r} lacks",
            )
        self._check_args(action, tx)
        return action

    def _check_args(self, action: Action, tx: types.Transaction) -> None:
        """`action.check_args(tx.args)`, once per tx hash while the hash is remembered."""
        checked = self._args_checked
        if tx.hash in checked:
            return
        action.check_args(tx.args)
        checked[tx.hash] = None
        if len(checked) > ARGS_CHECKED_MAX:
            checked.popitem(last=False)

    def _authorize_memoized(
        self, tx: types.Transaction, signer: Signer, *, height: int, timestamp_ms: int, memo: StateMemo
    ) -> Action:
        """`_authorize`, skipping the checks `memo` says passed for this signer and action.

        A hit still checks the certificate's validity window (admission's clock moves),
        the transaction's expiry and its arguments, so it raises exactly what
        `_authorize` would: every check before those is known to pass.
        """
        key = (tx.signer, tx.module, tx.action)
        action = memo.authorized.get(key)
        if action is None or not signer.not_before_ms <= timestamp_ms <= signer.not_after_ms:
            action = self._authorize(tx, signer, height=height, timestamp_ms=timestamp_ms)
            memo.authorized[key] = action
            return action
        _check_expiry(tx, height)
        self._check_args(action, tx)
        return action

    # ------------------------------------------------------------ admission

    def check_transaction(
        self,
        state: StateReader,
        tx: types.Transaction,
        *,
        height: int,
        timestamp_ms: int,
        is_committed: Callable[[bytes], bool],
        memo: StateMemo | None = None,
    ) -> tuple[types.ErrorCode, str]:
        """Would `tx` succeed if included at `height` around `timestamp_ms`? (OK, "") or (code, reason).

        Used for mempool admission: `state` is the committed state, `height` the
        next height, `timestamp_ms` the node's clock.  A transaction admitted
        here can still fail in its block if state or time move on.  `memo`
        (optional) is kept across calls over the same `state` (see `StateMemo`).
        """
        if tx.chain_id != self.chain_id:
            return ErrorCode.WRONG_CHAIN, f"chain id {tx.chain_id!r} is not {self.chain_id!r}"
        if is_committed(tx.hash):
            return ErrorCode.DUPLICATE, "the transaction is already committed"
        if tx.valid_until < height:
            return ErrorCode.EXPIRED, f"valid until height {tx.valid_until}, next height is {height}"
        if memo is None:
            memo = StateMemo()
        signer, code, reason = self._authenticate(state, tx, memo.signers)
        if signer is None:
            return code, reason
        try:
            self._authorize_memoized(tx, signer, height=height, timestamp_ms=timestamp_ms, memo=memo)
        except TransactionError as error:
            return error.error_code, error.message
        return ErrorCode.OK, ""

    # ------------------------------------------------------------ execution

    def execute_block(
        self,
        state: StateReader,
        *,
        previous_state_root: bytes,
        height: int,
        timestamp_ms: int,
        transactions: Sequence[types.Transaction],
        is_committed: Callable[[bytes], bool],
    ) -> ExecutionResult:
        """Execute `transactions` as block `height` over `state`; `InvalidBlockError` refuses the block."""
        overlay = Overlay(state)
        # Signers come from the state at the start of the block, so one lookup per signer,
        # and the signer and action checks of a (signer, action) pair once per block.
        memo = StateMemo()
        seen: set[bytes] = set()
        receipts: list[types.Receipt] = []
        for index, tx in enumerate(transactions):
            if tx.hash in seen:
                raise InvalidBlockError(
                    f"transaction {index} ({tx.hash.hex()}) appears twice in the block",
                    error_code=ErrorCode.DUPLICATE,
                    tx_index=index,
                )
            seen.add(tx.hash)
            if is_committed(tx.hash):
                raise InvalidBlockError(
                    f"transaction {index} ({tx.hash.hex()}) is already committed",
                    error_code=ErrorCode.DUPLICATE,
                    tx_index=index,
                )
            signer, code, reason = self._authenticate(state, tx, memo.signers)
            if signer is None:
                raise InvalidBlockError(
                    f"transaction {index} ({tx.hash.hex()}): {reason}", error_code=code, tx_index=index
                )
            context = ExecutionContext(height, timestamp_ms, index, signer)
            receipts.append(self._apply_transaction(overlay, tx, context, memo))
        write_set = overlay.write_set()
        return ExecutionResult(
            receipts=tuple(receipts),
            write_set=write_set,
            state_root=compute_state_root(previous_state_root, write_set),
            receipts_root=types.compute_receipts_root(receipts),
        )

    def _apply_transaction(
        self, overlay: Overlay, tx: types.Transaction, context: ExecutionContext, memo: StateMemo
    ) -> types.Receipt:
        try:
            action = self._authorize_memoized(
                tx, context.signer, height=context.height, timestamp_ms=context.timestamp_ms, memo=memo
            )
        except TransactionError as error:
            return types.Receipt(tx.hash, int(error.error_code), error.message[:1024], ())
        if action.cannot_fail:
            # Straight into the block's overlay: nothing fails past this point (a
            # TransactionError from such an action is a bug, and is not caught).
            return types.Receipt(tx.hash, int(ErrorCode.OK), "", tuple(action.apply(overlay, tx, context)))
        scratch = overlay.child()
        try:
            events = tuple(action.apply(scratch, tx, context))
        except TransactionError as error:
            return types.Receipt(tx.hash, int(error.error_code), error.message[:1024], ())
        scratch.merge_into_parent()
        return types.Receipt(tx.hash, int(ErrorCode.OK), "", events)
