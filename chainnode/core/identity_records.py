"""The identity records every node keeps in state: entities (certificate, roles, sectors,
validity, revocation), zones (CA certificate, status) and council members, with their keys.

Certificates live on chain: a zone authority registers, renews and revokes its entities'
certificates with transactions, so every node agrees at every height on which keys are valid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chainnode.core import codec
from chainnode.core.codec import expect_bytes, expect_int, expect_str, expect_tuple
from chainnode.core.errors import DecodeError
from chainnode.core.statuses import ZoneStatus
from chainnode.core.tags import (
    TAG_COUNCIL_RECORD,
    TAG_ENTITY_RECORD,
    TAG_ZONE_RECORD,
)
from chainnode.core.types import VERSION

# ---------------------------------------------------------------- identity records in state

ROLES = frozenset({"submitter", "validator", "observer", "auditor", "issuer"})
SECTORS = frozenset(
    {
        "government",
        "energy",
        "law",
        "manufacturing",
        "trade-finance",
        "health",
        "education",
        "tax",
        "cross-border-finance",
    }
)


@dataclass(frozen=True, slots=True)
class EntityRecord:
    """An entity's registered certificate, as every node holds it in state.

    Encoded as version 1 (11 fields) while `revoked_from_height` and `revocation_reason` keep
    their defaults, so records written by genesis and before on-chain revocation existed keep
    their bytes; an on-chain revocation writes version 2 (13 fields).  A revoked record with
    `revoked_from_height == 0` is revoked at every height.
    """

    entity_id: str
    zone: str  # zone whose authority issued the certificate
    public_key: bytes  # raw Ed25519 key from the certificate
    roles: tuple[str, ...]  # sorted
    sectors: tuple[str, ...]  # sorted
    not_before_ms: int
    not_after_ms: int
    revoked: bool
    certificate: bytes  # the DER certificate, so auditors can re-check it
    revoked_from_height: int = 0  # first height at which the revocation applies (0: always)
    revocation_reason: str = ""  # as given by the zone authority

    def encode(self) -> bytes:
        if self.revoked_from_height or self.revocation_reason:
            return codec.encode(
                (
                    TAG_ENTITY_RECORD,
                    ENTITY_RECORD_VERSION_REVOCATION,
                    *self._to_v1_fields()[2:],
                    self.revoked_from_height,
                    self.revocation_reason,
                )
            )
        return codec.encode(self._to_v1_fields())

    def is_revoked_at(self, height: int) -> bool:
        """Whether the certificate is revoked for a transaction in block `height`."""
        return self.revoked and height >= self.revoked_from_height

    def _to_v1_fields(self) -> tuple[Any, ...]:
        return (
            TAG_ENTITY_RECORD,
            VERSION,
            self.entity_id,
            self.zone,
            self.public_key,
            self.roles,
            self.sectors,
            self.not_before_ms,
            self.not_after_ms,
            self.revoked,
            self.certificate,
        )

    def has_role(self, role: str) -> bool:
        return role in self.roles


ENTITY_RECORD_VERSION_REVOCATION = 2


def decode_entity_record(data: bytes) -> EntityRecord:
    value = codec.decode(data)
    version_2 = ENTITY_RECORD_VERSION_REVOCATION
    if isinstance(value, tuple) and len(value) > 1 and value[1] == version_2:
        fields = codec.expect_struct(value, TAG_ENTITY_RECORD, version_2, 13, "entity record")
        revoked_from_height = expect_int(fields[11], "revoked from height")
        reason = expect_str(fields[12], "revocation reason", 256, allow_empty=True)
    else:
        fields = codec.expect_struct(value, TAG_ENTITY_RECORD, VERSION, 11, "entity record")
        revoked_from_height, reason = 0, ""
    roles = tuple(expect_str(r, "role", 32) for r in expect_tuple(fields[5], "roles", 16))
    sectors = tuple(expect_str(s, "sector", 32) for s in expect_tuple(fields[6], "sectors", 16))
    if not isinstance(fields[9], bool):
        raise DecodeError("entity record: revoked must be a boolean")
    return EntityRecord(
        expect_str(fields[2], "entity id", 128),
        expect_str(fields[3], "zone", 64),
        expect_bytes(fields[4], "entity public key", 32),
        roles,
        sectors,
        expect_int(fields[7], "not before"),
        expect_int(fields[8], "not after"),
        fields[9],
        expect_bytes(fields[10], "certificate", length_max=16384),
        revoked_from_height,
        reason,
    )


@dataclass(frozen=True, slots=True)
class ZoneRecord:
    """A pilot zone admitted by the council, with its authority's CA certificate.

    `active` false and `removed` false: suspended (the council may reinstate it).  `removed`:
    permanently out (always with `active` false); the record stays so that auditors can still
    check the certificates it issued, and its id is never admitted again.  Version 1 encoding
    (6 fields) unless removed, version 2 (7 fields) then.
    """

    zone_id: str
    name: str
    certificate: bytes  # DER of the zone authority's CA certificate
    active: bool
    removed: bool = False

    def encode(self) -> bytes:
        if self.removed:
            return codec.encode(
                (TAG_ZONE_RECORD, 2, self.zone_id, self.name, self.certificate, self.active, True)
            )
        return codec.encode(
            (TAG_ZONE_RECORD, VERSION, self.zone_id, self.name, self.certificate, self.active)
        )

    @property
    def status(self) -> ZoneStatus:
        if self.removed:
            return ZoneStatus.REMOVED
        return ZoneStatus.ACTIVE if self.active else ZoneStatus.SUSPENDED


def decode_zone_record(data: bytes) -> ZoneRecord:
    value = codec.decode(data)
    is_removed = isinstance(value, tuple) and len(value) > 1 and value[1] == 2
    if is_removed:
        fields = codec.expect_struct(value, TAG_ZONE_RECORD, 2, 7, "zone record")
        if fields[6] is not True or fields[5] is not False:
            raise DecodeError("zone record: a removed zone is inactive and flagged removed")
    else:
        fields = codec.expect_struct(value, TAG_ZONE_RECORD, VERSION, 6, "zone record")
    if not isinstance(fields[5], bool):
        raise DecodeError("zone record: active must be a boolean")
    return ZoneRecord(
        expect_str(fields[2], "zone id", 64),
        expect_str(fields[3], "zone name", 128),
        expect_bytes(fields[4], "zone certificate", length_max=16384),
        fields[5],
        is_removed,
    )


@dataclass(frozen=True, slots=True)
class CouncilRecord:
    """A council member as held in state (written at genesis); signs as `council:<member_id>`."""

    member_id: str
    name: str
    public_key: bytes  # raw Ed25519 key

    def encode(self) -> bytes:
        return codec.encode((TAG_COUNCIL_RECORD, VERSION, self.member_id, self.name, self.public_key))


def decode_council_record(data: bytes) -> CouncilRecord:
    fields = codec.decode_struct(data, TAG_COUNCIL_RECORD, VERSION, 5, "council record")
    return CouncilRecord(
        expect_str(fields[2], "council member id", 64),
        expect_str(fields[3], "council member name", 128),
        expect_bytes(fields[4], "council member key", 32),
    )


# State key layout: each module owns a prefix; see chainnode/execution.py.
VALIDATOR_SET_KEY = b"val/set"  # the set that certifies the next block
VALIDATOR_HISTORY_PREFIX = b"val/from/"  # + first height (u64be) -> the set from that height on
ROOT_CERTIFICATE_KEY = b"id/root"  # DER of the network root CA (genesis)
COUNCIL_KEY = b"gov/council"  # encode((M, member ids)): M approvals of N needed (genesis)
CHAIN_PARAMS_KEY = b"gov/params"  # genesis.encode_chain_params (genesis, then governance)


def validator_history_key(height: int) -> bytes:
    """The key of the validator set that applies from `height` on."""
    return VALIDATOR_HISTORY_PREFIX + height.to_bytes(8, "big")


def council_key(member_id: str) -> bytes:
    return b"gov/c/" + member_id.encode()


def entity_key(entity_id: str) -> bytes:
    return b"id/e/" + entity_id.encode()


def zone_key(zone_id: str) -> bytes:
    return b"id/z/" + zone_id.encode()
