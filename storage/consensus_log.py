"""The ledger's consensus records: this node's vote log, proofs of equivocation, stable checkpoints.

Theory of operation: a validator persists each of its votes before it sends it (`put_vote`,
one synced batch per vote, in the vote log database) and reads them back after a restart
(`get_votes`), so it never signs two different blocks for one height and view.  The votes of a
height are pruned once it commits, at a stable checkpoint and at open; that deletion is not
synced (losing it in a crash only keeps old votes longer).  The log's live data is a few votes
and at most one prepared certificate, but every certificate carries its whole block, so about as
many bytes pass through the log as through the block store; LevelDB keeps deleted entries on disk
until a compaction happens to merge them with their deletions, and a file moved down to a level
that nothing later overlaps (keys are height first) is never merged again.  So once
`VOTE_LOG_COMPACT_BYTES` were logged, `prune_votes` compacts the pruned range: the deleted
entries leave the disk (a 100k-transaction bench left 23 MB of them per node, 230 bytes per
transaction; compacting 16 MB of them took ~25 ms; every 4 MB, as now, what a short run
leaves is at most a few MB: 16 MB were 400 bytes per transaction of a 40k bench).  Proofs of equivocation
(`put_evidence`, one per height, validator, kind and view) and stable checkpoints
(`put_checkpoint`) are kept in the main database, synced.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from storage.databases import LedgerDatabases
from storage.layout import (
    CHECKPOINT_PREFIX,
    EVIDENCE_KEY,
    EVIDENCE_PREFIX,
    MAIN_DATABASE,
    U64,
    VOTE_KEY,
    VOTE_LOG,
)

# Bytes logged between two compactions of the pruned part of the vote log (module docstring).
VOTE_LOG_COMPACT_BYTES = 4 * 1024 * 1024


class ConsensusLog(LedgerDatabases):
    """The vote log, the evidence and the checkpoints of one node's ledger."""

    _vote_bytes_logged = 0  # since the vote log was last compacted (per instance once written)
    # No vote is logged below this height (it was pruned): each prune starts its walk here
    # instead of at the log's first key, over every deletion not yet compacted away.
    _votes_pruned_below = 0

    def put_vote(self, height: int, view: int, kind: int, payload: bytes) -> None:
        """Persist one of this node's votes durably, before it is sent."""
        self.put_votes(((height, view, kind, payload),))

    def put_votes(self, votes: Sequence[tuple[int, int, int, bytes]]) -> None:
        """Persist several votes (height, view, kind, payload) durably in one synced batch: all
        or none is on disk, with one sync instead of one each (a prepared certificate and the
        COMMIT it enables are logged together)."""
        with self._write_batch(VOTE_LOG, sync=True) as batch:
            for height, view, kind, payload in votes:
                batch.put(VOTE_KEY.pack(height, view, kind), payload)
                self._vote_bytes_logged += len(payload)
                self._votes_pruned_below = min(self._votes_pruned_below, height)

    def get_votes(self, height_min: int) -> list[tuple[int, int, int, bytes]]:
        """Logged votes at `height_min` and above, as (height, view, kind, payload) in key order."""
        votes: list[tuple[int, int, int, bytes]] = []
        for key, payload in self._iterate(VOTE_LOG, start=U64.pack(max(height_min, 0))):
            height, view, kind = VOTE_KEY.unpack(key)
            votes.append((int(height), int(view), int(kind), bytes(payload)))
        return votes

    def put_evidence(self, height: int, validator: int, kind: int, view: int, payload: bytes) -> bool:
        """Keep one proof of equivocation per (height, validator, kind, view); False if already kept."""
        self._check_writable()
        key = EVIDENCE_PREFIX + EVIDENCE_KEY.pack(height, validator, kind, view)
        if self._get(key) is not None:
            return False
        with self._write_batch(MAIN_DATABASE, sync=True) as batch:
            batch.put(key, payload)
        return True

    def iter_evidence(self) -> Iterator[bytes]:
        """Every kept proof of equivocation, by height."""
        for payload in self._iterate(MAIN_DATABASE, prefix=EVIDENCE_PREFIX, include_key=False):
            yield bytes(payload)

    def put_checkpoint(self, height: int, payload: bytes) -> None:
        """Keep a stable checkpoint (2f+1 signatures over the block, hence the state root, at `height`)."""
        self._check_writable()
        with self._write_batch(MAIN_DATABASE, sync=True) as batch:
            batch.put(CHECKPOINT_PREFIX + U64.pack(height), payload)

    def get_latest_checkpoint(self) -> bytes | None:
        for payload in self._iterate(
            MAIN_DATABASE, prefix=CHECKPOINT_PREFIX, include_key=False, reverse=True
        ):
            return bytes(payload)
        return None

    def prune_votes(self, height_below: int) -> None:
        """Forget votes below `height_below` (at each commit, at a stable checkpoint, at open)."""
        height_below = max(height_below, 0)
        if height_below <= self._votes_pruned_below:
            return
        stop = U64.pack(height_below)
        self._delete_range(VOTE_LOG, start=U64.pack(self._votes_pruned_below), stop=stop, sync=False)
        self._votes_pruned_below = height_below
        if self._vote_bytes_logged >= VOTE_LOG_COMPACT_BYTES:
            self._vote_bytes_logged = 0
            self._compact_range(VOTE_LOG, stop=stop)
