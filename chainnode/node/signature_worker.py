"""The catch-up pool's worker side (`chainnode.node.catch_up_verify`): what a spawned worker runs
besides `chainnode.core.crypto.verify_signature_batch`.

A module of its own so that a worker imports only this and `chainnode.core.crypto` (a quarter
of a second less than the whole node shell, at the first block response that needs the pool).
"""

from __future__ import annotations

import os
import threading
import time

PARENT_POLL_S = 1.0


def watch_parent(parent_pid: int) -> None:
    """A worker's initializer: exit when the node is gone (a SIGKILLed node cannot shut its pool
    down, and an idle worker would wait on its queue for ever)."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_POLL_S)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
