"""Reading a chain out of a node for auditors: data-directory snapshots, block sources, JSON Lines.

Theory of operation
-------------------
An auditor never trusts the node it reads from, and never changes the evidence.
Two ways in:

- **A data directory** (`open_ledger_snapshot`).  LevelDB locks its directory,
  and plyvel has no read-only mode: a second handle on the directory of a
  RUNNING node fails, and even opening a stopped node's directory may write to
  it (LevelDB replays its log into a new table file on open).  So the directory
  is always copied into a temporary directory first and the copy is opened.
  This is safe while the node writes: table files (`*.ldb`, `*.sst`) are
  immutable once written; a file that vanishes during the copy (deleted by a
  compaction) makes the whole copy start again; a torn tail of the write-ahead
  log (a batch half-written when it was copied) is dropped by LevelDB on open,
  and since a block's entries are one batch in each of the two databases
  copied (main database first, then the block store; the node's vote log is
  not copied: see `copy_ledger_directory`), the copy holds whole blocks only.
  A copy that does not open (a manifest that names a table file created after
  the listing) is also taken again, a bounded number of times.  The copy is the
  node's ledger at some moment during the copy; the audit covers exactly the
  blocks it holds.
- **A node's HTTP API** (`ApiSource`): blocks with their commit certificates as
  the raw encodings the node stored (`GET /v1/blocks/{h}`: `block_encoded`,
  `certificate_encoded`), so nothing is re-encoded on the way.

Both are a `BlockSource`.  A `LedgerSource` can also show what the node stored
beside the blocks (receipts, the tx index, the state), which the audit compares
with its own replay; the API source cannot.

`export_jsonl` writes one JSON object per block (header, certificate,
transactions with their receipts, and all raw encodings as hex) with the field
names of the HTTP API, for auditors' own tools.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from chainnode.core import quorum, types
from chainnode.core.errors import ChainError, ConfigError, RemoteError, StorageError
from chainnode.core.hexstr import HexError, parse_hex
from storage.ledger import BLOCKS_DIRECTORY, Ledger

SNAPSHOT_ATTEMPTS_MAX = 8
_FETCH_THREADS = 4
# Files of a LevelDB directory that are not data: the lock and the info logs.
_NOT_DATA = frozenset({"LOCK", "LOG", "LOG.old"})


# ---------------------------------------------------------------- data-directory snapshots


def get_ledger_directory(data_dir: Path) -> Path:
    """The LevelDB directory: `data_dir` itself, or a node's data directory holding `ledger/`."""
    data_dir = Path(data_dir)
    if (data_dir / "CURRENT").is_file():
        return data_dir
    if (data_dir / "ledger" / "CURRENT").is_file():
        return data_dir / "ledger"
    raise ConfigError(f"{data_dir} is neither a ledger (LevelDB) directory nor a node data directory")


def _copy_order(path: Path) -> tuple[int, str]:
    # The manifest first: a table it names that is deleted before we copy it is
    # detected as a vanished file and the copy is taken again.
    name = path.name
    rank = 0 if name == "CURRENT" else 1 if name.startswith("MANIFEST-") else 2
    return rank, name


def copy_ledger_directory(source: Path, target: Path) -> None:
    """One attempt at copying a (possibly live) ledger; FileNotFoundError if a file vanished.

    The main database first, then the block store: a node writes a block to the
    block store before its head moves in the main database, so the copied block
    store holds every block up to the copied head.
    """
    copy_database(source, target)
    copy_database(source / BLOCKS_DIRECTORY, target / BLOCKS_DIRECTORY)


def copy_database(source: Path, target: Path) -> None:
    """The data files of one (possibly live) LevelDB database, the manifest first (see the module doc)."""
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.iterdir(), key=_copy_order):
        if path.name in _NOT_DATA or not path.is_file():
            continue
        shutil.copyfile(path, target / path.name)


