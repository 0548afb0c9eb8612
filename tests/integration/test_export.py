"""JSON Lines export and data-directory snapshots, over a real chain in a real LevelDB."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from chainnode.app.execution import Executor, SignatureCache
from chainnode.core import quorum, types
from chainnode.core.errors import ConfigError
from chainnode.tools.audit import Auditor
from chainnode.tools.export import LedgerSource, export_jsonl, open_ledger_snapshot
from storage.ledger import Ledger
from tests.factories import load_validator_keys, run_cli_process
from tests.integration.audit_chain import (
    CHAIN_ID,
    BuiltChain,
    build_chain,
    build_transactions,
    commit_block,
    load_identities,
)

HEIGHTS = 6
TXS_PER_BLOCK = 4


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> BuiltChain:
    return build_chain(tmp_path_factory.mktemp("export"), heights=HEIGHTS, txs_per_block=TXS_PER_BLOCK)


def _read_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_export_is_complete_and_self_checking(chain: BuiltChain, tmp_path: Path) -> None:
    out = tmp_path / "chain.jsonl"
    summary = export_jsonl(chain.data_dir, out, validators=chain.genesis.validators)
    assert (summary.blocks, summary.transactions) == (HEIGHTS, HEIGHTS * TXS_PER_BLOCK)
    records = _read_lines(out)
    assert [record["height"] for record in records] == list(range(1, HEIGHTS + 1))
    parent = chain.genesis.compute_hash().hex()
    for record in records:
        header = types.decode_block_header(bytes.fromhex(str(record["header_encoded"])))
        assert header.compute_hash().hex() == record["hash"]
        assert record["header"]["parent_hash"] == parent  # type: ignore[index]
        parent = str(record["hash"])
        certificate = quorum.decode_commit_certificate(bytes.fromhex(str(record["certificate_encoded"])))
        assert certificate.find_problem(CHAIN_ID, chain.genesis.validators) is None
        assert record["certificate"]["signatures"][0]["validator"] == "validator-01"  # type: ignore[index]
        transactions = record["transactions"]
        assert isinstance(transactions, list) and len(transactions) == TXS_PER_BLOCK
        txs, receipts = [], []
        for index, item in enumerate(transactions):
            tx = types.decode_transaction(bytes.fromhex(item["encoded"]))
            assert (item["index"], item["hash"], item["signer"]) == (index, tx.hash.hex(), tx.signer)
            receipt = types.decode_receipt(bytes.fromhex(item["receipt"]["encoded"]))
            assert receipt.tx_hash == tx.hash and item["receipt"]["code"] == receipt.code
            txs.append(tx)
            receipts.append(receipt)
        assert types.compute_tx_root(txs) == header.tx_root
        assert types.compute_receipts_root(receipts) == header.receipts_root


def test_export_range_and_bounds(chain: BuiltChain, tmp_path: Path) -> None:
    out = tmp_path / "part.jsonl"
    summary = export_jsonl(chain.data_dir, out, height_from=2, height_to=3)
    assert (summary.height_from, summary.height_to, summary.blocks) == (2, 3, 2)
    records = _read_lines(out)
    assert [record["height"] for record in records] == [2, 3]
    assert records[0]["certificate"]["signatures"][0]["validator"] is None  # type: ignore[index]
    with pytest.raises(ConfigError):
        export_jsonl(chain.data_dir, tmp_path / "bad.jsonl", height_from=3, height_to=HEIGHTS + 1)
    assert not (tmp_path / "bad.jsonl").exists() and not (tmp_path / "bad.jsonl.partial").exists()
    with pytest.raises(ConfigError):
        export_jsonl(tmp_path, tmp_path / "none.jsonl")  # not a data directory


def test_export_command(chain: BuiltChain, tmp_path: Path) -> None:
    out = tmp_path / "cli.jsonl"
    result = run_cli_process(
        "export",
        "--data-dir",
        str(chain.data_dir),
        "--out",
        str(out),
        "--from",
        "2",
        "--genesis",
        str(chain.genesis_path),
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["blocks"] == HEIGHTS - 1
    assert len(_read_lines(out)) == HEIGHTS - 1


def test_snapshots_of_a_ledger_being_written_audit_clean(chain: BuiltChain, tmp_path: Path) -> None:
    """A writer holds the LevelDB lock and commits blocks while snapshots are copied and audited."""
    import shutil

    data_dir = tmp_path / "live"
    shutil.copytree(chain.data_dir, data_dir)
    keys = load_validator_keys(chain.network_dir, chain.genesis.validators)
    submitters, outsider = load_identities(chain.network_dir)
    extra_blocks = 150
    errors: list[BaseException] = []
    ledger = Ledger(data_dir / "ledger")
    executor = Executor(CHAIN_ID, SignatureCache())

    def write() -> None:
        try:
            for height in range(HEIGHTS + 1, HEIGHTS + extra_blocks + 1):
                commit_block(
                    ledger,
                    executor,
                    chain.genesis,
                    keys,
                    build_transactions(height, TXS_PER_BLOCK, submitters, outsider),
                )
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    writer = threading.Thread(target=write)
    writer.start()
    heights = []
    try:
        deadline = time.monotonic() + 20
        while writer.is_alive() and time.monotonic() < deadline and len(heights) < 50:
            with open_ledger_snapshot(data_dir) as snapshot:
                report = Auditor(
                    chain.genesis, LedgerSource(snapshot, "live"), workers=0, measure_baseline=False
                ).run()
            assert report.ok, report.failure
            heights.append(report.final_height)
    finally:
        writer.join(timeout=30)
        ledger.close()
    assert not errors, errors
    assert heights and heights[0] >= HEIGHTS
    assert heights == sorted(heights) and len(set(heights)) >= 2  # copies taken while it wrote
