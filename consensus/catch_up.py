"""When to fetch committed blocks from peers, and from whom.

Peers' committed heights arrive with their status messages and are implied
by any message for a later height.  One height of lag is normal for a few
milliseconds (the commit votes are in flight), so the tracker waits a grace
period before asking; more lag asks at once.  One request is outstanding at
a time and times out, after which another peer is chosen with the injected
random generator.
"""

from __future__ import annotations

import random

from consensus.effects import RequestBlocks


class CatchUp:
    def __init__(self, *, grace_ms: int, timeout_ms: int, blocks_max: int, rng: random.Random) -> None:
        self.grace_ms = grace_ms
        self.timeout_ms = timeout_ms
        self.blocks_max = blocks_max
        self._rng = rng
        self._peer_heights: dict[str, int] = {}
        self._behind_since_ms: int | None = None
        self._request: tuple[str, int] | None = None  # (peer, sent at ms)

    def note_peer_height(self, peer: str, height: int, *, head_height: int, now_ms: int) -> None:
        if height > self._peer_heights.get(peer, -1):
            self._peer_heights[peer] = height
        if height > head_height and self._behind_since_ms is None:
            self._behind_since_ms = now_ms

    def note_decided_elsewhere(self, now_ms: int) -> None:
        """A quorum committed a block we do not have: fetch it."""
        if self._behind_since_ms is None:
            self._behind_since_ms = now_ms

    def note_commit(self, head_height: int) -> None:
        if self._behind_since_ms is not None and self.get_peer_height_max() <= head_height:
            self._behind_since_ms = None

    def note_response(self, peer: str) -> None:
        if self._request is not None and self._request[0] == peer:
            self._request = None

    def get_peer_height_max(self) -> int:
        return max(self._peer_heights.values(), default=-1)

    def next_request(self, *, head_height: int, now_ms: int) -> RequestBlocks | None:
        if self._request is not None:
            if now_ms - self._request[1] < self.timeout_ms:
                return None
            self._request = None
        if self._behind_since_ms is None:
            return None
        lag = self.get_peer_height_max() - head_height
        if lag <= 0:
            self._behind_since_ms = None
            return None
        if lag == 1 and now_ms - self._behind_since_ms < self.grace_ms:
            return None
        peers = sorted(peer for peer, height in self._peer_heights.items() if height > head_height)
        peer = self._rng.choice(peers)
        height_max = min(self._peer_heights[peer], head_height + self.blocks_max)
        self._request = (peer, now_ms)
        return RequestBlocks(peer, head_height + 1, height_max)
