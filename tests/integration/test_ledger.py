"""The LevelDB ledger, on a real LevelDB in tmp_path."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import plyvel
import pytest

from chainnode.app.state import compute_genesis_state_root, compute_state_root
from chainnode.core import crypto, quorum, types
from chainnode.core.errors import StorageCorruptError, StorageError, StorageLockedError
from chainnode.core.keyspaces import ASSET_HISTORY_PREFIX, RECORD_HISTORY_PREFIX
from storage import tx_index
from storage.consensus_log import VOTE_LOG_COMPACT_BYTES
from storage.ledger import BLOCK_STORE, MAIN_DATABASE, VOTE_LOG, Head, Ledger, Write
from storage.tx_filter import TxFilter
from tests import factories

CHAIN_ID = "ledger-test"
GENESIS_HASH = crypto.hash_tagged("genesis", b"ledger-test")
GENESIS_TIME_MS = 1_700_000_000_000
INITIAL_STATE = {b"id/e/alice": b"alice-record", b"val/set": b"validators", b"rec/old": b"x"}
VALIDATOR_KEYS = [crypto.SigningKey(bytes([index + 1]) * 32) for index in range(4)]
VALIDATORS = quorum.ValidatorSet(
    tuple(quorum.Validator(f"validator-{i}", key.public_key) for i, key in enumerate(VALIDATOR_KEYS))
)
SIGNER_KEY = crypto.SigningKey(b"\x42" * 32)


def make_tx(nonce: int) -> types.Transaction:
    """A put of its own key per nonce, on this module's chain."""
    return factories.make_tx(SIGNER_KEY, chain_id=CHAIN_ID, nonce=nonce, args=(f"key-{nonce}", b"v"))


def make_block(
    head: Head,
    transactions: Sequence[types.Transaction],
    write_set: dict[bytes, bytes | None],
    *,
    parent_hash: bytes | None = None,
) -> tuple[types.Block, quorum.CommitCertificate, list[types.Receipt]]:
    """A block on `head` with a real 3-of-4 commit certificate and one receipt per transaction."""
    height = head.height + 1
    receipts = [
        types.Receipt(
            tx.hash,
            0 if index % 2 == 0 else int(types.ErrorCode.BAD_ARGUMENTS),
            "" if index % 2 == 0 else "failed on purpose",
            (),
        )
        for index, tx in enumerate(transactions)
    ]
    header = types.BlockHeader(
        chain_id=CHAIN_ID,
        height=height,
        view=0,
        proposer=height % 4,
        timestamp_ms=head.timestamp_ms + 1000,
        parent_hash=head.block_hash if parent_hash is None else parent_hash,
        tx_root=types.compute_tx_root(transactions),
        receipts_root=types.compute_receipts_root(receipts),
        state_root=compute_state_root(head.state_root, write_set),
        validator_set_hash=VALIDATORS.compute_hash(),
        tx_count=len(transactions),
    )
    block = types.Block.create(header, transactions)
    certificate = factories.sign_commit_certificate(block, VALIDATOR_KEYS, signers=3)
    assert certificate.find_problem(CHAIN_ID, VALIDATORS) is None
    return block, certificate, receipts


def initialize(ledger: Ledger) -> None:
    ledger.initialize(
        genesis_hash=GENESIS_HASH,
        genesis_time_ms=GENESIS_TIME_MS,
        initial_state=INITIAL_STATE,
        state_root=compute_genesis_state_root(INITIAL_STATE),
    )


def commit_chain(path: Path, blocks_count: int) -> None:
    """Commit `blocks_count` blocks, each with two transactions and a counter in state.

    Also the body of the crash test's child process, which is killed in the middle.
    """
    with Ledger(path) as ledger:
        if not ledger.is_initialized():
            initialize(ledger)
        for _ in range(blocks_count):
            head = ledger.get_head()
            height = head.height + 1
            transactions = [make_tx(2 * height), make_tx(2 * height + 1)]
            write_set: dict[bytes, bytes | None] = {
                b"counter": str(height).encode(),
                f"rec/{height}".encode(): b"v" * 64,
            }
            ledger.commit_block(*make_block(head, transactions, write_set), write_set)


