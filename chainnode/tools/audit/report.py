"""What an audit says: the first failure, the report, and the progress bar on a terminal."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, TextIO

from chainnode.core.errors import ValidationError


@dataclass(frozen=True, slots=True)
class Failure:
    """The first check that did not hold."""

    height: int
    tx_index: int | None  # position of the transaction in its block, when one is at fault
    check: str
    reason: str

    def describe(self) -> str:
        where = f"height {self.height}" + (f", tx {self.tx_index}" if self.tx_index is not None else "")
        return f"{where}: {self.check}: {self.reason}"


class AuditError(ValidationError):
    code = "audit_failed"

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.describe())
        self.failure = failure


def fail(height: int, check: str, reason: str, tx_index: int | None = None) -> AuditError:
    return AuditError(Failure(height, tx_index, check, reason))


# ---------------------------------------------------------------- report and progress


@dataclass(frozen=True, slots=True)
class AuditReport:
    source: str
    chain_id: str
    height_from: int
    height_to: int  # the last height audited (or attempted)
    blocks: int  # blocks that passed every check
    transactions: int  # transactions in those blocks
    failed_receipts: dict[str, int]  # committed transactions that failed, by error code
    checks: dict[str, int]  # check name -> times it ran and held
    failure: Failure | None
    elapsed_s: float  # the audit, from its start to its verdict; without measuring V
    signatures_verified: int
    workers: int
    single_core_verify_per_s: float | None  # V, measured before the audit starts
    verify_rate_measure_s: float  # the time measuring V took, outside `elapsed_s`
    final_height: int
    final_block_hash: bytes
    final_state_root: bytes
    resumed_from: int | None

    @property
    def ok(self) -> bool:
        return self.failure is None

    def to_json(self) -> dict[str, Any]:
        elapsed_s = max(self.elapsed_s, 1e-9)
        failure = self.failure
        return {
            "result": "ok" if failure is None else "failed",
            "source": self.source,
            "chain_id": self.chain_id,
            "height_from": self.height_from,
            "height_to": self.height_to,
            "resumed_from_height": self.resumed_from,
            "blocks": self.blocks,
            "transactions": self.transactions,
            "failed_receipts": self.failed_receipts,
            "checks": self.checks,
            "first_failure": None
            if failure is None
            else {
                "height": failure.height,
                "tx_index": failure.tx_index,
                "check": failure.check,
                "reason": failure.reason,
            },
            "final": {
                "height": self.final_height,
                "block_hash": self.final_block_hash.hex(),
                "state_root": self.final_state_root.hex(),
            },
            "elapsed_s": round(self.elapsed_s, 3),
            "tx_per_s": round(self.transactions / elapsed_s, 1),
            "signatures_verified": self.signatures_verified,
            "verify_per_s": round(self.signatures_verified / elapsed_s, 1),
            "single_core_verify_per_s": (
                None if self.single_core_verify_per_s is None else round(self.single_core_verify_per_s, 1)
            ),
            "verify_rate_measure_s": round(self.verify_rate_measure_s, 3),
            "workers": self.workers,
        }


class ProgressBar:
    """A one-line plain-text progress bar on a terminal (nothing when `stream` is not a TTY)."""

    def __init__(
        self, stream: TextIO, height_from: int, height_to: int, *, enabled: bool | None = None
    ) -> None:
        self.stream = stream
        self.enabled = stream.isatty() if enabled is None else enabled
        self.height_from, self.height_to = height_from, height_to
        self._started = self._printed = time.monotonic()

    def update(self, height: int, transactions: int, *, force: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not force and now - self._printed < 0.25):
            return
        self._printed = now
        total = max(self.height_to - self.height_from + 1, 1)
        fraction = min(max(height - self.height_from + 1, 0) / total, 1.0)
        bar = "#" * int(fraction * 30)
        rate = transactions / max(now - self._started, 1e-9)
        self.stream.write(
            f"\raudit [{bar:<30}] {fraction:4.0%}  height {height}/{self.height_to}"
            f"  {transactions} tx  {rate:,.0f} tx/s "
        )
        self.stream.flush()

    def finish(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
