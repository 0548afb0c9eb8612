"""The `authority` module: the on-chain identity lifecycle, signer resolution and sector checks.

Theory of operation
-------------------
Certificates live on chain (DESIGN.md section 1): a zone authority signs, as `zone:<zone id>`
with the key of its CA certificate registered on chain, the transactions that change its own
entities' records:

- `authority.register(certificate_der)`: a certificate for a new entity id.  It must verify
  against the zone's registered CA and the network root at the block time (so an expired or
  not-yet-valid certificate is refused), claim the signing zone, and name an id that was never
  registered (a revoked id is not reused: issue the replacement under a new id).
- `authority.renew(certificate_der)`: a new certificate for a registered, unrevoked entity of the
  zone: same id and zone, same or new key, roles and sectors as the new certificate says.  The
  record holds one key, so after a renewal with a new key the old key no longer signs.
- `authority.revoke(entity_id, reason)`: the record stays (auditors re-check what it signed) with
  `revoked_from_height = h + 1`.

A zone acting on another zone's entity or certificate is refused (`wrong_zone`); a suspended zone
cannot act at all (`zone_not_active`).

**Everything about a signer is read from the state at the start of the block** (`get_signer`),
the same state that mempool admission uses: registrations, renewals, revocations and zone
suspensions take effect from the next block, never in the middle of one.  That is what makes
"revocation and expiry apply from the next block" hold for every transaction of a block, and lets
an auditor know the key of every signer of a block before executing it.  Expiry is checked against
the block's timestamp (`chainnode.app.execution`).  `revoked_from_height` is also checked against the
block height, so a revoked record means the same thing in any state that holds it.

Validators are entities: revoking a current validator, or renewing it without the `validator`
role, removes it from the validator set from h + 1 unless that would leave fewer than
`governance.VALIDATORS_MIN` validators; then it stays in the set (its peers refuse its
connections, so it counts as one of the f faulty validators) and the event `validators.kept`
tells the council to replace it.  Renewing a validator with a new key puts the new key in the set
from h + 1.

Sectors: `records.put_sector(sector, key, value)` (role `submitter`) writes a versioned record in
the shared namespace `sector:<sector>` of the `records` module (read it with
`records.get_record(state, "sector:<sector>", key)`); the signer's certificate must carry that
sector (`missing_sector`).  Each version records its writer (the signer).

`find_expiring_certificates` lists the entity and zone CA certificates that expire within a window,
for status pages and metrics, so that an expiring certificate never surprises an operator.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from cryptography import x509

from chainnode.app import governance, records
from chainnode.app.state import (
    Action,
    Event,
    ExecutionContext,
    Overlay,
    Signer,
    SignerKind,
    StateReader,
    TransactionError,
)
from chainnode.core import identity, identity_records, quorum, types
from chainnode.core.errors import ChainError, StorageError
from chainnode.core.statuses import ZoneStatus

ErrorCode = types.ErrorCode
MODULE = "authority"
ZONE_SIGNER_PREFIX = "zone:"
COUNCIL_SIGNER_PREFIX = "council:"
SECTOR_NAMESPACE_PREFIX = "sector:"
REASON_CHARS_MAX = 256
CERTIFICATE_BYTES_MAX = 16384
_TIME_MAX_MS = 2**63 - 1


def compute_zone_signer(zone_id: str) -> str:
    return ZONE_SIGNER_PREFIX + zone_id


def compute_council_signer(member_id: str) -> str:
    return COUNCIL_SIGNER_PREFIX + member_id


# ---------------------------------------------------------------- signers


def _zone_certificate(zone: identity_records.ZoneRecord) -> x509.Certificate:
    try:
        return identity.certificate_from_der(zone.certificate)
    except ChainError as error:
        raise StorageError(
            f"corrupt CA certificate of zone {zone.zone_id} in state: {error.message}"
        ) from error


def _get_zone_signer(state: StateReader, zone_id: str) -> Signer | None:
    zone = governance.get_zone_record(state, zone_id)
    if zone is None:
        return None
    certificate = _zone_certificate(zone)
    try:
        public_key = identity.public_key_of(certificate)
    except ChainError as error:
        raise StorageError(f"zone {zone_id} has an unusable CA key in state: {error.message}") from error
    not_before_ms, not_after_ms = identity.get_validity_ms(certificate)
    return Signer(SignerKind.ZONE, zone_id, public_key, None, zone.status, not_before_ms, not_after_ms)


# Decoded entity records and zone statuses by their stored bytes: decoding is a pure function of
# the bytes, so a memo can never answer differently from a fresh decode, and it spares decoding
# certificate-sized records for every transaction of the same signer.  Cleared when full.
_ENTITY_MEMO: dict[bytes, identity_records.EntityRecord] = {}
_ZONE_STATUS_MEMO: dict[bytes, str] = {}
# Signers by (stored entity record, zone status): a Signer is a pure function of the two,
# and one is looked up for every transaction at admission and again in execution.
_SIGNER_MEMO: dict[tuple[bytes, str], Signer] = {}
MEMO_ENTRIES_MAX = 4096


def _decode_memoized(memo: dict[bytes, Any], stored: bytes, decode: Any, what: str) -> Any:
    value = memo.get(stored)
    if value is None:
        try:
            value = decode(stored)
        except ChainError as error:
            raise StorageError(f"corrupt {what} in state: {error.message}") from error
        if len(memo) >= MEMO_ENTRIES_MAX:
            memo.clear()
        memo[stored] = value
    return value


def _get_entity_signer(state: StateReader, entity_id: str) -> Signer | None:
    stored = state.get_state(identity_records.entity_key(entity_id))
    if stored is None:
        return None
    entity: identity_records.EntityRecord = _decode_memoized(
        _ENTITY_MEMO, stored, identity_records.decode_entity_record, f"entity {entity_id!r}"
    )
    zone_stored = state.get_state(identity_records.zone_key(entity.zone))
    # Genesis checks that every entity's zone exists and removal keeps the zone's record, so a
    # missing zone only occurs in hand-built states (tests, tools); they impose no zone rule.
    zone_status = ZoneStatus.ACTIVE
    if zone_stored is not None:
        zone_status = _decode_memoized(
            _ZONE_STATUS_MEMO,
            zone_stored,
            lambda data: identity_records.decode_zone_record(data).status,
            "zone",
        )
    signer = _SIGNER_MEMO.get((stored, zone_status))
    if signer is None:
        signer = Signer(
            SignerKind.ENTITY,
            entity.entity_id,
            entity.public_key,
            entity,
            zone_status,
            entity.not_before_ms,
            entity.not_after_ms,
        )
        if len(_SIGNER_MEMO) >= MEMO_ENTRIES_MAX:
            _SIGNER_MEMO.clear()
        _SIGNER_MEMO[(stored, zone_status)] = signer
    return signer


def get_signer(state: StateReader, signer_id: str) -> Signer | None:
    """The signer named by a transaction's signer id, or None when the state does not know it."""
    if signer_id.startswith(ZONE_SIGNER_PREFIX):
        return _get_zone_signer(state, signer_id[len(ZONE_SIGNER_PREFIX) :])
    if signer_id.startswith(COUNCIL_SIGNER_PREFIX):
        member = governance.get_council_member(state, signer_id[len(COUNCIL_SIGNER_PREFIX) :])
        if member is None:
            return None
        return Signer(
            SignerKind.COUNCIL, member.member_id, member.public_key, None, ZoneStatus.ACTIVE, 0, _TIME_MAX_MS
        )
    return _get_entity_signer(state, signer_id)