def test_initialize_sets_genesis_head_and_state(tmp_path: Path) -> None:
    with Ledger(tmp_path / "db") as ledger:
        assert not ledger.is_initialized()
        with pytest.raises(StorageError):
            ledger.get_head()
        initialize(ledger)
        assert ledger.is_initialized()
        head = ledger.get_head()
        assert head == Head(0, GENESIS_HASH, compute_genesis_state_root(INITIAL_STATE), GENESIS_TIME_MS)
        assert ledger.get_genesis_hash() == GENESIS_HASH
        assert ledger.get_state(b"id/e/alice") == b"alice-record"
        assert ledger.get_block(0) is None
        with pytest.raises(StorageError, match="already initialized"):
            initialize(ledger)


def test_committed_blocks_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "db"
    committed = []
    with Ledger(path) as ledger:
        initialize(ledger)
        for height in range(1, 4):
            head = ledger.get_head()
            transactions = [make_tx(10 * height + i) for i in range(3)]
            write_set: dict[bytes, bytes | None] = {b"counter": bytes([height]), b"rec/old": None}
            block, certificate, receipts = make_block(head, transactions, write_set)
            new_head = ledger.commit_block(block, certificate, receipts, write_set)
            assert new_head == Head(height, block.hash, block.header.state_root, block.header.timestamp_ms)
            committed.append((block, certificate, receipts))
    with Ledger(path) as ledger:
        block, _, _ = committed[-1]
        assert ledger.get_head() == Head(3, block.hash, block.header.state_root, block.header.timestamp_ms)
        assert ledger.get_genesis_hash() == GENESIS_HASH
        for block, certificate, receipts in committed:
            height = block.height
            assert ledger.get_block(height) == block.encoded
            assert types.decode_block(ledger.get_block(height) or b"").hash == block.hash
            assert ledger.get_block_height(block.hash) == height
            assert ledger.get_certificate(height) == certificate.encode()
            for index, (tx, receipt) in enumerate(zip(block.transactions, receipts, strict=True)):
                # Failed receipts (odd indexes) are indexed like successful ones.
                assert ledger.get_tx_location(tx.hash) == (height, index)
                assert ledger.is_committed(tx.hash)
                assert ledger.get_receipt(height, index) == receipt.encode()
            assert ledger.get_receipt(height, len(receipts)) is None
        assert ledger.get_block(4) is None
        assert ledger.get_certificate(4) is None
        assert ledger.get_block_height(b"\x00" * 32) is None
        assert ledger.get_tx_location(make_tx(999).hash) is None
        assert ledger.get_state(b"counter") == bytes([3])
        assert ledger.get_state(b"rec/old") is None, "a deletion in the write set removes the key"
        assert ledger.get_state(b"id/e/alice") == b"alice-record"


def test_iter_state_returns_a_prefix_in_key_order(tmp_path: Path) -> None:
    with Ledger(tmp_path / "db") as ledger:
        initialize(ledger)
        write_set: dict[bytes, bytes | None] = {b"rec/b": b"2", b"rec/a": b"1", b"red": b"x"}
        ledger.commit_block(*make_block(ledger.get_head(), [], write_set), write_set)
        assert list(ledger.iter_state(b"rec/")) == [(b"rec/a", b"1"), (b"rec/b", b"2"), (b"rec/old", b"x")]
        assert list(ledger.iter_state(b"nothing/")) == []


def test_iter_state_from_a_start_key_seeks_there_and_stays_in_the_prefix(tmp_path: Path) -> None:
    with Ledger(tmp_path / "db") as ledger:
        initialize(ledger)
        write_set: dict[bytes, bytes | None] = {b"rec/b": b"2", b"rec/a": b"1", b"red": b"x", b"rec/c": b"3"}
        ledger.commit_block(*make_block(ledger.get_head(), [], write_set), write_set)
        assert [key for key, _ in ledger.iter_state(b"rec/", start=b"rec/b")] == [
            b"rec/b",
            b"rec/c",
            b"rec/old",
        ]
        assert [key for key, _ in ledger.iter_state(b"rec/", start=b"rec/b\x00")] == [b"rec/c", b"rec/old"]
        assert list(ledger.iter_state(b"rec/", start=b"rec/zz")) == []
        assert list(ledger.iter_state(b"rec/", start=b"rec0")) == [], "a start past the prefix ends it"
        assert [key for key, _ in ledger.iter_state(b"rec/", start=b"a")] == [
            b"rec/a",
            b"rec/b",
            b"rec/c",
            b"rec/old",
        ]


