"""The PBFT engine: normal case, view change, checkpoints and catch-up.

Theory of operation.  The engine decides one height at a time.  At height h
in view v the primary (validator v mod n) proposes a block with a signed
PRE-PREPARE.  Every validator that finds the block valid (right parent,
timestamp, validator set, and the application re-executes it to the same
roots) signs a PREPARE.  With a quorum of PREPAREs the block is *prepared*:
the validator persists that prepared certificate and signs a COMMIT.  With a
quorum of COMMITs and the block in hand the block is final: the engine emits
`CommitBlock` with a certificate of those COMMIT signatures and moves to h+1.
The view carries over from height to height until a view change.

Quorums.  n validators tolerate f = floor((n - 1) / 3) Byzantine ones, and
every count that decides something (PREPARE, COMMIT, NEW-VIEW proofs,
checkpoints, and the certificates catch-up verifies) needs a quorum of
q = floor((n + f) / 2) + 1 (`quorum.compute_quorum`).  Safety rests on any two
quorums sharing at least f + 1 validators, hence an honest one, who never
signs two blocks for one (view, height): 2q - n >= f + 1.  The textbook 2f + 1
gives that only when n = 3f + 1; at n = 5 two quorums of 3 share a single
validator (a faulty primary forks the chain) and at n = 6 two quorums of 3
are disjoint (a partition forks it).  Rules that only need one honest
member, such as joining a later view, use f + 1.

View change.  While there is work (pending transactions, a proposal not yet
committed, or a view change under way) a timer runs; when it expires the
validator stops voting in its view and broadcasts VIEW-CHANGE for the next
view with its highest prepared certificate.  f+1 VIEW-CHANGEs for higher views
make a validator join the smallest of them (so a node behind in views catches
up instead of forcing more changes, and no f Byzantine validators can push
the others into a view change by claiming huge views).  The primary of the
new view gathers a quorum and broadcasts NEW-VIEW, re-proposing the prepared block
of the highest view among them (see `consensus.view_change`); replicas check
that proof and enter the view.  Each consecutive failed view doubles the
timeout (capped), and a commit resets it.  An equivocating primary (two
signed proposals for one view and height) is recorded as evidence and
triggers a view change at once.

Checkpoints.  Every `checkpoint_interval` heights each validator signs the
committed block hash, which binds the state root; a quorum makes a stable
checkpoint (`StableCheckpoint`), after which the node prunes its vote log.
The engine's own memory is bounded independently: it only keeps state for
the current height and bounded buffers for the near future.

Invariants (checked after every event):
- we never sign two different block hashes for one (height, view, kind);
  every message we sign is persisted first (`PersistVote` precedes the
  `Broadcast`), and restored from `persisted` after a restart;
- committed heights are contiguous and each extends the previous head.

Catch-up: any message from a height above ours, or a peer status, tells us a
peer is ahead; after a short grace period the engine requests the missing
blocks with their commit certificates, verifies each certificate against the
validator set and re-executes each block before committing it.

Time.  A `Tick` carries two clocks.  `now_ms` is monotonic (it never steps)
and drives every timer: proposal delay, rebroadcast, view timeouts, catch-up.
`wall_ms` is the validator's wall clock and is used only for block
timestamps: a primary stamps max(wall, parent + 1), and every validator
checks every fresh block (in PRE-PREPARE and in NEW-VIEW alike) against its
own wall clock: no later than `wall + drift` and no earlier than
`wall - drift`.  So a block's time is within the drift of the real time of
the honest validators in its quorum, a primary with a fast or slow clock is
refused and replaced like a silent one, and a stepped wall clock freezes no
timer.  A re-proposal of a prepared block keeps its original timestamp: it is
checked against the upper bound only (it passed both bounds at a quorum when
first proposed, and a view change may take longer than the drift).  An
honest primary stays live when the chain's time runs ahead of its clock:
parent + 1 is then within the drift of every honest clock, since the parent
passed the upper bound at honest validators.  Refusals name the proposer and
its offset from our clock (`Engine.clock_offsets_ms` keeps the last one per
proposer).

Randomness comes from the injected `random.Random`.  No I/O, no clock, no
global state.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Sequence

from chainnode.core import crypto, quorum, types
from chainnode.core.errors import InvariantError
from consensus.buffer import MessageBuffer
from consensus.catch_up import CatchUp
from consensus.checkpoints import CheckpointTracker
from consensus.effects import (
    Broadcast,
    CommitBlock,
    Diagnostic,
    Effect,
    PersistVote,
    RecordEvidence,
    SendTo,
    StableCheckpoint,
)
from consensus.events import (
    Application,
    BlocksReceived,
    ChainHead,
    EngineConfig,
    Event,
    MessageReceived,
    Tick,
)
from consensus.messages import (
    Evidence,
    LogRecord,
    NewView,
    PreparedCertificate,
    PrePrepare,
    ViewChange,
    Vote,
    sign_pre_prepare,
    sign_view_change,
    sign_vote,
)
from consensus.rounds import Round
from consensus.view_change import find_new_view_problem, find_view_change_problem, select_prepared

Kind = types.VoteKind


class Engine:
    """One node's consensus state.  It votes while `own_id` is in the validator set of the height
    being decided with this key, and follows as an observer otherwise."""

    def __init__(
        self,
        config: EngineConfig,
        *,
        validators: quorum.ValidatorSet,
        own_id: str | None,
        key: crypto.SigningKey | None,
        app: Application,
        head: ChainHead,
        now_ms: int,
        wall_ms: int,
        persisted: Sequence[LogRecord] = (),
        stable_checkpoint: int = 0,
        rng: random.Random,
    ) -> None:
        if not ((own_id is None) == (key is None)):
            raise InvariantError("a node that may vote has an id and a key")
        self.config = config
        self.validators = validators
        self._own_id = own_id
        self._key = key
        self.own_index = self._find_own_index(validators)
        self._app = app
        self._rng = rng
        self.head = head
        self.now_ms = now_ms
        self.wall_ms = wall_ms
        # The last fresh proposal's timestamp minus our wall clock, per proposer index.
        self.clock_offsets_ms: dict[int, int] = {}
        self.view = head.view
        self._target: int | None = None  # the view we asked to move to, while changing
        self._rounds: dict[int, Round] = {}
        self._prepared: PreparedCertificate | None = None  # our highest, at the current height
        self._view_changes: dict[int, ViewChange] = {}  # latest per validator, current height
        self._new_views: dict[int, NewView] = {}  # by view, current height
        self._deadline_ms: int | None = None
        self._failed_views = 0  # view changes not yet paid back by commits (see `_commit`)
        self._progress_ms = now_ms
        self._height_started_ms = now_ms
        # Our own signed messages by (height, view, kind): never sign another hash there.
        self._own: dict[tuple[int, int, int], Vote | ViewChange] = {}
        self._restore(persisted)
        self._early: MessageBuffer[MessageReceived] = MessageBuffer(
            config.future_heights_max, config.future_views_max, config.future_messages_max
        )
        self._catch_up = CatchUp(
            grace_ms=config.sync_grace_ms,
            timeout_ms=config.sync_timeout_ms,
            blocks_max=config.sync_blocks_max,
            rng=rng,
        )
        self._checkpoints = CheckpointTracker(
            config.chain_id, validators, config.checkpoint_interval, stable_checkpoint
        )
        # Events still to handle.  After a commit the engine stops and returns,
        # so the shell applies the block before anything else needs the new
        # head; what is left waits here (see `has_pending_work`).
        self._inbox: deque[Event] = deque()
        self._yield = False
        self._validators_height = self.height
        self.committed_blocks = 0
        self.view_changes_started = 0

    def _restore(self, persisted: Sequence[LogRecord]) -> None:
        """Rebuild what we had signed for the current height from the vote log."""
        for record in persisted:
            if record.height <= self.head.height:
                continue
            if isinstance(record, PreparedCertificate):
                if record.height == self.height and (
                    self._prepared is None or record.view > self._prepared.view
                ):
                    self._prepared = record
                continue
            if isinstance(record, ViewChange):
                self._own[(record.height, record.new_view, int(Kind.VIEW_CHANGE))] = record
                if record.height == self.height:
                    self._target = max(self._target or 0, record.new_view)
                continue
            self._own[(record.height, record.view, int(record.kind))] = record
            if record.height == self.height:
                self.view = max(self.view, record.view)
        if self._target is not None and self._target <= self.view:
            self._target = None
        for (height, view, kind), record in self._own.items():
            if height == self.height and view == self.view and kind in (Kind.PREPARE, Kind.COMMIT):
                if not (isinstance(record, Vote)):
                    raise InvariantError("isinstance(record, Vote)")
                self._round(view).votes[Kind(kind)][record.validator] = (record.block_hash, record.signature)

    @property
    def height(self) -> int:
        """The height being decided: one above the committed head."""
        return self.head.height + 1

    def _find_own_index(self, validators: quorum.ValidatorSet) -> int | None:
        if self._own_id is None or self._key is None:
            return None
        index = validators.index_of(self._own_id)
        if index is None or validators.validators[index].public_key != self._key.public_key:
            return None
        return index

    def _refresh_validators(self) -> None:
        """Adopt the validator set of the height being decided (the shell applied our last commit)."""
        validators = self._app.get_validator_set(self.height)
        if validators == self.validators:
            return
        self.validators = validators
        self.own_index = self._find_own_index(validators)
        self._checkpoints.validators = validators

    @property
    def is_changing_view(self) -> bool:
        return self._target is not None

    @property
    def has_pending_work(self) -> bool:
        """True when events wait behind a commit; the shell steps again (with a Tick) after
        applying the effects it got, until this is False."""
        return bool(self._inbox)

    def _round(self, view: int) -> Round:
        round_ = self._rounds.get(view)
        if round_ is None:
            round_ = self._rounds[view] = Round()
        return round_

    # ------------------------------------------------------------ entry points

    def start(self) -> list[Effect]:
        """After a restart: resend what we had already signed for the current height."""
        effects: list[Effect] = []
        for (height, _, kind), record in sorted(self._own.items(), key=lambda item: item[0]):
            if height == self.height and kind != Kind.PRE_PREPARE:
                effects.append(Broadcast(record))
        return effects

    def step(self, event: Event) -> list[Effect]:
        effects: list[Effect] = []
        if self._validators_height != self.height:
            self._refresh_validators()
            self._validators_height = self.height
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

    # ------------------------------------------------------------ ticks and timers

    def _on_tick(self, tick: Tick, effects: list[Effect]) -> None:
        self.now_ms = max(self.now_ms, tick.now_ms)
        self.wall_ms = tick.wall_ms  # may step either way; only timestamps read it
        if self._target is None:
            self._maybe_propose(effects)
        if self.now_ms - self._progress_ms >= self.config.rebroadcast_ms:
            self._rebroadcast(effects)
        self._check_view_timer(effects)
        self._maybe_request_blocks(effects)

    def _compute_view_timeout_ms(self) -> int:
        doublings = min(self._failed_views, self.config.view_timeout_doublings_max)
        return self.config.view_timeout_ms << doublings

    def _is_waiting(self) -> bool:
        """Is something expected to commit?  Only then can a primary be late."""
        round_ = self._rounds.get(self.view)
        return (
            self._target is not None
            or (round_ is not None and round_.proposal is not None)
            or self._app.has_pending_transactions()
        )

    def _check_view_timer(self, effects: list[Effect]) -> None:
        if self.own_index is None or not self._is_waiting():
            # An observer has no vote to withhold and no VIEW-CHANGE to send: leaving its view
            # on its own would only make it ignore the current view's proposals until a NEW-VIEW
            # (or catch-up) brought it back.  It follows the validators' view changes instead.
            self._deadline_ms = None
            return
        if self._target is not None and not self._is_target_supported():
            # As in PBFT, the timer towards the next view runs only once a quorum wants the
            # current target: otherwise a validator whose timer fired first would keep
            # moving one view ahead of the others and no view would ever gather a quorum.
            self._deadline_ms = None
            return
        if self._deadline_ms is None:
            self._deadline_ms = self.now_ms + self._compute_view_timeout_ms()
            return
        if self.now_ms >= self._deadline_ms:
            current = self.view if self._target is None else self._target
            effects.append(Diagnostic(f"view {current} made no progress at height {self.height}"))
            self._start_view_change(current + 1, effects)

    def _is_target_supported(self) -> bool:
        if not (self._target is not None):
            raise InvariantError("self._target is not None")
        target = self._target
        supporters = sum(1 for message in self._view_changes.values() if message.new_view >= target)
        return supporters >= self.validators.quorum

    def _maybe_propose(self, effects: list[Effect]) -> None:
        if self.own_index is None or self.validators.primary(self.view) != self.own_index:
            return
        round_ = self._round(self.view)
        if round_.proposal is not None or (self.height, self.view, Kind.PRE_PREPARE) in self._own:
            return
        if self.view > self.head.view and self.view not in self._new_views:
            return  # a new primary proposes through NEW-VIEW first
        if self.now_ms - self._height_started_ms < self.config.proposal_delay_ms:
            return
        block = self._propose_new_block()
        if block is not None:
            self._broadcast_proposal(block, effects)

    def _propose_new_block(self) -> types.Block | None:
        if not (self.own_index is not None):
            raise InvariantError("self.own_index is not None")
        return self._app.propose_block(
            height=self.height,
            view=self.view,
            proposer=self.own_index,
            timestamp_ms=max(self.wall_ms, self.head.timestamp_ms + 1),
            parent_hash=self.head.block_hash,
        )

    def _sign_proposal(self, view: int, block: types.Block, effects: list[Effect]) -> PrePrepare | None:
        """Sign (and persist) a pre-prepare, unless we already signed another block there."""
        if not (self._key is not None and self.own_index is not None):
            raise InvariantError("self._key is not None and self.own_index is not None")
        slot = (self.height, view, int(Kind.PRE_PREPARE))
        previous = self._own.get(slot)
        if previous is not None:
            if not (isinstance(previous, Vote)):
                raise InvariantError("isinstance(previous, Vote)")
            if previous.block_hash != block.hash:
                return None
            return PrePrepare(view, self.height, self.own_index, block, previous.signature)
        pre_prepare = sign_pre_prepare(self._key, self.config.chain_id, view, self.own_index, block)
        record = Vote(Kind.PRE_PREPARE, view, self.height, block.hash, self.own_index, pre_prepare.signature)
        self._own[slot] = record
        effects.append(PersistVote(record))
        return pre_prepare

    def _broadcast_proposal(self, block: types.Block, effects: list[Effect]) -> None:
        pre_prepare = self._sign_proposal(self.view, block, effects)
        if pre_prepare is None:
            return
        effects.append(Broadcast(pre_prepare))
        self._accept_proposal(pre_prepare, effects)

    def _rebroadcast(self, effects: list[Effect]) -> None:
        """Resend our messages for the current height; a peer may have missed them."""
        self._progress_ms = self.now_ms
        if self._target is not None:
            own_view_change = self._own.get((self.height, self._target, int(Kind.VIEW_CHANGE)))
            if own_view_change is not None:
                effects.append(Broadcast(own_view_change))
            return
        new_view = self._new_views.get(self.view)
        if new_view is not None and self.validators.primary(self.view) == self.own_index:
            effects.append(Broadcast(new_view))
        round_ = self._rounds.get(self.view)
        if round_ is not None and round_.proposal is not None and round_.proposal.proposer == self.own_index:
            effects.append(Broadcast(round_.proposal))
        for kind in (Kind.PREPARE, Kind.COMMIT):
            vote = self._own.get((self.height, self.view, int(kind)))
            if vote is not None:
                effects.append(Broadcast(vote))

    # ------------------------------------------------------------ message dispatch

    def _on_message(self, received: MessageReceived, effects: list[Effect]) -> None:
        message = received.message
        if isinstance(message, Vote) and message.kind == Kind.CHECKPOINT:
            self._on_checkpoint(message, effects)
            return
        if message.height < self.height:
            return  # already decided
        if message.height > self.height:
            self._buffer_future(received)
            return
        if isinstance(message, ViewChange):
            self._on_view_change(message, received.sender, effects)
        elif isinstance(message, NewView):
            self._on_new_view(message, effects)
        elif message.view > self.view:
            self._buffer_later_view(received)
        elif isinstance(message, PrePrepare):
            if message.view == self.view and self._target is None:
                self._on_pre_prepare(message, effects, reproposal=False)
        else:
            self._on_vote(message, effects)

    def _buffer_future(self, received: MessageReceived) -> None:
        height = received.message.height
        # A message for height H shows its sender committed H - 1.
        self._note_peer_height(received.sender, height - 1)
        self._early.add_for_height(received, height=height, current_height=self.height)

    def _buffer_later_view(self, received: MessageReceived) -> None:
        self._early.add_for_view(received, view=received.message.view, current_view=self.view)

    def _replay(self, buffered: list[MessageReceived]) -> None:
        self._inbox.extendleft(reversed(buffered))

    # ------------------------------------------------------------ normal case

    def _find_pre_prepare_problem(self, message: PrePrepare, *, reproposal: bool) -> str | None:
        header = message.block.header
        primary = self.validators.primary(message.view)
        if message.proposer != primary:
            return (
                f"pre-prepare from validator {message.proposer}, primary of view {message.view} is {primary}"
            )
        if not message.is_signed_by(self.config.chain_id, self.validators.validators[primary].public_key):
            return "pre-prepare signature is invalid"
        if header.height != message.height or header.chain_id != self.config.chain_id:
            return "block header disagrees with the pre-prepare"
        # A re-proposal (through NEW-VIEW) keeps the header of the view that first proposed it.
        if header.proposer != self.validators.primary(header.view):
            return "block header names a proposer that was not primary of its view"
        if header.view != message.view and not (reproposal and header.view < message.view):
            return "block header names another view"
        return self._find_header_problem(header)

    def _find_header_problem(self, header: types.BlockHeader) -> str | None:
        """What every block must satisfy, also one that arrives certified through catch-up."""
        if header.parent_hash != self.head.block_hash:
            return f"block {header.height} does not extend our head"
        if header.timestamp_ms <= self.head.timestamp_ms:
            return "block timestamp does not advance"
        if header.validator_set_hash != self.validators.compute_hash():
            return "block names another validator set"
        return None

    def _name(self, index: int) -> str:
        return self.validators.validators[index].entity_id

    def _find_timestamp_problem(self, header: types.BlockHeader, *, fresh: bool) -> str | None:
        """A proposal's time against our wall clock (see the module docstring, Time)."""
        offset_ms = header.timestamp_ms - self.wall_ms
        drift_ms = self.config.timestamp_drift_ms_max
        if offset_ms > drift_ms:
            return (
                f"block timestamp is {offset_ms} ms ahead of our clock ({self._name(header.proposer)} "
                f"proposed it; at most {drift_ms} ms allowed)"
            )
        if fresh and offset_ms < -drift_ms:
            return (
                f"block timestamp is {-offset_ms} ms behind our clock ({self._name(header.proposer)} "
                f"proposed it; at most {drift_ms} ms allowed)"
            )
        return None

    def _on_pre_prepare(self, message: PrePrepare, effects: list[Effect], *, reproposal: bool) -> None:
        round_ = self._round(message.view)
        current = round_.proposal
        if current is not None:
            if current.block.hash != message.block.hash and message.proposer == current.proposer:
                self._report_conflicting_proposals(current, message, effects)
            return
        if message.block.hash in round_.refused:
            return
        problem = self._find_pre_prepare_problem(message, reproposal=reproposal)
        clock_problem = None
        if problem is None:
            # A block first proposed in this view is fresh, whether it came in a PRE-PREPARE or
            # in a NEW-VIEW; only a prepared block carried over from an earlier view is not.
            header = message.block.header
            fresh = header.view == message.view
            # Our own proposal (it reaches here in our NEW-VIEW) is dated by our clock or parent
            # + 1: a primary whose clock is behind the chain would refuse its own block.
            if message.proposer != self.own_index:
                if fresh:
                    self.clock_offsets_ms[message.proposer] = header.timestamp_ms - self.wall_ms
                problem = clock_problem = self._find_timestamp_problem(header, fresh=fresh)
        if problem is None:
            problem = self._app.find_block_problem(message.block)
        if problem is not None:
            round_.refused.add(message.block.hash)
            message_text = f"refused proposal at height {message.height}: {problem}"
            effects.append(Diagnostic(message_text, warning=clock_problem is not None))
            return
        self._accept_proposal(message, effects)

    def _report_conflicting_proposals(
        self, first: PrePrepare, second: PrePrepare, effects: list[Effect]
    ) -> None:
        if not second.is_signed_by(
            self.config.chain_id, self.validators.validators[second.proposer].public_key
        ):
            return
        quoted = [
            Vote(Kind.PRE_PREPARE, item.view, item.height, item.block.hash, item.proposer, item.signature)
            for item in (first, second)
        ]
        evidence = Evidence(
            second.proposer, Kind.PRE_PREPARE, second.view, second.height, quoted[0], quoted[1]
        )
        effects.append(RecordEvidence(evidence))
        effects.append(
            Diagnostic(f"primary {second.proposer} proposed two blocks for height {second.height}")
        )
        if second.view == self.view and self._target is None:
            self._start_view_change(self.view + 1, effects)

    def _accept_proposal(self, message: PrePrepare, effects: list[Effect]) -> None:
        self._round(message.view).proposal = message
        self._progress_ms = self.now_ms
        if self._target is None:
            # The primary delivered: the timer now measures how long the vote takes, so a
            # large block that is slow to build under load does not count against it twice.
            self._deadline_ms = self.now_ms + self._compute_view_timeout_ms()
        self._sign(Kind.PREPARE, message.view, message.block.hash, effects)
        self._check_quorums(message.view, effects)

    def _on_vote(self, vote: Vote, effects: list[Effect]) -> None:
        if vote.kind not in (Kind.PREPARE, Kind.COMMIT) or vote.validator >= self.validators.size:
            return
        if vote.view < self.view and vote.view not in self._rounds:
            return  # an old view we never took part in
        round_ = self._round(vote.view)
        known = round_.votes[vote.kind].get(vote.validator)
        if known is not None and known[0] == vote.block_hash:
            return
        public_key = self.validators.validators[vote.validator].public_key
        if not vote.is_signed_by(self.config.chain_id, public_key):
            effects.append(Diagnostic(f"invalid vote signature from validator {vote.validator}"))
            return
        if known is not None:
            first = Vote(vote.kind, vote.view, vote.height, known[0], vote.validator, known[1])
            effects.append(
                RecordEvidence(Evidence(vote.validator, vote.kind, vote.view, vote.height, first, vote))
            )
            effects.append(Diagnostic(f"validator {vote.validator} voted twice at height {vote.height}"))
            return
        round_.votes[vote.kind][vote.validator] = (vote.block_hash, vote.signature)
        self._progress_ms = self.now_ms
        self._check_quorums(vote.view, effects)

    def _sign(self, kind: Kind, view: int, block_hash: bytes, effects: list[Effect]) -> None:
        """Sign, persist and broadcast our vote; not as an observer, while leaving the view, or twice."""
        if self.own_index is None or view != self.view or self._target is not None:
            return
        slot = (self.height, view, int(kind))
        previous = self._own.get(slot)
        round_ = self._round(view)
        if previous is not None:
            # Restored from the log or already sent: never sign another hash here.
            if not (isinstance(previous, Vote)):
                raise InvariantError("isinstance(previous, Vote)")
            if previous.block_hash == block_hash:
                round_.votes[kind].setdefault(self.own_index, (block_hash, previous.signature))
            return
        if not (self._key is not None):
            raise InvariantError("self._key is not None")
        vote = sign_vote(self._key, self.config.chain_id, kind, view, self.height, block_hash, self.own_index)
        self._own[slot] = vote
        round_.votes[kind][self.own_index] = (block_hash, vote.signature)
        effects.append(PersistVote(vote))
        effects.append(Broadcast(vote))

    def _check_quorums(self, view: int, effects: list[Effect]) -> None:
        round_ = self._round(view)
        proposal = round_.proposal
        if proposal is None:
            commits = round_.votes[Kind.COMMIT].values()
            if any(round_.count(Kind.COMMIT, voted) >= self.validators.quorum for voted, _ in commits):
                # The others decided a block we never received: fetch it with its certificate.
                self._catch_up.note_decided_elsewhere(self.now_ms)
            return
        block_hash = proposal.block.hash
        if round_.count(Kind.PREPARE, block_hash) >= self.validators.quorum:
            self._note_prepared(view, proposal.block, round_.signatures(Kind.PREPARE, block_hash), effects)
        if round_.count(Kind.COMMIT, block_hash) >= self.validators.quorum:
            signatures = round_.signatures(Kind.COMMIT, block_hash)
            certificate = quorum.CommitCertificate(self.height, view, block_hash, signatures)
            self._commit(proposal.block, certificate, effects)

    def _note_prepared(
        self, view: int, block: types.Block, signatures: tuple[tuple[int, bytes], ...], effects: list[Effect]
    ) -> None:
        if self._prepared is None or self._prepared.view < view:
            self._prepared = PreparedCertificate(view, block, signatures)
            if self.own_index is not None:
                # The certificate must outlive a crash before our COMMIT can: a
                # view change after a restart still has to report this block.
                effects.append(PersistVote(self._prepared))
        self._sign(Kind.COMMIT, view, block.hash, effects)

    # ------------------------------------------------------------ view change

    def _start_view_change(self, target: int, effects: list[Effect]) -> None:
        if not (target > self.view):
            raise InvariantError("target > self.view")
        if self._target is not None and self._target >= target:
            return
        self._target = target
        self._failed_views = min(self._failed_views + 1, self.config.view_timeout_doublings_max)
        self.view_changes_started += 1
        self._deadline_ms = self.now_ms + self._compute_view_timeout_ms()
        self._progress_ms = self.now_ms
        effects.append(Diagnostic(f"asking for view {target} at height {self.height}"))
        if self.own_index is None:
            return
        slot = (self.height, target, int(Kind.VIEW_CHANGE))
        message = self._own.get(slot)
        if message is None:
            if not (self._key is not None):
                raise InvariantError("self._key is not None")
            message = sign_view_change(
                self._key, self.config.chain_id, target, self.height, self.own_index, self._prepared
            )
            self._own[slot] = message
            effects.append(PersistVote(message))
        effects.append(Broadcast(message))
        if not (isinstance(message, ViewChange)):
            raise InvariantError("isinstance(message, ViewChange)")
        self._count_view_change(message, effects)

    def _on_view_change(self, message: ViewChange, sender: str, effects: list[Effect]) -> None:
        if message.new_view <= self.view:
            # The sender is behind in views: show it how we got here.
            new_view = self._new_views.get(self.view)
            if new_view is not None and self._target is None:
                effects.append(SendTo(sender, new_view))
            return
        known = self._view_changes.get(message.validator)
        if known is not None and known.new_view >= message.new_view:
            return
        problem = find_view_change_problem(
            message, chain_id=self.config.chain_id, validators=self.validators, head_hash=self.head.block_hash
        )
        if problem is not None:
            effects.append(Diagnostic(f"refused view change: {problem}"))
            return
        self._count_view_change(message, effects)

    def _count_view_change(self, message: ViewChange, effects: list[Effect]) -> None:
        self._view_changes[message.validator] = message
        floor = self.view if self._target is None else self._target
        higher = sorted(vc.new_view for vc in self._view_changes.values() if vc.new_view > floor)
        if len(higher) >= self.validators.faults_max + 1:
            # f+1 validators want a later view: at least one is honest, so join the
            # smallest such view rather than wait for our own timer.
            self._start_view_change(higher[0], effects)
        self._maybe_send_new_view(message.new_view, effects)

    def _maybe_send_new_view(self, view: int, effects: list[Effect]) -> None:
        if self.own_index is None or self.validators.primary(view) != self.own_index:
            return
        if view <= self.view or view in self._new_views or self._target != view:
            return
        proofs = tuple(
            sorted(
                (vc for vc in self._view_changes.values() if vc.new_view == view), key=lambda vc: vc.validator
            )
        )
        if len(proofs) < self.validators.quorum:
            return
        chosen = select_prepared(proofs)
        block = chosen.block if chosen is not None else self._propose_new_block_in(view)
        pre_prepare = None if block is None else self._sign_proposal(view, block, effects)
        if chosen is not None and pre_prepare is None:
            return  # signed another block here before a crash; wait for the next view
        message = NewView(view, self.height, proofs, pre_prepare)
        effects.append(Broadcast(message))
        self._enter_view(message, effects)

    def _propose_new_block_in(self, view: int) -> types.Block | None:
        if not (self.own_index is not None):
            raise InvariantError("self.own_index is not None")
        return self._app.propose_block(
            height=self.height,
            view=view,
            proposer=self.own_index,
            timestamp_ms=max(self.wall_ms, self.head.timestamp_ms + 1),
            parent_hash=self.head.block_hash,
        )

    def _on_new_view(self, message: NewView, effects: list[Effect]) -> None:
        if message.new_view < self.view or (message.new_view == self.view and self._target is None):
            return
        if self._target is not None and message.new_view < self._target:
            # Our VIEW-CHANGE for the target reported what we had prepared when we left
            # the lower views; taking part in one of them again could prepare (and
            # commit) a block that proof left out, and a later view would replace it.
            return
        problem = find_new_view_problem(
            message, chain_id=self.config.chain_id, validators=self.validators, head_hash=self.head.block_hash
        )
        if problem is not None:
            effects.append(Diagnostic(f"refused new view {message.new_view}: {problem}"))
            return
        self._enter_view(message, effects)

    def _enter_view(self, message: NewView, effects: list[Effect]) -> None:
        view = message.new_view
        self.view = view
        self._target = None
        self._new_views[view] = message
        self._deadline_ms = self.now_ms + self._compute_view_timeout_ms()
        self._progress_ms = self.now_ms
        self._view_changes = {v: vc for v, vc in self._view_changes.items() if vc.new_view > view}
        effects.append(Diagnostic(f"entered view {view} at height {self.height}"))
        later = self._early.take_view(view)
        if message.pre_prepare is not None:
            self._on_pre_prepare(message.pre_prepare, effects, reproposal=True)
        self._replay(later)

    # ------------------------------------------------------------ checkpoints

    @property
    def stable_checkpoint(self) -> int:
        return self._checkpoints.stable_height

    def _sign_checkpoint(self, block: types.Block, effects: list[Effect]) -> None:
        if self.own_index is None or not self._checkpoints.is_checkpoint_height(block.height):
            return
        if not (self._key is not None):
            raise InvariantError("self._key is not None")
        vote = sign_vote(
            self._key, self.config.chain_id, Kind.CHECKPOINT, 0, block.height, block.hash, self.own_index
        )
        effects.append(Broadcast(vote))
        self._on_checkpoint(vote, effects)

    def _on_checkpoint(self, vote: Vote, effects: list[Effect]) -> None:
        problem = self._checkpoints.add(vote, self.head.height)
        if problem is not None:
            effects.append(Diagnostic(problem))
            return
        self._check_checkpoint(vote.height, effects)

    def _check_checkpoint(self, height: int, effects: list[Effect]) -> None:
        certificate = self._checkpoints.find_stable(height, self.head.height)
        if certificate is not None:
            effects.append(StableCheckpoint(certificate))

    # ------------------------------------------------------------ commit and catch-up

    def _commit(
        self, block: types.Block, certificate: quorum.CommitCertificate, effects: list[Effect]
    ) -> None:
        if not (block.height == self.height):
            raise InvariantError("commits are contiguous")
        if not (block.header.parent_hash == self.head.block_hash):
            raise InvariantError("a commit extends the head")
        effects.append(CommitBlock(block, certificate))
        self.committed_blocks += 1
        view = max(self.view, certificate.view)
        self.head = ChainHead(block.height, block.hash, block.header.timestamp_ms, view)
        self.view = view
        self._target = None
        # Each commit earns back one doubling of the view timeout, not all of them: on a
        # machine too loaded for the base timeout the timeout stays where it worked.
        self._failed_views = max(0, self._failed_views - 1)
        self._deadline_ms = None
        self._rounds = {}
        self._prepared = None
        self._view_changes = {}
        self._new_views = {}
        self._height_started_ms = self._progress_ms = self.now_ms
        self._own = {slot: record for slot, record in self._own.items() if slot[0] > self.head.height}
        self._catch_up.note_commit(self.head.height)
        ready = self._early.take_height(self.height)
        self._sign_checkpoint(block, effects)
        self._check_checkpoint(block.height, effects)
        self._replay(ready)
        self._yield = True

    def _note_peer_height(self, peer: str, height: int) -> None:
        self._catch_up.note_peer_height(peer, height, head_height=self.head.height, now_ms=self.now_ms)

    def _maybe_request_blocks(self, effects: list[Effect]) -> None:
        request = self._catch_up.next_request(head_height=self.head.height, now_ms=self.now_ms)
        if request is not None:
            effects.append(request)

    def _on_blocks(self, received: BlocksReceived, effects: list[Effect]) -> None:
        self._catch_up.note_response(received.sender)
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
        self, block: types.Block, certificate: quorum.CommitCertificate
    ) -> str | None:
        if (certificate.height, certificate.block_hash) != (block.height, block.hash):
            return "certificate is for another block"
        if block.header.chain_id != self.config.chain_id:
            return f"block for chain {block.header.chain_id!r}"
        problem = certificate.find_problem(self.config.chain_id, self.validators)
        if problem is None:
            problem = self._find_header_problem(block.header)
        if problem is None:
            problem = self._app.find_block_problem(block)
        return problem

    # ------------------------------------------------------------ invariants

    def _check_invariants(self) -> None:
        self._early.check_invariants()
        if not (all(height > self.head.height for height, _, _ in self._own)):
            raise InvariantError("a signed message of ours is kept for a committed height")
        if not (self._target is None or self._target > self.view):
            raise InvariantError("a view change targets a view not above the current one")
        if not (self._prepared is None or self._prepared.height == self.height):
            raise InvariantError("the prepared certificate is for another height")
        for view, round_ in self._rounds.items():
            if not (
                round_.proposal is None
                or (round_.proposal.height, round_.proposal.view)
                == (
                    self.height,
                    view,
                )
            ):
                raise InvariantError("a round holds a proposal for another height or view")
