"""The catch-up pool's worker side (`chainnode.node.catch_up_verify`): what a spawned worker runs.

A module of its own so that a worker imports only this and `chainnode.core.crypto` (a quarter
of a second less than the whole node shell, at the first block response that needs the pool).
"""

from __future__ import annotations

import os
import threading
import time

from chainnode.core import crypto

SIGNATURE_ITEM_BYTES = 128  # public key 32, message (the tx hash) 32, signature 64
PARENT_POLL_S = 1.0


def verify_signature_batch(batch: bytes) -> bytes:
    """One byte per 128-byte item of `batch`: 1 when the signature verifies.  Runs in pool workers.

    The same items as `chainnode.tools.audit.verify` (which the node layer may not import)."""
    flags = bytearray(len(batch) // SIGNATURE_ITEM_BYTES)
    for position in range(len(flags)):
        start = position * SIGNATURE_ITEM_BYTES
        public_key, message = batch[start : start + 32], batch[start + 32 : start + 64]
        flags[position] = crypto.verify(public_key, message, batch[start + 64 : start + 128])
    return bytes(flags)


def watch_parent(parent_pid: int) -> None:
    """A worker's initializer: exit when the node is gone (a SIGKILLed node cannot shut its pool
    down, and an idle worker would wait on its queue for ever)."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_POLL_S)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