@pytest.mark.parametrize("fault", ["wrong_parent", "wrong_height", "wrong_certificate", "duplicate_tx"])
def test_refused_commit_writes_nothing(tmp_path: Path, fault: str) -> None:
    path = tmp_path / "db"
    replayed = make_tx(1)
    with Ledger(path) as ledger:
        initialize(ledger)
        block, certificate, receipts = make_block(ledger.get_head(), [replayed], {b"k": b"1"})
        ledger.commit_block(block, certificate, receipts, {b"k": b"1"})
        head = ledger.get_head()
        fresh = make_tx(2)
        write_set: dict[bytes, bytes | None] = {b"k": b"2", b"new": b"n"}
        if fault == "wrong_parent":
            bad = make_block(head, [fresh], write_set, parent_hash=b"\x01" * 32)
        elif fault == "wrong_height":
            bad = make_block(Head(5, head.block_hash, head.state_root, head.timestamp_ms), [fresh], write_set)
        elif fault == "wrong_certificate":
            other, _, _ = make_block(head, [], {})
            bad_block, good_certificate, bad_receipts = make_block(head, [fresh], write_set)
            forged = quorum.CommitCertificate(
                good_certificate.height, 0, other.hash, good_certificate.signatures
            )
            bad = (bad_block, forged, bad_receipts)
        else:
            # A replay of an earlier block is refused by execution (`is_committed`); the
            # ledger itself refuses a transaction twice within the block.
            bad = make_block(head, [fresh, fresh], write_set)
        with pytest.raises(AssertionError):
            ledger.commit_block(*bad, write_set)
        assert ledger.get_head() == head
    with Ledger(path) as ledger:
        assert ledger.get_head() == head
        assert ledger.get_block(2) is None
        assert ledger.get_certificate(2) is None
        assert ledger.get_tx_location(fresh.hash) is None
        assert ledger.get_tx_location(replayed.hash) == (1, 0)
        assert ledger.get_state(b"k") == b"1"
        assert ledger.get_state(b"new") is None


def test_vote_log_put_get_prune_in_height_order(tmp_path: Path) -> None:
    path = tmp_path / "db"
    votes = [
        (1, 0, 2, b"p1"),
        (1, 0, 3, b"c1"),
        (1, 1, 2, b"p1v1"),
        (2, 0, 1, b"pp2"),
        (256, 0, 2, b"p256"),
        (70_000, 3, 3, b"c70000"),
    ]
    with Ledger(path) as ledger:
        for vote in reversed(votes):
            ledger.put_vote(*vote)
        assert ledger.get_votes(0) == votes, "big-endian keys sort numerically, not by string"
        assert ledger.get_votes(2) == votes[3:]
        assert ledger.get_votes(257) == votes[5:]
        assert ledger.get_votes(70_001) == []
    with Ledger(path) as ledger:
        assert ledger.get_votes(0) == votes, "votes are durable"
        ledger.prune_votes(256)
        assert ledger.get_votes(0) == votes[4:]
        ledger.prune_votes(10**9)
        assert ledger.get_votes(0) == []
        # The vote log and the other keyspaces do not overlap.
        initialize(ledger)
        assert ledger.get_head().height == 0


def test_a_prune_after_a_vote_below_the_last_prune_still_forgets_it(tmp_path: Path) -> None:
    """A prune walks from the height the last one stopped at; a vote logged below it (never
    done by the engine, which votes above the head only) must still be pruned."""
    with Ledger(tmp_path / "db") as ledger:
        ledger.put_vote(10, 0, 2, b"p10")
        ledger.prune_votes(20)
        assert ledger.get_votes(0) == []
        ledger.put_vote(5, 0, 2, b"p5")
        ledger.put_vote(25, 0, 2, b"p25")
        ledger.prune_votes(20)
        assert ledger.get_votes(0) == [(25, 0, 2, b"p25")]