# ---------------------------------------------------------------- argument checks


def _fail(code: ErrorCode, message: str) -> TransactionError:
    return TransactionError(code, message)


def check_certificate_args(args: tuple[Any, ...]) -> None:
    """`authority.register(certificate_der: bytes)` and `authority.renew(certificate_der: bytes)`."""
    if len(args) != 1 or not isinstance(args[0], bytes) or not 0 < len(args[0]) <= CERTIFICATE_BYTES_MAX:
        raise _fail(
            ErrorCode.BAD_ARGUMENTS, f"takes (certificate DER of at most {CERTIFICATE_BYTES_MAX} bytes,)"
        )


def check_revoke_args(args: tuple[Any, ...]) -> None:
    """`authority.revoke(entity_id: str, reason: str)`."""
    if len(args) != 2 or not isinstance(args[0], str) or not identity.is_valid_id(args[0]):
        raise _fail(ErrorCode.BAD_ARGUMENTS, "authority.revoke takes (entity id, reason)")
    reason = args[1]
    if not isinstance(reason, str) or not 1 <= len(reason) <= REASON_CHARS_MAX or not reason.isprintable():
        raise _fail(
            ErrorCode.BAD_ARGUMENTS, f"a revocation reason is 1..{REASON_CHARS_MAX} printable characters"
        )


