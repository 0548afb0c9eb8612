"""The audit's time rule: a chain certified with a block dated in the future fails `timestamp_future`."""

from __future__ import annotations

from pathlib import Path

import pytest

from chainnode.tools.audit import Auditor
from chainnode.tools.export import LedgerSource, open_ledger_snapshot
from tests.integration import audit_chain


def run_audit(chain: audit_chain.BuiltChain, *, wall_ms: int | None = None) -> object:
    with open_ledger_snapshot(chain.data_dir) as ledger:
        auditor = Auditor(chain.genesis, LedgerSource(ledger, "test"), workers=0, measure_baseline=False)
        if wall_ms is not None:
            auditor.wall_ms = wall_ms
        return auditor.run()


def test_a_block_dated_a_minute_ahead_fails_the_audit_at_its_height(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Colluding validators (the test holds every key) certify blocks one minute apart: the
    # first is already 60 s ahead of any clock within the default 10 s drift of now.
    monkeypatch.setattr(audit_chain, "BLOCK_INTERVAL_MS", 60_000)
    chain = audit_chain.build_chain(tmp_path / "future", heights=2, txs_per_block=1)
    report = run_audit(chain)
    failure = report.failure  # type: ignore[attr-defined]
    assert failure is not None and (failure.height, failure.check) == (1, "timestamp_future"), failure
    assert "ms ahead of the auditor's clock (at most 10000 ms allowed)" in failure.reason
    # The same chain audited by a clock two minutes later is fine: the rule is the drift.
    later = run_audit(chain, wall_ms=chain.genesis.genesis_time_ms + 120_000 + 1)
    assert later.ok, later.failure  # type: ignore[attr-defined]
