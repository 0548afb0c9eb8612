"""The mempool: a bounded, insertion-ordered pool of admitted transactions.

Theory of operation
-------------------
The pool holds transactions that passed `Executor.check_transaction` (the caller
runs admission; the pool only stores).  It is one insertion-ordered dict keyed
by tx hash, so add, lookup and remove are O(1) and `select` walks from the
oldest transaction and stops as soon as the block budget is used: proposers
take transactions first come, first served.  Selected transactions stay in the
pool until the node removes them after their block commits (`remove`), so a
failed proposal loses nothing.

Bounds: at most `capacity_txs` transactions and `capacity_bytes` encoded bytes.
A full pool refuses new transactions with `MempoolFullError` (the API answers
503 and the client retries later); it never evicts what it already accepted.

The pool is not thread-safe; the node uses it from its event loop only.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from chainnode.core import types
from chainnode.core.errors import RemoteError


class MempoolFullError(RemoteError):
    """The pool is at its transaction or byte capacity; retry later."""

    code = "mempool_full"


class Mempool:
    __slots__ = ("_size_bytes", "_transactions", "_valid_until_min", "capacity_bytes", "capacity_txs")

    def __init__(self, *, capacity_txs: int, capacity_bytes: int) -> None:
        assert capacity_txs > 0 and capacity_bytes > 0, "mempool capacities are positive"
        self.capacity_txs = capacity_txs
        self.capacity_bytes = capacity_bytes
        # Oldest first.  An OrderedDict: a plain dict that loses its oldest entries keeps
        # their empty slots at the front, and every `select` walked over them.
        self._transactions: OrderedDict[bytes, types.Transaction] = OrderedDict()
        self._size_bytes = 0
        # A lower bound of the pooled transactions' valid_until (exact after each expiry scan),
        # so that `remove_expired` scans the pool only when something may have expired.
        self._valid_until_min = 2**64

    def __len__(self) -> int:
        return len(self._transactions)

    @property
    def size_bytes(self) -> int:
        """Total encoded bytes of the pooled transactions."""
        return self._size_bytes

    def check_room(self, tx_bytes: int) -> None:
        """`MempoolFullError` unless one more transaction of `tx_bytes` fits.

        Admission calls this before its expensive checks, so a full pool costs
        no signature verification per refused transaction.
        """
        if len(self._transactions) >= self.capacity_txs:
            raise MempoolFullError(f"the mempool holds its maximum of {self.capacity_txs} transactions")
        if self._size_bytes + tx_bytes > self.capacity_bytes:
            raise MempoolFullError(f"the mempool holds its maximum of {self.capacity_bytes} bytes")

    def add(self, tx: types.Transaction, *, room_checked: bool = False) -> bool:
        """Pool `tx`; False if it is already pooled, `MempoolFullError` when there is no room.

        `room_checked`: the caller has just called `check_room` for `tx` and added nothing
        since (admission does, before its signature check), so the room is not checked twice."""
        if tx.hash in self._transactions:
            return False
        tx_bytes = len(tx.encoded)
        if not room_checked:
            self.check_room(tx_bytes)
        self._transactions[tx.hash] = tx
        self._size_bytes += tx_bytes
        self._valid_until_min = min(self._valid_until_min, tx.valid_until)
        return True

    def contains(self, tx_hash: bytes) -> bool:
        return tx_hash in self._transactions

    def get(self, tx_hash: bytes) -> types.Transaction | None:
        return self._transactions.get(tx_hash)

    def select(self, *, txs_max: int, bytes_max: int) -> list[types.Transaction]:
        """The oldest transactions that fit in `txs_max` and `bytes_max`; they stay pooled.

        Stops at the first transaction that does not fit, so the order is
        strictly oldest first (no younger, smaller transaction jumps the queue).
        """
        selected: list[types.Transaction] = []
        selected_bytes = 0
        if txs_max <= 0:
            return selected
        for tx in self._transactions.values():
            tx_bytes = len(tx.encoded)
            if selected_bytes + tx_bytes > bytes_max:
                break
            selected.append(tx)
            selected_bytes += tx_bytes
            if len(selected) >= txs_max:
                break
        return selected

    def remove(self, tx_hashes: Iterable[bytes]) -> None:
        """Drop the given transactions (committed, or no longer valid); unknown hashes are ignored."""
        for tx_hash in tx_hashes:
            tx = self._transactions.pop(tx_hash, None)
            if tx is not None:
                self._size_bytes -= len(tx.encoded)

    def remove_expired(self, height: int) -> int:
        """Drop transactions whose `valid_until` is below `height` (run once per commit).

        O(1) while no pooled transaction can have expired, else one scan of the pool.
        """
        if height <= self._valid_until_min:
            return 0
        expired: list[bytes] = []
        valid_until_min = 2**64
        for tx in self._transactions.values():
            if tx.valid_until < height:
                expired.append(tx.hash)
            else:
                valid_until_min = min(valid_until_min, tx.valid_until)
        self.remove(expired)
        self._valid_until_min = valid_until_min
        return len(expired)
