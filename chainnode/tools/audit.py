"""Auditor replay: verify a whole chain from the genesis file, trusting no node.

Theory of operation
-------------------
`Auditor.run` reads blocks with their commit certificates from a
`chainnode.tools.export.BlockSource` (a snapshot of a node's data directory, or a
node's API) and replays them on its own in-memory state, which starts from the
auditor's genesis file (or from a trusted checkpoint).  Per height, in order:

    block_decode, height, chain_id, parent_hash, timestamp, timestamp_future,
    tx_count, tx_root,
    validator_set, proposer, certificate_binding, certificate_signers,
    certificate_quorum, certificate_signature (per signature),
    re-execution: tx_chain_id, tx_replay, tx_signer, tx_signature and
    signer_authorization (per transaction: the signer's certificate registered,
    not revoked, valid at the block's timestamp, with the action's role; a
    failure there is a failed receipt, which the receipts root must show),
    receipts_root, state_root,
    and with a data directory also: stored_receipt and tx_index (per
    transaction), block_index.

At the end, when the audit reached the source's head: `head` (the head the
source reports is the replayed one) and, with a data directory,
`stored_state` (the node's stored state equals the replayed state, key by
key).  The first failure stops the audit; it names the height, the
transaction index when there is one, the check and the reason.

Time: a block's timestamp must pass its parent's (the first block's, the
genesis time), and may not lie ahead of the auditor's own clock, read when the
audit starts, by more than the chain's `timestamp_drift_ms_max` in force at
that height (`timestamp_future`): the validators refuse a fresh block further
than that from their clocks, so a chain dated in the future was certified by
validators that skipped the check.  How far a block lags behind the real time
of its commit cannot be told from block data alone; the validators' lower
bound is checked live, by each of them, for each fresh block.

Validator sets: a validator-set change committed at height h applies from
h + 1, so the set that certifies height h is the `val/set` entry of the
auditor's own replayed state after h - 1 (the genesis set until a change is
replayed).  The auditor derives it itself and never asks the source.

Parallel signature checks.  PyNaCl holds the GIL while it verifies, so the
signatures of a window of blocks ahead of re-execution (transactions and
commit certificates) are verified by a `multiprocessing` pool (spawn start
method, so it is safe with threads and on every platform) in batches of fixed
128-byte items (public key 32, message 32, signature 64); the next window is
verified while the current one is re-executed.  A transaction's key is the
signer's key in the replayed state when its window is prepared; a verified
(tx hash, key, signature) primes the executor's `SignatureCache`, so
re-execution does not verify it again.  If the key changed in between, the
cache misses and the executor verifies itself: the result never depends on
the guess.  Certificate signatures are checked in the pool against the set in
the replayed state when the window is prepared; if a replayed change makes the
set of a height differ from that, its certificate is verified again, here.

Checkpoints.  `compute_checkpoint` captures (height, block hash, state root,
timestamp, the full replayed state, the set of committed transaction ids).
Resuming from one TRUSTS it: the auditor accepts that the blocks up to that
height were verified (by this tool, by someone the auditor trusts) and that
the state in the file is what they produce.  The resumed audit only checks
that the source's block at that height has the checkpoint's hash and state
root, so it continues the same chain; it cannot re-derive the state from the
state root (the chained commitment is not a state tree).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.pool import AsyncResult, Pool
from pathlib import Path
from typing import Any, TextIO

from chainnode.app import governance
from chainnode.app.execution import Executor, InvalidBlockError, SignatureCache, get_entity
from chainnode.app.genesis import Genesis
from chainnode.app.state import compute_genesis_state_root
from chainnode.core import codec, crypto, types
from chainnode.core.errors import ConfigError, DecodeError, ValidationError
from chainnode.core.tags import TAG_CHECKPOINT
from chainnode.tools.export import ApiSource, BlockSource, LedgerSource, RawBlock, open_ledger_snapshot
from chainnode.tools.verify_rate import measure_verify_rate

ErrorCode = types.ErrorCode
SIGNATURE_ITEM_BYTES = 128  # public key 32, message 32, signature 64
WINDOW_SIGNATURES = 16_384  # signatures verified ahead of re-execution per window
WINDOW_FETCH_BLOCKS = 32
BATCH_ITEMS = 1024  # items per pool task
POOL_WAIT_S = 600.0
CHECKPOINT_VERSION = 1
_CHUNK_ITEMS = 50_000
_CHECKPOINT_BYTES_MAX = 16 * 1024 * 1024 * 1024
_EXECUTION_CHECKS = {
    ErrorCode.BAD_SIGNATURE: "tx_signature",
    ErrorCode.UNKNOWN_SIGNER: "tx_signer",
    ErrorCode.WRONG_CHAIN: "tx_chain_id",
    ErrorCode.DUPLICATE: "tx_replay",
}


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


def _fail(height: int, check: str, reason: str, tx_index: int | None = None) -> AuditError:
    return AuditError(Failure(height, tx_index, check, reason))


# ---------------------------------------------------------------- checkpoints


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The replayed chain at a height, to resume from (trusted, see the module doc)."""

    chain_id: str
    genesis_hash: bytes
    height: int
    block_hash: bytes  # the genesis hash at height 0
    state_root: bytes
    timestamp_ms: int
    state: tuple[tuple[bytes, bytes], ...]  # key-sorted
    committed_tx_hashes: tuple[bytes, ...]  # sorted

    def encode(self) -> bytes:
        def chunks(items: Sequence[Any]) -> tuple[tuple[Any, ...], ...]:
            return tuple(tuple(items[i : i + _CHUNK_ITEMS]) for i in range(0, len(items), _CHUNK_ITEMS))

        return codec.encode(
            (
                TAG_CHECKPOINT,
                CHECKPOINT_VERSION,
                self.chain_id,
                self.genesis_hash,
                self.height,
                self.block_hash,
                self.state_root,
                self.timestamp_ms,
                chunks(self.state),
                chunks(self.committed_tx_hashes),
            )
        )


