"""Evidence and checkpoint certificates kept in the real LevelDB ledger."""

from __future__ import annotations

from pathlib import Path

from chainnode.core import crypto, quorum, types
from consensus.messages import Evidence, decode_evidence, sign_vote
from storage.ledger import Ledger


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
    validators = quorum.ValidatorSet(
        tuple(quorum.Validator(f"v{i}", k.public_key) for i, k in enumerate(keys))
    )
    certificates = []
    for height in (100, 300, 200):
        block_hash = crypto.sha256(height.to_bytes(8, "big"))
        payload = types.compute_vote_payload(types.VoteKind.CHECKPOINT, "c", 0, height, block_hash)
        signatures = tuple((i, keys[i].sign(payload)) for i in range(3))
        certificates.append(quorum.CheckpointCertificate(height, block_hash, signatures))
    with Ledger(tmp_path / "db") as ledger:
        assert ledger.get_latest_checkpoint() is None
        for certificate in certificates:
            ledger.put_checkpoint(certificate.height, certificate.encode())
        latest = ledger.get_latest_checkpoint()
    assert latest is not None
    decoded = quorum.decode_checkpoint_certificate(latest)
    assert decoded.height == 300
    assert decoded.find_problem("c", validators) is None
    assert decoded.find_problem("other", validators) is not None
    short = quorum.CheckpointCertificate(decoded.height, decoded.block_hash, decoded.signatures[:2])
    assert "quorum" in (short.find_problem("c", validators) or "")
