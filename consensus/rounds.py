"""Quorum counting for one (height, view): the proposal, and the PREPARE and COMMIT votes by
validator.  A validator's first vote of a kind is the one counted; a second, different one is
evidence (the engine's business), never a second count.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from chainnode.core import types
from consensus.messages import PrePrepare

Kind = types.VoteKind


@dataclass(slots=True)
class Round:
    """What we know about one (height, view)."""

    proposal: PrePrepare | None = None
    refused: set[bytes] = field(default_factory=set)  # block hashes found invalid
    # votes[kind][validator index] = (block hash, signature)
    votes: dict[Kind, dict[int, tuple[bytes, bytes]]] = field(
        default_factory=lambda: {Kind.PREPARE: {}, Kind.COMMIT: {}}
    )

    def count(self, kind: Kind, block_hash: bytes) -> int:
        return sum(1 for voted, _ in self.votes[kind].values() if voted == block_hash)

    def signatures(self, kind: Kind, block_hash: bytes) -> tuple[tuple[int, bytes], ...]:
        return tuple(
            sorted(
                (index, signature)
                for index, (voted, signature) in self.votes[kind].items()
                if voted == block_hash
            )
        )
