"""Auditor replay over a real chain in a real LevelDB: a clean chain passes, every tampering fails.

Each tampering test copies the node's data directory, changes it through the raw
LevelDB key layout of `storage/ledger.py` (as an attacker with disk access
would), and checks that the audit stops at the right height with the right
check.  The API source is tested over real HTTP on 127.0.0.1.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from chainnode.core import codec, crypto, quorum, types
from chainnode.tools.audit import (
    Auditor,
    AuditReport,
    decode_checkpoint,
    load_checkpoint,
    save_checkpoint,
    verify_signature_batch,
)
from chainnode.tools.export import LedgerSource, open_ledger_snapshot
from storage.ledger import Head
from tests.factories import load_validator_keys, run_cli_process, sign_commit_certificate
from tests.integration.api_harness import ServerThread
from tests.integration.audit_chain import (
    BuiltChain,
    LedgerService,
    RawKey,
    block_key,
    build_chain,
    certificate_key,
    open_raw,
    receipt_key,
)

HEIGHTS = 12
TXS_PER_BLOCK = 6


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> BuiltChain:
    return build_chain(tmp_path_factory.mktemp("audit"), heights=HEIGHTS, txs_per_block=TXS_PER_BLOCK)


@pytest.fixture
def data_dir(chain: BuiltChain, tmp_path: Path) -> Path:
    """A private copy of the node's data directory, to tamper with."""
    copy = tmp_path / "data"
    shutil.copytree(chain.data_dir, copy)
    return copy


def _audit(
    chain: BuiltChain,
    data_dir: Path,
    *,
    workers: int = 0,
    height_to: int | None = None,
    checkpoint: object = None,
) -> tuple[AuditReport, Auditor]:
    with open_ledger_snapshot(data_dir) as ledger:
        auditor = Auditor(
            chain.genesis,
            LedgerSource(ledger, "test"),
            workers=workers,
            checkpoint=checkpoint,
            measure_baseline=False,
        )  # type: ignore[arg-type]
        return auditor.run(height_to=height_to), auditor


def _expect_failure(
    report: AuditReport, height: int, check: str, tx_index: int | None = None, *, blocks: int | None = None
) -> None:
    """The audit stopped at `height` with `check`, after `blocks` blocks passed (default: all below)."""
    assert report.failure is not None, "the audit passed a tampered chain"
    failure = report.failure
    assert (failure.height, failure.check, failure.tx_index) == (height, check, tx_index), failure
    assert report.blocks == (max(height - 1, 0) if blocks is None else blocks)
    assert report.to_json()["first_failure"]["check"] == check


def _rewrite(data_dir: Path, key: RawKey, value: bytes | None) -> None:
    store, raw = key
    db = open_raw(data_dir / "ledger", store)
    try:
        if value is None:
            db.delete(raw, sync=True)
        else:
            db.put(raw, value, sync=True)
    finally:
        db.close()


def _read(data_dir: Path, key: RawKey) -> bytes:
    store, raw = key
    db = open_raw(data_dir / "ledger", store)
    try:
        value = db.get(raw)
    finally:
        db.close()
    assert value is not None
    return bytes(value)


# ---------------------------------------------------------------- clean chains


