"""The PBFT engine: normal case (pre-prepare, prepare, commit) and catch-up.

Theory of operation.  The engine decides one height at a time.  At height h
in view v the primary (validator v mod n) proposes a block with a signed
PRE-PREPARE.  Every validator that finds the block valid (right parent,
timestamp, validator set, and the application re-executes it to the same
roots) signs a PREPARE.  Once 2f+1 PREPAREs for the block are in, the block is
*prepared* and the validator signs a COMMIT.  With 2f+1 COMMITs and the block
in hand the block is final: the engine emits `CommitBlock` with a certificate
of those COMMIT signatures and moves to h+1.

Invariants (asserted after every event):
- we never sign two different block hashes for one (height, view, kind); our
  own messages are persisted before they are sent (`PersistVote` precedes
  `Broadcast`) and restored from `persisted` after a restart;
- committed heights are contiguous and each extends the previous head.

Fault model for this issue: up to f validators may be silent or send garbage,
conflicting votes or invalid proposals; those are refused and reported as
`Diagnostic`s.  A silent or equivocating *primary* stalls the height until
view change exists (TODO(issue 3): view change, checkpoints, evidence).

Catch-up: any message from a height above ours, or a peer status, tells us a
peer is ahead; after a short grace period the engine requests the missing
blocks with their commit certificates, verifies each certificate against the
validator set and re-executes each block before committing it.

Time is whatever the last `Tick` said; randomness comes from the injected
`random.Random`.  No I/O, no clock, no global state.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from chainnode import crypto, types
from consensus.effects import Broadcast, CommitBlock, Diagnostic, Effect, PersistVote, RequestBlocks
from consensus.messages import Message, PrePrepare, Vote, sign_pre_prepare, sign_vote


class Application(Protocol):
    """What the engine needs from the state machine; the node implements it."""

    def propose_block(
        self, *, height: int, view: int, proposer: int, timestamp_ms: int, parent_hash: bytes
    ) -> types.Block | None:
        """A new block on top of the current head, or None when there is nothing to propose."""
        ...

    def find_block_problem(self, block: types.Block) -> str | None:
        """Re-execute `block` on the current head; None when valid, else why not."""
        ...


# ---------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class Tick:
    now_ms: int


@dataclass(frozen=True, slots=True)
class MessageReceived:
    sender: str  # entity id of the authenticated peer that delivered it
    message: Message


@dataclass(frozen=True, slots=True)
class BlocksReceived:
    sender: str
    blocks: tuple[tuple[types.Block, types.CommitCertificate], ...]


@dataclass(frozen=True, slots=True)
class PeerStatus:
    sender: str
    height: int  # the peer's committed height


Event = Tick | MessageReceived | BlocksReceived | PeerStatus


@dataclass(frozen=True, slots=True)
class EngineConfig:
    chain_id: str
    proposal_delay_ms: int = 20  # the primary batches transactions this long into a block
    timestamp_drift_ms_max: int = 10_000  # how far ahead of our clock a proposal may be
    rebroadcast_ms: int = 1_000  # resend our votes when a height makes no progress this long
    sync_grace_ms: int = 300  # how long one height of lag may last before we fetch blocks
    sync_timeout_ms: int = 3_000
    sync_blocks_max: int = 64
    future_heights_max: int = 64  # buffer messages at most this far ahead
    future_messages_max: int = 20_000


@dataclass(frozen=True, slots=True)
class ChainHead:
    height: int
    block_hash: bytes
    timestamp_ms: int


@dataclass(slots=True)
class _Round:
    """What we know about one (height, view)."""

    started_ms: int
    progress_ms: int
    proposal: PrePrepare | None = None
    refused: set[bytes] = field(default_factory=set)  # block hashes found invalid
    # votes[kind][validator index] = (block hash, signature)
    votes: dict[types.VoteKind, dict[int, tuple[bytes, bytes]]] = field(
        default_factory=lambda: {types.VoteKind.PREPARE: {}, types.VoteKind.COMMIT: {}}
    )

    def count(self, kind: types.VoteKind, block_hash: bytes) -> int:
        return sum(1 for voted, _ in self.votes[kind].values() if voted == block_hash)


class Engine:
    """One validator's (or observer's, with `own_index=None`) consensus state."""

    def __init__(
        self,
        config: EngineConfig,
        *,
        validators: types.ValidatorSet,
        own_index: int | None,
        key: crypto.SigningKey | None,
        app: Application,
        head: ChainHead,
        now_ms: int,
        persisted: Sequence[Vote] = (),
        rng: random.Random,
    ) -> None:
        assert (own_index is None) == (key is None), "a validator has a key, an observer none"
        if own_index is not None:
            assert key is not None
            assert validators.validators[own_index].public_key == key.public_key, "key matches set"
        self.config = config
        self.validators = validators
        self.own_index = own_index
        self._key = key
        self._app = app
        self._rng = rng
        self.head = head
        self.view = 0  # TODO(issue 3): view change moves this.
        self.now_ms = now_ms
        self._round = _Round(started_ms=now_ms, progress_ms=now_ms)
        # Our own signed messages by (height, view, kind): never sign another hash there.
        self._own: dict[tuple[int, int, int], Vote] = {}
        for vote in persisted:
            if vote.height > head.height:
                self._own[(vote.height, vote.view, int(vote.kind))] = vote
        self._future: dict[int, list[MessageReceived]] = {}
        self._future_count = 0
        self._peer_heights: dict[str, int] = {}
        self._behind_since_ms: int | None = None
        self._sync_request: tuple[str, int] | None = None  # (peer, sent at ms)
        # Events still to handle.  After a commit the engine stops and returns,
        # so the shell applies the block before anything else needs the new
        # head; what is left waits here (see `has_pending_work`).
        self._inbox: deque[Event] = deque()
        self._yield = False
        self.committed_blocks = 0

    @property
    def height(self) -> int:
        """The height being decided: one above the committed head."""
        return self.head.height + 1

    # ------------------------------------------------------------ entry point

    def start(self) -> list[Effect]:
        """After a restart: resend what we had already signed for the current height."""
        effects: list[Effect] = []
        self._record_own_votes()
        for (height, _, kind), vote in sorted(self._own.items()):
            if height == self.height and kind != types.VoteKind.PRE_PREPARE:
                effects.append(Broadcast(vote))
        return effects

    @property
    def has_pending_work(self) -> bool:
        """True when events wait behind a commit; the shell steps again (with a Tick) after
        applying the effects it got, until this is False."""
        return bool(self._inbox)

    def step(self, event: Event) -> list[Effect]:
        effects: list[Effect] = []
        self._inbox.append(event)
        while self._inbox and not self._yield:
            self._dispatch(self._inbox.popleft(), effects)
        self._yield = False
        self._check_invariants()
        return effects

    def _dispatch(self, event: Event, effects: list[Effect]) -> None:
        if isinstance(event, Tick):
            self._on_tick(event, effects)
        elif isinstance(event, MessageReceived):
            self._on_message(event, effects)
        elif isinstance(event, BlocksReceived):
            self._on_blocks(event, effects)
        else:
            self._note_peer_height(event.sender, event.height)

    # ------------------------------------------------------------ ticks

    def _on_tick(self, tick: Tick, effects: list[Effect]) -> None:
        self.now_ms = max(self.now_ms, tick.now_ms)
        self._maybe_propose(effects)
        if self.now_ms - self._round.progress_ms >= self.config.rebroadcast_ms:
            self._rebroadcast(effects)
        self._maybe_request_blocks(effects)

    def _maybe_propose(self, effects: list[Effect]) -> None:
        if self.own_index is None or self.validators.primary(self.view) != self.own_index:
            return
        if self._round.proposal is not None:
            return
        if (self.height, self.view, types.VoteKind.PRE_PREPARE) in self._own:
            return  # proposed before a restart; the block is gone, wait for a view change
        if self.now_ms - self._round.started_ms < self.config.proposal_delay_ms:
            return
        assert self._key is not None
        block = self._app.propose_block(
            height=self.height,
            view=self.view,
            proposer=self.own_index,
            timestamp_ms=max(self.now_ms, self.head.timestamp_ms + 1),
            parent_hash=self.head.block_hash,
        )
        if block is None:
            return
        pre_prepare = sign_pre_prepare(self._key, self.config.chain_id, self.view, self.own_index, block)
        record = Vote(
            types.VoteKind.PRE_PREPARE,
            self.view,
            self.height,
            block.hash,
            self.own_index,
            pre_prepare.signature,
        )
        self._own[(self.height, self.view, types.VoteKind.PRE_PREPARE)] = record
        effects.append(PersistVote(record))
        effects.append(Broadcast(pre_prepare))
        self._accept_proposal(pre_prepare, effects)

    def _rebroadcast(self, effects: list[Effect]) -> None:
        """Resend our messages for the current height; a peer may have missed them."""
        self._round.progress_ms = self.now_ms
        proposal = self._round.proposal
        if proposal is not None and proposal.proposer == self.own_index:
            effects.append(Broadcast(proposal))
        for kind in (types.VoteKind.PREPARE, types.VoteKind.COMMIT):
            vote = self._own.get((self.height, self.view, kind))
            if vote is not None:
                effects.append(Broadcast(vote))

    # ------------------------------------------------------------ messages

    def _on_message(self, received: MessageReceived, effects: list[Effect]) -> None:
        message = received.message
        if message.height < self.height:
            return  # already decided
        if message.height > self.height:
            self._buffer_future(received)
            return
        if message.view != self.view:
            return  # TODO(issue 3): view change handles other views.
        if isinstance(message, PrePrepare):
            self._on_pre_prepare(message, effects)
        else:
            self._on_vote(message, effects)

    def _buffer_future(self, received: MessageReceived) -> None:
        message = received.message
        # A message for height H shows its sender committed H - 1.
        self._note_peer_height(received.sender, message.height - 1)
        if message.height - self.height > self.config.future_heights_max:
            return
        if self._future_count >= self.config.future_messages_max:
            return
        self._future.setdefault(message.height, []).append(received)
        self._future_count += 1

    def _ignore_pre_prepare(self, message: PrePrepare) -> str | None:
        """Why `message` must be refused, or None."""
        header = message.block.header
        primary = self.validators.primary(message.view)
        if message.proposer != primary:
            return (
                f"pre-prepare from validator {message.proposer}, primary of view {message.view} is {primary}"
            )
        if not message.is_signed_by(self.config.chain_id, self.validators.validators[primary].public_key):
            return "pre-prepare signature is invalid"
        if (header.height, header.view, header.proposer) != (message.height, message.view, primary):
            return "block header disagrees with the pre-prepare"
        if header.chain_id != self.config.chain_id:
            return f"block for chain {header.chain_id!r}"
        return self._find_header_problem(header, check_drift=True)

    def _find_header_problem(self, header: types.BlockHeader, *, check_drift: bool) -> str | None:
        if header.parent_hash != self.head.block_hash:
            return f"block {header.height} does not extend our head"
        if header.timestamp_ms <= self.head.timestamp_ms:
            return "block timestamp does not advance"
        if check_drift and header.timestamp_ms > self.now_ms + self.config.timestamp_drift_ms_max:
            return "block timestamp is too far in the future"
        if header.validator_set_hash != self.validators.compute_hash():
            return "block names another validator set"
        return None

    def _on_pre_prepare(self, message: PrePrepare, effects: list[Effect]) -> None:
        current = self._round.proposal
        if current is not None:
            if current.block.hash != message.block.hash:
                # TODO(issue 3): keep this as equivocation evidence and change view.
                effects.append(Diagnostic(f"primary sent two proposals for height {message.height}"))
            return
        if message.block.hash in self._round.refused:
            return
        problem = self._ignore_pre_prepare(message)
        if problem is None:
            problem = self._app.find_block_problem(message.block)
        if problem is not None:
            self._round.refused.add(message.block.hash)
            effects.append(Diagnostic(f"refused proposal at height {message.height}: {problem}"))
            return
        self._accept_proposal(message, effects)

    def _accept_proposal(self, message: PrePrepare, effects: list[Effect]) -> None:
        self._round.proposal = message
        self._round.progress_ms = self.now_ms
        self._sign(types.VoteKind.PREPARE, message.block.hash, effects)
        self._check_quorums(effects)

    def _on_vote(self, vote: Vote, effects: list[Effect]) -> None:
        if vote.kind == types.VoteKind.PRE_PREPARE or vote.validator >= self.validators.size:
            return
        known = self._round.votes[vote.kind].get(vote.validator)
        if known is not None:
            if known[0] != vote.block_hash:
                # TODO(issue 3): equivocation evidence.
                effects.append(Diagnostic(f"validator {vote.validator} voted twice at height {vote.height}"))
            return
        public_key = self.validators.validators[vote.validator].public_key
        if not vote.is_signed_by(self.config.chain_id, public_key):
            effects.append(Diagnostic(f"invalid vote signature from validator {vote.validator}"))
            return
        self._round.votes[vote.kind][vote.validator] = (vote.block_hash, vote.signature)
        self._round.progress_ms = self.now_ms
        self._check_quorums(effects)

    def _sign(self, kind: types.VoteKind, block_hash: bytes, effects: list[Effect]) -> None:
        """Sign, persist and broadcast our vote, unless we are an observer or already voted."""
        if self.own_index is None:
            return
        slot = (self.height, self.view, int(kind))
        previous = self._own.get(slot)
        if previous is not None:
            # Restored from the log or already sent: never sign another hash here.
            if previous.block_hash == block_hash:
                self._round.votes[kind].setdefault(self.own_index, (block_hash, previous.signature))
            return
        assert self._key is not None
        vote = sign_vote(
            self._key, self.config.chain_id, kind, self.view, self.height, block_hash, self.own_index
        )
        self._own[slot] = vote
        self._round.votes[kind][self.own_index] = (block_hash, vote.signature)
        effects.append(PersistVote(vote))
        effects.append(Broadcast(vote))

    def _check_quorums(self, effects: list[Effect]) -> None:
        proposal = self._round.proposal
        if proposal is None:
            commits = self._round.votes[types.VoteKind.COMMIT].values()
            if any(self._round.count(types.VoteKind.COMMIT, h) >= self.validators.quorum for h, _ in commits):
                # The others decided a block we never received: fetch it with its certificate.
                self._behind_since_ms = self._behind_since_ms or self.now_ms
            return
        block_hash = proposal.block.hash
        if self._round.count(types.VoteKind.PREPARE, block_hash) >= self.validators.quorum:
            self._sign(types.VoteKind.COMMIT, block_hash, effects)
        if self._round.count(types.VoteKind.COMMIT, block_hash) >= self.validators.quorum:
            signatures = tuple(
                sorted(
                    (index, signature)
                    for index, (voted, signature) in self._round.votes[types.VoteKind.COMMIT].items()
                    if voted == block_hash
                )
            )
            certificate = types.CommitCertificate(self.height, self.view, block_hash, signatures)
            self._commit(proposal.block, certificate, effects)

    # ------------------------------------------------------------ commit and catch-up

    def _commit(
        self, block: types.Block, certificate: types.CommitCertificate, effects: list[Effect]
    ) -> None:
        assert block.height == self.height, "commits are contiguous"
        assert block.header.parent_hash == self.head.block_hash, "a commit extends the head"
        effects.append(CommitBlock(block, certificate))
        self.committed_blocks += 1
        self.head = ChainHead(block.height, block.hash, block.header.timestamp_ms)
        self._round = _Round(started_ms=self.now_ms, progress_ms=self.now_ms)
        self._own = {slot: vote for slot, vote in self._own.items() if slot[0] > self.head.height}
        if self._behind_since_ms is not None and self._max_peer_height() < self.height:
            self._behind_since_ms = None
        for height in [h for h in self._future if h < self.height]:
            self._future_count -= len(self._future.pop(height))
        replay = self._future.pop(self.height, [])
        self._future_count -= len(replay)
        self._inbox.extendleft(reversed(replay))
        self._yield = True

    def _note_peer_height(self, peer: str, height: int) -> None:
        if height > self._peer_heights.get(peer, -1):
            self._peer_heights[peer] = height
        if height >= self.height and self._behind_since_ms is None:
            self._behind_since_ms = self.now_ms

    def _max_peer_height(self) -> int:
        return max(self._peer_heights.values(), default=-1)

    def _maybe_request_blocks(self, effects: list[Effect]) -> None:
        if self._sync_request is not None:
            if self.now_ms - self._sync_request[1] < self.config.sync_timeout_ms:
                return
            self._sync_request = None
        if self._behind_since_ms is None:
            return
        target = self._max_peer_height()
        lag = target - self.head.height
        waited_ms = self.now_ms - self._behind_since_ms
        if lag <= 0 or (lag == 1 and waited_ms < self.config.sync_grace_ms):
            if lag <= 0 and self._round.proposal is not None:
                self._behind_since_ms = None
            return
        peers = sorted(peer for peer, height in self._peer_heights.items() if height >= self.height)
        peer = self._rng.choice(peers)
        height_max = min(self._peer_heights[peer], self.height + self.config.sync_blocks_max - 1)
        self._sync_request = (peer, self.now_ms)
        effects.append(RequestBlocks(peer, self.height, height_max))

    def _on_blocks(self, received: BlocksReceived, effects: list[Effect]) -> None:
        if self._sync_request is not None and self._sync_request[0] == received.sender:
            self._sync_request = None
        if received.blocks:
            self._note_peer_height(received.sender, received.blocks[-1][0].height)
        for position, (block, certificate) in enumerate(received.blocks):
            if block.height < self.height:
                continue
            if block.height > self.height:
                return
            problem = self._find_certified_block_problem(block, certificate)
            if problem is not None:
                effects.append(Diagnostic(f"refused block {block.height} from {received.sender}: {problem}"))
                return
            self._commit(block, certificate, effects)
            rest = received.blocks[position + 1 :]
            if rest:
                self._inbox.appendleft(BlocksReceived(received.sender, rest))
            return

    def _find_certified_block_problem(
        self, block: types.Block, certificate: types.CommitCertificate
    ) -> str | None:
        if (certificate.height, certificate.block_hash) != (block.height, block.hash):
            return "certificate is for another block"
        if block.header.chain_id != self.config.chain_id:
            return f"block for chain {block.header.chain_id!r}"
        problem = certificate.find_problem(self.config.chain_id, self.validators)
        if problem is None:
            problem = self._find_header_problem(block.header, check_drift=False)
        if problem is None:
            problem = self._app.find_block_problem(block)
        return problem

    # ------------------------------------------------------------ invariants

    def _record_own_votes(self) -> None:
        """Count our restored votes for the current height in the tallies."""
        for (height, view, kind), vote in self._own.items():
            if height == self.height and view == self.view and kind != types.VoteKind.PRE_PREPARE:
                self._round.votes[types.VoteKind(kind)][vote.validator] = (vote.block_hash, vote.signature)

    def _check_invariants(self) -> None:
        assert self._future_count == sum(len(items) for items in self._future.values())
        assert all(height > self.head.height for height, _, _ in self._own)
        proposal = self._round.proposal
        assert proposal is None or proposal.height == self.height
