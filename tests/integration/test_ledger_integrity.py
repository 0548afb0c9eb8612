"""A ledger on a bad disk: typed errors for what LevelDB reports, real processes and real files.

The OS errors are real: a directory this process may not enter (a child process without the
capability that lets root ignore file modes), a filesystem that is full (a 2 MB tmpfs, which
needs root; skipped otherwise).  The classification of LevelDB's messages is also checked
on a table of the messages LevelDB 1.22 writes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import plyvel
import pytest

from chainnode.core import types
from chainnode.core.errors import (
    DiskFullError,
    StorageCorruptError,
    StorageError,
    StorageLockedError,
    StoragePermissionError,
)
from chainnode.node.config import load_node_config
from chainnode.tools.network import init_network
from storage.layout import decode_head
from storage.ledger import Head, Ledger, set_aside_for_rebuild
from storage.leveldb import classify_storage_error
from tests.factories import run_cli_process
from tests.integration.test_ledger import commit_chain, initialize, make_block, make_tx

# ---------------------------------------------------------------- classification


_IO = plyvel.IOError
_CORRUPTION = plyvel.CorruptionError


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (_IO(b"IO error: lock /d/ledger/LOCK: Resource temporarily unavailable"), StorageLockedError),
        (_IO(b"IO error: lock /d/ledger/LOCK: already held by process"), StorageLockedError),
        # The LOCK file is named, but the error is the permission (or the space), not the lock.
        (_IO(b"IO error: /d/ledger/LOCK: Permission denied"), StoragePermissionError),
        (_IO(b"IO error: /d/ledger/000012.log: No space left on device"), DiskFullError),
        (_IO(b"IO error: /d/ledger/MANIFEST-000002: Read-only file system"), StoragePermissionError),
        (_CORRUPTION(b"Corruption: block checksum mismatch: /d/ledger/000005.ldb"), StorageCorruptError),
        (_CORRUPTION(b"Corruption: checksum mismatch"), StorageCorruptError),
        (_CORRUPTION(b"Corruption: truncated block read"), StorageCorruptError),
        (_IO(b"IO error: /d/ledger/blocks/000007.ldb: No such file or directory"), StorageCorruptError),
        # Neither "blocks" nor the name of the LOCK file makes a lock error.
        (_IO(b"NotFound: /d/ledger/LOCK: No such file or directory"), StorageError),
        (_IO(b"IO error: /d/ledger/blocks/CURRENT: Input/output error"), StorageError),
        (
            plyvel.Error(b"Invalid argument: /d/ledger: does not exist (create_if_missing is false)"),
            StorageError,
        ),
    ],
)
def test_leveldb_errors_are_classified_by_what_they_are(error: plyvel.Error, expected: type) -> None:
    classified = classify_storage_error(error, Path("/d/ledger"), "open")
    assert type(classified) is expected, classified
    assert "/d/ledger" in classified.message
    assert error.args[0].decode() in classified.message, "the OS (or LevelDB) error is named"


# ---------------------------------------------------------------- real OS errors


def _run_without_file_mode_override(program: str, *args: str) -> subprocess.CompletedProcess[str]:
    """A child process to which file modes apply: root drops the capabilities that bypass them."""
    command = [sys.executable, "-c", program, *args]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: file modes cannot be made to apply")
        drop = "-dac_override,-dac_read_search"
        command = [setpriv, f"--inh-caps={drop}", f"--bounding-set={drop}", *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


_OPEN_AND_REPORT = (
    "import sys\nfrom pathlib import Path\nfrom chainnode.core.errors import StorageError\n"
    "from storage.ledger import Ledger\n"
    "try:\n    Ledger(Path(sys.argv[1])).close()\nexcept StorageError as error:\n"
    "    print(error.code)\n    print(error.message)\n    sys.exit(3)\n"
)


def test_a_ledger_the_process_may_not_write_is_storage_permission(tmp_path: Path) -> None:
    commit_chain(tmp_path / "db", 2)
    (tmp_path / "db").chmod(0o500)  # readable, not writable: LevelDB cannot take its LOCK
    try:
        result = _run_without_file_mode_override(_OPEN_AND_REPORT, str(tmp_path / "db"))
    finally:
        (tmp_path / "db").chmod(0o700)
    assert result.returncode == 3, result.stderr
    code, message = result.stdout.strip().split("\n")
    assert code == "storage_permission"
    assert str(tmp_path / "db") in message and "Permission denied" in message, message


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs: a filesystem that really fills up."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def _fill(directory: Path) -> None:
    with (directory / "filler").open("wb") as filler:
        try:
            while True:
                filler.write(b"\0" * 65536)
                filler.flush()
        except OSError:
            pass


def test_a_full_disk_is_disk_full_at_write_and_at_open(small_disk: Path) -> None:
    path = small_disk / "db"
    with Ledger(path) as ledger:
        initialize(ledger)
        _fill(small_disk)
        with pytest.raises(DiskFullError, match="No space left on device") as raised:
            for height in range(1, 100):
                write_set: dict[bytes, bytes | None] = {f"rec/{height}".encode(): b"v" * 200_000}
                ledger.commit_block(*make_block(ledger.get_head(), [make_tx(height)], write_set), write_set)
        assert str(path) in raised.value.message
        with pytest.raises(DiskFullError):
            ledger.put_vote(1, 0, 2, b"prepare")
    # With the disk still full, a new ledger cannot even write its first files.
    with pytest.raises(DiskFullError, match="No space left on device"):
        Ledger(small_disk / "other")


# ---------------------------------------------------------------- consistency at open

HEIGHTS = 20


def _u64(height: int) -> bytes:
    return height.to_bytes(8, "big")


def _edit(path: Path, store: str, edit: Callable[[plyvel.DB], None]) -> None:
    database = plyvel.DB(str(path / store if store else path))
    try:
        edit(database)
    finally:
        database.close()


def _first_tx_key(database: plyvel.DB, height: int) -> bytes:
    """The tx-index key of the first transaction of block `height` (see `commit_chain`)."""
    return b"I" + bytes(4) + make_tx(2 * height).hash  # epoch 0 (storage.tx_index)


def _move_tx_index(database: plyvel.DB) -> None:
    database.put(_first_tx_key(database, HEIGHTS - 3), _u64(HEIGHTS - 3) + (1).to_bytes(4, "big"))


def _replace_head_state_root(database: plyvel.DB) -> None:
    head = decode_head(bytes(database.get(b"mhead")))
    database.put(b"mhead", Head(head.height, head.block_hash, bytes(32), head.timestamp_ms).encode())


def _replace_head_block_hash(database: plyvel.DB) -> None:
    head = decode_head(bytes(database.get(b"mhead")))
    database.put(b"mhead", Head(head.height, bytes(32), head.state_root, head.timestamp_ms).encode())


def _replace_block(database: plyvel.DB) -> None:
    """Block HEIGHTS - 2 replaced by another block of that height (another timestamp)."""
    other = make_block(Head(HEIGHTS - 3, bytes(32), bytes(32), 0), [], {})[0]
    database.put(_u64(HEIGHTS - 2) + b"b", other.encoded)


@pytest.mark.parametrize(
    ("store", "edit", "problem"),
    [
        ("blocks", lambda db: db.delete(_u64(HEIGHTS) + b"b"), f"block {HEIGHTS} is missing"),
        (
            "blocks",
            lambda db: db.delete(_u64(HEIGHTS) + b"c"),
            f"commit certificate of block {HEIGHTS} is missing",
        ),
        (
            "blocks",
            lambda db: db.put(_u64(HEIGHTS) + b"c", db.get(_u64(HEIGHTS - 1) + b"c")),
            f"certificate stored at height {HEIGHTS} certifies another block",
        ),
        (
            "blocks",
            lambda db: db.put(_u64(HEIGHTS) + b"b", b"\x00garbage"),
            f"stored block {HEIGHTS} does not",
        ),
        ("blocks", _replace_block, f"block {HEIGHTS - 1} does not name the stored block {HEIGHTS - 2}"),
        (
            "blocks",
            lambda db: db.delete(_u64(HEIGHTS - 5) + b"r" + (1).to_bytes(4, "big")),
            "receipts of block",
        ),
        (
            "blocks",
            lambda db: db.put(_u64(HEIGHTS + 2) + b"b", b"x"),
            "the main database lost committed blocks",
        ),
        ("", _replace_head_state_root, "stored state root"),
        ("", _replace_head_block_hash, f"the head names block {bytes(32).hex()}"),
        ("", lambda db: db.delete(_first_tx_key(db, HEIGHTS - 7)), f"at height {HEIGHTS - 7}, index 0"),
        ("", _move_tx_index, f"at height {HEIGHTS - 3}, index 0"),
        ("", lambda db: db.delete(b"h" + _block_hash(HEIGHTS - 1)), f"does not place block {HEIGHTS - 1}"),
    ],
    ids=[
        "head_block_missing",
        "head_certificate_missing",
        "head_certificate_of_another_block",
        "head_block_garbage",
        "parent_link_broken",
        "receipt_missing",
        "blocks_far_above_head",
        "state_root",
        "head_names_another_block",
        "tx_index_missing",
        "tx_index_elsewhere",
        "block_hash_index_missing",
    ],
)
def test_an_inconsistent_ledger_is_refused_at_open(
    tmp_path: Path, store: str, edit: Callable[[plyvel.DB], None], problem: str
) -> None:
    path = tmp_path / "db"
    commit_chain(path, HEIGHTS)
    _edit(path, store, edit)
    with pytest.raises(StorageCorruptError, match=re.escape(problem)) as raised:
        Ledger(path)
    assert str(path) in raised.value.message and "--rebuild" in raised.value.message
    # A read-only open (an audit's copy, an export) leaves judging what it reads to its user.
    with Ledger(path, read_only=True) as ledger:
        assert ledger.get_head().height == HEIGHTS


_BLOCK_HASHES: dict[int, bytes] = {}


def _block_hash(height: int) -> bytes:
    return _BLOCK_HASHES[height]


@pytest.fixture(autouse=True)
def _known_block_hashes(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The hashes of `commit_chain`'s blocks (the same every time: fixed keys and timestamps)."""
    if _BLOCK_HASHES:
        return
    path = tmp_path_factory.mktemp("hashes") / "db"
    commit_chain(path, HEIGHTS)
    with Ledger(path, read_only=True) as ledger:
        for height in range(1, HEIGHTS + 1):
            _BLOCK_HASHES[height] = types.decode_block(ledger.get_block(height) or b"").hash


