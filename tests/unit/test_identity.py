"""The X.509 hierarchy: issuance rules, verification, openssl interop and a real TLS handshake."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from chainnode.core import identity, types
from chainnode.core.crypto import SigningKey
from chainnode.core.errors import ConfigError, IdentityError

OPENSSL = shutil.which("openssl")


@dataclass
class Pki:
    root: x509.Certificate
    root_key: SigningKey
    zones: dict[str, x509.Certificate]
    zone_keys: dict[str, SigningKey]


@pytest.fixture(scope="module")
def pki() -> Pki:
    root_key = SigningKey.generate()
    root = identity.create_root_ca("Test Network", root_key)
    zones: dict[str, x509.Certificate] = {}
    zone_keys: dict[str, SigningKey] = {}
    for zone_id, name in (("beijing", "Beijing"), ("shanghai", "Shanghai")):
        zone_keys[zone_id] = SigningKey.generate()
        zones[zone_id] = identity.create_zone_ca(
            root, root_key, zone_id=zone_id, zone_name=name, key=zone_keys[zone_id]
        )
    return Pki(root, root_key, zones, zone_keys)


def _claims(entity_id: str = "pku-hospital-3", zone: str = "beijing") -> identity.EntityClaims:
    return identity.EntityClaims(
        entity_id=entity_id,
        zone=zone,
        roles=("submitter", "issuer"),
        sectors=("health", "education"),
        name="Peking University Third Hospital",
    )


def _issue(pki: Pki, claims: identity.EntityClaims, **kwargs: object) -> tuple[x509.Certificate, SigningKey]:
    key = SigningKey.generate()
    certificate = identity.issue_entity_certificate(
        pki.zones[claims.zone],
        pki.zone_keys[claims.zone],
        claims,
        key.public_key,
        **kwargs,  # type: ignore[arg-type]
    )
    return certificate, key


def test_claims_round_trip_and_record(pki: Pki) -> None:
    certificate, key = _issue(pki, _claims())
    claims = identity.read_claims(certificate)
    assert claims == _claims()
    assert claims.roles == ("issuer", "submitter")  # normalised: sorted
    assert identity.read_zone_id(pki.zones["beijing"]) == "beijing"
    assert identity.public_key_of(certificate) == key.public_key
    record = identity.entity_record_from_certificate(certificate)
    assert record.entity_id == "pku-hospital-3" and record.zone == "beijing"
    assert record.public_key == key.public_key and not record.revoked
    assert record.not_after_ms - record.not_before_ms == 365 * 86_400_000
    assert types.decode_entity_record(record.encode()) == record
    assert identity.certificate_from_der(record.certificate) == certificate
    pem = identity.certificate_to_pem(certificate)
    assert identity.certificate_from_pem(pem) == certificate


def test_verify_accepts_a_good_chain(pki: Pki) -> None:
    certificate, _ = _issue(pki, _claims())
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    claims = identity.verify_entity_certificate(certificate, pki.zones["beijing"], pki.root, at_ms=now_ms)
    assert claims.entity_id == "pku-hospital-3"


def test_issue_refuses_another_zone_and_unknown_claims(pki: Pki) -> None:
    key = SigningKey.generate()
    with pytest.raises(IdentityError, match="cannot issue"):
        identity.issue_entity_certificate(
            pki.zones["beijing"], pki.zone_keys["beijing"], _claims(zone="shanghai"), key.public_key
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
            pki.zones["beijing"], pki.zone_keys["shanghai"], _claims(), key.public_key
        )


def test_verify_refuses_forged_wrong_zone_certificate(pki: Pki) -> None:
    # The beijing authority signs a certificate that claims shanghai, bypassing the issue check.
    forged = identity._build_entity_certificate(
        pki.zones["beijing"],
        pki.zone_keys["beijing"],
        _claims(zone="shanghai"),
        SigningKey.generate().public_key,
    )
    with pytest.raises(IdentityError, match="cannot issue for another zone"):
        identity.verify_entity_certificate(forged, pki.zones["beijing"], pki.root)
    # Presented with the zone it claims, the signature does not verify.
    with pytest.raises(IdentityError, match="not issued by the expected authority"):
        identity.verify_entity_certificate(forged, pki.zones["shanghai"], pki.root)


def test_verify_refuses_foreign_root(pki: Pki) -> None:
    foreign_key = SigningKey.generate()
    foreign_root = identity.create_root_ca("Test Network", foreign_key)
    foreign_zone_key = SigningKey.generate()
    foreign_zone = identity.create_zone_ca(
        foreign_root, foreign_key, zone_id="beijing", zone_name="Beijing", key=foreign_zone_key
    )
    key = SigningKey.generate()
    certificate = identity.issue_entity_certificate(foreign_zone, foreign_zone_key, _claims(), key.public_key)
    # Same names as the real hierarchy, different keys: only the signatures tell them apart.
    with pytest.raises(IdentityError, match="invalid signature"):
        identity.verify_entity_certificate(certificate, foreign_zone, pki.root)
    with pytest.raises(IdentityError):
        identity.verify_entity_certificate(certificate, pki.zones["beijing"], pki.root)


def test_verify_refuses_expired_and_not_yet_valid(pki: Pki) -> None:
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    certificate, _ = _issue(pki, _claims(), valid_days=1)
    record = identity.entity_record_from_certificate(certificate)
    identity.verify_entity_certificate(certificate, pki.zones["beijing"], pki.root, at_ms=now_ms)
    with pytest.raises(IdentityError, match="certificate of pku-hospital-3 has expired"):
        identity.verify_entity_certificate(
            certificate, pki.zones["beijing"], pki.root, at_ms=record.not_after_ms + 1
        )
    future, _ = _issue(pki, _claims(), not_before=datetime.now(UTC) + timedelta(days=2))
    with pytest.raises(IdentityError, match="certificate of pku-hospital-3 is not yet valid"):
        identity.verify_entity_certificate(future, pki.zones["beijing"], pki.root, at_ms=now_ms)
    # Without a time the validity window is not checked (the caller supplies block time).
    identity.verify_entity_certificate(future, pki.zones["beijing"], pki.root)


def test_verify_refuses_ca_as_entity_and_entity_as_zone(pki: Pki) -> None:
    certificate, _ = _issue(pki, _claims())
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
    certificate, _ = _issue(pki, _claims())
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


def _write_pki_files(pki: Pki, certificate: x509.Certificate, directory: Path) -> tuple[Path, Path, Path]:
    root_path = directory / "root.pem"
    zone_path = directory / "zone.pem"
    entity_path = directory / "entity.pem"
    root_path.write_bytes(identity.certificate_to_pem(pki.root))
    zone_path.write_bytes(identity.certificate_to_pem(pki.zones["beijing"]))
    entity_path.write_bytes(identity.certificate_to_pem(certificate))
    return root_path, zone_path, entity_path


@pytest.mark.skipif(OPENSSL is None, reason="the openssl binary is required")
def test_openssl_reads_and_verifies(pki: Pki, tmp_path: Path) -> None:
    assert OPENSSL is not None
    certificate, _ = _issue(pki, _claims())
    root_path, zone_path, entity_path = _write_pki_files(pki, certificate, tmp_path)
    text = subprocess.run(
        [OPENSSL, "x509", "-in", str(entity_path), "-noout", "-text"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    assert "zone=beijing;roles=issuer,submitter;sectors=education,health" in text
    assert "URI:chainnode:entity:pku-hospital-3" in text
    assert "CA:FALSE" in text
    for purpose in ([], ["-purpose", "sslserver"], ["-purpose", "sslclient"]):
        result = subprocess.run(
            [
                OPENSSL,
                "verify",
                *purpose,
                "-CAfile",
                str(root_path),
                "-untrusted",
                str(zone_path),
                str(entity_path),
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "entity.pem: OK" in result.stdout
    # Without the zone CA the chain is incomplete: openssl must refuse, so the check can fail.
    result = subprocess.run(
        [OPENSSL, "verify", "-CAfile", str(root_path), str(entity_path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0


def _tls_context(pki: Pki, directory: Path, name: str, *, server: bool) -> ssl.SSLContext:
    certificate, key = _issue(pki, _claims(entity_id=name))
    (directory / f"{name}.chain.pem").write_bytes(
        identity.certificate_to_pem(certificate) + identity.certificate_to_pem(pki.zones["beijing"])
    )
    (directory / f"{name}.key.pem").write_bytes(key.to_pem())
    (directory / "root.pem").write_bytes(identity.certificate_to_pem(pki.root))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(directory / f"{name}.chain.pem", directory / f"{name}.key.pem")
    context.load_verify_locations(directory / "root.pem")
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def test_mutual_tls_handshake_with_entity_certificates(pki: Pki, tmp_path: Path) -> None:
    server_context = _tls_context(pki, tmp_path, "validator-01", server=True)
    client_context = _tls_context(pki, tmp_path, "validator-02", server=False)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    port = listener.getsockname()[1]
    seen: dict[str, bytes] = {}

    def serve() -> None:
        connection, _ = listener.accept()
        connection.settimeout(10)
        with server_context.wrap_socket(connection, server_side=True) as tls:
            peer = tls.getpeercert(binary_form=True)
            seen["client"] = peer or b""
            tls.sendall(b"ok")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        client_context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        server_der = tls.getpeercert(binary_form=True) or b""
        assert tls.recv(2) == b"ok"
    thread.join(timeout=10)
    listener.close()
    assert identity.read_claims(identity.certificate_from_der(server_der)).entity_id == "validator-01"
    assert identity.read_claims(identity.certificate_from_der(seen["client"])).entity_id == "validator-02"