# ---------------------------------------------------------------- lifecycle


def _verify_for_zone(
    state: StateReader, certificate_der: bytes, context: ExecutionContext
) -> identity_records.EntityRecord:
    """The record of a certificate that the signing zone may register; refusals as receipts."""
    zone_id = context.signer.name
    try:
        certificate = identity.certificate_from_der(certificate_der)
        claims = identity.read_claims(certificate)
    except ChainError as error:
        raise _fail(ErrorCode.BAD_CERTIFICATE, error.message) from error
    if claims.zone != zone_id:
        raise _fail(
            ErrorCode.WRONG_ZONE,
            f"the certificate of {claims.entity_id} is for zone {claims.zone!r}; "
            f"zone {zone_id!r} can only act on its own entities",
        )
    zone = governance.get_zone_record(state, zone_id)
    root_der = state.get_state(identity_records.ROOT_CERTIFICATE_KEY)
    if zone is None or root_der is None:
        raise _fail(ErrorCode.NOT_PERMITTED, "the state holds no root or zone certificate to verify against")
    try:
        root = identity.certificate_from_der(root_der)
        identity.verify_entity_certificate(
            certificate, _zone_certificate(zone), root, at_ms=context.timestamp_ms
        )
    except ChainError as error:
        raise _fail(ErrorCode.BAD_CERTIFICATE, error.message) from error
    return identity.entity_record_from_certificate(certificate)


def _require_own_entity(
    state: StateReader, entity_id: str, context: ExecutionContext
) -> identity_records.EntityRecord:
    entity = governance.get_entity_record(state, entity_id)
    if entity is None:
        raise _fail(ErrorCode.UNKNOWN_ENTITY, f"{entity_id!r} is not a registered entity")
    if entity.zone != context.signer.name:
        raise _fail(
            ErrorCode.WRONG_ZONE,
            f"{entity_id} belongs to zone {entity.zone!r}; zone {context.signer.name!r} cannot act on it",
        )
    return entity


def apply_register(overlay: Overlay, tx: types.Transaction, context: ExecutionContext) -> Sequence[Event]:
    record = _verify_for_zone(overlay, tx.args[0], context)
    existing = governance.get_entity_record(overlay, record.entity_id)
    if existing is not None:
        state = (
            "revoked; register the replacement under a new id" if existing.revoked else "registered; renew it"
        )
        raise _fail(ErrorCode.ALREADY_REGISTERED, f"{record.entity_id} is already {state}")
    overlay.put(identity_records.entity_key(record.entity_id), record.encode())
    return [("authority.registered", (record.entity_id, record.zone, record.not_after_ms))]


def _follow_validator(
    overlay: Overlay, entity: identity_records.EntityRecord, *, is_removed: bool, context: ExecutionContext
) -> list[Event]:
    """Keep the validator set in line with an entity's renewed or revoked certificate."""
    validators = governance.get_validator_set(overlay)
    index = validators.index_of(entity.entity_id)
    if index is None:
        return []
    members = list(validators.validators)
    if is_removed:
        if validators.size - 1 < governance.VALIDATORS_MIN:
            return [
                (
                    "validators.kept",
                    (entity.entity_id, f"the set may not shrink below {governance.VALIDATORS_MIN}"),
                )
            ]
        del members[index]
    elif members[index].public_key != entity.public_key:
        members[index] = quorum.Validator(entity.entity_id, entity.public_key)
    else:
        return []
    return [governance.apply_validator_set(overlay, context.height, quorum.ValidatorSet(tuple(members)))]


def apply_renew(overlay: Overlay, tx: types.Transaction, context: ExecutionContext) -> Sequence[Event]:
    record = _verify_for_zone(overlay, tx.args[0], context)
    existing = _require_own_entity(overlay, record.entity_id, context)
    if existing.revoked:
        raise _fail(ErrorCode.SIGNER_REVOKED, f"{record.entity_id} is revoked; register a new id instead")
    if existing.certificate == record.certificate:
        raise _fail(
            ErrorCode.ALREADY_REGISTERED, f"this certificate of {record.entity_id} is already registered"
        )
    overlay.put(identity_records.entity_key(record.entity_id), record.encode())
    events = _follow_validator(overlay, record, is_removed=not record.has_role("validator"), context=context)
    rotated = existing.public_key != record.public_key
    return [("authority.renewed", (record.entity_id, record.not_after_ms, rotated)), *events]