def test_a_consistent_ledger_opens_after_a_crash_between_the_two_batches(tmp_path: Path) -> None:
    """One height above the head in the block store is what a crash leaves: not corruption."""
    path = tmp_path / "db"
    commit_chain(path, 3)
    _edit(path, "blocks", lambda db: db.put(_u64(4) + b"b", b"half-committed"))
    with Ledger(path) as ledger:
        assert ledger.get_head().height == 3
    commit_chain(path, 1)


def test_a_node_refuses_a_corrupt_ledger_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    init_network(tmp_path / "net", validators=4, chain_id="integrity-net", base_port=29750)
    config_path = tmp_path / "net" / "nodes" / "validator-01" / "node.toml"
    ledger_path = load_node_config(config_path).data_dir / "ledger"
    ledger_path.parent.mkdir()
    commit_chain(ledger_path, 3)
    _edit(ledger_path, "blocks", lambda db: db.delete(_u64(3) + b"b"))
    result = run_cli_process("node", "run", "--config", str(config_path), timeout_s=120)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("error: storage_corrupt:") and "block 3 is missing" in lines[0], lines[0]


# ---------------------------------------------------------------- damaged files
# Real LevelDB files written by a real ledger, damaged the way a bad disk damages them; each
# test first shows, on a copy opened with plain plyvel, what LevelDB alone would hand out.


