"""The pilot claims of a certificate: who its holder is, in which zone, with which roles and sectors.

Theory of operation
-------------------
An end-entity certificate names its holder as `CN=<entity id>, O=<display name>, OU=<zone id>`
and carries the claims in a non-critical private extension (`CLAIMS_OID`) whose value is a DER
UTF8String such as `zone=beijing;roles=submitter,validator;sectors=health,education`, so
`openssl x509 -text` shows it verbatim; a zone CA carries its zone id the same way, with empty
roles and sectors.  This module owns that format: `EntityClaims`, its text and DER forms, and
reading them back (`read_claims`, `read_zone_id`), strictly: a claim that is missing, garbled,
unsorted, disagrees with the subject or names an unknown role or sector raises `IdentityError`.
Issuing and verifying certificates is `chainnode.core.identity`'s.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import NameOID

from chainnode.core import identity_records
from chainnode.core.errors import IdentityError

# A private arc under the UUID root 2.25 (ITU-T X.667); the integer is a fixed random UUID.
CLAIMS_OID = x509.ObjectIdentifier("2.25.156094350042141432107721305136278390519")


ID_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
NAME_LENGTH_MAX = 128

_UTF8STRING_TAG = 0x0C


@dataclass(frozen=True, slots=True)
class EntityClaims:
    """What an end-entity certificate asserts about its holder.

    `roles` and `sectors` are normalised to sorted tuples without duplicates, so two claims that
    say the same thing compare equal and encode the same way.
    """

    entity_id: str  # lowercase `[a-z0-9-]`, the certificate's CN
    zone: str  # zone id of the issuing authority
    roles: tuple[str, ...]  # subset of `identity_records.ROLES`
    sectors: tuple[str, ...]  # subset of `identity_records.SECTORS`
    name: str  # display name, the certificate's O

    def __post_init__(self) -> None:
        object.__setattr__(self, "roles", tuple(sorted(set(self.roles))))
        object.__setattr__(self, "sectors", tuple(sorted(set(self.sectors))))


def is_valid_id(value: str) -> bool:
    """True for a lowercase `[a-z0-9-]` identifier of at most 64 characters."""
    return bool(ID_PATTERN.match(value))


def compute_claims_text(zone: str, roles: tuple[str, ...], sectors: tuple[str, ...]) -> str:
    return f"zone={zone};roles={','.join(roles)};sectors={','.join(sectors)}"


def encode_utf8string(text: str) -> bytes:
    """`text` as a DER UTF8String: the claims extension's value."""
    data = text.encode("utf-8")
    length = len(data)
    if length < 0x80:
        header = bytes([_UTF8STRING_TAG, length])
    else:
        length_bytes = length.to_bytes((length.bit_length() + 7) // 8, "big")
        header = bytes([_UTF8STRING_TAG, 0x80 | len(length_bytes)]) + length_bytes
    return header + data


def _decode_utf8string(der: bytes) -> str:
    if len(der) < 2 or der[0] != _UTF8STRING_TAG:
        raise IdentityError("claims extension is not a DER UTF8String")
    first = der[1]
    if first < 0x80:
        length, offset = first, 2
    else:
        count = first & 0x7F
        if count == 0 or count > 2 or len(der) < 2 + count:
            raise IdentityError("claims extension has a bad DER length")
        length, offset = int.from_bytes(der[2 : 2 + count], "big"), 2 + count
        if length < 0x80 or (count == 2 and length < 0x100):
            raise IdentityError("claims extension has a non-minimal DER length")
    if len(der) != offset + length:
        raise IdentityError("claims extension length does not match its content")
    try:
        return der[offset:].decode("utf-8")
    except UnicodeDecodeError as error:
        raise IdentityError("claims extension is not valid UTF-8") from error


def _parse_claims_text(text: str) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    parts = text.split(";")
    keys = [part.partition("=")[0] for part in parts]
    if keys != ["zone", "roles", "sectors"] or any("=" not in part for part in parts):
        raise IdentityError(f"claims extension {text!r} is not 'zone=..;roles=..;sectors=..'")
    values = [part.partition("=")[2] for part in parts]
    zone = values[0]
    roles = tuple(values[1].split(",")) if values[1] else ()
    sectors = tuple(values[2].split(",")) if values[2] else ()
    return zone, roles, sectors


def _read_claims_extension(
    certificate: x509.Certificate,
) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    try:
        extension = certificate.extensions.get_extension_for_oid(CLAIMS_OID)
    except x509.ExtensionNotFound as error:
        raise IdentityError("certificate has no pilot claims extension") from error
    except ValueError as error:  # duplicate or unparsable extensions
        raise IdentityError(f"certificate extensions are malformed: {error}") from error
    value = extension.value
    if not isinstance(value, x509.UnrecognizedExtension):
        raise IdentityError("pilot claims extension has an unexpected type")
    return _parse_claims_text(_decode_utf8string(value.value))


def _get_name_attribute(certificate: x509.Certificate, oid: x509.ObjectIdentifier, what: str) -> str:
    attributes = certificate.subject.get_attributes_for_oid(oid)
    if len(attributes) != 1:
        raise IdentityError(f"certificate subject must have exactly one {what}")
    value = attributes[0].value
    if not isinstance(value, str):
        raise IdentityError(f"certificate subject {what} is not text")
    return value


def check_claims(claims: EntityClaims) -> None:
    """`IdentityError` unless the ids are well formed and every role and sector is known."""
    if not is_valid_id(claims.entity_id):
        raise IdentityError(f"entity id {claims.entity_id!r} is not lowercase [a-z0-9-]")
    if not is_valid_id(claims.zone):
        raise IdentityError(f"zone id {claims.zone!r} is not lowercase [a-z0-9-]")
    if not claims.name or len(claims.name) > NAME_LENGTH_MAX:
        raise IdentityError(f"display name of {claims.entity_id} is empty or too long")
    unknown_roles = set(claims.roles) - identity_records.ROLES
    if unknown_roles:
        raise IdentityError(f"unknown role(s) {sorted(unknown_roles)} for {claims.entity_id}")
    unknown_sectors = set(claims.sectors) - identity_records.SECTORS
    if unknown_sectors:
        raise IdentityError(f"unknown sector(s) {sorted(unknown_sectors)} for {claims.entity_id}")


def read_claims(certificate: x509.Certificate) -> EntityClaims:
    """The claims of an end-entity certificate; `IdentityError` if missing or garbled."""
    zone, roles, sectors = _read_claims_extension(certificate)
    entity_id = _get_name_attribute(certificate, NameOID.COMMON_NAME, "CN")
    name = _get_name_attribute(certificate, NameOID.ORGANIZATION_NAME, "O")
    subject_zone = _get_name_attribute(certificate, NameOID.ORGANIZATIONAL_UNIT_NAME, "OU")
    if subject_zone != zone:
        raise IdentityError(f"subject OU {subject_zone!r} disagrees with the claimed zone {zone!r}")
    claims = EntityClaims(entity_id=entity_id, zone=zone, roles=roles, sectors=sectors, name=name)
    if claims.roles != roles or claims.sectors != sectors:
        raise IdentityError("roles and sectors in the claims extension must be sorted and distinct")
    check_claims(claims)
    return claims


def read_zone_id(ca_certificate: x509.Certificate) -> str:
    """The zone id a zone authority CA certificate carries (OU and claims extension)."""
    zone, roles, sectors = _read_claims_extension(ca_certificate)
    if roles or sectors:
        raise IdentityError("a zone CA certificate must not claim roles or sectors")
    subject_zone = _get_name_attribute(ca_certificate, NameOID.ORGANIZATIONAL_UNIT_NAME, "OU")
    if subject_zone != zone or not is_valid_id(zone):
        raise IdentityError(f"zone CA names zone {subject_zone!r} but claims {zone!r}")
    return zone
