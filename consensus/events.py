"""What the engine is given: its configuration, the chain head it starts from, the Application it
asks, and the events it steps on (timer ticks, peers' messages, fetched blocks, peers' heights).

Plain values and a protocol: no behaviour, so the node shell and the simulator build them
without pulling in the engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from chainnode.core import quorum, types
from consensus.messages import Message


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

    def has_pending_transactions(self) -> bool:
        """True while transactions wait to be committed (this keeps the view timer running)."""
        ...

    def get_validator_set(self, height: int) -> quorum.ValidatorSet:
        """The validators that decide `height` (a change committed at h applies from h+1)."""
        ...


@dataclass(frozen=True, slots=True)
class Tick:
    now_ms: int  # a monotonic clock: drives every timer
    wall_ms: int  # the wall clock (Unix milliseconds): block timestamps and their checks only


@dataclass(frozen=True, slots=True)
class MessageReceived:
    sender: str  # entity id of the authenticated peer that delivered it
    message: Message


@dataclass(frozen=True, slots=True)
class BlocksReceived:
    sender: str
    blocks: tuple[tuple[types.Block, quorum.CommitCertificate], ...]


@dataclass(frozen=True, slots=True)
class PeerStatus:
    sender: str
    height: int  # the peer's committed height


Event = Tick | MessageReceived | BlocksReceived | PeerStatus


@dataclass(frozen=True, slots=True)
class EngineConfig:
    chain_id: str
    proposal_delay_ms: int = 20  # the primary batches transactions this long into a block
    timestamp_drift_ms_max: int = 10_000  # how far from our wall clock a fresh block's time may be
    rebroadcast_ms: int = 1_000  # resend our messages when a height makes no progress this long
    view_timeout_ms: int = 2_000  # first view-change timeout; doubles per failed view
    view_timeout_doublings_max: int = 5
    checkpoint_interval: int = 100  # heights between signed checkpoints
    sync_grace_ms: int = 300  # how long one height of lag may last before we fetch blocks
    sync_timeout_ms: int = 3_000
    sync_blocks_max: int = 64
    future_heights_max: int = 64  # buffer messages at most this far ahead
    future_views_max: int = 16  # ... and at most this many views ahead at our height
    future_messages_max: int = 20_000


@dataclass(frozen=True, slots=True)
class ChainHead:
    height: int
    block_hash: bytes
    timestamp_ms: int
    view: int = 0  # view of the head's commit certificate: the view the network was in
