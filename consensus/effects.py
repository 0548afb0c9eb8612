"""Effects the engine asks the node shell to carry out, in order.

The order matters: a `PersistVote` always precedes the `Broadcast` of that
vote (and a prepared certificate is persisted before the COMMIT it enables),
so a validator never sends a vote it could forget in a crash.
"""

from __future__ import annotations

from dataclasses import dataclass

from chainnode.core import quorum, types
from consensus.messages import Evidence, LogRecord, Message


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Send `message` to every peer."""

    message: Message


@dataclass(frozen=True, slots=True)
class SendTo:
    """Send `message` to one peer (a NEW-VIEW to a validator still asking for that view)."""

    peer: str
    message: Message


@dataclass(frozen=True, slots=True)
class PersistVote:
    """Durably record our own signed message (or prepared certificate) before anything depends on it."""

    message: LogRecord


@dataclass(frozen=True, slots=True)
class CommitBlock:
    """Write `block` with its certificate; the node applies the execution result it cached."""

    block: types.Block
    certificate: quorum.CommitCertificate


@dataclass(frozen=True, slots=True)
class RequestBlocks:
    """Ask `peer` for the committed blocks `height_min..height_max` with their certificates."""

    peer: str
    height_min: int
    height_max: int


@dataclass(frozen=True, slots=True)
class RecordEvidence:
    """Keep proof that a validator signed two conflicting messages."""

    evidence: Evidence


@dataclass(frozen=True, slots=True)
class StableCheckpoint:
    """A quorum of validators signed the block (and so the state root) at `certificate.height`."""

    certificate: quorum.CheckpointCertificate


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """Something an operator may want in the log: a refused proposal, a view change."""

    message: str
    warning: bool = False  # something is wrong with a validator (e.g. its clock), not just news


Effect = (
    Broadcast
    | SendTo
    | PersistVote
    | CommitBlock
    | RequestBlocks
    | RecordEvidence
    | StableCheckpoint
    | Diagnostic
)
