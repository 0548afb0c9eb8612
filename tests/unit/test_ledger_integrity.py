"""A ledger on a bad disk: typed errors for what LevelDB reports, real processes and real files.

The OS errors are real: a directory this process may not enter (a child process without the
capability that lets root ignore file modes), a filesystem that is full (a 2 MB tmpfs, which
needs root; skipped otherwise).  The classification of LevelDB's messages is also checked
on a table of the messages LevelDB 1.22 writes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import plyvel
import pytest

from chainnode.errors import (
    DiskFullError,
    StorageCorruptError,
    StorageError,
    StorageLockedError,
    StoragePermissionError,
)
from storage.ledger import Ledger, classify_storage_error
from tests.unit.test_ledger import commit_chain, initialize, make_block, make_tx

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
        # "blocks" holds the letters of "lock": not a lock error.
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
    "import sys\nfrom pathlib import Path\nfrom chainnode.errors import StorageError\n"
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
