"""The auditor's own in-memory state, replayed from the genesis file (or a checkpoint)."""

from __future__ import annotations

from collections.abc import Mapping

# ---------------------------------------------------------------- replay state


class ReplayState:
    """The auditor's own state: a dict from genesis (or a checkpoint) plus applied write sets."""

    def __init__(self, items: Mapping[bytes, bytes]) -> None:
        self._values = dict(items)

    def get_state(self, key: bytes) -> bytes | None:
        return self._values.get(key)

    def apply_write_set(self, write_set: Mapping[bytes, bytes | None]) -> None:
        for key, value in write_set.items():
            if value is None:
                self._values.pop(key, None)
            else:
                self._values[key] = value

    def get_sorted_items(self) -> list[tuple[bytes, bytes]]:
        return sorted(self._values.items())
