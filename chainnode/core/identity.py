"""The pilot's X.509 identity hierarchy (Ed25519 throughout).

Theory of operation
-------------------
Three levels, each signed by the one above:

    network root CA (self-signed, pathlen 1)
      -> zone authority CA (pathlen 0, one per pilot zone)
        -> end-entity certificate (CA=false; also a TLS client and server certificate)

An end-entity certificate names its holder as `CN=<entity id>, O=<display name>, OU=<zone id>`
and carries the pilot claims in a non-critical private extension (`CLAIMS_OID`) whose value is a
DER UTF8String such as `zone=beijing;roles=submitter,validator;sectors=health,education`, so
`openssl x509 -text` shows it verbatim.  A zone CA carries its zone id the same way (OU and the
extension, with empty roles and sectors), so the zone of a CA is read from the CA itself and not
from a name convention.  The claims, their format and their strict reading are
`chainnode.core.claims`'s; this module issues and verifies the certificates that carry them.

The rule that matters beyond ordinary path validation: *a zone authority may only issue for its
own zone*.  `issue_entity_certificate` refuses to sign such a certificate, and
`verify_entity_certificate` refuses one that was forged anyway (the entity's zone claim must equal
the zone id of the CA that signed it).

Certificates are plain standard PEM/DER that `openssl verify -CAfile root.pem -untrusted zone.pem
entity.pem` accepts.  Times in certificates have one-second precision; every `not_before` is
truncated to the second so that the millisecond times in `identity_records.EntityRecord` equal the
certificate's times exactly.

Errors: input that arrives from outside (a certificate in a transaction or a TLS handshake) that
breaks a rule raises `IdentityError`; a certificate file that cannot be read raises `ConfigError`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from chainnode.core import identity_records
from chainnode.core.claims import (
    CLAIMS_OID,
    NAME_LENGTH_MAX,
    EntityClaims,
    check_claims,
    compute_claims_text,
    encode_utf8string,
    is_valid_id,
    read_claims,
    read_zone_id,
)
from chainnode.core.crypto import PUBLIC_KEY_BYTES, SigningKey
from chainnode.core.errors import ConfigError, IdentityError

ROOT_VALID_DAYS = 3650
ZONE_VALID_DAYS = 1825
ENTITY_VALID_DAYS = 365
# Certificates start an hour in the past so that small clock differences between the issuer and
# the verifier do not make a fresh certificate "not yet valid".
NOT_BEFORE_BACKDATE = timedelta(hours=1)

# What callers import from here, the claims' names (now in chainnode.core.claims) included.
__all__ = [
    "CLAIMS_OID",
    "DEFAULT_HOSTS",
    "ENTITY_VALID_DAYS",
    "NOT_BEFORE_BACKDATE",
    "ROOT_VALID_DAYS",
    "URI_PREFIX",
    "ZONE_VALID_DAYS",
    "EntityClaims",
    "certificate_der",
    "certificate_from_der",
    "certificate_from_pem",
    "certificate_to_pem",
    "compute_host_names",
    "create_root_ca",
    "create_zone_ca",
    "entity_record_from_certificate",
    "get_validity_ms",
    "is_valid_id",
    "issue_entity_certificate",
    "load_certificate",
    "load_certificates",
    "public_key_of",
    "read_claims",
    "read_zone_id",
    "to_ms",
    "verify_entity_certificate",
    "verify_zone_certificate",
]

URI_PREFIX = "chainnode:entity:"
DEFAULT_HOSTS = ("localhost", "127.0.0.1")  # the subject alternative names without `hosts`

# ---------------------------------------------------------------- building certificates


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _public_key_object(public_key: bytes) -> ed25519.Ed25519PublicKey:
    if len(public_key) != PUBLIC_KEY_BYTES:
        raise IdentityError(f"an Ed25519 public key is {PUBLIC_KEY_BYTES} bytes, got {len(public_key)}")
    return ed25519.Ed25519PublicKey.from_public_bytes(public_key)


def _check_issuer_key(issuer_certificate: x509.Certificate, issuer_key: SigningKey) -> None:
    if public_key_of(issuer_certificate) != issuer_key.public_key:
        raise IdentityError("the signing key does not belong to the issuer certificate")


def _compute_key_usage(*, is_ca: bool) -> x509.KeyUsage:
    """CAs sign certificates and CRLs; entities sign (transactions, votes, TLS handshakes)."""
    return x509.KeyUsage(
        digital_signature=not is_ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=is_ca,
        crl_sign=is_ca,
        encipher_only=False,
        decipher_only=False,
    )


def _certificate_builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ed25519.Ed25519PublicKey,
    issuer_public_key: ed25519.Ed25519PublicKey,
    *,
    is_ca: bool,
    path_length: int | None,
    not_before: datetime,
    valid_days: int,
) -> x509.CertificateBuilder:
    """What every certificate of the hierarchy carries: names, key, validity, basic
    constraints, key usage and both key identifiers."""
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=path_length), critical=True)
        .add_extension(_compute_key_usage(is_ca=is_ca), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public_key), critical=False)
    )


def _ca_builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ed25519.Ed25519PublicKey,
    issuer_public_key: ed25519.Ed25519PublicKey,
    *,
    path_length: int,
    valid_days: int,
) -> x509.CertificateBuilder:
    return _certificate_builder(
        subject,
        issuer,
        public_key,
        issuer_public_key,
        is_ca=True,
        path_length=path_length,
        not_before=_now() - NOT_BEFORE_BACKDATE,
        valid_days=valid_days,
    )


def create_root_ca(name: str, key: SigningKey, *, valid_days: int = ROOT_VALID_DAYS) -> x509.Certificate:
    """The self-signed network root; it may certify zone CAs (pathlen 1)."""
    if not name or len(name) > NAME_LENGTH_MAX:
        raise IdentityError("the root CA needs a display name of 1..128 characters")
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, f"{name} Root CA"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, name),
        ]
    )
    private_key = key.to_cryptography()
    public_key = private_key.public_key()
    builder = _ca_builder(subject, subject, public_key, public_key, path_length=1, valid_days=valid_days)
    return builder.sign(private_key, algorithm=None)


def create_zone_ca(
    root_certificate: x509.Certificate,
    root_key: SigningKey,
    *,
    zone_id: str,
    zone_name: str,
    key: SigningKey,
    valid_days: int = ZONE_VALID_DAYS,
) -> x509.Certificate:
    """A zone authority CA (pathlen 0) signed by the root, carrying its zone id."""
    if not is_valid_id(zone_id):
        raise IdentityError(f"zone id {zone_id!r} is not lowercase [a-z0-9-]")
    if not zone_name or len(zone_name) > NAME_LENGTH_MAX:
        raise IdentityError(f"zone {zone_id} needs a display name of 1..128 characters")
    _check_issuer_key(root_certificate, root_key)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, f"{zone_name} Zone Authority"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, zone_name),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, zone_id),
        ]
    )
    root_private = root_key.to_cryptography()
    builder = _ca_builder(
        subject,
        root_certificate.subject,
        key.to_cryptography().public_key(),
        root_private.public_key(),
        path_length=0,
        valid_days=valid_days,
    ).add_extension(
        x509.UnrecognizedExtension(CLAIMS_OID, encode_utf8string(compute_claims_text(zone_id, (), ()))),
        critical=False,
    )
    return builder.sign(root_private, algorithm=None)


def compute_host_names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    """Subject alternative names for the addresses a node is reached at: an IP address as
    `IPAddress`, anything else as `DNSName`; no hosts means `localhost` and 127.0.0.1.

    Peers identify each other by entity id, not by these names (see `p2p.tls`); they are there
    for operators' tools and for clients that check a node's name."""
    names: list[x509.GeneralName] = []
    for host in hosts or DEFAULT_HOSTS:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return list(dict.fromkeys(names))


def _build_entity_certificate(
    zone_certificate: x509.Certificate,
    zone_key: SigningKey,
    claims: EntityClaims,
    public_key: bytes,
    *,
    valid_days: int = ENTITY_VALID_DAYS,
    not_before: datetime | None = None,
    hosts: Sequence[str] = (),
) -> x509.Certificate:
    """Sign an end-entity certificate without any rule check (tests use it to forge)."""
    start = (not_before or (_now() - NOT_BEFORE_BACKDATE)).replace(microsecond=0)
    subject_key = _public_key_object(public_key)
    zone_private = zone_key.to_cryptography()
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, claims.entity_id),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, claims.name),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, claims.zone),
        ]
    )
    alternative_names = x509.SubjectAlternativeName(
        [
            *compute_host_names(hosts),
            x509.UniformResourceIdentifier(f"{URI_PREFIX}{claims.entity_id}"),
        ]
    )
    claims_text = compute_claims_text(claims.zone, claims.roles, claims.sectors)
    builder = (
        _certificate_builder(
            subject,
            zone_certificate.subject,
            subject_key,
            zone_private.public_key(),
            is_ca=False,
            path_length=None,
            not_before=start,
            valid_days=valid_days,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(alternative_names, critical=False)
        .add_extension(x509.UnrecognizedExtension(CLAIMS_OID, encode_utf8string(claims_text)), critical=False)
    )
    return builder.sign(zone_private, algorithm=None)


def issue_entity_certificate(
    zone_certificate: x509.Certificate,
    zone_key: SigningKey,
    claims: EntityClaims,
    public_key: bytes,
    *,
    valid_days: int = ENTITY_VALID_DAYS,
    not_before: datetime | None = None,
    hosts: Sequence[str] = (),
) -> x509.Certificate:
    """Issue an end-entity certificate; a zone authority may only issue for its own zone.

    `hosts` (a node's addresses: IP addresses or DNS names) become subject alternative names."""
    check_claims(claims)
    zone_id = read_zone_id(zone_certificate)
    if claims.zone != zone_id:
        raise IdentityError(f"zone authority {zone_id!r} cannot issue a certificate for zone {claims.zone!r}")
    _check_issuer_key(zone_certificate, zone_key)
    if valid_days <= 0:
        raise IdentityError("a certificate must be valid for at least one day")
    if not_before is not None and not_before.tzinfo is None:
        raise IdentityError("not_before must be timezone-aware")
    return _build_entity_certificate(
        zone_certificate,
        zone_key,
        claims,
        public_key,
        valid_days=valid_days,
        not_before=not_before,
        hosts=hosts,
    )


# ---------------------------------------------------------------- verification


def _is_ca(certificate: x509.Certificate) -> bool | None:
    """True/False from BasicConstraints, None when the extension is absent."""
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return None
    except ValueError as error:
        raise IdentityError(f"certificate extensions are malformed: {error}") from error
    return constraints.ca


def _check_signed_by(certificate: x509.Certificate, issuer: x509.Certificate, what: str) -> None:
    try:
        certificate.verify_directly_issued_by(issuer)
    except ValueError as error:
        raise IdentityError(f"{what} was not issued by the expected authority: {error}") from error
    except InvalidSignature as error:
        raise IdentityError(f"{what} has an invalid signature") from error
    except TypeError as error:
        raise IdentityError(f"{what} uses an unsupported key type: {error}") from error


def to_ms(moment: datetime) -> int:
    """Milliseconds since the Unix epoch of an aware datetime."""
    return int(moment.timestamp() * 1000)


def get_validity_ms(certificate: x509.Certificate) -> tuple[int, int]:
    """(not_before_ms, not_after_ms) of a certificate."""
    return to_ms(certificate.not_valid_before_utc), to_ms(certificate.not_valid_after_utc)


def _check_valid_at(certificate: x509.Certificate, at_ms: int, what: str) -> None:
    not_before_ms, not_after_ms = get_validity_ms(certificate)
    if at_ms < not_before_ms:
        raise IdentityError(f"{what} is not yet valid at {at_ms} ms (from {not_before_ms} ms)")
    if at_ms > not_after_ms:
        raise IdentityError(f"{what} has expired at {at_ms} ms (until {not_after_ms} ms)")


def verify_zone_certificate(
    zone_certificate: x509.Certificate,
    root_certificate: x509.Certificate,
    *,
    at_ms: int | None = None,
) -> str:
    """Check that a zone CA is a CA certified by the root; return its zone id."""
    if _is_ca(root_certificate) is not True:
        raise IdentityError("the root certificate is not a CA")
    _check_signed_by(root_certificate, root_certificate, "root certificate")
    if _is_ca(zone_certificate) is not True:
        raise IdentityError("the zone authority certificate is not a CA")
    _check_signed_by(zone_certificate, root_certificate, "zone authority certificate")
    zone_id = read_zone_id(zone_certificate)
    if at_ms is not None:
        _check_valid_at(root_certificate, at_ms, "root certificate")
        _check_valid_at(zone_certificate, at_ms, f"zone authority certificate of {zone_id}")
    return zone_id


def verify_entity_certificate(
    certificate: x509.Certificate,
    zone_certificate: x509.Certificate,
    root_certificate: x509.Certificate,
    *,
    at_ms: int | None = None,
) -> EntityClaims:
    """Verify root -> zone CA -> entity and the zone rule; return the entity's claims."""
    zone_id = verify_zone_certificate(zone_certificate, root_certificate, at_ms=at_ms)
    if _is_ca(certificate) is not False:
        raise IdentityError("an entity certificate must carry BasicConstraints CA=false")
    _check_signed_by(certificate, zone_certificate, "entity certificate")
    claims = read_claims(certificate)
    if claims.zone != zone_id:
        raise IdentityError(
            f"certificate of {claims.entity_id} claims zone {claims.zone!r} but was issued by "
            f"the authority of zone {zone_id!r}: a zone authority cannot issue for another zone"
        )
    public_key_of(certificate)
    if at_ms is not None:
        _check_valid_at(certificate, at_ms, f"certificate of {claims.entity_id}")
    return claims


def entity_record_from_certificate(certificate: x509.Certificate) -> identity_records.EntityRecord:
    """The state record for an entity certificate (not revoked); does not verify the chain."""
    claims = read_claims(certificate)
    not_before_ms, not_after_ms = get_validity_ms(certificate)
    return identity_records.EntityRecord(
        entity_id=claims.entity_id,
        zone=claims.zone,
        public_key=public_key_of(certificate),
        roles=claims.roles,
        sectors=claims.sectors,
        not_before_ms=not_before_ms,
        not_after_ms=not_after_ms,
        revoked=False,
        certificate=certificate_der(certificate),
    )


# ---------------------------------------------------------------- files and encodings


def certificate_to_pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def certificate_der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)