def apply_revoke(overlay: Overlay, tx: types.Transaction, context: ExecutionContext) -> Sequence[Event]:
    entity_id, reason = tx.args
    existing = _require_own_entity(overlay, entity_id, context)
    if existing.revoked:
        raise _fail(ErrorCode.SIGNER_REVOKED, f"{entity_id} is already revoked")
    revoked = replace(
        existing, revoked=True, revoked_from_height=context.height + 1, revocation_reason=reason
    )
    overlay.put(identity_records.entity_key(entity_id), revoked.encode())
    events = _follow_validator(overlay, revoked, is_removed=True, context=context)
    return [("authority.revoked", (entity_id, context.height + 1, reason)), *events]


# ---------------------------------------------------------------- sector-scoped records


def check_put_sector_args(args: tuple[Any, ...]) -> None:
    """`records.put_sector(sector: str, key: str, value: bytes)`."""
    if len(args) != 3 or args[0] not in identity_records.SECTORS:
        raise _fail(
            ErrorCode.BAD_ARGUMENTS,
            f"records.put_sector takes (sector, key, value); sectors: {sorted(identity_records.SECTORS)}",
        )
    records.check_put_args(args[1:])


def apply_put_sector(overlay: Overlay, tx: types.Transaction, context: ExecutionContext) -> Sequence[Event]:
    sector, key, value = tx.args
    entity = context.signer.entity
    assert entity is not None, "records actions are signed by entities"
    if sector not in entity.sectors:
        raise _fail(
            ErrorCode.MISSING_SECTOR,
            f"records.put_sector in {sector!r} needs that sector, which {tx.signer!r} lacks",
        )
    # A sector namespace has no owner: every version names its writer, as a grantee's does.
    namespace = SECTOR_NAMESPACE_PREFIX + sector
    version = records.write_version_by(
        overlay, namespace, key, value, context, tx.hash, writer=tx.signer, document=None
    )
    return [("records.put_sector", (sector, key, version, tx.signer))]


ACTIONS: dict[tuple[str, str], Action] = {
    (MODULE, "register"): Action("", check_certificate_args, apply_register, SignerKind.ZONE),
    (MODULE, "renew"): Action("", check_certificate_args, apply_renew, SignerKind.ZONE),
    (MODULE, "revoke"): Action("", check_revoke_args, apply_revoke, SignerKind.ZONE),
    (records.MODULE, "put_sector"): Action("submitter", check_put_sector_args, apply_put_sector),
}


# ---------------------------------------------------------------- expiring certificates


class StateIterator(Protocol):
    """A state reader that can list a key prefix (the ledger)."""

    def iter_state(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]: ...


@dataclass(frozen=True, slots=True)
class ExpiringCertificate:
    """A registered certificate that expires within the asked window (or has expired)."""

    kind: str  # "entity" | "zone"
    subject: str  # entity id or zone id
    zone: str
    not_after_ms: int
    expires_in_ms: int  # negative when already expired

    @property
    def is_expired(self) -> bool:
        return self.expires_in_ms < 0


def find_expiring_certificates(
    state_reader: object, now_ms: int, window_ms: int
) -> list[ExpiringCertificate]:
    """Unrevoked entity and unremoved zone CA certificates with `not_after <= now + window`.

    Soonest first.  Needs a reader with `iter_state(prefix)` (the ledger); any other reader yields
    an empty list, since listing is impossible with point reads alone.
    """
    iter_state = getattr(state_reader, "iter_state", None)
    if iter_state is None:
        return []
    found: list[ExpiringCertificate] = []
    for _, value in iter_state(b"id/e/"):
        entity: identity_records.EntityRecord = _decode_memoized(
            _ENTITY_MEMO, value, identity_records.decode_entity_record, "entity"
        )
        if not entity.revoked and entity.not_after_ms <= now_ms + window_ms:
            found.append(
                ExpiringCertificate(
                    "entity", entity.entity_id, entity.zone, entity.not_after_ms, entity.not_after_ms - now_ms
                )
            )
    for _, value in iter_state(b"id/z/"):
        zone: identity_records.ZoneRecord = _decode_memoized(
            {}, value, identity_records.decode_zone_record, "zone"
        )
        _, not_after_ms = identity.get_validity_ms(_zone_certificate(zone))
        if not zone.removed and not_after_ms <= now_ms + window_ms:
            found.append(
                ExpiringCertificate("zone", zone.zone_id, zone.zone_id, not_after_ms, not_after_ms - now_ms)
            )
    return sorted(found, key=lambda item: (item.not_after_ms, item.kind, item.subject))
