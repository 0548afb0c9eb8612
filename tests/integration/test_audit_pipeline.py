"""The audit's pipeline: windows of whole blocks, each verified while the one before it executes,
and every transaction decoded once (see "Parallel signature checks" in chainnode.tools.audit)."""

from __future__ import annotations

import time

import pytest

from chainnode.core import types
from chainnode.tools.audit import Auditor, auditor
from chainnode.tools.audit.verify import SignatureVerifier, Verified
from chainnode.tools.export import LedgerSource, open_ledger_snapshot
from tests.integration.audit_chain import BuiltChain, build_chain

HEIGHTS = 10
TXS_PER_BLOCK = 5
# Every height carries 3 or 4 commit signatures besides its transactions.
SIGNATURES_PER_BLOCK_MAX = TXS_PER_BLOCK + 4


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> BuiltChain:
    return build_chain(tmp_path_factory.mktemp("pipeline"), heights=HEIGHTS, txs_per_block=TXS_PER_BLOCK)


def _audit(chain: BuiltChain) -> Auditor:
    with open_ledger_snapshot(chain.data_dir) as ledger:
        audit = Auditor(chain.genesis, LedgerSource(ledger, "test"), workers=0, measure_baseline=False)
        report = audit.run()
    assert report.ok, report.failure
    assert report.transactions == HEIGHTS * TXS_PER_BLOCK
    return audit


def test_windows_are_small_and_each_is_verified_before_the_one_before_it_executes(
    chain: BuiltChain, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Windows of about two blocks: a chain of 10 blocks makes several, each submitted to the
    # pool before the verdicts of the one before it are read (and that one re-executed).
    monkeypatch.setattr(auditor, "WINDOW_SIGNATURES", 2 * SIGNATURES_PER_BLOCK_MAX)
    monkeypatch.setattr(auditor, "WINDOW_SIGNATURES_FIRST", 1)
    events: list[tuple[str, int]] = []  # ("submit", window) and ("get", window), in order
    sizes: list[int] = []  # signatures per window
    submit, get = SignatureVerifier.submit, Verified.get

    def record_submit(self: SignatureVerifier, items: bytes) -> Verified:
        verified = submit(self, items)
        window_index[id(verified)] = len(sizes)
        events.append(("submit", len(sizes)))
        sizes.append(len(items) // 128)
        return verified

    def record_get(self: Verified) -> bytes:
        events.append(("get", window_index[id(self)]))
        return get(self)

    window_index: dict[int, int] = {}
    monkeypatch.setattr(SignatureVerifier, "submit", record_submit)
    monkeypatch.setattr(Verified, "get", record_get)
    _audit(chain)
    assert sizes[0] <= SIGNATURES_PER_BLOCK_MAX, f"the first window is one block: {sizes}"
    assert all(size <= 3 * SIGNATURES_PER_BLOCK_MAX for size in sizes), sizes
    assert len(sizes) >= HEIGHTS // 3, sizes
    assert [index for kind, index in events if kind == "get"] == list(range(len(sizes)))
    for index in range(len(sizes) - 1):
        assert events.index(("submit", index + 1)) < events.index(("get", index)), (
            f"window {index + 1} was submitted only after window {index} executed: {events}"
        )


def test_each_transaction_is_decoded_once(chain: BuiltChain, monkeypatch: pytest.MonkeyPatch) -> None:
    # Every decode, shared (memoised) or not, ends in decode_transaction_unshared.
    decoded: list[bytes] = []
    decode = types.decode_transaction_unshared

    def counting_decode(data: bytes) -> types.Transaction:
        decoded.append(bytes(data))
        return decode(data)

    monkeypatch.setattr(types, "decode_transaction_unshared", counting_decode)
    # Empty the memo of live transactions, so a second, shared decode would count here too.
    monkeypatch.setattr(types, "_LIVE", {})
    _audit(chain)
    assert len(decoded) == HEIGHTS * TXS_PER_BLOCK
    assert len(set(decoded)) == len(decoded), "a transaction was decoded twice"


def test_measuring_v_is_outside_the_audit_time(chain: BuiltChain, monkeypatch: pytest.MonkeyPatch) -> None:
    marks: list[float] = []

    def measure_verify_rate() -> float:
        marks.append(time.monotonic())
        time.sleep(0.05)  # stands for the ~1.3 s the real measurement takes
        marks.append(time.monotonic())
        return 20_000.0

    monkeypatch.setattr(auditor, "measure_verify_rate", measure_verify_rate)
    with open_ledger_snapshot(chain.data_dir) as ledger:
        audit = Auditor(chain.genesis, LedgerSource(ledger, "test"), workers=0)
        report = audit.run()
        finished = time.monotonic()
    assert report.ok, report.failure
    assert report.single_core_verify_per_s == 20_000.0
    assert report.verify_rate_measure_s >= marks[1] - marks[0]
    assert report.elapsed_s <= finished - marks[1], "the audit's clock started before V was measured"
    assert report.to_json()["verify_rate_measure_s"] == round(report.verify_rate_measure_s, 3)