def certificate_from_der(data: bytes) -> x509.Certificate:
    """Parse a DER certificate that arrived from outside; `IdentityError` if malformed."""
    try:
        return x509.load_der_x509_certificate(data)
    except ValueError as error:
        raise IdentityError(f"not a DER certificate: {error}") from error


def certificate_from_pem(data: bytes) -> x509.Certificate:
    """Parse one PEM certificate that arrived from outside; `IdentityError` if malformed."""
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as error:
        raise IdentityError(f"not a PEM certificate: {error}") from error


def public_key_of(certificate: x509.Certificate) -> bytes:
    """The raw 32-byte Ed25519 public key of a certificate."""
    try:
        key = certificate.public_key()
    except ValueError as error:
        raise IdentityError(f"certificate public key is malformed: {error}") from error
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise IdentityError("certificate key is not an Ed25519 key")
    return key.public_bytes_raw()


def _read_file(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise ConfigError(f"cannot read certificate file {path}: {error}") from error


def load_certificate(path: Path) -> x509.Certificate:
    """The first (usually only) certificate of a PEM file; `ConfigError` if unusable."""
    return load_certificates(path)[0]


def load_certificates(path: Path) -> tuple[x509.Certificate, ...]:
    """All certificates of a PEM bundle, in file order; `ConfigError` if none or malformed."""
    data = _read_file(path)
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError as error:
        raise ConfigError(f"{path} is not a PEM certificate file: {error}") from error
    if not certificates:
        raise ConfigError(f"{path} holds no certificate")
    return tuple(certificates)