@contextlib.contextmanager
def open_ledger_snapshot(data_dir: Path) -> Iterator[Ledger]:
    """A read-only `Ledger` over a private copy of `data_dir`, deleted on exit (see the module doc)."""
    source = get_ledger_directory(data_dir)
    with tempfile.TemporaryDirectory(prefix="chainnode-audit-") as temporary:
        last_problem = ""
        for attempt in range(SNAPSHOT_ATTEMPTS_MAX):
            target = Path(temporary) / f"copy-{attempt}"
            try:
                copy_ledger_directory(source, target)
                ledger = Ledger(target, read_only=True)
            except FileNotFoundError as error:
                last_problem = f"a file vanished during the copy ({error.filename})"
            except StorageError as error:
                last_problem = error.message
            else:
                try:
                    ledger.get_head()
                    yield ledger
                    return
                finally:
                    ledger.close()
            shutil.rmtree(target, ignore_errors=True)
            time.sleep(0.05 * (attempt + 1))
        raise StorageError(
            f"no consistent copy of {source} in {SNAPSHOT_ATTEMPTS_MAX} attempts: {last_problem}"
        )


# ---------------------------------------------------------------- block sources


@dataclass(frozen=True, slots=True)
class SourceHead:
    """The head a source reports (not trusted: the audit checks it)."""

    height: int
    block_hash: bytes
    state_root: bytes


@dataclass(frozen=True, slots=True)
class RawBlock:
    """A block and its commit certificate exactly as the source holds them."""

    block_encoded: bytes
    certificate_encoded: bytes


class BlockSource(Protocol):
    """Where an audit reads the chain from."""

    description: str

    def get_genesis_hash(self) -> bytes: ...

    def get_head(self) -> SourceHead: ...

    def get_blocks(self, heights: Sequence[int]) -> list[RawBlock | None]:
        """The raw block and certificate at each height, None where the source has none."""
        ...


class LedgerSource:
    """A `BlockSource` over an open ledger (a snapshot), with the node's stored extras."""

    def __init__(self, ledger: Ledger, description: str) -> None:
        self.ledger = ledger
        self.description = description

    def get_genesis_hash(self) -> bytes:
        return self.ledger.get_genesis_hash()

    def get_head(self) -> SourceHead:
        head = self.ledger.get_head()
        return SourceHead(head.height, head.block_hash, head.state_root)

    def get_blocks(self, heights: Sequence[int]) -> list[RawBlock | None]:
        blocks: list[RawBlock | None] = []
        for height in heights:
            block = self.ledger.get_block(height)
            certificate = self.ledger.get_certificate(height)
            blocks.append(None if block is None or certificate is None else RawBlock(block, certificate))
        return blocks

    def get_receipts(self, height: int, count: int) -> list[bytes | None]:
        """The receipts the node stored for the block at `height`."""
        return [self.ledger.get_receipt(height, index) for index in range(count)]

    def is_tx_at(self, tx_hash: bytes, height: int, index: int) -> bool:
        return self.ledger.is_tx_at(tx_hash, height, index)

    def count_tx_index(self) -> int:
        return self.ledger.count_tx_index()

    def get_block_height(self, block_hash: bytes) -> int | None:
        return self.ledger.get_block_height(block_hash)

    def iter_state(self) -> Iterator[tuple[bytes, bytes]]:
        """The node's stored state, in key order (history values read in height order)."""
        return iter(self.ledger.get_state_items())