def decode_checkpoint(data: bytes) -> Checkpoint:
    fields = codec.expect_struct(
        codec.decode(data, bytes_max=_CHECKPOINT_BYTES_MAX),
        TAG_CHECKPOINT,
        CHECKPOINT_VERSION,
        10,
        "checkpoint",
    )
    state: list[tuple[bytes, bytes]] = []
    for chunk in codec.expect_tuple(fields[8], "checkpoint state"):
        for item in codec.expect_tuple(chunk, "checkpoint state chunk"):
            pair = codec.expect_tuple(item, "checkpoint state entry", 2)
            if len(pair) != 2:
                raise DecodeError("checkpoint state entry: expected [key, value]")
            key, value = codec.expect_bytes(pair[0], "state key"), codec.expect_bytes(pair[1], "state value")
            state.append((key, value))
    hashes = [
        codec.expect_bytes(item, "committed tx hash", 32)
        for chunk in codec.expect_tuple(fields[9], "checkpoint tx hashes")
        for item in codec.expect_tuple(chunk, "checkpoint tx hash chunk")
    ]
    return Checkpoint(
        codec.expect_str(fields[2], "checkpoint chain id", 64),
        codec.expect_bytes(fields[3], "checkpoint genesis hash", 32),
        codec.expect_int(fields[4], "checkpoint height"),
        codec.expect_bytes(fields[5], "checkpoint block hash", 32),
        codec.expect_bytes(fields[6], "checkpoint state root", 32),
        codec.expect_int(fields[7], "checkpoint timestamp"),
        tuple(state),
        tuple(hashes),
    )


def save_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    partial = path.with_name(path.name + ".partial")
    try:
        partial.write_bytes(checkpoint.encode())
        partial.replace(path)
    except OSError as error:
        raise ConfigError(f"cannot write the checkpoint {path}: {error}") from error


def load_checkpoint(path: Path) -> Checkpoint:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"cannot read the checkpoint {path}: {error}") from error
    try:
        return decode_checkpoint(data)
    except DecodeError as error:
        raise ConfigError(f"{path} is not a checkpoint: {error.message}") from error


# ---------------------------------------------------------------- signature verification