def test_clean_chain_audits_clean_with_every_check(chain: BuiltChain, data_dir: Path) -> None:
    report, _ = _audit(chain, data_dir)
    assert report.ok, report.failure
    assert (report.blocks, report.transactions) == (HEIGHTS, HEIGHTS * TXS_PER_BLOCK)
    # The chain holds failed transactions on purpose; they are valid history.
    assert report.failed_receipts == {"bad_arguments": HEIGHTS // 4, "missing_role": HEIGHTS // 3}
    txs = HEIGHTS * TXS_PER_BLOCK
    for check in ("tx_signature", "signer_authorization", "stored_receipt", "tx_index"):
        assert report.checks[check] == txs
    for check in ("parent_hash", "tx_root", "receipts_root", "state_root", "certificate_quorum", "proposer"):
        assert report.checks[check] == HEIGHTS
    assert report.checks["certificate_signature"] == 7 * HEIGHTS // 2  # 3 or 4 signatures a block
    assert report.checks["head"] == report.checks["stored_state"] == 1
    document = report.to_json()
    assert document["result"] == "ok" and document["first_failure"] is None
    json.dumps(document)


def test_signature_pool_primes_the_executor(chain: BuiltChain, data_dir: Path) -> None:
    report, auditor = _audit(chain, data_dir, workers=2)
    assert report.ok, report.failure
    assert report.signatures_verified == HEIGHTS * TXS_PER_BLOCK + 7 * HEIGHTS // 2
    # Every transaction's signature came from the pool: the executor's cache holds them all.
    assert len(auditor.executor.signatures) == HEIGHTS * TXS_PER_BLOCK


def test_batch_verifier_flags_each_item() -> None:
    key = crypto.SigningKey.generate()
    messages = [bytes([n]) * 32 for n in range(5)]
    items = b"".join(key.public_key + m + key.sign(m) for m in messages)
    forged = bytearray(items)
    forged[2 * 128 + 64] ^= 1  # the signature of item 2
    assert verify_signature_batch(items) == b"\x01" * 5
    assert verify_signature_batch(bytes(forged)) == b"\x01\x01\x00\x01\x01"


# ---------------------------------------------------------------- tampering


def test_flipped_signature_byte_of_a_stored_transaction(chain: BuiltChain, data_dir: Path) -> None:
    block = types.decode_block(_read(data_dir, block_key(5)))
    tx = block.transactions[3]
    start = block.encoded.index(tx.encoded)
    tampered = bytearray(block.encoded)
    tampered[start + len(tx.encoded) - 1] ^= 0x01  # the last byte of its signature
    _rewrite(data_dir, block_key(5), bytes(tampered))
    report, _ = _audit(chain, data_dir)
    _expect_failure(report, 5, "tx_root", 3)


def test_flipped_value_byte_of_a_stored_transaction(chain: BuiltChain, data_dir: Path) -> None:
    raw = _read(data_dir, block_key(7))
    needle = b"reading 7.4"
    assert raw.count(needle) == 1
    _rewrite(data_dir, block_key(7), raw.replace(needle, b"reading 7.5"))
    report, _ = _audit(chain, data_dir)
    _expect_failure(report, 7, "tx_root", 4)


def test_colluding_validators_cannot_certify_a_forged_signature(chain: BuiltChain, data_dir: Path) -> None:
    """A block whose roots and certificate are all consistent, but one transaction is forged."""
    block = types.decode_block(_read(data_dir, block_key(6)))
    tx = block.transactions[2]
    forged_signature = bytes([tx.signature[0] ^ 1]) + tx.signature[1:]
    fields = codec.decode(tx.encoded)
    forged = types.transaction_from_fields(fields, codec.encode((*fields[:9], forged_signature)))
    txs = list(block.transactions)
    txs[2] = forged
    header = block.header
    new_header = types.BlockHeader(
        header.chain_id,
        header.height,
        header.view,
        header.proposer,
        header.timestamp_ms,
        header.parent_hash,
        types.compute_tx_root(txs),
        header.receipts_root,
        header.state_root,
        header.validator_set_hash,
        header.tx_count,
    )
    new_block = types.Block.create(new_header, txs)
    keys = load_validator_keys(chain.network_dir, chain.genesis.validators)
    _rewrite(data_dir, block_key(6), new_block.encoded)
    _rewrite(data_dir, certificate_key(6), sign_commit_certificate(new_block, keys, signers=4).encode())
    report, _ = _audit(chain, data_dir)
    _expect_failure(report, 6, "tx_signature", 2)


def test_colluding_validators_cannot_certify_a_wrong_state_root(chain: BuiltChain, data_dir: Path) -> None:
    """The head block's header carries another state root, and everything else agrees with it.

    The validators (the test holds all their keys) certify the altered block with all four
    signatures, and the node's block-hash index and head follow it, as a colluding operator
    would leave them: every signature, quorum, root and index check holds.  Only re-execution
    shows that the block's transactions give another state root.  At the head, because the
    next header would otherwise name the original block as its parent.
    """
    height = HEIGHTS
    block = types.decode_block(_read(data_dir, block_key(height)))
    wrong_root = bytes(byte ^ 0xFF for byte in block.header.state_root)
    forged = types.Block.create(dataclasses.replace(block.header, state_root=wrong_root), block.transactions)
    keys = load_validator_keys(chain.network_dir, chain.genesis.validators)
    _rewrite(data_dir, block_key(height), forged.encoded)
    _rewrite(data_dir, certificate_key(height), sign_commit_certificate(forged, keys, signers=4).encode())
    _rewrite(data_dir, ("", b"h" + block.hash), None)
    _rewrite(data_dir, ("", b"h" + forged.hash), height.to_bytes(8, "big"))
    forged_head = Head(height, forged.hash, wrong_root, block.header.timestamp_ms)
    _rewrite(data_dir, ("", b"mhead"), forged_head.encode())
    report, _ = _audit(chain, data_dir)
    _expect_failure(report, height, "state_root")
    assert report.checks["certificate_quorum"] == height and report.checks["receipts_root"] == height


def test_dropped_commit_signature_below_quorum(chain: BuiltChain, data_dir: Path) -> None:
    certificate = quorum.decode_commit_certificate(_read(data_dir, certificate_key(4)))
    assert len(certificate.signatures) == 3  # exactly a quorum at even heights
    dropped = quorum.CommitCertificate(
        4, certificate.view, certificate.block_hash, certificate.signatures[1:]
    )
    _rewrite(data_dir, certificate_key(4), dropped.encode())
    report, _ = _audit(chain, data_dir)
    _expect_failure(report, 4, "certificate_quorum")


def test_dropped_commit_signature_above_quorum_still_audits_clean(chain: BuiltChain, data_dir: Path) -> None:
    certificate = quorum.decode_commit_certificate(_read(data_dir, certificate_key(5)))
    assert len(certificate.signatures) == 4
    dropped = quorum.CommitCertificate(
        5, certificate.view, certificate.block_hash, certificate.signatures[:3]
    )
    _rewrite(data_dir, certificate_key(5), dropped.encode())
    report, _ = _audit(chain, data_dir)
    assert report.ok, report.failure


@pytest.mark.parametrize("workers", [0, 2])
def test_forged_commit_signature(chain: BuiltChain, data_dir: Path, workers: int) -> None:
    certificate = quorum.decode_commit_certificate(_read(data_dir, certificate_key(9)))
    signatures = list(certificate.signatures)
    index, signature = signatures[2]
    signatures[2] = (index, signature[:10] + bytes([signature[10] ^ 0x80]) + signature[11:])
    forged = quorum.CommitCertificate(9, certificate.view, certificate.block_hash, tuple(signatures))
    _rewrite(data_dir, certificate_key(9), forged.encode())
    report, _ = _audit(chain, data_dir, workers=workers)
    _expect_failure(report, 9, "certificate_signature")
    assert "validator-03" in report.failure.reason  # type: ignore[union-attr]


def test_repeated_commit_signer(chain: BuiltChain, data_dir: Path) -> None:
    certificate = quorum.decode_commit_certificate(_read(data_dir, certificate_key(2)))
    first = certificate.signatures[0]
    repeated = quorum.CommitCertificate(2, certificate.view, certificate.block_hash, (first, first, first))
    _rewrite(data_dir, certificate_key(2), repeated.encode())
    report, _ = _audit(chain, data_dir)
    _expect_failure(report, 2, "certificate_signers")


def test_altered_state_value(chain: BuiltChain, data_dir: Path) -> None:
    db = open_raw(data_dir / "ledger")
    try:
        key, value = next(iter(db.iterator(prefix=b"srec/v/")))
        db.put(key, bytes(value[:-1]) + bytes([value[-1] ^ 1]), sync=True)
    finally:
        db.close()
    report, _ = _audit(chain, data_dir)
    _expect_failure(report, HEIGHTS, "stored_state", None, blocks=HEIGHTS)
    assert repr(bytes(key[1:])) in report.failure.reason  # type: ignore[union-attr]


def test_altered_stored_receipt(chain: BuiltChain, data_dir: Path) -> None:
    key = receipt_key(8, 1)
    receipt = types.decode_receipt(_read(data_dir, key))
    _rewrite(data_dir, key, types.Receipt(receipt.tx_hash, 15, "made up", ()).encode())
    report, _ = _audit(chain, data_dir)
    _expect_failure(report, 8, "stored_receipt", 1)


def test_swapped_blocks(chain: BuiltChain, data_dir: Path) -> None:
    block_4, block_5 = _read(data_dir, block_key(4)), _read(data_dir, block_key(5))
    certificate_4, certificate_5 = _read(data_dir, certificate_key(4)), _read(data_dir, certificate_key(5))
    _rewrite(data_dir, block_key(4), block_5)
    _rewrite(data_dir, block_key(5), block_4)
    _rewrite(data_dir, certificate_key(4), certificate_5)
    _rewrite(data_dir, certificate_key(5), certificate_4)
    report, _ = _audit(chain, data_dir)
    _expect_failure(report, 4, "height")


def test_truncated_chain(chain: BuiltChain, data_dir: Path) -> None:
    for height in (HEIGHTS - 1, HEIGHTS):
        _rewrite(data_dir, block_key(height), None)
        _rewrite(data_dir, certificate_key(height), None)
    report, _ = _audit(chain, data_dir)
    _expect_failure(report, HEIGHTS - 1, "block_missing")


def test_audit_past_the_head_fails(chain: BuiltChain, data_dir: Path) -> None:
    report, _ = _audit(chain, data_dir, height_to=HEIGHTS + 3)
    _expect_failure(report, HEIGHTS + 1, "block_missing", blocks=HEIGHTS)


def test_other_genesis_fails_at_height_zero(chain: BuiltChain, tmp_path: Path) -> None:
    other = build_chain(tmp_path / "other", heights=1, txs_per_block=1)
    with open_ledger_snapshot(chain.data_dir) as ledger:
        report = Auditor(other.genesis, LedgerSource(ledger, "test"), workers=0, measure_baseline=False).run()
    _expect_failure(report, 0, "genesis")


# ---------------------------------------------------------------- ranges and checkpoints


def test_checkpoint_resume(chain: BuiltChain, data_dir: Path, tmp_path: Path) -> None:
    first, auditor = _audit(chain, data_dir, height_to=5)
    assert first.ok and first.blocks == 5
    assert "head" not in first.checks  # not at the head: nothing to compare
    path = tmp_path / "checkpoint.bin"
    save_checkpoint(path, auditor.compute_checkpoint())
    checkpoint = load_checkpoint(path)
    assert checkpoint == decode_checkpoint(auditor.compute_checkpoint().encode())
    assert checkpoint.height == 5 and len(checkpoint.committed_tx_hashes) == 5 * TXS_PER_BLOCK
    second, _ = _audit(chain, data_dir, checkpoint=checkpoint)
    assert second.ok, second.failure
    assert (second.height_from, second.blocks, second.resumed_from) == (6, HEIGHTS - 5, 5)
    assert second.checks["stored_state"] == 1  # the resumed state is the full state

    # A checkpoint of another chain (here: another block hash at its height) is refused.
    import dataclasses

    wrong = dataclasses.replace(checkpoint, block_hash=b"\x01" * 32)
    third, _ = _audit(chain, data_dir, checkpoint=wrong)
    _expect_failure(third, 5, "checkpoint", blocks=0)


# ---------------------------------------------------------------- the API source and the command


@pytest.fixture
def served(chain: BuiltChain) -> Iterator[ServerThread]:
    service = LedgerService(chain)
    try:
        with ServerThread(service) as server:  # type: ignore[arg-type]
            yield server
    finally:
        service.close()


def test_audit_through_the_api(chain: BuiltChain, served: ServerThread) -> None:
    from chainnode.tools.audit import audit_chain

    report, checkpoint = audit_chain(chain.genesis, node_url=served.url, workers=0)
    assert report.ok, report.failure
    assert report.blocks == HEIGHTS and report.checks["head"] == 1
    assert "stored_state" not in report.checks  # the API does not expose the stored state
    assert checkpoint is not None and checkpoint.height == HEIGHTS


def test_audit_command_clean_and_tampered(chain: BuiltChain, data_dir: Path, tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    checkpoint_path = tmp_path / "checkpoint.bin"
    clean = run_cli_process(
        "audit",
        "--data-dir",
        str(data_dir),
        "--genesis",
        str(chain.genesis_path),
        "--report",
        str(report_path),
        "--workers",
        "2",
        "--to",
        "8",
        "--save-checkpoint",
        str(checkpoint_path),
        timeout_s=120,
    )
    assert clean.returncode == 0, clean.stderr
    document = json.loads(report_path.read_text())
    assert document["result"] == "ok" and document["blocks"] == 8
    assert document["single_core_verify_per_s"] > 0 and document["verify_per_s"] > 0
    assert load_checkpoint(checkpoint_path).height == 8

    _rewrite(data_dir, certificate_key(10), _read(data_dir, certificate_key(11)))
    failed = run_cli_process(
        "audit",
        "--data-dir",
        str(data_dir),
        "--genesis",
        str(chain.genesis_path),
        "--report",
        str(report_path),
        "--workers",
        "0",
        "--resume",
        str(checkpoint_path),
        timeout_s=120,
    )
    assert failed.returncode == 1
    assert "height 10: certificate_binding" in failed.stderr, failed.stderr
    assert json.loads(report_path.read_text())["first_failure"] == {
        "height": 10,
        "tx_index": None,
        "check": "certificate_binding",
        "reason": "the commit certificate is for another block or view",
    }
    usage = run_cli_process(
        "audit",
        "--data-dir",
        str(data_dir),
        "--genesis",
        str(chain.genesis_path),
        "--from",
        "4",
        timeout_s=120,
    )
    assert usage.returncode == 1 and "checkpoint at height 3" in usage.stderr


def test_a_missing_tx_index_entry_fails_at_its_transaction(chain: BuiltChain, data_dir: Path) -> None:
    tx = types.decode_block(_read(data_dir, block_key(5))).transactions[2]
    _rewrite(data_dir, ("", b"I" + bytes(4) + tx.hash), None)  # epoch 0 (storage.tx_index)
    report, _ = _audit(chain, data_dir)
    _expect_failure(report, 5, "tx_index", 2)


def test_an_extra_tx_index_entry_in_another_epoch_fails_at_the_end(chain: BuiltChain, data_dir: Path) -> None:
    """Every transaction's own entry is right; a second one, in a later epoch, is where a lookup
    by id would look first: the count of entries at the end catches it."""
    tx = types.decode_block(_read(data_dir, block_key(5))).transactions[2]
    _rewrite(data_dir, ("", b"I" + (1).to_bytes(4, "big") + tx.hash), (9).to_bytes(8, "big") + bytes(4))
    report, _ = _audit(chain, data_dir)
    _expect_failure(report, HEIGHTS, "tx_index", blocks=HEIGHTS)
    assert report.failure is not None and "holds 73 entries" in report.failure.reason
