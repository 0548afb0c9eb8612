"""Admission: how a transaction gets into the mempool, from a client or from a peer's gossip.

Theory of operation.  Transactions enter through the API (and are then gossiped to every peer
in batches, once per tick) or through gossip from a peer.  Either way each one is decoded,
checked against the committed state and signature-verified exactly once before it enters the
bounded mempool; the signature cache lets block execution skip verifying it again.  What the
checks looked up in the committed state is memoised until the next commit.

One error channel: every verdict on a transaction is a `SubmitResult` (accepted, or a stable
rejection code and message); only a full mempool, a verdict on the whole request rather than on
one transaction, is raised (`MempoolFullError`, answered 503 with `Retry-After`).

Replication: a submission that waits for a quorum of validators' mempools
(`chainnode.node.replication`) is gossiped in a batch that asks for an answer
(`replicate_outbox`); a batch that asks is admitted from its own inbox, and the ids pooled
(or already held) are answered to its sender (`take_acks`).

Back-pressure: gossiped transactions wait in a bounded inbox and are admitted in slices between
other events, so consensus messages never wait behind a backlog of signature checks; while the
inbox or the mempool is deep, the API refuses new submissions before reading them.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Sequence

from chainnode.api.service import SubmitResult, TransactionStatus
from chainnode.app.execution import Executor, StateMemo
from chainnode.core import types
from chainnode.core.errors import DecodeError
from chainnode.core.statuses import TxStatus
from chainnode.node.clock import get_time_ms
from chainnode.node.mempool import Mempool, MempoolFullError
from storage.ledger import Ledger

REJECTED_REMEMBERED_MAX = 100_000
# Gossiped transactions wait in an inbox and are admitted in slices between other
# events, so a consensus message never waits behind a backlog of signature checks.
GOSSIP_INBOX_TXS_MAX = 50_000
ADMIT_SLICE_TXS = 256
# While this many gossiped transactions wait, the API refuses new ones (503): the
# node is saturated and more submissions would only deepen the backlog.
SUBMIT_BACKLOG_TXS_MAX = 10_000
# The API also refuses new transactions (503) while the mempool already holds this
# many full blocks: a deeper queue adds only latency, and admitting into it takes
# the CPU that consensus needs to commit what is already pending.
SUBMIT_PENDING_BLOCKS_MAX = 8


class Admission:
    """The mempool's gate: checks, pools and remembers refusals; holds the gossip in and out."""

    def __init__(self, *, ledger: Ledger, mempool: Mempool, executor: Executor) -> None:
        self._ledger = ledger
        self.mempool = mempool
        self._executor = executor
        # What admission looked up in the committed state; emptied at every commit.
        self._memo = StateMemo()
        self._rejected: collections.OrderedDict[bytes, tuple[str, str]] = collections.OrderedDict()
        self.gossip_outbox: list[bytes] = []  # admitted from clients, to be gossiped at the next tick
        self.gossip_inbox: collections.deque[bytes] = collections.deque()
        # Submissions that wait for replication, gossiped asking for an answer; gossip that
        # asked, with its sender; the answers owed, by peer.
        self.replicate_outbox: list[bytes] = []
        self.acked_inbox: collections.deque[tuple[str, bytes]] = collections.deque()
        self._acks_owed: dict[str, list[bytes]] = {}
        self._gossip_arrived = asyncio.Event()
        self.gossip_dropped = 0  # batches (or the rest of an inbox) dropped for back-pressure
        # For /metrics: new transactions pooled by source ("api", "peer"), refusals by code.
        self.admitted: collections.Counter[str] = collections.Counter()
        self.rejected: collections.Counter[str] = collections.Counter()

    # ------------------------------------------------------------ clients

    def get_busy_reason(self, block_txs_max: int) -> str | None:
        backlog = len(self.gossip_inbox)
        pending = len(self.mempool)
        if backlog > SUBMIT_BACKLOG_TXS_MAX or pending >= SUBMIT_PENDING_BLOCKS_MAX * block_txs_max:
            return (
                f"the node is busy ({pending} transactions pending, {backlog} gossiped ones waiting "
                "for admission); retry later"
            )
        return None

    def submit(
        self, encoded: Sequence[bytes], *, block_txs_max: int, replicate: bool = False
    ) -> list[SubmitResult]:
        busy = self.get_busy_reason(block_txs_max)
        if busy is not None:
            self.rejected["mempool_full"] += len(encoded)
            if len(encoded) == 1:
                raise MempoolFullError(busy)
            return [SubmitResult(None, False, "mempool_full", busy) for _ in encoded]
        results = []
        height, now_ms = self._get_check_point()
        for item in encoded:
            try:
                results.append(self._admit_at(item, height, now_ms, gossip=True, replicate=replicate))
            except MempoolFullError:
                self.rejected["mempool_full"] += 1
                if len(encoded) == 1:
                    raise
                results.append(SubmitResult(None, False, "mempool_full", "the mempool is full; retry later"))
        return results

    def get_transaction_status(self, tx_hash: bytes) -> TransactionStatus:
        location = self._ledger.get_tx_location(tx_hash)
        if location is not None:
            height, index = location
            receipt_bytes = self._ledger.get_receipt(height, index)
            receipt = types.decode_receipt(receipt_bytes) if receipt_bytes is not None else None
            return TransactionStatus(TxStatus.COMMITTED, height=height, index=index, receipt=receipt)
        if self.mempool.contains(tx_hash):
            return TransactionStatus(TxStatus.PENDING)
        rejected = self._rejected.get(tx_hash)
        if rejected is not None:
            return TransactionStatus(TxStatus.REJECTED, code=rejected[0], message=rejected[1])
        return TransactionStatus(TxStatus.UNKNOWN)

    # ------------------------------------------------------------ the check

    def admit(self, encoded: bytes, *, gossip: bool, replicate: bool = False) -> SubmitResult:
        """Decode, check and pool one transaction; `MempoolFullError` propagates.  With
        `replicate`, an accepted one (new or already pending) is gossiped asking for answers."""
        height, now_ms = self._get_check_point()
        return self._admit_at(encoded, height, now_ms, gossip=gossip, replicate=replicate)

    def _get_check_point(self) -> tuple[int, int]:
        """The height and the clock a transaction is checked at: the next height, now.

        Read once per request or gossip slice, not per transaction: nothing commits while
        one runs (it never yields to the loop), and the clock moves by milliseconds at most
        over one, far below a certificate's validity period."""
        return self._ledger.get_head().height + 1, get_time_ms()

    def _admit_at(
        self, encoded: bytes, height: int, now_ms: int, *, gossip: bool, replicate: bool = False
    ) -> SubmitResult:
        try:
            tx = types.decode_transaction(encoded)
        except DecodeError as error:
            self.rejected["malformed"] += 1
            return SubmitResult(None, False, "malformed", error.message)
        pooled = self.mempool.get(tx.hash)
        if pooled is not None and pooled.signature == tx.signature:
            # The same bytes as the pooled transaction (the id covers the body, and the
            # signature is the rest), which passed every check: nothing to check again.
            if replicate:
                self.replicate_outbox.append(pooled.encoded)
            return SubmitResult(tx.hash, True, "ok", "already pending")
        if pooled is None:
            # Refuse before the signature check: a full pool must not cost CPU per item.
            self.mempool.check_room(len(tx.encoded))
        # A pooled id with other signature bytes is checked like a new transaction: the id
        # does not cover the signature, so answering "pending" would vouch for a forgery.
        # Refusing it outright would be wrong the other way: Ed25519 signing is deterministic,
        # but a signer with randomised nonces makes another valid signature of the same body.
        code, message = self._executor.check_transaction(
            self._ledger,
            tx,
            height=height,
            timestamp_ms=now_ms,
            is_committed=self._ledger.is_committed,
            memo=self._memo,
        )
        if code != types.ErrorCode.OK:
            self.rejected[code.label] += 1
            # Not remembered for a pooled id: the id names the valid pooled transaction, whose
            # status must not read "rejected" once it leaves the pool.
            if code != types.ErrorCode.DUPLICATE and pooled is None:
                self._remember_rejection(tx.hash, code.label, message)
            return SubmitResult(tx.hash, False, code.label, message)
        if pooled is not None:
            if replicate:
                self.replicate_outbox.append(pooled.encoded)
            return SubmitResult(tx.hash, True, "ok", "already pending")
        self.mempool.add(tx, room_checked=True)
        self.admitted["api" if gossip else "peer"] += 1
        if gossip:
            (self.replicate_outbox if replicate else self.gossip_outbox).append(tx.encoded)
        return SubmitResult(tx.hash, True, "ok", "")

    def note_commit(self, block: types.Block) -> None:
        """A block was committed: its transactions leave the pool, the memo is stale."""
        self._memo.clear()
        self.mempool.remove(tx.hash for tx in block.transactions)

    def _remember_rejection(self, tx_hash: bytes, code: str, message: str) -> None:
        self._rejected[tx_hash] = (code, message)
        if len(self._rejected) > REJECTED_REMEMBERED_MAX:
            self._rejected.popitem(last=False)

    # ------------------------------------------------------------ gossip

    def take_gossip(self) -> list[bytes]:
        """What clients submitted since the last call, to broadcast once."""
        outbox, self.gossip_outbox = self.gossip_outbox, []
        return outbox

    def take_replicate_gossip(self) -> list[bytes]:
        """What clients submitted waiting for replication since the last call, to broadcast
        asking for answers."""
        outbox, self.replicate_outbox = self.replicate_outbox, []
        return outbox

    def take_acks(self) -> dict[str, list[bytes]]:
        """The ids pooled from batches that asked for an answer, by the peer to answer."""
        acks, self._acks_owed = self._acks_owed, {}
        return acks

    def receive_gossip(
        self, transactions: Sequence[bytes], *, peer_id: str = "", wants_ack: bool = False
    ) -> None:
        waiting = len(self.gossip_inbox) + len(self.acked_inbox)
        if wants_ack and waiting + len(transactions) <= GOSSIP_INBOX_TXS_MAX:
            self.acked_inbox.extend((peer_id, item) for item in transactions)
            self._gossip_arrived.set()
            return
        if waiting + len(transactions) > GOSSIP_INBOX_TXS_MAX:
            # Back-pressure, not the peer's fault: the batch reaches us again in
            # the primary's proposal (or the sender's re-gossip).
            self.gossip_dropped += 1
            return
        self.gossip_inbox.extend(transactions)
        self._gossip_arrived.set()

    async def run_gossip_admission(self) -> None:
        """Admit gossiped transactions a slice at a time, yielding to the loop in between."""
        while True:
            await self._gossip_arrived.wait()
            self._gossip_arrived.clear()
            while self.gossip_inbox or self.acked_inbox:
                self.admit_gossip_slice()
                await asyncio.sleep(0)

    def admit_waiting_gossip(self) -> None:
        """Admit every gossiped transaction still waiting, now (a proposal that names them by id
        has arrived: `chainnode.node.proposals`)."""
        while self.gossip_inbox or self.acked_inbox:
            self.admit_gossip_slice()

    def admit_gossip_slice(self) -> None:
        if self.acked_inbox:
            self._admit_acked_slice()
            return
        inbox = self.gossip_inbox
        height, now_ms = self._get_check_point()
        try:
            for _ in range(min(ADMIT_SLICE_TXS, len(inbox))):
                self._admit_at(inbox.popleft(), height, now_ms, gossip=False)
        except MempoolFullError:
            # The rest would be refused as well; it reaches us again in proposals.
            self.gossip_dropped += 1
            inbox.clear()

    def _admit_acked_slice(self) -> None:
        """Admit gossip that asked for an answer; owe its sender the ids now pooled."""
        inbox = self.acked_inbox
        height, now_ms = self._get_check_point()
        try:
            for _ in range(min(ADMIT_SLICE_TXS, len(inbox))):
                peer_id, encoded = inbox.popleft()
                result = self._admit_at(encoded, height, now_ms, gossip=False)
                if result.accepted and result.tx_hash is not None:
                    self._acks_owed.setdefault(peer_id, []).append(result.tx_hash)
        except MempoolFullError:
            self.gossip_dropped += 1
            inbox.clear()
