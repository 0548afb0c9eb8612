"""Real small filesystems for disk-fault tests: a tmpfs mounted on a directory, and a filler.

A tmpfs of a few MiB fills in milliseconds and fails writes with ENOSPC exactly as a full
disk does, so LevelDB, `os.statvfs` and the node see the real thing.  Mounting needs root
(or CAP_SYS_ADMIN); where it is not permitted the test is skipped, saying why.  Every mount
is unmounted when the `with` block ends, whatever happened inside it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

FILL_CHUNK_BYTES = 256 * 1024
MOUNT_TIMEOUT_S = 30.0


@contextlib.contextmanager
def mounted_tmpfs(directory: Path, size_bytes: int) -> Iterator[Path]:
    """Mount a tmpfs of `size_bytes` on `directory` (created, must be empty) for the block."""
    mount = shutil.which("mount")
    if mount is None:
        pytest.skip("no mount command: a full disk cannot be made here")
    directory.mkdir(parents=True, exist_ok=True)
    command = [mount, "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(directory)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=MOUNT_TIMEOUT_S, check=False)
    if result.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here ({result.stderr.strip() or result.returncode})")
    try:
        yield directory
    finally:
        unmount(directory)


def unmount(directory: Path) -> None:
    """Unmount `directory`; lazily when a process still holds a file in it."""
    umount = shutil.which("umount") or "umount"
    result = subprocess.run(
        [umount, str(directory)], capture_output=True, text=True, timeout=MOUNT_TIMEOUT_S, check=False
    )
    if result.returncode != 0:
        subprocess.run([umount, "-l", str(directory)], timeout=MOUNT_TIMEOUT_S, check=True)


def get_free_bytes(directory: Path) -> int:
    stats = os.statvfs(directory)
    return stats.f_bavail * stats.f_frsize


def fill(path: Path, *, leave_bytes: int = 0) -> int:
    """Append zeros to the file `path` until at most `leave_bytes` are free on its filesystem
    (0: until the filesystem refuses a write with ENOSPC); returns the bytes now free."""
    free_bytes = get_free_bytes(path.parent)
    chunks_max = free_bytes // FILL_CHUNK_BYTES + 3  # the loop is bounded by what there is to fill
    # Unbuffered: a write refused for ENOSPC must not stay in a buffer that closing writes again.
    with path.open("ab", buffering=0) as file:
        for _ in range(chunks_max):
            room = get_free_bytes(path.parent) - leave_bytes
            if leave_bytes and room <= 0:
                break
            size = FILL_CHUNK_BYTES if not leave_bytes else min(FILL_CHUNK_BYTES, room)
            try:
                file.write(b"\0" * size)
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise
                break
        else:
            if not leave_bytes:
                raise AssertionError(f"{path.parent} did not fill up after {chunks_max} chunks")
    return get_free_bytes(path.parent)
