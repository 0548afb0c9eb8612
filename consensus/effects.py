"""Effects the engine asks the node shell to carry out, in order.

The order matters: a `PersistVote` always precedes the `Broadcast` of that
vote, so a validator never sends a vote it could forget in a crash.
"""

from __future__ import annotations

from dataclasses import dataclass

from chainnode import types
from consensus.messages import Message


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Send `message` to every peer."""

    message: Message


@dataclass(frozen=True, slots=True)
class PersistVote:
    """Durably record our own signed message before it leaves the node."""

    message: Message


@dataclass(frozen=True, slots=True)
class CommitBlock:
    """Write `block` with its certificate; the node applies the execution result it cached."""

    block: types.Block
    certificate: types.CommitCertificate


@dataclass(frozen=True, slots=True)
class RequestBlocks:
    """Ask `peer` for the committed blocks `height_min..height_max` with their certificates."""

    peer: str
    height_min: int
    height_max: int


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """Something an operator may want in the log: a refused proposal, a bad certificate."""

    message: str


Effect = Broadcast | PersistVote | CommitBlock | RequestBlocks | Diagnostic
