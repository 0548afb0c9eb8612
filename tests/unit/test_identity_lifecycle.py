"""The on-chain identity lifecycle (authority module): register, renew, revoke; signer kinds,
roles and sectors; all through `Executor.execute_block` over a real network's genesis state."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from chainnode.app import authority, governance, records
from chainnode.app.execution import InvalidBlockError
from chainnode.core import crypto, identity, identity_records, types
from tests.factories import create_pki
from tests.governance_harness import Chain, Network, codes, event_names

ErrorCode = types.ErrorCode
DAY_MS = 86_400_000


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Network:
    return Network.create(tmp_path_factory.mktemp("lifecycle"))


@pytest.fixture
def chain(net: Network) -> Chain:
    return Chain(net)


def test_genesis_entities_sign_and_records_keep_version_1_bytes(net: Network, chain: Chain) -> None:
    assert codes(chain.run(chain.put("pku"), chain.put("fudan"))) == [ErrorCode.OK, ErrorCode.OK]
    record = net.genesis.get_entity("pku")
    assert record is not None
    assert identity_records.decode_entity_record(record.encode()) == record
    assert record.encode()[2] == 1  # fixarray(11), tag 7, version 1: genesis bytes are unchanged


def test_register_takes_effect_from_the_next_block(net: Network, chain: Chain) -> None:
    certificate, key = net.issue("beijing", "ruc", sectors=("education", "law"))
    register = chain.zone_tx("beijing", "register", certificate)
    # The new entity's own transaction in the same block is not yet authentic: the block is refused.
    with pytest.raises(InvalidBlockError) as refused:
        chain.execute(register, chain.put("ruc", signing_key=key))
    assert refused.value.error_code == ErrorCode.UNKNOWN_SIGNER and refused.value.tx_index == 1
    receipt = chain.run_one(register)
    assert receipt.ok and event_names(receipt) == ["authority.registered"]
    stored = governance.get_entity_record(chain.state, "ruc")
    assert (
        stored is not None and stored.public_key == key.public_key and stored.sectors == ("education", "law")
    )
    assert codes(chain.run(chain.put("ruc", signing_key=key))) == [ErrorCode.OK]


def test_register_refusals(net: Network, chain: Chain) -> None:
    beijing_certificate, _ = net.issue("beijing", "new-beijing-entity")
    # A zone cannot register another zone's entity.
    wrong_zone = chain.zone_tx("shanghai", "register", beijing_certificate)
    # A certificate that claims beijing but was signed by the shanghai authority (forged).
    claims = identity.EntityClaims("forged", "beijing", ("submitter",), ("education",), "Forged")
    forged = identity._build_entity_certificate(
        net.zone_certificate("shanghai"),
        net.zone_key("shanghai"),
        claims,
        crypto.SigningKey.generate().public_key,
    )
    forged_by_beijing = chain.zone_tx("beijing", "register", identity.certificate_der(forged))
    # A certificate from an authority that does not chain to this network's root.
    foreign, _ = create_pki("Elsewhere").issue(replace(claims, entity_id="foreign"))
    foreign_tx = chain.zone_tx("beijing", "register", identity.certificate_der(foreign))
    # Expired at the block time.
    expired_certificate, _ = net.issue(
        "beijing", "expired-entity", valid_days=1, not_before=datetime.now(UTC) - timedelta(days=3)
    )
    expired = chain.zone_tx("beijing", "register", expired_certificate)
    existing_certificate, _ = net.issue("beijing", "pku")
    existing = chain.zone_tx("beijing", "register", existing_certificate)
    garbage = chain.zone_tx("beijing", "register", b"not a certificate")
    receipts = chain.run(wrong_zone, forged_by_beijing, foreign_tx, expired, existing, garbage)
    assert codes(receipts) == [
        ErrorCode.WRONG_ZONE,
        ErrorCode.BAD_CERTIFICATE,
        ErrorCode.BAD_CERTIFICATE,
        ErrorCode.BAD_CERTIFICATE,
        ErrorCode.ALREADY_REGISTERED,
        ErrorCode.BAD_CERTIFICATE,
    ]
    assert "expired" in receipts[3].message
    assert "another zone" in receipts[1].message or "not issued" in receipts[1].message
    for entity_id in ("new-beijing-entity", "forged", "foreign", "expired-entity"):
        assert governance.get_entity_record(chain.state, entity_id) is None


def test_revocation_applies_from_the_next_block(chain: Chain) -> None:
    # Admission has looked pku up (and memoised it) before the revocation commits.
    assert chain.check(chain.put("pku", "before"))[0] == ErrorCode.OK
    assert "pku" in chain.admission_memo.signers
    revoke = chain.zone_tx("beijing", "revoke", "pku", "key compromise")
    # Later in the same block the old certificate still signs.
    receipts = chain.run(revoke, chain.put("pku", "same-block"))
    assert codes(receipts) == [ErrorCode.OK, ErrorCode.OK]
    record = governance.get_entity_record(chain.state, "pku")
    assert record is not None and record.revoked
    assert record.revoked_from_height == chain.height + 1 and record.revocation_reason == "key compromise"
    assert identity_records.decode_entity_record(record.encode()) == record
    assert chain.check(chain.put("pku", "next-block"))[0] == ErrorCode.SIGNER_REVOKED
    assert codes(chain.run(chain.put("pku", "next-block"))) == [ErrorCode.SIGNER_REVOKED]
    assert records.get_record(chain.state, "pku", "same-block") is not None
    assert records.get_record(chain.state, "pku", "next-block") is None


def test_revoked_ids_are_neither_renewed_nor_reused(net: Network, chain: Chain) -> None:
    chain.run(chain.zone_tx("beijing", "revoke", "pku", "left the pilot"))
    certificate, _ = net.issue("beijing", "pku")
    receipts = chain.run(
        chain.zone_tx("beijing", "renew", certificate),
        chain.zone_tx("beijing", "register", certificate),
        chain.zone_tx("beijing", "revoke", "pku", "again"),
    )
    assert codes(receipts) == [
        ErrorCode.SIGNER_REVOKED,
        ErrorCode.ALREADY_REGISTERED,
        ErrorCode.SIGNER_REVOKED,
    ]


def test_a_zone_cannot_act_on_another_zones_entities(net: Network, chain: Chain) -> None:
    fudan_certificate, _ = net.issue("shanghai", "fudan", sectors=("education", "health"))
    receipts = chain.run(
        chain.zone_tx("beijing", "revoke", "fudan", "not ours"),
        chain.zone_tx("beijing", "renew", fudan_certificate),
        chain.zone_tx("beijing", "revoke", "nobody-here", "unknown"),
    )
    assert codes(receipts) == [ErrorCode.WRONG_ZONE, ErrorCode.WRONG_ZONE, ErrorCode.UNKNOWN_ENTITY]
    record = governance.get_entity_record(chain.state, "fudan")
    assert record is not None and not record.revoked


def test_renewal_with_a_new_key_retires_the_old_key(net: Network, chain: Chain) -> None:
    old_key = net.entity_key("pku")
    certificate, new_key = net.issue("beijing", "pku")
    # Admitted against the committed state before the renewal commits ...
    stale = chain.put("pku", "stale", signing_key=old_key)
    assert chain.check(stale) == (ErrorCode.OK, "")
    receipt = chain.run_one(chain.zone_tx("beijing", "renew", certificate))
    assert receipt.ok and receipt.events[0] == ("authority.renewed", ("pku", receipt.events[0][1][1], True))
    # ... and refused once it has: the record holds one key.
    assert chain.check(stale)[0] == ErrorCode.BAD_SIGNATURE
    with pytest.raises(InvalidBlockError) as refused:
        chain.execute(stale)
    assert refused.value.error_code == ErrorCode.BAD_SIGNATURE
    assert codes(chain.run(chain.put("pku", "fresh", signing_key=new_key))) == [ErrorCode.OK]


def test_renewal_with_the_same_key_and_changed_roles(net: Network, chain: Chain) -> None:
    key = net.entity_key("fudan")
    same, _ = net.issue("shanghai", "fudan", roles=("observer",), sectors=("health",), key=key)
    assert chain.run_one(chain.zone_tx("shanghai", "renew", same)).ok
    assert codes(chain.run(chain.zone_tx("shanghai", "renew", same))) == [ErrorCode.ALREADY_REGISTERED]
    # The renewed certificate dropped the submitter role: the same key now lacks it.
    assert codes(chain.run(chain.put("fudan"))) == [ErrorCode.MISSING_ROLE]


def test_expiry_is_checked_against_the_block_time(net: Network, chain: Chain) -> None:
    certificate, key = net.issue("beijing", "short-lived", valid_days=1)
    chain.run(chain.zone_tx("beijing", "register", certificate))
    record = governance.get_entity_record(chain.state, "short-lived")
    assert record is not None
    assert codes(chain.run(chain.put("short-lived", signing_key=key))) == [ErrorCode.OK]
    late = chain.put("short-lived", "late", signing_key=key)
    assert codes(chain.run(late, timestamp_ms=record.not_after_ms + 1)) == [ErrorCode.SIGNER_EXPIRED]


def test_authorization_memo_hits_still_check_each_transaction(net: Network, chain: Chain) -> None:
    """Within a block (and within one admission state) the signer and action checks of a
    (signer, action) pair run once; expiry, arguments and the certificate's validity
    window at the admission clock are still checked for every transaction."""
    first = chain.put("pku", "first")
    expired = chain.tx("pku", net.entity_key("pku"), "records", "put", "k2", b"v", valid_until=chain.height)
    bad_args = chain.entity_tx("pku", "records", "put", "only-a-key")
    assert codes(chain.run(first, expired, bad_args, chain.put("pku", "last"))) == [
        ErrorCode.OK,
        ErrorCode.EXPIRED,
        ErrorCode.BAD_ARGUMENTS,
        ErrorCode.OK,
    ]
    assert chain.check(chain.put("pku", "admitted"))[0] == ErrorCode.OK
    assert ("pku", "records", "put") in chain.admission_memo.authorized
    late = chain.tx("pku", net.entity_key("pku"), "records", "put", "k3", b"v", valid_until=chain.height)
    assert chain.check(late)[0] == ErrorCode.EXPIRED
    assert chain.check(chain.entity_tx("pku", "records", "put", 7, b"v"))[0] == ErrorCode.BAD_ARGUMENTS
    record = governance.get_entity_record(chain.state, "pku")
    assert record is not None
    chain.time_ms = record.not_after_ms  # admission's clock is time_ms plus one block interval
    assert chain.check(chain.put("pku", "too-late"))[0] == ErrorCode.SIGNER_EXPIRED


def test_roles_signer_kinds_and_unknown_signers(net: Network, chain: Chain) -> None:
    certificate, _ = net.issue("beijing", "someone")
    receipts = chain.run(
        chain.put("court-reader"),  # an observer lacks the submitter role
        chain.entity_tx("pku", "authority", "register", certificate),  # an entity is no zone
        chain.tx("zone:beijing", net.zone_key("beijing"), "records", "put", "k", b"v"),  # a zone is no entity
    )
    assert codes(receipts) == [
        ErrorCode.MISSING_ROLE,
        ErrorCode.WRONG_SIGNER_KIND,
        ErrorCode.WRONG_SIGNER_KIND,
    ]
    unknown_zone = chain.tx("zone:atlantis", crypto.SigningKey.generate(), "authority", "revoke", "pku", "x")
    wrong_key = chain.tx("zone:beijing", net.zone_key("shanghai"), "authority", "revoke", "pku", "x")
    for tx, code in ((unknown_zone, ErrorCode.UNKNOWN_SIGNER), (wrong_key, ErrorCode.BAD_SIGNATURE)):
        assert chain.check(tx)[0] == code
        with pytest.raises(InvalidBlockError) as refused:
            chain.execute(tx)
        assert refused.value.error_code == code


def test_sector_scoped_records(chain: Chain) -> None:
    health_by_fudan = chain.entity_tx("fudan", "records", "put_sector", "health", "trial-42", b"enrolled")
    health_by_pku = chain.entity_tx("pku", "records", "put_sector", "health", "trial-42", b"forged")
    unknown_sector = chain.entity_tx("pku", "records", "put_sector", "astrology", "k", b"v")
    education_by_pku = chain.entity_tx("pku", "records", "put_sector", "education", "trial-42", b"course")
    receipts = chain.run(health_by_fudan, health_by_pku, unknown_sector, education_by_pku)
    assert codes(receipts) == [ErrorCode.OK, ErrorCode.MISSING_SECTOR, ErrorCode.BAD_ARGUMENTS, ErrorCode.OK]
    stored = records.get_record(chain.state, "sector:health", "trial-42")
    assert stored is not None and stored.value == b"enrolled" and stored.tx_hash == health_by_fudan.hash
    assert receipts[0].events == (("records.put_sector", ("health", "trial-42", 1, "fudan")),)


def test_find_expiring_certificates(net: Network, chain: Chain) -> None:
    now_ms = chain.time_ms
    assert authority.find_expiring_certificates(chain.state, now_ms, DAY_MS) == []
    certificate, _ = net.issue("hainan", "soon-expiring", valid_days=2)
    chain.run(chain.zone_tx("hainan", "register", certificate))
    found = authority.find_expiring_certificates(chain.state, now_ms, 3 * DAY_MS)
    assert [(item.kind, item.subject, item.zone) for item in found] == [("entity", "soon-expiring", "hainan")]
    assert not found[0].is_expired and 0 < found[0].expires_in_ms <= 2 * DAY_MS
    # Past its end it is listed as expired; revoked certificates are not listed.
    later = authority.find_expiring_certificates(chain.state, found[0].not_after_ms + 1, 0)
    assert [item.subject for item in later] == ["soon-expiring"] and later[0].is_expired
    chain.run(chain.zone_tx("hainan", "revoke", "soon-expiring", "no longer needed"))
    assert authority.find_expiring_certificates(chain.state, now_ms, 3 * DAY_MS) == []
    # Every certificate (365-day entities, 5-year zone CAs) falls within a ten-year window.
    everything = authority.find_expiring_certificates(chain.state, now_ms, 3650 * DAY_MS)
    assert {item.subject for item in everything if item.kind == "zone"} == {
        z.zone_id for z in net.genesis.zones
    }
    assert [item.not_after_ms for item in everything] == sorted(item.not_after_ms for item in everything)
    # Without iter_state there is nothing to list.
    assert authority.find_expiring_certificates(object(), now_ms, 3650 * DAY_MS) == []


def test_get_signer_kinds(net: Network, chain: Chain) -> None:
    zone = authority.get_signer(chain.state, "zone:beijing")
    assert zone is not None and zone.public_key == net.zone_key("beijing").public_key and zone.entity is None
    member = authority.get_signer(chain.state, "council:moe")
    assert member is not None and member.public_key == net.council_key("moe").public_key
    entity = authority.get_signer(chain.state, "pku")
    assert entity is not None and entity.entity is not None and entity.zone_status == "active"
    assert authority.get_signer(chain.state, "council:nobody") is None
    assert authority.get_signer(chain.state, "zone:nowhere") is None


def test_state_roots_are_deterministic(net: Network) -> None:
    """Two executions of the same lifecycle blocks reach the same state root."""
    certificate, _ = net.issue("beijing", "twin")
    roots = []
    for _ in range(2):
        chain = Chain(net)
        register = chain.zone_tx("beijing", "register", certificate)
        revoke = chain.zone_tx("beijing", "revoke", "pku", "test")
        chain.run(register, revoke)
        roots.append(chain.state_root)
    assert roots[0] == roots[1]
