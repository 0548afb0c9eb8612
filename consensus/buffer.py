"""Messages that arrived early: for a later height, or for a later view at the current height.

A replica that is behind (or a peer that is ahead) sees messages it cannot use yet; dropping
them would cost a rebroadcast round, keeping all of them would let a peer fill our memory.  So
they wait here, bounded three ways: at most `heights_max` heights ahead, `views_max` views
ahead, and `messages_max` in all.  The engine takes a height's messages when it reaches the
height and a view's when it enters the view, and feeds them through its inbox again; messages
for views below the one entered, and every later-view message when a height commits, are
dropped (they were for a round that is over).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

from chainnode.core.errors import InvariantError

Item = TypeVar("Item")


@dataclass
class MessageBuffer(Generic[Item]):
    heights_max: int
    views_max: int
    messages_max: int
    _by_height: dict[int, list[Item]] = field(default_factory=dict)  # later heights
    _by_view: dict[int, list[Item]] = field(default_factory=dict)  # later views, current height
    count: int = 0

    def add_for_height(self, item: Item, *, height: int, current_height: int) -> bool:
        """Keep `item` until `height`; False when it is too far ahead or the buffer is full."""
        if height - current_height > self.heights_max or self.count >= self.messages_max:
            return False
        self._by_height.setdefault(height, []).append(item)
        self.count += 1
        return True

    def add_for_view(self, item: Item, *, view: int, current_view: int) -> bool:
        """Keep `item` until `view` at the current height; False when too far ahead or full."""
        if view - current_view > self.views_max or self.count >= self.messages_max:
            return False
        self._by_view.setdefault(view, []).append(item)
        self.count += 1
        return True

    def take_view(self, view: int) -> list[Item]:
        """Entering `view`: its messages, and those of lower views dropped."""
        for stale in [v for v in self._by_view if v < view]:
            self.count -= len(self._by_view.pop(stale))
        return self._take(self._by_view, view)

    def take_height(self, height: int) -> list[Item]:
        """Reaching `height`: its messages; every later-view message (of the height that just
        committed) and every message of a lower height dropped."""
        for items in self._by_view.values():
            self.count -= len(items)
        self._by_view = {}
        for stale in [h for h in self._by_height if h < height]:
            self.count -= len(self._by_height.pop(stale))
        return self._take(self._by_height, height)

    def _take(self, buffers: dict[int, list[Item]], key: int) -> list[Item]:
        items = buffers.pop(key, [])
        self.count -= len(items)
        return items

    def check_invariants(self) -> None:
        held = sum(len(items) for items in self._by_height.values()) + sum(
            len(items) for items in self._by_view.values()
        )
        if held != self.count:
            raise InvariantError("the count of buffered messages disagrees with the buffers")
        if self.count > self.messages_max:
            raise InvariantError("the message buffer holds more than its bound")
