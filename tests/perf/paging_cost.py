"""What one page of a prefix listing costs deep into a long list (a developer's tool).

    python -m tests.perf.paging_cost [--keys 100000] [--repeat 5]

A real LevelDB ledger holding `--keys` records of one entity (committed in one block); one page
of 100 of `records.list_records` after cursors near the start, the middle and the end, read two
ways: with the cursor handed to `Ledger.iter_state` as its start key (a seek: what the node
does), and walking from the start of the prefix and skipping to the cursor (what it did before).
Printed: milliseconds per page, the mean of `--repeat` reads.  On the development machine (2
shared cores), at 100,000 keys: 0.8-1.5 ms per page wherever the cursor is with the seek; about
1, 51-57 and 84-97 ms after the 100th, 50,000th and 99,800th key walking from the start.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from chainnode.app import records
from chainnode.core import codec
from storage.ledger import Ledger
from tests.integration.test_ledger import initialize, make_block

PAGE = 100


class WalkingReader:
    """The ledger read as before the start key: every key of the prefix, skipped to the cursor."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def get_state(self, key: bytes) -> bytes | None:
        return self.ledger.get_state(key)

    def iter_state(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        for key, value in self.ledger.iter_state(prefix):
            if start is None or key >= start:
                yield key, value


def fill(ledger: Ledger, keys: int) -> None:
    initialize(ledger)
    write_set: dict[bytes, bytes | None] = {}
    for index in range(keys):
        key = f"k-{index:07d}"
        write_set[records.compute_latest_key("hospital", key)] = (1).to_bytes(8, "big")
        write_set[records.compute_history_key("hospital", key, 1)] = codec.encode((1, b"v", 1, b"\x01" * 32))
    write_set = dict(sorted(write_set.items()))
    ledger.commit_block(*make_block(ledger.get_head(), [], write_set), write_set)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    options = parser.parse_args()
    keys = max(options.keys, 3 * PAGE)
    with tempfile.TemporaryDirectory() as directory, Ledger(Path(directory) / "db") as ledger:
        fill(ledger, keys)
        readers: tuple[tuple[str, records.StateIterator], ...] = (
            ("seek to the cursor", ledger),
            ("walk from the start", WalkingReader(ledger)),
        )
        for name, reader in readers:
            for position in (PAGE, keys // 2, keys - 2 * PAGE):
                after = f"k-{position:07d}"
                started = time.perf_counter()
                for _ in range(options.repeat):
                    page = records.list_records(reader, "hospital", "k-", after_key=after, limit=PAGE)
                elapsed_ms = (time.perf_counter() - started) / options.repeat * 1000
                assert len(page) == PAGE, len(page)
                print(f"{name:20} after key {position:>8}: {elapsed_ms:8.2f} ms per page of {PAGE}")


if __name__ == "__main__":
    main()