def _compact(path: Path) -> None:
    """Flush and compact both databases of a closed ledger into table files, with the ledger's
    own options (the main database uncompressed: a stored value is in its table file as is; the
    block store with Snappy, which copies incompressible runs, signatures and hashes, as is)."""
    with Ledger(path) as ledger:
        ledger._db.compact_range()
        ledger._blocks.compact_range()


def _flip_byte(file: Path, offset: int) -> None:
    data = bytearray(file.read_bytes())
    data[offset] ^= 0x01
    file.write_bytes(bytes(data))


def _flip_inside(directory: Path, needle: bytes) -> Path:
    """Flip the middle byte of `needle` in the one table file of `directory` that holds it."""
    holders = [file for file in directory.glob("*.ldb") if needle in file.read_bytes()]
    assert len(holders) == 1, "the tables are not compressed: a stored value is in one file, as is"
    offset = holders[0].read_bytes().index(needle) + len(needle) // 2
    _flip_byte(holders[0], offset)
    return holders[0]


def _flip_inside_compressed(directory: Path, value: bytes) -> Path:
    """Flip a byte of `value` in a Snappy-compressed table: inside a 32-byte run of it that is in
    one table file as is (Snappy keeps a run it cannot compress, such as a signature, literally)."""
    for start in range(len(value) // 2, len(value) - 32, 8):
        needle = value[start : start + 32]
        holders = [file for file in directory.glob("*.ldb") if needle in file.read_bytes()]
        if len(holders) == 1 and holders[0].read_bytes().count(needle) == 1:
            return _flip_inside(directory, needle)
    raise AssertionError("no run of the value is stored literally")


def _read_raw(path: Path, key: bytes) -> bytes | None:
    """What LevelDB hands out without checksums (plyvel's default)."""
    database = plyvel.DB(str(path))
    try:
        value = database.get(key)
    finally:
        database.close()
    return None if value is None else bytes(value)


@pytest.mark.parametrize(
    ("height", "refused_at"),
    [(5, "read"), (HEIGHTS + 18, "open")],
    ids=["below_the_checked_blocks", "among_the_checked_blocks"],
)
def test_a_flipped_byte_in_a_stored_block_is_never_served(
    tmp_path: Path, height: int, refused_at: str
) -> None:
    path = tmp_path / "db"
    commit_chain(path, HEIGHTS + 20)
    with Ledger(path, read_only=True) as ledger:
        original = ledger.get_block(height)
    assert original is not None
    _compact(path)
    _flip_inside_compressed(path / "blocks", original)
    shutil.copytree(path, tmp_path / "copy")
    altered = _read_raw(tmp_path / "copy" / "blocks", _u64(height) + b"b")
    assert altered is not None and altered != original, "LevelDB alone serves the altered block"

    if refused_at == "open":
        with pytest.raises(StorageCorruptError, match="checksum mismatch"):
            Ledger(path)
        return
    with Ledger(path) as ledger:
        with pytest.raises(StorageCorruptError, match=r"blocks.*checksum mismatch") as raised:
            ledger.get_block(height)
        assert str(path / "blocks") in raised.value.message
        assert ledger.get_block(HEIGHTS + 20) is not None, "other tables still serve"


def test_a_flipped_byte_in_a_stored_state_value_is_never_served(tmp_path: Path) -> None:
    path = tmp_path / "db"
    commit_chain(path, 3)
    # LevelDB ends a table block once it holds 4 KB: after 8 KB of padding (before the value
    # in key order) and after the 8 KB value.  So the value has a block of its own, and the
    # head and the indexes, which the ledger reads at open, are in others.
    unique = bytes(range(256)) * 32
    with Ledger(path) as ledger:
        write_set: dict[bytes, bytes | None] = {b"rec/padding": b"p" * 8192, b"rec/unique": unique}
        ledger.commit_block(*make_block(ledger.get_head(), [make_tx(100)], write_set), write_set)
    _compact(path)
    _flip_inside(path, unique)
    shutil.copytree(path, tmp_path / "copy")
    altered = _read_raw(tmp_path / "copy", b"srec/unique")
    assert altered is not None and altered != unique, "LevelDB alone serves the altered value"

    with Ledger(path) as ledger:
        assert ledger.get_state(b"counter") == b"3", "undamaged blocks still serve"
        with pytest.raises(StorageCorruptError, match="checksum mismatch") as raised:
            ledger.get_state(b"rec/unique")
        assert str(path) in raised.value.message
        with pytest.raises(StorageCorruptError, match="checksum mismatch"):
            list(ledger.iter_state(b"rec/"))


def test_a_flipped_byte_in_the_middle_of_the_write_ahead_log_fails_the_open(tmp_path: Path) -> None:
    """Committed batches after the damage must not vanish in silence.

    The main database's log (a closed ledger keeps its last batches there) is ~80 KB: three
    32 KB log blocks.  The flip is in the first one.
    """
    path = tmp_path / "db"
    heights = 250
    commit_chain(path, heights)
    (log,) = path.glob("*.log")
    assert log.stat().st_size > 64 * 1024, log.stat().st_size
    _flip_byte(log, 16 * 1024)
    shutil.copytree(path, tmp_path / "copy")
    # What LevelDB alone does with it: it skips the rest of the damaged log block, so committed
    # transactions lose their index entries (the API would answer 404 for them), while the
    # head and the last blocks, in later log blocks, survive and look fine.
    database = plyvel.DB(str(tmp_path / "copy"))
    try:
        lost = [
            h for h in range(1, heights + 1) if database.get(b"I" + bytes(4) + make_tx(2 * h).hash) is None
        ]
        head = decode_head(bytes(database.get(b"mhead")))
    finally:
        database.close()
    assert lost and max(lost) < heights - 16 and head.height == heights, (lost, head.height)

    with pytest.raises(StorageCorruptError, match="checksum mismatch") as raised:
        Ledger(path)
    assert str(path) in raised.value.message


def _iterate_raw(path: Path, **options: Any) -> list[bytes]:
    """What a plyvel iteration hands out, checksums on."""
    database = plyvel.DB(str(path))
    try:
        with database.iterator(include_value=False, verify_checksums=True, **options) as iterator:
            return list(iterator)
    finally:
        database.close()


def test_a_damaged_vote_log_is_never_read_as_fewer_votes(tmp_path: Path) -> None:
    """plyvel ends an iteration that stopped on a damaged block as if it were complete."""
    path = tmp_path / "db"
    commit_chain(path, 2)
    with Ledger(path) as ledger:
        ledger.put_vote(3, 0, 2, b"prepare-3")
        ledger.put_vote(3, 0, 3, b"commit-3")
    Ledger(path).close()  # the votes move from the log to a table at this open
    _flip_inside(path / "votes", b"commit-3")
    shutil.copytree(path, tmp_path / "copy")
    assert _iterate_raw(tmp_path / "copy" / "votes") == [], "plyvel alone: no votes, and no error"

    # A node reads its votes above the head at start (`get_votes`): they must not come back empty.
    with Ledger(path) as ledger, pytest.raises(StorageCorruptError, match=r"votes.*checksum mismatch"):
        ledger.get_votes(3)


def test_a_damaged_end_of_the_tx_index_is_never_read_as_fewer_transactions(tmp_path: Path) -> None:
    """The tx filter is built by iterating the tx index: ids missing from it would be replayable."""
    path = tmp_path / "db"
    commit_chain(path, 40)
    _compact(path)
    tx_keys = _iterate_raw(path, prefix=b"I")
    # The last entry of the index (its keys sort first in the database: `storage.tx_index`).
    _flip_inside(path, tx_keys[-1][-20:])
    shutil.copytree(path, tmp_path / "copy")
    # plyvel alone: the iteration ends early without a word if the damaged block ends its table
    # file (the vote-log test above shows that case), or raises if more blocks follow.
    try:
        read = _iterate_raw(tmp_path / "copy", prefix=b"I")
    except plyvel.CorruptionError:
        pass
    else:
        assert read == tx_keys[: len(read)] and len(read) < len(tx_keys), "fewer ids, no error"

    # Read-only: no consistency check at open, only the iteration that builds the filter.
    with pytest.raises(StorageCorruptError, match="checksum mismatch"):
        Ledger(path, read_only=True)


@pytest.mark.parametrize("store", ["", "blocks"], ids=["main_database", "block_store"])
def test_a_truncated_table_file_is_refused_at_open_naming_it(tmp_path: Path, store: str) -> None:
    path = tmp_path / "db"
    commit_chain(path, HEIGHTS)
    _compact(path)
    directory = path / store if store else path
    table = max(directory.glob("*.ldb"), key=lambda file: file.stat().st_size)
    size_bytes = table.stat().st_size
    with table.open("r+b") as file:
        file.truncate(size_bytes - 7)
    # LevelDB alone opens it, even with paranoid checks: a table file is opened at its first read.
    plyvel.DB(str(directory), paranoid_checks=True).close()

    for read_only in (False, True):
        with pytest.raises(StorageCorruptError) as raised:
            Ledger(path, read_only=read_only)
        assert (
            f"{table.name} holds {size_bytes - 7} bytes where LevelDB wrote {size_bytes}"
            in raised.value.message
        )
        assert str(directory) in raised.value.message


# ---------------------------------------------------------------- rebuilding from the peers

NOW_S = 1_800_000_000  # 2027-01-15T08:00:00Z


def _damaged_node_data(data_dir: Path) -> list[tuple[int, int, int, bytes]]:
    """A node's data directory whose head block is gone, with votes in its vote log."""
    data_dir.mkdir()
    commit_chain(data_dir / "ledger", 5)
    votes = [(6, 0, 2, b"prepare-6"), (6, 0, 3, b"commit-6")]
    with Ledger(data_dir / "ledger") as ledger:
        for vote in votes:
            ledger.put_vote(*vote)
    _edit(data_dir / "ledger", "blocks", lambda db: db.delete(_u64(5) + b"b"))
    with pytest.raises(StorageCorruptError):
        Ledger(data_dir / "ledger")
    return votes


def test_rebuild_sets_the_damaged_data_aside_and_keeps_the_votes(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    votes = _damaged_node_data(data_dir)
    aside = set_aside_for_rebuild(data_dir, now_s=NOW_S)
    assert aside == tmp_path / "data.corrupt-20270115T080000Z"
    assert (aside / "ledger" / "blocks").is_dir(), "the damaged ledger is kept, for a post-mortem"
    with Ledger(data_dir / "ledger") as ledger:
        assert not ledger.is_initialized(), "an empty ledger, to catch up from the peers"
        assert ledger.get_votes(0) == votes, "a validator must not forget what it signed"
    with pytest.raises(StorageError, match="already exists"):
        set_aside_for_rebuild(data_dir, now_s=NOW_S)
    assert set_aside_for_rebuild(tmp_path / "missing", now_s=NOW_S) is None


def test_rebuild_refuses_when_the_vote_log_is_damaged_too(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    _damaged_node_data(data_dir)
    _flip_inside(data_dir / "ledger" / "votes", b"commit-6")  # in a table since the last open
    with pytest.raises(StorageCorruptError, match=r"vote log .* is damaged too.*sign twice"):
        set_aside_for_rebuild(data_dir, now_s=NOW_S)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["data"], "nothing moved"


def test_rebuild_refuses_a_data_directory_in_use(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    commit_chain(data_dir / "ledger", 1)
    with Ledger(data_dir / "ledger"), pytest.raises(StorageLockedError):
        set_aside_for_rebuild(data_dir, now_s=NOW_S)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_OPEN, str(data_dir / "ledger")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        with pytest.raises(StorageLockedError):
            set_aside_for_rebuild(data_dir, now_s=NOW_S)
    finally:
        holder.communicate("", timeout=60)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["data"], "nothing moved"


_HOLD_OPEN = (
    "import sys\nfrom pathlib import Path\nfrom storage.ledger import Ledger\n"
    "with Ledger(Path(sys.argv[1])):\n    print('open', flush=True)\n    sys.stdin.read()\n"
)
