"""Checkpoint votes: every `interval` heights, a quorum of signatures over the committed block.

A block hash binds the block's state root, so a checkpoint certificate is a
signed state root that an auditor can start from.  The tracker keeps votes
only for heights above the last stable checkpoint and at most a few
intervals ahead of our head, so its memory stays bounded on a long run.
"""

from __future__ import annotations

from chainnode.core import quorum
from chainnode.core.errors import InvariantError
from consensus.messages import Vote

AHEAD_INTERVALS_MAX = 4


class CheckpointTracker:
    def __init__(
        self, chain_id: str, validators: quorum.ValidatorSet, interval: int, stable_height: int
    ) -> None:
        if not (interval > 0):
            raise InvariantError("interval > 0")
        self.chain_id = chain_id
        self.validators = validators
        self.interval = interval
        self.stable_height = stable_height
        self._votes: dict[int, dict[int, tuple[bytes, bytes]]] = {}

    def is_checkpoint_height(self, height: int) -> bool:
        return height % self.interval == 0

    def add(self, vote: Vote, head_height: int) -> str | None:
        """Count a peer's (or our) checkpoint vote; the reason when it is refused as forged."""
        if vote.height <= self.stable_height or not self.is_checkpoint_height(vote.height):
            return None
        if vote.height > head_height + AHEAD_INTERVALS_MAX * self.interval:
            return None  # too far ahead to keep; catch-up will bring us there
        if vote.validator >= self.validators.size or vote.view != 0:
            return None
        votes = self._votes.setdefault(vote.height, {})
        if vote.validator in votes:
            return None
        if not vote.is_signed_by(self.chain_id, self.validators.validators[vote.validator].public_key):
            return f"invalid checkpoint signature from validator {vote.validator}"
        votes[vote.validator] = (vote.block_hash, vote.signature)
        return None

    def find_stable(self, height: int, head_height: int) -> quorum.CheckpointCertificate | None:
        """The certificate that makes `height` stable, once we committed it and a quorum agrees."""
        votes = self._votes.get(height)
        if not votes or height <= self.stable_height or height > head_height:
            return None
        for block_hash in sorted({voted for voted, _ in votes.values()}):
            agreeing = tuple(sorted((i, sig) for i, (voted, sig) in votes.items() if voted == block_hash))
            if len(agreeing) >= self.validators.quorum:
                self.stable_height = height
                for old in [h for h in self._votes if h <= height]:
                    del self._votes[old]
                return quorum.CheckpointCertificate(height, block_hash, agreeing)
        return None
