"""The auditor: replays every block and checks what the package docstring lists."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from chainnode.app import governance
from chainnode.app.execution import Executor, InvalidBlockError, SignatureCache, get_entity
from chainnode.app.genesis import Genesis
from chainnode.app.state import compute_genesis_state_root
from chainnode.core import crypto, identity_records, quorum, types
from chainnode.core.errors import ConfigError, DecodeError
from chainnode.tools.audit.checkpoint import Checkpoint
from chainnode.tools.audit.replay import ReplayState
from chainnode.tools.audit.report import AuditError, AuditReport, Failure, ProgressBar, fail
from chainnode.tools.audit.verify import BATCH_ITEMS, SIGNATURE_ITEM_BYTES, SignatureVerifier, Verified
from chainnode.tools.export import ApiSource, BlockSource, LedgerSource, RawBlock, open_ledger_snapshot
from chainnode.tools.verify_rate import measure_verify_rate

ErrorCode = types.ErrorCode
WINDOW_SIGNATURES = 16_384  # signatures verified ahead of re-execution per window
WINDOW_FETCH_BLOCKS = 32
_EXECUTION_CHECKS = {
    ErrorCode.BAD_SIGNATURE: "tx_signature",
    ErrorCode.UNKNOWN_SIGNER: "tx_signer",
    ErrorCode.WRONG_CHAIN: "tx_chain_id",
    ErrorCode.DUPLICATE: "tx_replay",
}


# ---------------------------------------------------------------- the auditor


@dataclass
class _Loaded:
    """One height of a window: what the source holds, decoded, and where its signatures went."""

    height: int
    raw: RawBlock | None
    block: types.Block | None = None
    certificate: quorum.CommitCertificate | None = None
    problem: AuditError | None = None
    tx_items: list[int] = field(default_factory=list)  # item index per transaction, -1 if none
    tx_keys: list[bytes] = field(default_factory=list)
    certificate_items: list[int] = field(default_factory=list)  # item index per signature, -1 if none
    certificate_set: bytes = b""  # encoding of the validator set the pool checked the certificate with


@dataclass
class _Window:
    loaded: list[_Loaded]
    verified: Verified
    items: int


class Auditor:
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
        self._validator_sets: dict[bytes, quorum.ValidatorSet] = {}
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

    def _get_validators(self, height: int) -> tuple[bytes, quorum.ValidatorSet]:
        """The validator set of `height`: `val/set` in the replayed state (see the module doc)."""
        encoded = self.state.get_state(identity_records.VALIDATOR_SET_KEY) or b""
        validators = self._validator_sets.get(encoded)
        if validators is None:
            try:
                validators = quorum.decode_validator_set(encoded)
            except DecodeError as error:
                raise fail(
                    height, "validator_set", f"the replayed state holds no validator set: {error}"
                ) from None
            self._validator_sets[encoded] = validators
        return encoded, validators

    def _count(self, check: str, times: int = 1) -> None:
        self.checks[check] = self.checks.get(check, 0) + times

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
        started = time.monotonic()
        baseline = measure_verify_rate() if self.measure_baseline else None
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
        window = self._prepare_window(verifier, height, last) if height <= last else None
        while window is not None:
            following_height = window.loaded[-1].height + 1
            # Verify the next window's signatures while this one is re-executed.
            following = (
                self._prepare_window(verifier, following_height, last) if following_height <= last else None
            )
            flags = window.verified.get()
            self.signatures_verified += window.items
            for loaded in window.loaded:
                self._audit_block(loaded, flags)
                progress.update(loaded.height, self.transactions)
            window = following
        progress.update(self.height, self.transactions, force=True)

    # ------------------------------------------------------------ windows (ahead of re-execution)

    def _prepare_window(self, verifier: SignatureVerifier, height_first: int, last: int) -> _Window:
        loaded: list[_Loaded] = []
        items = bytearray()
        keys: dict[str, bytes | None] = {}
        height = height_first
        while height <= last and len(items) < WINDOW_SIGNATURES * SIGNATURE_ITEM_BYTES:
            heights = list(range(height, min(height + WINDOW_FETCH_BLOCKS, last + 1)))
            for item_height, raw in zip(heights, self.source.get_blocks(heights), strict=True):
                entry = _Loaded(item_height, raw)
                self._decode(entry)
                self._add_items(entry, items, keys)
                loaded.append(entry)
            height = heights[-1] + 1
        return _Window(loaded, verifier.submit(bytes(items)), len(items) // SIGNATURE_ITEM_BYTES)

    def _decode(self, entry: _Loaded) -> None:
        if entry.raw is None:
            entry.problem = fail(entry.height, "block_missing", "the source has no block or certificate")
            return
        try:
            entry.block = types.decode_block(entry.raw.block_encoded, check_body=False)
        except DecodeError as error:
            entry.problem = fail(entry.height, "block_decode", error.message)
            return
        try:
            entry.certificate = quorum.decode_commit_certificate(entry.raw.certificate_encoded)
        except DecodeError as error:
            entry.problem = fail(entry.height, "certificate_decode", error.message)

    def _add_items(self, entry: _Loaded, items: bytearray, keys: dict[str, bytes | None]) -> None:
        block, certificate = entry.block, entry.certificate
        if block is None or certificate is None:
            return
        for tx in block.transactions:
            if tx.signer not in keys:
                signer = get_entity(self.state, tx.signer)
                keys[tx.signer] = None if signer is None else signer.public_key
            key = keys[tx.signer]
            entry.tx_keys.append(key or b"")
            entry.tx_items.append(-1 if key is None else len(items) // SIGNATURE_ITEM_BYTES)
            if key is not None:
                items += key + tx.hash + tx.signature
        try:
            entry.certificate_set, validators = self._get_validators(entry.height)
        except AuditError:
            # Reported in order when the block is checked; nothing to verify ahead.
            entry.certificate_items = [-1] * len(certificate.signatures)
            return
        payload = types.compute_vote_payload(
            types.VoteKind.COMMIT,
            self.genesis.chain_id,
            certificate.view,
            certificate.height,
            certificate.block_hash,
        )
        for index, signature in certificate.signatures:
            if index >= validators.size:
                entry.certificate_items.append(-1)
                continue
            entry.certificate_items.append(len(items) // SIGNATURE_ITEM_BYTES)
            items += validators.validators[index].public_key + payload + signature

    # ------------------------------------------------------------ one block, in order

    def _audit_block(self, entry: _Loaded, flags: bytes) -> None:
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

    def _check_header(self, height: int, block: types.Block) -> None:
        header = block.header
        drift_ms = governance.get_chain_params(self.state, self.genesis.params).timestamp_drift_ms_max
        checks: list[tuple[str, bool, str]] = [
            ("height", header.height == height, f"the block stored at {height} says height {header.height}"),
            ("chain_id", header.chain_id == self.genesis.chain_id, f"block for chain {header.chain_id!r}"),
            (
                "parent_hash",
                header.parent_hash == self.block_hash,
                f"parent hash {header.parent_hash.hex()} is not the hash of {height - 1}",
            ),
            (
                "timestamp",
                header.timestamp_ms > self.timestamp_ms,
                f"timestamp {header.timestamp_ms} does not advance past {self.timestamp_ms}",
            ),
            (
                "timestamp_future",
                header.timestamp_ms - self.wall_ms <= drift_ms,
                f"timestamp {header.timestamp_ms} is {header.timestamp_ms - self.wall_ms} ms ahead of the "
                f"auditor's clock (at most {drift_ms} ms allowed)",
            ),
            (
                "tx_count",
                header.tx_count == len(block.transactions),
                f"the header counts {header.tx_count} transactions, the body has {len(block.transactions)}",
            ),
        ]
        for check, holds, reason in checks:
            if not holds:
                raise fail(height, check, reason)
            self._count(check)
        if types.compute_tx_root(block.transactions) != header.tx_root:
            raise fail(
                height,
                "tx_root",
                "the transactions do not hash to the header's tx root",
                self._locate_tampered_tx(height, block),
            )
        self._count("tx_root")

    def _locate_tampered_tx(self, height: int, block: types.Block) -> int | None:
        """Best effort: the first transaction whose stored receipt or signature betrays a change."""
        stored = (
            self.source.get_receipts(height, len(block.transactions))
            if isinstance(self.source, LedgerSource)
            else None
        )
        for index, tx in enumerate(block.transactions):
            if stored is not None:
                receipt = stored[index]
                try:
                    if receipt is None or types.decode_receipt(receipt).tx_hash != tx.hash:
                        return index
                except DecodeError:
                    return index
            signer = get_entity(self.state, tx.signer)
            if signer is not None and not tx.verify_signature(signer.public_key):
                return index
        return None

    def _check_certificate(
        self, entry: _Loaded, block: types.Block, certificate: quorum.CommitCertificate, flags: bytes
    ) -> None:
        height, header = entry.height, block.header
        encoded, validators = self._get_validators(height)
        if header.validator_set_hash != validators.compute_hash():
            raise fail(height, "validator_set", "the header names another set than the replayed one")
        self._count("validator_set")
        if header.proposer != validators.primary(header.view):
            raise fail(
                height, "proposer", f"proposer {header.proposer} is not the primary of view {header.view}"
            )
        self._count("proposer")
        binding = (certificate.height, certificate.block_hash) == (height, block.hash)
        if not binding or certificate.view < header.view:
            raise fail(height, "certificate_binding", "the commit certificate is for another block or view")
        self._count("certificate_binding")
        indexes = [index for index, _ in certificate.signatures]
        if indexes != sorted(set(indexes)) or any(index >= validators.size for index in indexes):
            raise fail(
                height,
                "certificate_signers",
                f"signers {indexes} are not distinct known validators in ascending order",
            )
        self._count("certificate_signers")
        if len(indexes) < validators.quorum:
            raise fail(
                height, "certificate_quorum", f"{len(indexes)} signatures, quorum is {validators.quorum}"
            )
        self._count("certificate_quorum")
        payload = types.compute_vote_payload(
            types.VoteKind.COMMIT, self.genesis.chain_id, certificate.view, height, block.hash
        )
        for (index, signature), item in zip(certificate.signatures, entry.certificate_items, strict=True):
            if encoded != entry.certificate_set:  # the set changed after the pool checked it
                holds = crypto.verify(validators.validators[index].public_key, payload, signature)
            else:
                holds = item >= 0 and bool(flags[item])
            if not holds:
                raise fail(
                    height,
                    "certificate_signature",
                    f"invalid COMMIT signature of validator {validators.validators[index].entity_id}",
                )
        self._count("certificate_signature", len(indexes))

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

    def _check_stored(
        self,
        source: LedgerSource,
        height: int,
        block: types.Block,
        receipts: Sequence[types.Receipt],
        stored: Sequence[bytes | None],
    ) -> None:
        for index, (tx, receipt) in enumerate(zip(block.transactions, receipts, strict=True)):
            if stored[index] != receipt.encode():
                raise fail(height, "stored_receipt", "the node's receipt is not the replayed one", index)
            if source.get_tx_location(tx.hash) != (height, index):
                raise fail(height, "tx_index", f"the node's index places {tx.hash.hex()} elsewhere", index)
        self._count("stored_receipt", len(receipts))
        self._count("tx_index", len(receipts))
        if source.get_block_height(block.hash) != height:
            raise fail(height, "block_index", "the node's block-hash index does not point to this height")
        self._count("block_index")

    # ------------------------------------------------------------ the end

    def _check_head(self, height: int, block_hash: bytes, state_root: bytes) -> None:
        if (height, block_hash, state_root) != (self.height, self.block_hash, self.state_root):
            raise fail(height, "head", "the head the source reports is not the replayed head")
        self._count("head")
        if isinstance(self.source, LedgerSource):
            difference = _find_state_difference(self.source.iter_state(), self.state.get_sorted_items())
            if difference is not None:
                raise fail(height, "stored_state", difference)
            self._count("stored_state")


def _get_code_label(code: int) -> str:
    try:
        return ErrorCode(code).label
    except ValueError:
        return str(code)


def _find_state_difference(
    stored: Iterator[tuple[bytes, bytes]], replayed: Sequence[tuple[bytes, bytes]]
) -> str | None:
    """The first key where the node's stored state and the replayed state differ, described; or None."""
    position = 0
    for key, value in stored:
        if position < len(replayed) and replayed[position][0] < key:
            return f"key {replayed[position][0]!r} is missing from the node's stored state"
        if position >= len(replayed) or replayed[position][0] != key:
            return f"the node's stored state holds key {key!r}, which replay never wrote"
        if replayed[position][1] != value:
            return f"the node's stored value of key {key!r} differs from the replayed value"
        position += 1
    if position < len(replayed):
        return f"key {replayed[position][0]!r} is missing from the node's stored state"
    return None


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