def test_pruned_votes_leave_the_disk(tmp_path: Path) -> None:
    """Each height logs a prepared certificate as large as its block; once the height is pruned,
    its bytes must not stay on disk (they once were 230 bytes per transaction of a bench)."""
    path = tmp_path / "db"
    certificate = os.urandom(256 * 1024)
    with Ledger(path) as ledger:
        height = 1
        for _ in range(4):
            logged = 0
            while logged < VOTE_LOG_COMPACT_BYTES:
                for kind in (1, 2, 3):
                    ledger.put_vote(height, 0, kind, b"vote %d" % kind)
                ledger.put_vote(height, 0, 9, certificate)
                logged += len(certificate) + 18
                ledger.prune_votes(height + 1)
                height += 1
            # The prune that passed VOTE_LOG_COMPACT_BYTES compacted: of everything logged so far
            # at most one table file stays (LevelDB may have moved the first one below the range
            # its manual compaction merges; the next compaction takes it).
            assert _log_bytes(path / "votes") < VOTE_LOG_COMPACT_BYTES + 512 * 1024, height
        ledger.put_vote(height, 0, 2, b"live")
        assert ledger.get_votes(0) == [(height, 0, 2, b"live")]
        # Without the compactions LevelDB alone kept ~all of the 16 MB logged here.
        assert _log_bytes(path / "votes") < VOTE_LOG_COMPACT_BYTES + 512 * 1024


def test_second_handle_in_this_process_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "db"
    with Ledger(path), pytest.raises(StorageLockedError, match="already open in this process"):
        Ledger(path)
    # Once closed, the directory opens again.
    Ledger(path).close()


_OPEN_IN_CHILD = (
    "import sys\nfrom pathlib import Path\nfrom chainnode.core.errors import StorageError\n"
    "from storage.ledger import Ledger\n"
    "try:\n    Ledger(Path(sys.argv[1]))\nexcept StorageError as error:\n"
    "    print(error.code)\n    print(error.message)\n    sys.exit(3)\nsys.exit(0)\n"
)


