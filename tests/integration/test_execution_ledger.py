"""Block execution over the real LevelDB ledger: execute, commit, read back and refuse a replay.

The entities, keys and transactions are those of the pure execution tests
(`tests/unit/test_execution.py`); here the state under the executor is a real `Ledger`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from chainnode.app import records
from chainnode.app.execution import Executor, InvalidBlockError, SignatureCache
from chainnode.core import crypto, quorum, types
from storage.ledger import Ledger
from tests.factories import make_executed_block
from tests.unit.test_execution import CHAIN_ID, GENESIS_ROOT, INITIAL_STATE, NOW_MS, make_tx

ErrorCode = types.ErrorCode


def test_execute_commit_and_replay_on_a_real_ledger(tmp_path: Path) -> None:
    executor = Executor(CHAIN_ID, SignatureCache())
    with Ledger(tmp_path / "db") as ledger:
        ledger.initialize(
            genesis_hash=crypto.hash_tagged("genesis", b"g"),
            genesis_time_ms=NOW_MS - 1,
            initial_state=INITIAL_STATE,
            state_root=GENESIS_ROOT,
        )
        tx = make_tx(nonce=1)
        head = ledger.get_head()
        result = executor.execute_block(
            ledger,
            previous_state_root=head.state_root,
            height=1,
            timestamp_ms=NOW_MS,
            transactions=[tx],
            is_committed=ledger.is_committed,
        )
        block = make_executed_block(
            result,
            [tx],
            chain_id=CHAIN_ID,
            height=1,
            timestamp_ms=NOW_MS,
            parent_hash=head.block_hash,
            validator_set_hash=types.ZERO_HASH,
        )
        certificate = quorum.CommitCertificate(1, 0, block.hash, ())
        assert ledger.commit_block(block, certificate, result.receipts, result.write_set).state_root == (
            result.state_root
        )
        record = records.get_record(ledger, "alice", "doc")
        assert record == records.RecordVersion("alice", "doc", 1, b"value", 1, tx.hash)
        assert (
            executor.check_transaction(
                ledger, tx, height=2, timestamp_ms=NOW_MS, is_committed=ledger.is_committed
            )[0]
            == ErrorCode.DUPLICATE
        )
        with pytest.raises(InvalidBlockError):
            executor.execute_block(
                ledger,
                previous_state_root=result.state_root,
                height=2,
                timestamp_ms=NOW_MS + 1,
                transactions=[tx],
                is_committed=ledger.is_committed,
            )