def _parse_hex_field(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise RemoteError(f"the node's answer has no {what}", code="bad_response")
    try:
        return parse_hex(value, what)
    except HexError as error:
        raise RemoteError(f"the node's {error.message}", code="bad_response") from error


class ApiSource:
    """A `BlockSource` over a node's HTTP API (`chainnode.sdk.client.Client`)."""

    def __init__(self, url: str, *, timeout_s: float = 30.0) -> None:
        from chainnode.sdk.client import Client

        self.client = Client(url, timeout_s=timeout_s)
        self.description = f"node {self.client.url}"
        self._status: dict[str, Any] | None = None

    def _get_status(self) -> dict[str, Any]:
        if self._status is None:
            self._status = self.client.get_status()
        return self._status

    def get_genesis_hash(self) -> bytes:
        return _parse_hex_field(self._get_status().get("genesis_hash"), "genesis hash")

    def get_head(self) -> SourceHead:
        status = self._get_status()
        height = status.get("height")
        if not isinstance(height, int) or isinstance(height, bool) or height < 0:
            raise RemoteError("the node's status has no height", code="bad_response")
        return SourceHead(
            height,
            _parse_hex_field(status.get("head_hash"), "head hash"),
            _parse_hex_field(status.get("state_root"), "state root"),
        )

    def _fetch(self, height: int) -> RawBlock | None:
        from chainnode.sdk.errors import ClientError

        try:
            answer = self.client.get_block(height)
        except ClientError as error:
            if error.status == 404:
                return None
            raise
        return RawBlock(
            _parse_hex_field(answer.get("block_encoded"), f"block {height} encoding"),
            _parse_hex_field(answer.get("certificate_encoded"), f"certificate {height} encoding"),
        )

    def get_blocks(self, heights: Sequence[int]) -> list[RawBlock | None]:
        with concurrent.futures.ThreadPoolExecutor(max_workers=_FETCH_THREADS) as pool:
            return list(pool.map(self._fetch, heights))


# ---------------------------------------------------------------- JSON Lines export


@dataclass(frozen=True, slots=True)
class ExportSummary:
    blocks: int
    transactions: int
    height_from: int
    height_to: int


def compute_block_record(
    block: types.Block,
    certificate_encoded: bytes,
    receipts_encoded: Sequence[bytes | None],
    validators: quorum.ValidatorSet | None,
) -> dict[str, Any]:
    """The export form of one block: the API's JSON forms plus every raw encoding as hex."""
    from chainnode.api.forms import (
        compute_certificate_json,
        compute_header_json,
        compute_receipt_json,
        compute_transaction_json,
    )

    certificate = quorum.decode_commit_certificate(certificate_encoded)
    transactions = []
    for index, (tx, receipt_encoded) in enumerate(zip(block.transactions, receipts_encoded, strict=True)):
        item = {"index": index, **compute_transaction_json(tx), "encoded": tx.encoded.hex()}
        if receipt_encoded is None:
            item["receipt"] = None
        else:
            receipt = types.decode_receipt(receipt_encoded)
            item["receipt"] = {**compute_receipt_json(receipt), "encoded": receipt_encoded.hex()}
        transactions.append(item)
    return {
        "height": block.height,
        "hash": block.hash.hex(),
        "header": compute_header_json(block.header),
        "header_encoded": block.header.encode().hex(),
        "certificate": compute_certificate_json(certificate, validators),
        "certificate_encoded": certificate_encoded.hex(),
        "transactions": transactions,
    }


def write_blocks_jsonl(
    ledger: Ledger,
    output: IO[str],
    *,
    height_from: int = 1,
    height_to: int | None = None,
    validators: quorum.ValidatorSet | None = None,
) -> ExportSummary:
    """Write blocks `height_from..height_to` (default: to the head) as JSON Lines to `output`."""
    head_height = ledger.get_head().height
    last = head_height if height_to is None else height_to
    if height_from < 1 or last > head_height or height_from > last:
        raise ConfigError(f"heights {height_from}..{last} are outside the chain 1..{head_height}")
    transactions = 0
    for height in range(height_from, last + 1):
        block_encoded = ledger.get_block(height)
        certificate_encoded = ledger.get_certificate(height)
        if block_encoded is None or certificate_encoded is None:
            raise StorageError(f"the ledger has no block or certificate at height {height}")
        try:
            block = types.decode_block(block_encoded, check_body=False)
            receipts = [ledger.get_receipt(height, index) for index in range(len(block.transactions))]
            record = compute_block_record(block, certificate_encoded, receipts, validators)
        except ChainError as error:
            raise StorageError(f"block {height} cannot be exported: {error.message}") from error
        output.write(json.dumps(record, separators=(",", ":")) + "\n")
        transactions += len(block.transactions)
    return ExportSummary(last - height_from + 1, transactions, height_from, last)


def export_jsonl(
    data_dir: Path,
    out_path: Path,
    *,
    height_from: int = 1,
    height_to: int | None = None,
    validators: quorum.ValidatorSet | None = None,
) -> ExportSummary:
    """Export a node's data directory (copied first, see the module doc) to `out_path`."""
    with open_ledger_snapshot(data_dir) as ledger:
        partial = out_path.with_name(out_path.name + ".partial")
        try:
            with partial.open("w", encoding="utf-8") as output:
                summary = write_blocks_jsonl(
                    ledger, output, height_from=height_from, height_to=height_to, validators=validators
                )
        except OSError as error:
            raise ConfigError(f"cannot write {out_path}: {error}") from error
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        partial.replace(out_path)
        return summary