def _open_in_child(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _OPEN_IN_CHILD, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_second_process_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "db"
    with Ledger(path):
        result = _open_in_child(path)
    assert result.returncode == 3, result.stderr
    code, message = result.stdout.strip().split("\n")
    assert code == "storage_locked"
    assert str(path) in message and "Resource temporarily unavailable" in message, message


def test_a_refused_second_handle_in_this_process_still_keeps_other_processes_out(tmp_path: Path) -> None:
    """LevelDB's own in-process check drops the process's lock on the database (see
    `storage.leveldb.claim_path`); the ledger must never let it run.

    The other process tries each of the three LevelDB databases on its own: one that opened
    would recover the log this process is writing and delete it.
    """
    path = tmp_path / "db"
    program = (
        "import sys, plyvel\nopened = []\n"
        "for database in sys.argv[1:]:\n"
        "    try:\n        plyvel.DB(database).close()\n        opened.append(database)\n"
        "    except plyvel.IOError:\n        pass\n"
        "print(opened)\n"
    )
    databases = [str(path), str(path / "blocks"), str(path / "votes")]
    with Ledger(path):
        with pytest.raises(StorageLockedError):
            Ledger(path)
        result = subprocess.run(
            [sys.executable, "-c", program, *databases],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", "another process opened a database of a ledger in use"


def test_read_only_ledger_reads_but_never_writes(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="no ledger"):
        Ledger(tmp_path / "missing", read_only=True)
    assert not (tmp_path / "missing").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(StorageError):
        Ledger(tmp_path / "empty", read_only=True)
    commit_chain(tmp_path / "db", 2)
    with Ledger(tmp_path / "db", read_only=True) as ledger:
        head = ledger.get_head()
        assert head.height == 2
        assert ledger.get_state(b"counter") == b"2"
        with pytest.raises(StorageError, match="read-only"):
            ledger.put_vote(1, 0, 1, b"x")
        with pytest.raises(StorageError, match="read-only"):
            ledger.commit_block(*make_block(head, [], {}), {})
        with pytest.raises(StorageError, match="read-only"):
            ledger.prune_votes(10)


def test_killed_writer_leaves_old_or_new_head_never_between(tmp_path: Path) -> None:
    """SIGKILL a real process in the middle of committing blocks; the ledger stays consistent."""
    path = tmp_path / "db"
    program = (
        "import sys\nfrom pathlib import Path\n"
        f"sys.path.insert(0, {str(factories.REPO)!r})\n"
        "from tests.integration import test_ledger\n"
        "test_ledger.commit_chain(Path(sys.argv[1]), 100_000)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", program, str(path)])
    try:
        deadline = time.monotonic() + 60
        # Wait until the child has committed a few blocks, then kill it without warning.
        while time.monotonic() < deadline and process.poll() is None:
            if (path / "CURRENT").exists() and _log_bytes(path) > 20_000:
                break
            time.sleep(0.02)
        assert process.poll() is None, "the writer ended before it was killed"
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait(timeout=30)
    with Ledger(path) as ledger:
        head = ledger.get_head()
        assert head.height >= 1
        assert ledger.get_state(b"counter") == str(head.height).encode()
        for height in range(1, head.height + 1):
            block = types.decode_block(ledger.get_block(height) or b"")
            assert ledger.get_certificate(height) is not None
            for index, tx in enumerate(block.transactions):
                assert ledger.get_tx_location(tx.hash) == (height, index)
                assert ledger.get_receipt(height, index) is not None
        assert block.hash == head.block_hash
        following = head.height + 1
        assert ledger.get_block(following) is None
        assert ledger.get_certificate(following) is None
        assert ledger.get_state(f"rec/{following}".encode()) is None
        assert ledger.get_tx_location(make_tx(2 * following).hash) is None
        # The ledger goes on from where it stopped.
    commit_chain(path, 1)
    with Ledger(path) as ledger:
        assert ledger.get_head().height == following


def _log_bytes(path: Path) -> int:
    try:
        return sum(entry.stat().st_size for entry in path.iterdir() if entry.suffix in (".log", ".ldb"))
    except FileNotFoundError:
        return 0


def test_cached_state_reads_follow_every_commit(tmp_path: Path) -> None:
    with Ledger(tmp_path / "db") as ledger:
        initialize(ledger)
        assert ledger.get_state(b"counter") is None  # a cached miss ...
        assert ledger.get_state(b"doomed") is None
        head = ledger.get_head()
        write_set: dict[bytes, bytes | None] = {b"counter": b"1", b"doomed": b"x"}
        ledger.commit_block(*make_block(head, [make_tx(1)], write_set), write_set)
        assert ledger.get_state(b"counter") == b"1"  # ... replaced by the commit
        assert ledger.get_state(b"doomed") == b"x"
        head = ledger.get_head()
        write_set = {b"counter": b"2", b"doomed": None}
        ledger.commit_block(*make_block(head, [make_tx(2)], write_set), write_set)
        assert ledger.get_state(b"counter") == b"2"
        assert ledger.get_state(b"doomed") is None
    with Ledger(tmp_path / "db") as ledger:
        assert ledger.get_state(b"counter") == b"2"
        assert ledger.get_state(b"doomed") is None


def test_the_tx_index_opens_a_new_epoch_after_tx_epoch_txs_and_finds_every_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Entries are keyed epoch first; a block opens a new epoch once the open one holds
    TX_EPOCH_TXS; lookups find transactions of every epoch, also after a reopen."""
    monkeypatch.setattr(tx_index, "TX_EPOCH_TXS", 3)
    path = tmp_path / "db"
    commit_chain(path, 5)  # two transactions a block: epochs open at heights 3 and 5
    main = plyvel.DB(str(path))
    try:
        epochs = {
            int.from_bytes(key[1:5], "big"): int.from_bytes(value, "big")
            for key, value in main.iterator(prefix=b"T")
        }
        placed = {
            key[5:]: int.from_bytes(key[1:5], "big")
            for key in main.iterator(prefix=b"I", include_value=False)
        }
    finally:
        main.close()
    assert epochs == {1: 3, 2: 5}
    for height in range(1, 6):
        expected_epoch = 0 if height < 3 else 1 if height < 5 else 2
        assert placed[make_tx(2 * height).hash] == expected_epoch, height
        assert placed[make_tx(2 * height + 1).hash] == expected_epoch, height
    commit_chain(path, 2)  # reopened: the open epoch's count (2 at height 5) carries on
    with Ledger(path) as ledger:
        assert ledger._tx_epoch_starts == [0, 3, 5, 7]
        for height in range(1, 8):
            for nonce in (2 * height, 2 * height + 1):
                assert ledger.get_tx_location(make_tx(nonce).hash) == (height, nonce - 2 * height)
                assert ledger.is_committed(make_tx(nonce).hash)
        assert ledger.get_tx_location(make_tx(1).hash) is None


def test_history_values_live_in_the_block_store_behind_pointers(tmp_path: Path) -> None:
    """Keys of a history keyspace keep a 12-byte pointer in the main database; the value is in
    the block store under the height that wrote it, and every read follows the pointer."""
    path = tmp_path / "db"
    history = {
        RECORD_HISTORY_PREFIX + b"pumch\x00meter-1\x00" + (1).to_bytes(8, "big"): b"reading one" * 20,
        RECORD_HISTORY_PREFIX + b"pumch\x00meter-1\x00" + (2).to_bytes(8, "big"): b"reading two" * 20,
        ASSET_HISTORY_PREFIX + b"coll\x00token\x00" + (1).to_bytes(4, "big"): b"minted" * 30,
    }
    genesis_history = {RECORD_HISTORY_PREFIX + b"genesis\x00key\x00" + bytes(8): b"from genesis" * 10}
    with Ledger(path) as ledger:
        ledger.initialize(
            genesis_hash=GENESIS_HASH,
            genesis_time_ms=GENESIS_TIME_MS,
            initial_state={**INITIAL_STATE, **genesis_history},
            state_root=compute_genesis_state_root({**INITIAL_STATE, **genesis_history}),
        )
        write_set: dict[bytes, bytes | None] = {**history, b"rec/v/pumch\x00meter-1": b"\x00" * 7 + b"\x02"}
        ledger.commit_block(*make_block(ledger.get_head(), [make_tx(1)], write_set), write_set)
    expected = {**genesis_history, **history}
    with Ledger(path) as ledger:  # a fresh handle: nothing cached
        for key, value in expected.items():
            assert ledger.get_state(key) == value
        records = {key: value for key, value in expected.items() if key.startswith(b"rec/h/")}
        assert dict(ledger.iter_state(b"rec/h/")) == records
        latest = {b"rec/v/pumch\x00meter-1": bytes(7) + b"\x02"}
        assert dict(ledger.iter_state(b"")) == {**INITIAL_STATE, **expected, **latest}
        assert ledger.get_state_items() == list(ledger.iter_state(b"")), "one pass in height order"
        assert ledger.get_state(b"rec/v/pumch\x00meter-1") == bytes(7) + b"\x02", "other keys stay inline"
    main, blocks = plyvel.DB(str(path)), plyvel.DB(str(path / "blocks"))
    try:
        for key, value in expected.items():
            pointer = main.get(b"s" + key)
            assert pointer is not None and len(pointer) == 12 and value not in pointer
            height, seq = int.from_bytes(pointer[:8], "big"), int.from_bytes(pointer[8:], "big")
            assert height == (0 if key in genesis_history else 1)
            assert blocks.get(pointer[:8] + b"h" + pointer[8:]) == value, (height, seq)
        blocks.delete((1).to_bytes(8, "big") + b"h" + (1).to_bytes(4, "big"), sync=True)
    finally:
        main.close()
        blocks.close()
    with Ledger(path, read_only=True) as ledger:
        with pytest.raises(StorageCorruptError, match="is missing from"):
            ledger.get_state(list(history)[1])
        with pytest.raises(StorageCorruptError, match=r"pumch\\x00meter-1\\x00.*is missing from"):
            ledger.get_state_items()


def test_block_store_entries_above_the_head_are_never_served_and_go_at_reopen(tmp_path: Path) -> None:
    """A crash between the block-store batch and the main batch leaves entries above the head."""
    path = tmp_path / "db"
    commit_chain(path, 2)
    with Ledger(path) as ledger:
        head = ledger.get_head()
        # The first batch of committing height 3, as a crash would leave it: written, no head.
        orphan, orphan_certificate, orphan_receipts = make_block(head, [make_tx(900), make_tx(901)], {})
        ledger._blocks.put((3).to_bytes(8, "big") + b"b", orphan.encoded, sync=True)
        ledger._blocks.put((3).to_bytes(8, "big") + b"c", orphan_certificate.encode(), sync=True)
        for index, receipt in enumerate(orphan_receipts):
            key = (3).to_bytes(8, "big") + b"r" + index.to_bytes(4, "big")
            ledger._blocks.put(key, receipt.encode(), sync=True)
        assert ledger.get_block(3) is None and ledger.get_certificate(3) is None
        assert ledger.get_receipt(3, 0) is None
    with Ledger(path) as ledger:
        assert list(ledger._blocks.iterator(start=(3).to_bytes(8, "big"))) == []
        # Height 3 commits another block, with one transaction: no receipt of the orphan remains.
        other, certificate, receipts = make_block(ledger.get_head(), [make_tx(902)], {})
        ledger.commit_block(other, certificate, receipts, {})
        assert ledger.get_block(3) == other.encoded
        assert ledger.get_receipt(3, 0) == receipts[0].encode()
        assert ledger.get_receipt(3, 1) is None


def test_committing_a_height_deletes_its_votes_and_keeps_later_ones(tmp_path: Path) -> None:
    path = tmp_path / "db"
    with Ledger(path) as ledger:
        initialize(ledger)
        ledger.put_vote(1, 0, 2, b"prepare-1")
        ledger.put_vote(1, 1, 16, b"prepared-certificate-1" * 1000)
        ledger.put_vote(2, 0, 2, b"prepare-2")
        ledger.commit_block(*make_block(ledger.get_head(), [make_tx(1)], {}), {})
        assert ledger.get_votes(0) == [(2, 0, 2, b"prepare-2")]
        assert not any(True for _ in ledger._db.iterator(prefix=b"v")), "votes are not in the main database"
        # A crash between the commit and the deletion of its votes (not synced) leaves them:
        ledger._get_vote_log().put(bytes(24), b"stale", sync=True)  # height 0, view 0, kind 0
    with Ledger(path) as ledger:
        assert ledger.get_votes(0) == [(2, 0, 2, b"prepare-2")], "votes at or below the head go at open"
    with Ledger(path, read_only=True) as ledger, pytest.raises(StorageError, match="read-only"):
        ledger.get_votes(0)


def test_a_ledger_of_the_older_layout_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "db"
    commit_chain(path, 1)
    with Ledger(path) as ledger:
        ledger._db.delete(b"mformat", sync=True)  # what layout 1 wrote: no marker
    for read_only in (False, True):
        with pytest.raises(StorageError, match=r"layout version 1.*empty data directory"):
            Ledger(path, read_only=read_only)
    database = plyvel.DB(str(path))
    database.put(b"mformat", b"2", sync=True)  # layout 2: the vote log in the main database
    database.close()
    with pytest.raises(StorageError, match=r"layout version 2, this node reads version 6"):
        Ledger(path)


def test_tx_filter_has_no_false_negatives_while_it_grows_and_few_false_positives() -> None:
    class SmallFilter(TxFilter):
        CAPACITY_MIN = 1000

    rng = random.Random(7)
    tx_filter = SmallFilter()
    added = [rng.randbytes(32) for _ in range(3 * SmallFilter.CAPACITY_MIN)]
    for tx_hash in added:
        tx_filter.add(tx_hash)
    assert tx_filter.layers == 2, "a full layer is kept and a larger one takes the additions"
    assert all(tx_filter.might_contain(tx_hash) for tx_hash in added)
    others = [rng.randbytes(32) for _ in range(20_000)]
    false_positives = sum(tx_filter.might_contain(tx_hash) for tx_hash in others)
    assert false_positives < 0.01 * len(others), false_positives


def test_adding_a_block_of_ids_at_once_sets_the_same_bits_as_adding_them_one_by_one() -> None:
    """`add_many` (the commit path) against `add`, across a layer boundary and in odd chunks."""

    class SmallFilter(TxFilter):
        CAPACITY_MIN = 1000

    rng = random.Random(11)
    added = [rng.randbytes(32) for _ in range(3 * SmallFilter.CAPACITY_MIN + 17)]
    one_by_one = SmallFilter()
    for tx_hash in added:
        one_by_one.add(tx_hash)
    at_once = SmallFilter()
    for start in range(0, len(added), 777):
        at_once.add_many(added[start : start + 777])
    assert at_once.layers == one_by_one.layers == 2
    assert at_once._layers == one_by_one._layers
    assert (at_once._filled, at_once._capacity) == (one_by_one._filled, one_by_one._capacity)
    assert all(at_once.might_contain(tx_hash) for tx_hash in added)


def test_committed_ids_are_known_after_reopening_and_others_are_not(tmp_path: Path) -> None:
    path = tmp_path / "db"
    commit_chain(path, 5)
    with Ledger(path) as ledger:
        for height in range(1, 6):
            for nonce in (2 * height, 2 * height + 1):
                assert ledger.is_committed(make_tx(nonce).hash)
                assert ledger.get_tx_location(make_tx(nonce).hash) == (height, nonce - 2 * height)
        assert not ledger.is_committed(make_tx(1).hash)
        assert ledger.get_tx_location(make_tx(12).hash) is None
        ledger.commit_block(*make_block(ledger.get_head(), [make_tx(12)], {}), {})
        assert ledger.is_committed(make_tx(12).hash), "known from the batch that committed it"


# ---------------------------------------------------------------- durability, as the write observer sees it


def test_commit_syncs_the_block_store_then_the_head_then_forgets_the_votes(tmp_path: Path) -> None:
    """The head is the commit point: the block store's batch must be on disk before it moves."""
    writes: list[Write] = []
    with Ledger(tmp_path / "db", write_observer=writes.append) as ledger:
        initialize(ledger)
        ledger.put_vote(1, 0, 2, b"prepare-1")
        writes.clear()
        transactions = [make_tx(1), make_tx(2)]
        block, certificate, receipts = make_block(ledger.get_head(), transactions, {b"k": b"v"})
        ledger.commit_block(block, certificate, receipts, {b"k": b"v"})
    height = (1).to_bytes(8, "big")
    assert writes == [
        Write(
            BLOCK_STORE,
            True,
            (height + b"b", height + b"c", height + b"r" + bytes(4), height + b"r" + (1).to_bytes(4, "big")),
        ),
        Write(
            MAIN_DATABASE,
            True,
            (
                b"h" + block.hash,
                b"I" + bytes(4) + transactions[0].hash,  # epoch 0
                b"I" + bytes(4) + transactions[1].hash,
                b"sk",
                b"mhead",
            ),
        ),
        # Deleting the committed height's votes need not be synced (the module docstring says why),
        # but it must come after the head: a crash before it keeps the votes, never loses them early.
        Write(VOTE_LOG, False, (_VOTE_KEY_1_0_2,)),
    ]


_VOTE_KEY_1_0_2 = (1).to_bytes(8, "big") + bytes(8) + (2).to_bytes(4, "big")


def test_every_durable_write_is_synced(tmp_path: Path) -> None:
    writes: list[Write] = []
    with Ledger(tmp_path / "db", write_observer=writes.append) as ledger:
        initialize(ledger)
        assert [(write.database, write.sync) for write in writes] == [(MAIN_DATABASE, True)]
        assert b"mhead" in writes[0].keys
        writes.clear()
        ledger.put_vote(1, 0, 2, b"prepare-1")
        assert writes == [Write(VOTE_LOG, True, (_VOTE_KEY_1_0_2,))], "a vote is synced before it is sent"
        writes.clear()
        ledger.put_evidence(1, 2, 3, 0, b"proof")
        ledger.put_checkpoint(1, b"checkpoint")
        assert [(write.database, write.sync) for write in writes] == [(MAIN_DATABASE, True)] * 2
