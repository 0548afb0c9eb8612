"""Submissions that wait until a quorum of validators' mempools hold them (`?wait=replicated`).

Theory of operation
-------------------
A 202 from `POST /v1/transactions` means this node admitted the transaction into its own
mempool; a node killed before its next gossip tick loses it.  A client that cannot afford that
asks for `wait=replicated`: the node then gossips the transaction in a batch that asks each
receiver to answer which transactions it pooled (`wire.TxBatch(wants_ack=True)` -> `wire.TxAck`),
and answers the client only once the validators that hold it (this node too, when it is one)
reach the quorum of the validator set of the next height (`chainnode.core.quorum`).  From then
on f crashes cannot lose it: at least f + 1 of the validators that hold it are honest and up,
so it reaches a proposal (each re-gossips what it holds, see `PeerTraffic.regossip_oldest`).  It is
still pending, not committed: commitment is `GET /v1/transactions/{hash}`.

`ReplicationWaiters` is the bookkeeping: one waiter per transaction a client waits for, the set
of validators that acknowledged it, and a future resolved when the set reaches the quorum, or
when the transaction is committed (which is more).  Acknowledgements of transactions nobody
waits for, and from peers that are not validators, change nothing.  The number of waiters is
bounded (`WAITERS_MAX`); past it a waiting submission is refused with `too_many`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from chainnode.core import quorum
from chainnode.core.errors import RemoteError

WAITERS_MAX = 10_000


@dataclass
class _Waiter:
    quorum: int
    holders: set[str]
    done: asyncio.Future[int] = field(repr=False)
    clients: int = 1


class ReplicationWaiters:
    """Who holds each transaction a client waits for, until a quorum of validators does."""

    def __init__(self, get_validators: Callable[[], quorum.ValidatorSet], own_id: str) -> None:
        self._get_validators = get_validators
        self._own_id = own_id
        self._waiters: dict[bytes, _Waiter] = {}

    def __len__(self) -> int:
        return len(self._waiters)

    def start(self, tx_hash: bytes) -> _Waiter:
        """Begin waiting for `tx_hash` (this node, if a validator, already holds it)."""
        waiter = self._waiters.get(tx_hash)
        if waiter is not None:
            waiter.clients += 1
            return waiter
        if len(self._waiters) >= WAITERS_MAX:
            raise RemoteError(f"{WAITERS_MAX} submissions already wait for replication", code="too_many")
        validators = self._get_validators()
        holders = {self._own_id} if validators.index_of(self._own_id) is not None else set()
        waiter = _Waiter(validators.quorum, holders, asyncio.get_running_loop().create_future())
        self._waiters[tx_hash] = waiter
        self._check(tx_hash, waiter)
        return waiter

    async def wait(self, tx_hash: bytes, timeout_s: float) -> int | None:
        """The number of validators holding `tx_hash` once it reaches the quorum (or -1 once it is
        committed); None when `timeout_s` passes first."""
        waiter = self.start(tx_hash)
        try:
            return await asyncio.wait_for(asyncio.shield(waiter.done), timeout_s)
        except TimeoutError:
            return None
        finally:
            waiter.clients -= 1
            if waiter.clients == 0 and self._waiters.get(tx_hash) is waiter:
                del self._waiters[tx_hash]

    def note_ack(self, peer_id: str, tx_hashes: Iterable[bytes]) -> None:
        """`peer_id` holds these transactions in its mempool."""
        if not self._waiters:
            return
        validators = self._get_validators()
        if validators.index_of(peer_id) is None:
            return
        for tx_hash in tx_hashes:
            waiter = self._waiters.get(tx_hash)
            if waiter is not None:
                waiter.holders.add(peer_id)
                self._check(tx_hash, waiter)

    def note_committed(self, tx_hashes: Iterable[bytes]) -> None:
        if not self._waiters:
            return
        for tx_hash in tx_hashes:
            waiter = self._waiters.get(tx_hash)
            if waiter is not None and not waiter.done.done():
                waiter.done.set_result(-1)

    def is_waited_for(self, tx_hash: bytes) -> bool:
        return tx_hash in self._waiters

    @staticmethod
    def _check(tx_hash: bytes, waiter: _Waiter) -> None:
        if len(waiter.holders) >= waiter.quorum and not waiter.done.done():
            waiter.done.set_result(len(waiter.holders))
