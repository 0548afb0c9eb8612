"""The auditor: replays every block and checks what the package docstring lists.

`Auditor` runs the replay: it starts from the genesis file or a checkpoint, reads windows ahead
(`WindowReader`, chainnode.tools.audit.window), checks each block in order (`BlockChecks`,
chainnode.tools.audit.checks), re-executes it on its own state and writes the report.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections import deque
from pathlib import Path
from typing import TextIO

from chainnode.app.execution import Executor, InvalidBlockError, SignatureCache
from chainnode.app.genesis import Genesis
from chainnode.app.state import compute_genesis_state_root
from chainnode.core import types
from chainnode.core.errors import ConfigError, DecodeError
from chainnode.tools.audit.checkpoint import Checkpoint
from chainnode.tools.audit.checks import BlockChecks
from chainnode.tools.audit.replay import ReplayState
from chainnode.tools.audit.report import AuditError, AuditReport, Failure, ProgressBar, fail
from chainnode.tools.audit.verify import BATCH_ITEMS, SignatureVerifier
from chainnode.tools.audit.window import (
    WINDOW_SIGNATURES,
    WINDOW_SIGNATURES_FIRST,
    LoadedBlock,
    WindowReader,
)
from chainnode.tools.export import ApiSource, BlockSource, LedgerSource, open_ledger_snapshot
from chainnode.tools.verify_rate import measure_verify_rate

ErrorCode = types.ErrorCode
_EXECUTION_CHECKS = {
    ErrorCode.BAD_SIGNATURE: "tx_signature",
    ErrorCode.UNKNOWN_SIGNER: "tx_signer",
    ErrorCode.WRONG_CHAIN: "tx_chain_id",
    ErrorCode.DUPLICATE: "tx_replay",
}


# ---------------------------------------------------------------- the auditor


class Auditor(WindowReader, BlockChecks):
    """Replays one chain from `genesis` (or a checkpoint) and checks everything (see the module doc)."""

    def __init__(
        self,
        genesis: Genesis,
        source: BlockSource,
        *,
        workers: int | None = None,
        checkpoint: Checkpoint | None = None,
        progress_stream: TextIO | None = None,
        measure_baseline: bool = True,
    ) -> None:
        self.genesis = genesis
        self.source = source
        self.genesis_hash = genesis.compute_hash()
        self.workers = (os.cpu_count() or 1) if workers is None else workers
        self.checkpoint = checkpoint
        self.progress_stream = progress_stream
        self.measure_baseline = measure_baseline
        self.checks: dict[str, int] = {}
        self.wall_ms = time.time_ns() // 1_000_000  # the auditor's clock (see Time above)
        self.failed_receipts: dict[str, int] = {}
        if checkpoint is None:
            initial = genesis.initial_state()
            self.state = ReplayState(initial)
            self.committed: set[bytes] = set()
            self.height, self.block_hash = 0, self.genesis_hash
            self.state_root = compute_genesis_state_root(initial)
            self.timestamp_ms = genesis.genesis_time_ms
        else:
            self.state = ReplayState(dict(checkpoint.state))
            self.committed = set(checkpoint.committed_tx_hashes)
            self.height, self.block_hash = checkpoint.height, checkpoint.block_hash
            self.state_root, self.timestamp_ms = checkpoint.state_root, checkpoint.timestamp_ms
        self.executor = Executor(genesis.chain_id, SignatureCache(4 * WINDOW_SIGNATURES + 4 * BATCH_ITEMS))
        self.blocks = self.transactions = self.signatures_verified = 0
        self.fetched_ahead = deque()

    def compute_checkpoint(self) -> Checkpoint:
        """The replayed chain after the last block that passed every check."""
        return Checkpoint(
            self.genesis.chain_id,
            self.genesis_hash,
            self.height,
            self.block_hash,
            self.state_root,
            self.timestamp_ms,
            tuple(self.state.get_sorted_items()),
            tuple(sorted(self.committed)),
        )

    # ------------------------------------------------------------ run

    def run(self, *, height_to: int | None = None) -> AuditReport:
        """Audit up to `height_to` (default: the source's head); the report holds the first failure."""
        # The yardstick V is measured first, alone on its core, and outside `elapsed_s`: it is
        # no part of the audit, costs the same ~1.3 s whatever the chain's length, and is
        # reported on its own (`verify_rate_measure_s`).
        baseline_started = time.monotonic()
        baseline = measure_verify_rate() if self.measure_baseline else None
        started = time.monotonic()
        resumed_from = self.height if self.checkpoint is not None else None
        height_from = self.height + 1
        head = self.source.get_head()
        last = head.height if height_to is None else height_to
        failure: Failure | None = None
        progress = ProgressBar(self.progress_stream or sys.stderr, height_from, last)
        verifier = SignatureVerifier(self.workers)
        try:
            self._check_start()
            self._run_windows(verifier, last, progress)
            if last == head.height:
                self._check_head(head.height, head.block_hash, head.state_root)
        except AuditError as error:
            failure = error.failure
        finally:
            verifier.close()
            progress.finish()
        return AuditReport(
            source=self.source.description,
            chain_id=self.genesis.chain_id,
            height_from=height_from,
            height_to=last,
            blocks=self.blocks,
            transactions=self.transactions,
            failed_receipts=dict(sorted(self.failed_receipts.items())),
            checks=dict(self.checks),
            failure=failure,
            elapsed_s=time.monotonic() - started,
            signatures_verified=self.signatures_verified,
            workers=self.workers,
            single_core_verify_per_s=baseline,
            verify_rate_measure_s=started - baseline_started,
            final_height=self.height,
            final_block_hash=self.block_hash,
            final_state_root=self.state_root,
            resumed_from=resumed_from,
        )

    def _check_start(self) -> None:
        if self.source.get_genesis_hash() != self.genesis_hash:
            raise fail(0, "genesis", "the source's chain starts from another genesis than the auditor's")
        self._count("genesis")
        checkpoint = self.checkpoint
        if checkpoint is None:
            return
        if checkpoint.genesis_hash != self.genesis_hash or checkpoint.chain_id != self.genesis.chain_id:
            raise fail(checkpoint.height, "checkpoint", "the checkpoint belongs to another chain")
        if checkpoint.height == 0:
            return
        (raw,) = self.source.get_blocks([checkpoint.height])
        try:
            header = None if raw is None else types.decode_block(raw.block_encoded, check_body=False).header
        except DecodeError as error:
            raise fail(
                checkpoint.height, "checkpoint", f"the source's block does not decode: {error}"
            ) from None
        if header is None or header.compute_hash() != checkpoint.block_hash:
            raise fail(checkpoint.height, "checkpoint", "the source's block differs from the checkpoint's")
        if header.state_root != checkpoint.state_root:
            raise fail(checkpoint.height, "checkpoint", "the source's state root is not the checkpoint's")
        self._count("checkpoint")

    def _run_windows(self, verifier: SignatureVerifier, last: int, progress: ProgressBar) -> None:
        height = self.height + 1
        window = (
            self._prepare_window(verifier, height, last, WINDOW_SIGNATURES_FIRST) if height <= last else None
        )
        while window is not None:
            following_height = window.loaded[-1].height + 1
            # Verify the next window's signatures while this one is re-executed.
            following = (
                self._prepare_window(verifier, following_height, last, WINDOW_SIGNATURES)
                if following_height <= last
                else None
            )
            flags = window.verified.get()
            self.signatures_verified += window.items
            for loaded in window.loaded:
                self._audit_block(loaded, flags)
                progress.update(loaded.height, self.transactions)
            window = following
        progress.update(self.height, self.transactions, force=True)

    # ------------------------------------------------------------ one block, in order

    def _audit_block(self, entry: LoadedBlock, flags: bytes) -> None:
        if entry.problem is not None:
            raise entry.problem
        block, certificate = entry.block, entry.certificate
        assert block is not None and certificate is not None, "decoded when no problem is recorded"
        self._count("block_decode")
        self._check_header(entry.height, block)
        self._check_certificate(entry, block, certificate, flags)
        for tx, item, key in zip(block.transactions, entry.tx_items, entry.tx_keys, strict=True):
            if item >= 0 and flags[item]:
                self.executor.signatures.mark_verified(tx.hash, key, tx.signature)
        self._execute(entry.height, block)

    def _execute(self, height: int, block: types.Block) -> None:
        header = block.header
        try:
            result = self.executor.execute_block(
                self.state,
                previous_state_root=self.state_root,
                height=height,
                timestamp_ms=header.timestamp_ms,
                transactions=block.transactions,
                is_committed=self.committed.__contains__,
            )
        except InvalidBlockError as error:
            check = _EXECUTION_CHECKS.get(error.error_code, "execution")
            raise fail(height, check, error.message, error.tx_index) from None
        count = len(block.transactions)
        for check in ("tx_chain_id", "tx_replay", "tx_signer", "tx_signature", "signer_authorization"):
            self._count(check, count)
        stored = self.source.get_receipts(height, count) if isinstance(self.source, LedgerSource) else None
        if result.receipts_root != header.receipts_root:
            mismatch = (
                None
                if stored is None
                else next((i for i, r in enumerate(result.receipts) if stored[i] != r.encode()), None)
            )
            raise fail(height, "receipts_root", "re-execution gives another receipts root", mismatch)
        self._count("receipts_root")
        if result.state_root != header.state_root:
            raise fail(height, "state_root", "re-execution gives another state root")
        self._count("state_root")
        if isinstance(self.source, LedgerSource) and stored is not None:
            self._check_stored(self.source, height, block, result.receipts, stored)
        self.state.apply_write_set(result.write_set)
        self.committed.update(tx.hash for tx in block.transactions)
        for receipt in result.receipts:
            if not receipt.ok:
                label = _get_code_label(receipt.code)
                self.failed_receipts[label] = self.failed_receipts.get(label, 0) + 1
        self.height, self.block_hash, self.state_root = height, block.hash, header.state_root
        self.timestamp_ms = header.timestamp_ms
        self.blocks += 1
        self.transactions += count


def _get_code_label(code: int) -> str:
    try:
        return ErrorCode(code).label
    except ValueError:
        return str(code)


def audit_chain(
    genesis: Genesis,
    *,
    data_dir: Path | None = None,
    node_url: str | None = None,
    height_to: int | None = None,
    checkpoint: Checkpoint | None = None,
    workers: int | None = None,
    timeout_s: float = 30.0,
) -> tuple[AuditReport, Checkpoint | None]:
    """Audit a data directory (copied first) or a node's API; the checkpoint after a clean audit."""
    if (data_dir is None) == (node_url is None):
        raise ConfigError("audit either a data directory or a node, not both or neither")
    with contextlib.ExitStack() as stack:
        source: BlockSource
        if data_dir is not None:
            ledger = stack.enter_context(open_ledger_snapshot(data_dir))
            source = LedgerSource(ledger, f"data directory {data_dir}")
        else:
            assert node_url is not None
            source = ApiSource(node_url, timeout_s=timeout_s)
        auditor = Auditor(genesis, source, workers=workers, checkpoint=checkpoint)
        report = auditor.run(height_to=height_to)
        return report, (auditor.compute_checkpoint() if report.ok else None)
