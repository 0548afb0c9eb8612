"""The machine's own Ed25519 verification rate V, the yardstick the bench and the audit report
their throughput against (C x V / n for a network, the audit's verify rate against V x C)."""

from __future__ import annotations

import time

from chainnode.core import crypto
from chainnode.core.errors import InvariantError

VERIFY_SAMPLES = 5
VERIFY_SAMPLE_S = 0.25


def measure_verify_rate(samples: int = VERIFY_SAMPLES, sample_s: float = VERIFY_SAMPLE_S) -> float:
    """Single-core Ed25519 verifications per second with `crypto.verify` (libsodium through
    PyNaCl), the function the nodes call for every transaction.

    The best of a few short samples: other work on the machine can only slow
    a sample down, so the fastest one is the closest to what one core does.
    """
    key = crypto.SigningKey.generate()
    public_key = key.public_key
    messages = [crypto.hash_tagged("tx", index.to_bytes(8, "big")) for index in range(256)]
    signatures = [key.sign(message) for message in messages]
    best = 0.0
    for _ in range(samples):
        done = 0
        started = time.perf_counter()
        deadline = started + sample_s
        for _ in range(100_000):
            for message, signature in zip(messages, signatures, strict=True):
                if not crypto.verify(public_key, message, signature):  # what the nodes call
                    raise InvariantError("the verification benchmark's own signature did not verify")
            done += len(messages)
            if time.perf_counter() >= deadline:
                break
        best = max(best, done / (time.perf_counter() - started))
    return best
