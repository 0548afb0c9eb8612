"""Compact proposals: a primary sends its block as the header and the transactions' ids.

Theory of operation.  Replicas already hold nearly every transaction of a proposal: it reached
them as gossip, was decoded, checked and signature-verified once, and waits in the mempool.
Sending the bodies again inside the pre-prepare costs the primary an encoding and the network
the bytes (a 2,000-transaction block is ~500 kB per replica, ~70 kB as ids), and every replica a
second pass over them.  So the node sends its own `PrePrepare` as a `wire.CompactPrePrepare`,
and the receiver rebuilds the `PrePrepare` the engine expects from its mempool:

1. Gossip still waiting for admission is admitted first (it is the likeliest place for a
   missing body, and admitting it is work the node does anyway).
2. Every id found in the mempool fills its slot; the rest are asked of the sender with one
   `TxFetch` (indexes), answered by one `TxBodies` from the blocks the sender recently proposed
   or rebuilt.  A body must decode to a transaction with the id of its slot, or the answer is
   dropped.
3. The rebuilt block must match its header (transaction count and tx root).  The id covers a
   transaction's body but not its signature, so a pooled transaction can carry other signature
   bytes than the proposer's (see `chainnode.node.admission`); then the root differs, and every
   body is fetched once from the sender.  A block that still does not match is dropped: the
   proposal is unusable, as a garbled one would be, and the view timer deals with the primary.

Only what the engine would see changes place: the engine receives the same `PrePrepare` with
the same block (same bytes, same hash) as before and checks it as it always did.  New-view
messages and block sync still carry full blocks (they serve replicas that may hold nothing).

Bounds: one proposal waits for bodies per peer (a newer one from the same peer replaces it), and
a node keeps the last `RECENT_BLOCKS_MAX` blocks it proposed or rebuilt to answer fetches.
Before it sends a compact proposal, the node flushes the gossip it owes (the caller's job), so on
each link the bodies of its own clients' transactions travel ahead of the ids that name them.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from chainnode.core import types
from chainnode.core.errors import DecodeError
from chainnode.node import wire
from chainnode.node.admission import Admission
from chainnode.node.mempool import Mempool
from consensus.messages import PrePrepare

log = logging.getLogger("chainnode.node.runtime")

RECENT_BLOCKS_MAX = 8


@dataclass(slots=True)
class _Waiting:
    """A compact proposal from one peer whose bodies are not all here yet."""

    proposal: wire.CompactPrePrepare
    block_hash: bytes
    transactions: list[types.Transaction | None]
    fetched_all: bool  # the last fetch asked for every body


class ProposalRelay:
    """Sends own proposals compactly; rebuilds peers' compact proposals; answers fetches."""

    def __init__(
        self,
        *,
        mempool: Mempool,
        admission: Admission,
        send: Callable[[str, bytes], object],
        get_head_height: Callable[[], int],
    ) -> None:
        self._mempool = mempool
        self._get_head_height = get_head_height
        self._admission = admission
        self._send = send
        self._recent: OrderedDict[bytes, types.Block] = OrderedDict()
        self._waiting: dict[str, _Waiting] = {}
        # For tests and operators: proposals rebuilt whole from the mempool, with fetched
        # bodies, dropped, and ignored as stale; bodies fetched and served.
        self.rebuilt_from_pool = 0
        self.rebuilt_with_fetch = 0
        self.dropped = 0
        self.stale = 0
        self.bodies_fetched = 0
        self.bodies_served = 0

    # ------------------------------------------------------------ outbound

    def encode(self, message: PrePrepare) -> bytes:
        """The frame for our own proposal; the block is kept to answer fetches for it."""
        self._remember(message.block)
        return wire.encode_compact_pre_prepare(message)

    def on_fetch(self, peer_id: str, fetch: wire.TxFetch) -> None:
        block = self._recent.get(fetch.block_hash)
        if block is None:
            return  # not a block we proposed or rebuilt lately: nothing to answer with
        transactions = block.transactions
        indexes = [index for index in fetch.indexes if index < len(transactions)]
        bodies = [transactions[index].encoded for index in indexes]
        self.bodies_served += len(bodies)
        self._send(peer_id, wire.encode_tx_bodies(fetch.block_hash, indexes, bodies))

    # ------------------------------------------------------------ inbound

    def on_compact(self, peer_id: str, proposal: wire.CompactPrePrepare) -> PrePrepare | None:
        """The `PrePrepare` if the mempool holds every transaction; else None, and a fetch is sent.

        A proposal for a height already committed here (a primary re-sends its proposal until
        its height commits) is dropped unread: its transactions left the mempool at the commit,
        and fetching them would only feed the engine a message it ignores."""
        if proposal.height <= self._get_head_height():
            self.stale += 1
            return None
        self._admission.admit_waiting_gossip()
        pooled = self._mempool.get
        transactions: list[types.Transaction | None] = [pooled(tx_id) for tx_id in proposal.tx_ids]
        waiting = _Waiting(proposal, proposal.header.compute_hash(), transactions, fetched_all=False)
        missing = [index for index, tx in enumerate(transactions) if tx is None]
        if not missing:
            message = self._assemble(waiting)
            if message is not None:
                self.rebuilt_from_pool += 1
                return message
            missing = list(range(len(transactions)))  # pooled with other signature bytes
        self._fetch(peer_id, waiting, missing)
        return None

    def on_bodies(self, peer_id: str, answer: wire.TxBodies) -> PrePrepare | None:
        """The `PrePrepare` once the answer completes a waiting proposal of this peer's."""
        waiting = self._waiting.get(peer_id)
        if waiting is None or waiting.block_hash != answer.block_hash:
            return None  # late or unasked for
        ids = waiting.proposal.tx_ids
        for index, body in zip(answer.indexes, answer.bodies, strict=True):
            try:
                tx = types.decode_transaction(body)
            except DecodeError:
                tx = None
            if index >= len(ids) or tx is None or tx.hash != ids[index]:
                self._drop(peer_id, f"a fetched body does not match transaction {index} of the proposal")
                return None
            waiting.transactions[index] = tx
        self.bodies_fetched += len(answer.bodies)
        if any(tx is None for tx in waiting.transactions):
            return None  # the rest of the answer is still on its way
        message = self._assemble(waiting)
        if message is not None:
            del self._waiting[peer_id]
            self.rebuilt_with_fetch += 1
            return message
        if waiting.fetched_all:
            self._drop(peer_id, "the proposal's bodies do not match its header")
            return None
        self._fetch(peer_id, waiting, list(range(len(ids))))
        return None

    # ------------------------------------------------------------ inside

    def _fetch(self, peer_id: str, waiting: _Waiting, indexes: list[int]) -> None:
        waiting.fetched_all = len(indexes) == len(waiting.transactions)
        if waiting.fetched_all:
            waiting.transactions = [None] * len(waiting.transactions)
        self._waiting[peer_id] = waiting  # replaces an older one from this peer
        self._send(peer_id, wire.encode_tx_fetch(waiting.block_hash, indexes))

    def _assemble(self, waiting: _Waiting) -> PrePrepare | None:
        """The proposal with its block rebuilt, or None when the bodies do not match the header."""
        header = waiting.proposal.header
        transactions = [tx for tx in waiting.transactions if tx is not None]
        if len(transactions) != header.tx_count or types.compute_tx_root(transactions) != header.tx_root:
            return None
        block = types.Block.create(header, transactions)
        self._remember(block)
        proposal = waiting.proposal
        return PrePrepare(proposal.view, proposal.height, proposal.proposer, block, proposal.signature)

    def _drop(self, peer_id: str, reason: str) -> None:
        self._waiting.pop(peer_id, None)
        self.dropped += 1
        log.warning("dropping a compact proposal from %s: %s", peer_id, reason)

    def _remember(self, block: types.Block) -> None:
        self._recent[block.hash] = block
        self._recent.move_to_end(block.hash)
        while len(self._recent) > RECENT_BLOCKS_MAX:
            self._recent.popitem(last=False)
