"""The X.509 hierarchy: issuance rules and verification (openssl and TLS: tests/integration)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from chainnode.core import identity, identity_records
from chainnode.core.crypto import SigningKey
from chainnode.core.errors import ConfigError, IdentityError
from tests.factories import Pki, create_pki, make_claims


@pytest.fixture(scope="module")
def pki() -> Pki:
    return create_pki("Test Network", (("beijing", "Beijing"), ("shanghai", "Shanghai")))


def test_claims_round_trip_and_record(pki: Pki) -> None:
    certificate, key = pki.issue(make_claims())
    claims = identity.read_claims(certificate)
    assert claims == make_claims()
    assert claims.roles == ("issuer", "submitter")  # normalised: sorted
    assert identity.read_zone_id(pki.zones["beijing"]) == "beijing"
    assert identity.public_key_of(certificate) == key.public_key
    record = identity.entity_record_from_certificate(certificate)
    assert record.entity_id == "pku-hospital-3" and record.zone == "beijing"
    assert record.public_key == key.public_key and not record.revoked
    assert record.not_after_ms - record.not_before_ms == 365 * 86_400_000
    assert identity_records.decode_entity_record(record.encode()) == record
    assert identity.certificate_from_der(record.certificate) == certificate
    pem = identity.certificate_to_pem(certificate)
    assert identity.certificate_from_pem(pem) == certificate


def test_verify_accepts_a_good_chain(pki: Pki) -> None:
    certificate, _ = pki.issue(make_claims())
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    claims = identity.verify_entity_certificate(certificate, pki.zones["beijing"], pki.root, at_ms=now_ms)
    assert claims.entity_id == "pku-hospital-3"


def test_issue_refuses_another_zone_and_unknown_claims(pki: Pki) -> None:
    key = SigningKey.generate()
    with pytest.raises(IdentityError, match="cannot issue"):
        identity.issue_entity_certificate(
            pki.zones["beijing"], pki.zone_keys["beijing"], make_claims(zone="shanghai"), key.public_key
        )
    bad_role = identity.EntityClaims("a-b", "beijing", ("emperor",), ("health",), "A")
    bad_sector = identity.EntityClaims("a-b", "beijing", ("submitter",), ("piracy",), "A")
    bad_id = identity.EntityClaims("Not_Lower", "beijing", ("submitter",), ("health",), "A")
    for claims in (bad_role, bad_sector, bad_id):
        with pytest.raises(IdentityError):
            identity.issue_entity_certificate(
                pki.zones["beijing"], pki.zone_keys["beijing"], claims, key.public_key
            )
    with pytest.raises(IdentityError, match="does not belong"):
        identity.issue_entity_certificate(
            pki.zones["beijing"], pki.zone_keys["shanghai"], make_claims(), key.public_key
        )


def test_verify_refuses_forged_wrong_zone_certificate(pki: Pki) -> None:
    # The beijing authority signs a certificate that claims shanghai, bypassing the issue check.
    forged = identity._build_entity_certificate(
        pki.zones["beijing"],
        pki.zone_keys["beijing"],
        make_claims(zone="shanghai"),
        SigningKey.generate().public_key,
    )
    with pytest.raises(IdentityError, match="cannot issue for another zone"):
        identity.verify_entity_certificate(forged, pki.zones["beijing"], pki.root)
    # Presented with the zone it claims, the signature does not verify.
    with pytest.raises(IdentityError, match="not issued by the expected authority"):
        identity.verify_entity_certificate(forged, pki.zones["shanghai"], pki.root)


def test_verify_refuses_foreign_root(pki: Pki) -> None:
    foreign = create_pki("Test Network")
    foreign_zone = foreign.zones["beijing"]
    certificate, _ = foreign.issue(make_claims())
    # Same names as the real hierarchy, different keys: only the signatures tell them apart.
    with pytest.raises(IdentityError, match="invalid signature"):
        identity.verify_entity_certificate(certificate, foreign_zone, pki.root)
    with pytest.raises(IdentityError):
        identity.verify_entity_certificate(certificate, pki.zones["beijing"], pki.root)


def test_verify_refuses_expired_and_not_yet_valid(pki: Pki) -> None:
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    certificate, _ = pki.issue(make_claims(), valid_days=1)
    record = identity.entity_record_from_certificate(certificate)
    identity.verify_entity_certificate(certificate, pki.zones["beijing"], pki.root, at_ms=now_ms)
    with pytest.raises(IdentityError, match="certificate of pku-hospital-3 has expired"):
        identity.verify_entity_certificate(
            certificate, pki.zones["beijing"], pki.root, at_ms=record.not_after_ms + 1
        )
    future, _ = pki.issue(make_claims(), not_before=datetime.now(UTC) + timedelta(days=2))
    with pytest.raises(IdentityError, match="certificate of pku-hospital-3 is not yet valid"):
        identity.verify_entity_certificate(future, pki.zones["beijing"], pki.root, at_ms=now_ms)
    # Without a time the validity window is not checked (the caller supplies block time).
    identity.verify_entity_certificate(future, pki.zones["beijing"], pki.root)


def test_verify_refuses_ca_as_entity_and_entity_as_zone(pki: Pki) -> None:
    certificate, _ = pki.issue(make_claims())
    with pytest.raises(IdentityError, match="not a CA"):
        identity.verify_entity_certificate(certificate, certificate, pki.root)
    with pytest.raises(IdentityError):
        identity.verify_entity_certificate(pki.zones["shanghai"], pki.zones["beijing"], pki.root)


def test_read_claims_refuses_missing_or_garbled_extension(pki: Pki) -> None:
    zone_key = pki.zone_keys["beijing"]
    subject_key = SigningKey.generate().to_cryptography().public_key()
    now = datetime.now(UTC)

    def build(extension_value: bytes | None) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.COMMON_NAME, "pku"),
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Peking University"),
                        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "beijing"),
                    ]
                )
            )
            .issuer_name(pki.zones["beijing"].subject)
            .public_key(subject_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + timedelta(days=1))
        )
        if extension_value is not None:
            builder = builder.add_extension(
                x509.UnrecognizedExtension(identity.CLAIMS_OID, extension_value), critical=False
            )
        return builder.sign(zone_key.to_cryptography(), algorithm=None)

    with pytest.raises(IdentityError, match="no pilot claims"):
        identity.read_claims(build(None))
    with pytest.raises(IdentityError, match="UTF8String"):
        identity.read_claims(build(b"\x04\x03abc"))
    text = b"zone=beijing;roles=submitter"
    with pytest.raises(IdentityError):
        identity.read_claims(build(bytes([0x0C, len(text)]) + text))
    text = b"zone=shanghai;roles=submitter;sectors=health"
    with pytest.raises(IdentityError, match="disagrees"):
        identity.read_claims(build(bytes([0x0C, len(text)]) + text))
    text = b"zone=beijing;roles=submitter;sectors=health"
    assert identity.read_claims(build(bytes([0x0C, len(text)]) + text)).sectors == ("health",)


def test_load_certificates_bundle(pki: Pki, tmp_path: Path) -> None:
    certificate, _ = pki.issue(make_claims())
    bundle = tmp_path / "chain.pem"
    bundle.write_bytes(
        identity.certificate_to_pem(certificate) + identity.certificate_to_pem(pki.zones["beijing"])
    )
    assert identity.load_certificates(bundle) == (certificate, pki.zones["beijing"])
    assert identity.load_certificate(bundle) == certificate
    (tmp_path / "junk.pem").write_bytes(b"not a certificate")
    with pytest.raises(ConfigError):
        identity.load_certificate(tmp_path / "junk.pem")
    with pytest.raises(ConfigError):
        identity.load_certificate(tmp_path / "missing.pem")