def verify_signature_batch(batch: bytes) -> bytes:
    """One byte per 128-byte item of `batch`: 1 when the signature verifies.  Runs in pool workers."""
    flags = bytearray(len(batch) // SIGNATURE_ITEM_BYTES)
    for position in range(len(flags)):
        start = position * SIGNATURE_ITEM_BYTES
        public_key, message = batch[start : start + 32], batch[start + 32 : start + 64]
        flags[position] = crypto.verify(public_key, message, batch[start + 64 : start + 128])
    return bytes(flags)


class _Verified:
    """The flags of one submitted batch, from the pool or computed in this process."""

    def __init__(self, results: AsyncResult[list[bytes]] | None, flags: bytes = b"") -> None:
        self._results = results
        self._flags = flags

    def get(self) -> bytes:
        if self._results is not None:
            self._flags = b"".join(self._results.get(timeout=POOL_WAIT_S))
            self._results = None
        return self._flags


class SignatureVerifier:
    """A spawn-started process pool (or this process when `workers` is 0) verifying item batches."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: Pool | None = None
        if workers > 0:
            self._pool = multiprocessing.get_context("spawn").Pool(workers)

    def submit(self, items: bytes) -> _Verified:
        if self._pool is None:
            return _Verified(None, verify_signature_batch(items))
        step = BATCH_ITEMS * SIGNATURE_ITEM_BYTES
        batches = [items[start : start + step] for start in range(0, len(items), step)]
        return _Verified(self._pool.map_async(verify_signature_batch, batches))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None


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
    elapsed_s: float
    signatures_verified: int
    workers: int
    single_core_verify_per_s: float | None
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


# ---------------------------------------------------------------- the auditor


@dataclass
class _Loaded:
    """One height of a window: what the source holds, decoded, and where its signatures went."""

    height: int
    raw: RawBlock | None
    block: types.Block | None = None
    certificate: types.CommitCertificate | None = None
    problem: AuditError | None = None
    tx_items: list[int] = field(default_factory=list)  # item index per transaction, -1 if none
    tx_keys: list[bytes] = field(default_factory=list)
    certificate_items: list[int] = field(default_factory=list)  # item index per signature, -1 if none
    certificate_set: bytes = b""  # encoding of the validator set the pool checked the certificate with


@dataclass
class _Window:
    loaded: list[_Loaded]
    verified: _Verified
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
        self._validator_sets: dict[bytes, types.ValidatorSet] = {}
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

    def _get_validators(self, height: int) -> tuple[bytes, types.ValidatorSet]:
        """The validator set of `height`: `val/set` in the replayed state (see the module doc)."""
        encoded = self.state.get_state(types.VALIDATOR_SET_KEY) or b""
        validators = self._validator_sets.get(encoded)
        if validators is None:
            try:
                validators = types.decode_validator_set(encoded)
            except DecodeError as error:
                raise _fail(
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
            raise _fail(0, "genesis", "the source's chain starts from another genesis than the auditor's")
        self._count("genesis")
        checkpoint = self.checkpoint
        if checkpoint is None:
            return
        if checkpoint.genesis_hash != self.genesis_hash or checkpoint.chain_id != self.genesis.chain_id:
            raise _fail(checkpoint.height, "checkpoint", "the checkpoint belongs to another chain")
        if checkpoint.height == 0:
            return
        (raw,) = self.source.get_blocks([checkpoint.height])
        try:
            header = None if raw is None else types.decode_block(raw.block_encoded, check_body=False).header
        except DecodeError as error:
            raise _fail(
                checkpoint.height, "checkpoint", f"the source's block does not decode: {error}"
            ) from None
        if header is None or header.compute_hash() != checkpoint.block_hash:
            raise _fail(checkpoint.height, "checkpoint", "the source's block differs from the checkpoint's")
        if header.state_root != checkpoint.state_root:
            raise _fail(checkpoint.height, "checkpoint", "the source's state root is not the checkpoint's")
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
            entry.problem = _fail(entry.height, "block_missing", "the source has no block or certificate")
            return
        try:
            entry.block = types.decode_block(entry.raw.block_encoded, check_body=False)
        except DecodeError as error:
            entry.problem = _fail(entry.height, "block_decode", error.message)
            return
        try:
            entry.certificate = types.decode_commit_certificate(entry.raw.certificate_encoded)
        except DecodeError as error:
            entry.problem = _fail(entry.height, "certificate_decode", error.message)

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
                raise _fail(height, check, reason)
            self._count(check)
        if types.compute_tx_root(block.transactions) != header.tx_root:
            raise _fail(
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
        self, entry: _Loaded, block: types.Block, certificate: types.CommitCertificate, flags: bytes
    ) -> None:
        height, header = entry.height, block.header
        encoded, validators = self._get_validators(height)
        if header.validator_set_hash != validators.compute_hash():
            raise _fail(height, "validator_set", "the header names another set than the replayed one")
        self._count("validator_set")
        if header.proposer != validators.primary(header.view):
            raise _fail(
                height, "proposer", f"proposer {header.proposer} is not the primary of view {header.view}"
            )
        self._count("proposer")
        binding = (certificate.height, certificate.block_hash) == (height, block.hash)
        if not binding or certificate.view < header.view:
            raise _fail(height, "certificate_binding", "the commit certificate is for another block or view")
        self._count("certificate_binding")
        indexes = [index for index, _ in certificate.signatures]
        if indexes != sorted(set(indexes)) or any(index >= validators.size for index in indexes):
            raise _fail(
                height,
                "certificate_signers",
                f"signers {indexes} are not distinct known validators in ascending order",
            )
        self._count("certificate_signers")
        if len(indexes) < validators.quorum:
            raise _fail(
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
                raise _fail(
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
            raise _fail(height, check, error.message, error.tx_index) from None
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
            raise _fail(height, "receipts_root", "re-execution gives another receipts root", mismatch)
        self._count("receipts_root")
        if result.state_root != header.state_root:
            raise _fail(height, "state_root", "re-execution gives another state root")
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
                raise _fail(height, "stored_receipt", "the node's receipt is not the replayed one", index)
            if source.get_tx_location(tx.hash) != (height, index):
                raise _fail(height, "tx_index", f"the node's index places {tx.hash.hex()} elsewhere", index)
        self._count("stored_receipt", len(receipts))
        self._count("tx_index", len(receipts))
        if source.get_block_height(block.hash) != height:
            raise _fail(height, "block_index", "the node's block-hash index does not point to this height")
        self._count("block_index")

    # ------------------------------------------------------------ the end

    def _check_head(self, height: int, block_hash: bytes, state_root: bytes) -> None:
        if (height, block_hash, state_root) != (self.height, self.block_hash, self.state_root):
            raise _fail(height, "head", "the head the source reports is not the replayed head")
        self._count("head")
        if isinstance(self.source, LedgerSource):
            difference = _find_state_difference(self.source.iter_state(), self.state.get_sorted_items())
            if difference is not None:
                raise _fail(height, "stored_state", difference)
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
