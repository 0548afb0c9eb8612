"""Prometheus rendering, and evidence and checkpoints kept in the real ledger."""

from __future__ import annotations

import gc
from pathlib import Path

from chainnode.core import crypto, metrics, types
from consensus.messages import Evidence, decode_evidence, sign_vote
from storage.ledger import Ledger


def test_render_groups_help_and_type_and_escapes_labels() -> None:
    text = metrics.render(
        [
            metrics.Sample("x_total", "counter", "Things.", 3, {"peer": 'a"b'}),
            metrics.Sample("x_total", "counter", "Things.", 4, {"peer": "c"}),
            metrics.Sample("y", "gauge", "A level.", 0.5),
        ],
        {"node": "n1"},
    )
    assert text.splitlines() == [
        "# HELP x_total Things.",
        "# TYPE x_total counter",
        'x_total{node="n1",peer="a\\"b"} 3',
        'x_total{node="n1",peer="c"} 4',
        "# HELP y A level.",
        "# TYPE y gauge",
        'y{node="n1"} 0.5',
    ]


def test_gc_timer_counts_real_collections_and_renders_each_metric_as_one_group() -> None:
    timer = metrics.GcTimer()
    timer.install()
    try:
        for _ in range(3):
            garbage = [[index] for index in range(50_000)]
            del garbage
            gc.collect()
    finally:
        timer.uninstall()
    assert timer.collections[2] >= 3 and timer.seconds[2] > 0
    text = metrics.render(timer.samples(), {"node": "n"})
    names = [line.split("{")[0] for line in text.splitlines() if not line.startswith("#")]
    assert names == ["chainnode_gc_seconds_total"] * 3 + ["chainnode_gc_collections_total"] * 3
    assert 'chainnode_gc_collections_total{generation="2",node="n"}' in text
    collections_before = list(timer.collections)
    gc.collect()
    assert timer.collections == collections_before, "uninstalled: no longer counting"


def test_evidence_round_trips_and_is_kept_once(tmp_path: Path) -> None:
    key = crypto.SigningKey(b"\x05" * 32)
    first = sign_vote(key, "c", types.VoteKind.PREPARE, 2, 9, crypto.sha256(b"a"), 1)
    second = sign_vote(key, "c", types.VoteKind.PREPARE, 2, 9, crypto.sha256(b"b"), 1)
    evidence = Evidence(1, types.VoteKind.PREPARE, 2, 9, first, second)
    assert decode_evidence(evidence.encode()) == evidence
    with Ledger(tmp_path / "db") as ledger:
        assert ledger.put_evidence(9, 1, int(types.VoteKind.PREPARE), 2, evidence.encode())
        assert not ledger.put_evidence(9, 1, int(types.VoteKind.PREPARE), 2, evidence.encode())
        assert list(ledger.iter_evidence()) == [evidence.encode()]
    with Ledger(tmp_path / "db") as ledger:
        assert [decode_evidence(item) for item in ledger.iter_evidence()] == [evidence]


def test_latest_checkpoint_is_the_highest(tmp_path: Path) -> None:
    keys = [crypto.SigningKey(bytes([i + 1]) * 32) for i in range(4)]
    validators = types.ValidatorSet(tuple(types.Validator(f"v{i}", k.public_key) for i, k in enumerate(keys)))
    certificates = []
    for height in (100, 300, 200):
        block_hash = crypto.sha256(height.to_bytes(8, "big"))
        payload = types.compute_vote_payload(types.VoteKind.CHECKPOINT, "c", 0, height, block_hash)
        signatures = tuple((i, keys[i].sign(payload)) for i in range(3))
        certificates.append(types.CheckpointCertificate(height, block_hash, signatures))
    with Ledger(tmp_path / "db") as ledger:
        assert ledger.get_latest_checkpoint() is None
        for certificate in certificates:
            ledger.put_checkpoint(certificate.height, certificate.encode())
        latest = ledger.get_latest_checkpoint()
    assert latest is not None
    decoded = types.decode_checkpoint_certificate(latest)
    assert decoded.height == 300
    assert decoded.find_problem("c", validators) is None
    assert decoded.find_problem("other", validators) is not None
    short = types.CheckpointCertificate(decoded.height, decoded.block_hash, decoded.signatures[:2])
    assert "quorum" in (short.find_problem("c", validators) or "")
