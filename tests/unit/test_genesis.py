"""Genesis: JSON round trip, hash stability, initial state and refusal of tampered files."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from chainnode.app import genesis
from chainnode.core import codec, identity, identity_records, quorum, tags
from chainnode.core.crypto import SigningKey
from chainnode.core.errors import ConfigError
from tests.factories import create_pki


def _build_genesis() -> genesis.Genesis:
    names = (("beijing", "Beijing"), ("sichuan", "Sichuan (Chengdu)"))
    pki = create_pki("Test Network", names)
    zones = [
        identity_records.ZoneRecord(zone_id, name, identity.certificate_der(pki.zones[zone_id]), True)
        for zone_id, name in names
    ]
    entities = []
    specs = [
        ("pku", "beijing", ("submitter",), ("education",)),
        ("west-china-hospital", "sichuan", ("submitter",), ("health",)),
        ("validator-01", "beijing", ("validator", "observer"), ("government",)),
        ("validator-02", "sichuan", ("validator", "observer"), ("government",)),
        ("validator-03", "beijing", ("validator", "observer"), ("energy",)),
        ("validator-04", "sichuan", ("validator", "observer"), ("energy",)),
    ]
    for entity_id, zone_id, roles, sectors in specs:
        claims = identity.EntityClaims(entity_id, zone_id, roles, sectors, entity_id.upper())
        issued, _ = pki.issue(claims)
        entities.append(identity.entity_record_from_certificate(issued))
    council = tuple(
        genesis.CouncilMember(f"member-{i}", f"Member {i}", SigningKey.generate().public_key)
        for i in range(3)
    )
    validators = quorum.ValidatorSet(tuple(quorum.Validator(e.entity_id, e.public_key) for e in entities[2:]))
    return genesis.Genesis(
        chain_id="test-net",
        genesis_time_ms=entities[0].not_before_ms + 3_600_000,
        root_certificate=identity.certificate_der(pki.root),
        council=council,
        council_threshold=2,
        zones=tuple(zones),
        entities=tuple(entities),
        validators=validators,
        params=genesis.ChainParams(),
    )


@pytest.fixture(scope="module")
def chain_genesis() -> genesis.Genesis:
    return _build_genesis()


def test_json_round_trip_preserves_hash(chain_genesis: genesis.Genesis, tmp_path: Path) -> None:
    text = chain_genesis.to_json()
    again = genesis.Genesis.from_json(text)
    assert again == chain_genesis
    assert again.compute_hash() == chain_genesis.compute_hash()
    # Reformatting the JSON does not change the chain.
    reformatted = json.dumps(json.loads(text), indent=4, sort_keys=True)
    assert genesis.Genesis.from_json(reformatted).compute_hash() == chain_genesis.compute_hash()
    path = tmp_path / "genesis.json"
    path.write_text(text)
    assert genesis.load_genesis(path).compute_hash() == chain_genesis.compute_hash()


def test_encoding_is_tagged_and_hash_sensitive(chain_genesis: genesis.Genesis) -> None:
    fields = codec.decode(chain_genesis.encode())
    assert fields[0] == tags.TAG_GENESIS and fields[2] == "test-net"
    other = replace(chain_genesis, chain_id="other-net")
    assert other.compute_hash() != chain_genesis.compute_hash()


def test_initial_state(chain_genesis: genesis.Genesis) -> None:
    state = chain_genesis.initial_state()
    # 2 zones, 6 entities, the validator set and its history entry, the root certificate,
    # 3 council members, the council (threshold and ids) and the chain parameters.
    assert len(state) == 2 + 6 + 2 + 1 + 3 + 1 + 1
    assert state[identity_records.validator_history_key(1)] == state[identity_records.VALIDATOR_SET_KEY]
    assert genesis.decode_chain_params(state[identity_records.CHAIN_PARAMS_KEY]) == chain_genesis.params
    assert (
        identity_records.decode_council_record(state[identity_records.council_key("member-1")]).name
        == "Member 1"
    )
    assert codec.decode(state[identity_records.COUNCIL_KEY]) == (2, ("member-0", "member-1", "member-2"))
    record = identity_records.decode_entity_record(state[identity_records.entity_key("validator-01")])
    assert record.has_role("validator")
    assert (
        identity_records.decode_zone_record(state[identity_records.zone_key("sichuan")]).name
        == "Sichuan (Chengdu)"
    )
    assert quorum.decode_validator_set(state[identity_records.VALIDATOR_SET_KEY]) == chain_genesis.validators


def _tampered(chain_genesis: genesis.Genesis, tmp_path: Path, change: Any) -> Path:
    document = json.loads(chain_genesis.to_json())
    change(document)
    path = tmp_path / "genesis.json"
    path.write_text(json.dumps(document))
    return path


def _swap_zone_certificates(document: dict[str, Any]) -> None:
    zones = document["zones"]
    zones[0]["certificate"], zones[1]["certificate"] = zones[1]["certificate"], zones[0]["certificate"]


def _foreign_root(document: dict[str, Any]) -> None:
    key = SigningKey.generate()
    root = identity.create_root_ca("Test Network", key)
    document["root_certificate"] = identity.certificate_to_pem(root).decode()


TAMPERINGS = {
    "grant a role": lambda d: d["entities"][0]["roles"].append("issuer"),
    "move to another zone": lambda d: d["entities"][0].update(zone="sichuan"),
    "swap a key": lambda d: d["entities"][0].update(public_key=d["entities"][1]["public_key"]),
    "extend validity": lambda d: d["entities"][0].update(not_after_ms=d["entities"][0]["not_after_ms"] + 1),
    "revoked at genesis": lambda d: d["entities"][0].update(revoked=True),
    "validator not an entity": lambda d: d["validators"][0].update(id="pku-x"),
    "validator without role": lambda d: d["validators"][0].update(
        id="pku", public_key=d["entities"][0]["public_key"]
    ),
    "validator key differs": lambda d: d["validators"][0].update(public_key="00" * 32),
    "zone certificates swapped": _swap_zone_certificates,
    "foreign root": _foreign_root,
    "threshold too high": lambda d: d.update(council_threshold=4),
    "duplicate entity": lambda d: d["entities"].append(d["entities"][0]),
    "missing field": lambda d: d.pop("chain_id"),
    "wrong type": lambda d: d.update(genesis_time_ms="soon"),
    "garbled certificate": lambda d: d["entities"][0].update(
        certificate="-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    ),
    "genesis before certificates": lambda d: d.update(genesis_time_ms=0),
    "empty validator set": lambda d: d.update(validators=[]),
    "three validators": lambda d: d.update(validators=d["validators"][:3]),
}


EXPECTED_REASONS = {
    "grant a role": "does not match its certificate",
    "move to another zone": "not issued by the expected authority",
    "swap a key": "does not match its certificate",
    "extend validity": "does not match its certificate",
    "revoked at genesis": "revoked at genesis",
    "validator not an entity": "not a registered entity",
    "validator without role": "lacks the validator role",
    "validator key differs": "key differs",
    "zone certificates swapped": "its CA certificate is for",
    "foreign root": "invalid signature",
    "threshold too high": "threshold",
    "duplicate entity": "twice",
    "missing field": "chain_id: missing",
    "wrong type": "genesis_time_ms",
    "garbled certificate": "not a PEM certificate",
    "genesis before certificates": "not yet valid",
    "empty validator set": "0 validators; a network needs at least 4",
    "three validators": "3 validators; a network needs at least 4",
}


@pytest.mark.parametrize("name", sorted(TAMPERINGS))
def test_load_genesis_refuses_tampered_file(
    chain_genesis: genesis.Genesis, tmp_path: Path, name: str
) -> None:
    path = _tampered(chain_genesis, tmp_path, TAMPERINGS[name])
    with pytest.raises(ConfigError, match=EXPECTED_REASONS[name]):
        genesis.load_genesis(path)


def test_load_genesis_refuses_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        genesis.load_genesis(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        genesis.load_genesis(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(ConfigError):
        genesis.load_genesis(tmp_path / "list.json")


# ---------------------------------------------------------------- the state machine it binds


def _load_document(tmp_path: Path, document: dict[str, Any]) -> genesis.Genesis:
    path = tmp_path / "genesis.json"
    path.write_text(json.dumps(document))
    return genesis.load_genesis(path)


def test_the_hash_binds_the_state_machine_and_the_genesis_state_root(
    chain_genesis: genesis.Genesis, tmp_path: Path
) -> None:
    from chainnode.app.state import compute_genesis_state_root

    assert chain_genesis.state_machine == genesis.STATE_MACHINE
    assert chain_genesis.state_root == compute_genesis_state_root(chain_genesis.initial_state())
    fields = codec.decode(chain_genesis.encode())
    assert fields[1] == genesis.VERSION_BOUND and fields[-2:] == (
        genesis.STATE_MACHINE,
        chain_genesis.state_root,
    )
    assert (
        replace(chain_genesis, state_machine="chainnode-state/0").compute_hash()
        != chain_genesis.compute_hash()
    )
    assert replace(chain_genesis, state_root=bytes(32)).compute_hash() != chain_genesis.compute_hash()
    document = json.loads(chain_genesis.to_json())
    assert _load_document(tmp_path, document) == chain_genesis


def test_a_genesis_of_another_state_machine_is_refused_with_both_versions(
    chain_genesis: genesis.Genesis, tmp_path: Path
) -> None:
    document = json.loads(chain_genesis.to_json())
    with pytest.raises(ConfigError) as refused:
        _load_document(tmp_path, {**document, "state_machine": "chainnode-state/0"})
    assert "'chainnode-state/0'" in refused.value.message and genesis.STATE_MACHINE in refused.value.message
    # The same machine name with a state root it does not compute: written by another machine, or edited.
    with pytest.raises(ConfigError, match="this state machine computes"):
        _load_document(tmp_path, {**document, "state_root": "00" * 32})


def test_a_genesis_written_before_the_binding_keeps_its_hash(
    chain_genesis: genesis.Genesis, tmp_path: Path
) -> None:
    document = json.loads(chain_genesis.to_json())
    del document["state_machine"], document["state_root"]
    legacy = _load_document(tmp_path, document)
    assert (legacy.state_machine, legacy.state_root) == ("", b"")
    fields = codec.decode(legacy.encode())
    assert fields[1] == genesis.VERSION and len(fields) == 11  # the encoding (and hash) of before
    assert "state_machine" not in json.loads(legacy.to_json())
    # Half of the pair is a malformed file, not a legacy one.
    with pytest.raises(ConfigError):
        _load_document(tmp_path, {**document, "state_machine": genesis.STATE_MACHINE})
