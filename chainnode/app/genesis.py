"""The genesis of a chain: the council, zones, entities and validators it starts with.

Theory of operation
-------------------
`Genesis` is the one value every node and auditor starts from.  Its identity is
`compute_hash()`: the domain-tagged hash (`genesis`) of a canonical msgpack encoding (tag
`TAG_GENESIS`), so two nodes agree on a chain only if they agree on every byte of its genesis.
The JSON file (`to_json` / `from_json`) is the human-readable carrier of the same value:
certificates as PEM text, keys and hashes as hex.  JSON never defines the hash; the encoding does,
so reformatting the file does not change the chain.

Upgrades: the genesis names the state machine it was written for (`state_machine`, this
release's `STATE_MACHINE`) and the state root that state machine computes from it
(`state_root`), and the hash covers both.  A node of another state machine refuses the genesis
at start (`load_genesis`) with a message naming both versions, instead of failing replay blocks
later; a state machine that computes another genesis state refuses it the same way.
`STATE_MACHINE` changes whenever the rules of execution change (a transaction's outcome, a key's
encoding), never for anything else.  A genesis written before these fields existed carries
neither: it keeps its old encoding and hash (its ledgers stay valid) and is not checked.

`initial_state()` is what the state machine holds before block 1: one `ZoneRecord` per zone, one
`EntityRecord` per entity (validator nodes are entities too), the validator set (also as the
history entry `val/from/1`, see `chainnode.app.governance.get_validator_set_at`), the root CA
certificate (zone admissions and entity registrations are checked against it), one
`CouncilRecord` per council member, the council (threshold and member ids) and the chain
parameters.

`load_genesis` trusts nothing in the file: every zone CA must chain to the root and carry its zone
id, every entity certificate must verify against its zone's authority at the genesis time and
match its record field by field, and every validator must be a registered, unrevoked entity with
the `validator` role and the same public key.  Any failure is a `ConfigError` naming the culprit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from chainnode.core import codec, crypto, identity, identity_records, quorum, tags, types
from chainnode.core.errors import ChainError, ConfigError
from chainnode.core.fields import Fields
from chainnode.core.tags import TAG_GENESIS

VERSION = 1
VERSION_BOUND = 2  # the encoding that also binds the state machine and the genesis state root
# The rules of execution this release runs; a new name whenever an outcome or a key changes:
# 1, the first with the binding; 2, records.put_sector records the member that wrote each version.
STATE_MACHINE = "chainnode-state/2"
GENESIS_FILE_BYTES_MAX = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class CouncilMember:
    """A government body on the council; approves network changes with its Ed25519 key."""

    member_id: str
    name: str
    public_key: bytes  # raw Ed25519 key


@dataclass(frozen=True, slots=True)
class ChainParams:
    """Parameters the council may later change by governance."""

    block_txs_max: int = 2000
    block_bytes_max: int = 4 * 1024 * 1024
    tx_bytes_max: int = types.TX_BYTES_MAX
    timestamp_drift_ms_max: int = 10_000  # how far a block timestamp may run ahead of a replica
    view_timeout_ms: int = 0  # base PBFT view timeout; 0: each node's configured value

    def to_fields(self) -> tuple[int, ...]:
        # `view_timeout_ms` joins the genesis encoding only when set, so that the hashes of
        # geneses written before it existed do not change.
        fields = (
            self.block_txs_max,
            self.block_bytes_max,
            self.tx_bytes_max,
            self.timestamp_drift_ms_max,
        )
        return (*fields, self.view_timeout_ms) if self.view_timeout_ms else fields


def encode_chain_params(params: ChainParams) -> bytes:
    """The state value at `identity_records.CHAIN_PARAMS_KEY`."""
    return codec.encode(
        (
            tags.TAG_CHAIN_PARAMS,
            VERSION,
            params.block_txs_max,
            params.block_bytes_max,
            params.tx_bytes_max,
            params.timestamp_drift_ms_max,
            params.view_timeout_ms,
        )
    )


def decode_chain_params(data: bytes) -> ChainParams:
    fields = codec.decode_struct(data, tags.TAG_CHAIN_PARAMS, VERSION, 7, "chain params")
    return ChainParams(
        block_txs_max=codec.expect_int(fields[2], "block_txs_max"),
        block_bytes_max=codec.expect_int(fields[3], "block_bytes_max"),
        tx_bytes_max=codec.expect_int(fields[4], "tx_bytes_max"),
        timestamp_drift_ms_max=codec.expect_int(fields[5], "timestamp_drift_ms_max"),
        view_timeout_ms=codec.expect_int(fields[6], "view_timeout_ms"),
    )


@dataclass(frozen=True, slots=True)
class Genesis:
    """Everything a chain starts from; `compute_hash()` identifies the chain."""

    chain_id: str
    genesis_time_ms: int  # the timestamp of the (virtual) block 0
    root_certificate: bytes  # DER of the network root CA
    council: tuple[CouncilMember, ...]
    council_threshold: int  # approvals needed for a council decision (M of N)
    zones: tuple[identity_records.ZoneRecord, ...]
    entities: tuple[identity_records.EntityRecord, ...]  # including the validator nodes
    validators: quorum.ValidatorSet
    params: ChainParams
    state_machine: str = STATE_MACHINE  # "" in a genesis written before the field existed
    state_root: bytes = b""  # the genesis state root; computed when not given (see the module doc)

    def __post_init__(self) -> None:
        if self.state_machine and not self.state_root:
            from chainnode.app.state import compute_genesis_state_root

            object.__setattr__(self, "state_root", compute_genesis_state_root(self.initial_state()))

    def encode(self) -> bytes:
        """The canonical encoding that `compute_hash` commits to."""
        bound = (self.state_machine, self.state_root) if self.state_machine else ()
        return codec.encode(
            (
                TAG_GENESIS,
                VERSION_BOUND if self.state_machine else VERSION,
                self.chain_id,
                self.genesis_time_ms,
                self.root_certificate,
                tuple((m.member_id, m.name, m.public_key) for m in self.council),
                self.council_threshold,
                tuple(zone.encode() for zone in self.zones),
                tuple(entity.encode() for entity in self.entities),
                self.validators.encode(),
                self.params.to_fields(),
                *bound,
            )
        )

    def compute_hash(self) -> bytes:
        return crypto.hash_tagged("genesis", self.encode())

    def initial_state(self) -> dict[bytes, bytes]:
        state: dict[bytes, bytes] = {}
        for zone in self.zones:
            state[identity_records.zone_key(zone.zone_id)] = zone.encode()
        for entity in self.entities:
            state[identity_records.entity_key(entity.entity_id)] = entity.encode()
        state[identity_records.VALIDATOR_SET_KEY] = self.validators.encode()
        state[identity_records.validator_history_key(1)] = self.validators.encode()
        state[identity_records.ROOT_CERTIFICATE_KEY] = self.root_certificate
        for member in self.council:
            record = identity_records.CouncilRecord(member.member_id, member.name, member.public_key)
            state[identity_records.council_key(member.member_id)] = record.encode()
        member_ids = tuple(member.member_id for member in self.council)
        state[identity_records.COUNCIL_KEY] = codec.encode((self.council_threshold, member_ids))
        state[identity_records.CHAIN_PARAMS_KEY] = encode_chain_params(self.params)
        return state

    def get_entity(self, entity_id: str) -> identity_records.EntityRecord | None:
        for entity in self.entities:
            if entity.entity_id == entity_id:
                return entity
        return None

    def get_zone(self, zone_id: str) -> identity_records.ZoneRecord | None:
        for zone in self.zones:
            if zone.zone_id == zone_id:
                return zone
        return None

    def to_json(self) -> str:
        document = {
            "chain_id": self.chain_id,
            "genesis_time_ms": self.genesis_time_ms,
            "root_certificate": _der_to_pem(self.root_certificate),
            "council_threshold": self.council_threshold,
            "council": [
                {"id": m.member_id, "name": m.name, "public_key": m.public_key.hex()} for m in self.council
            ],
            "zones": [
                {
                    "id": z.zone_id,
                    "name": z.name,
                    "active": z.active,
                    "certificate": _der_to_pem(z.certificate),
                }
                for z in self.zones
            ],
            "entities": [_entity_to_json(e) for e in self.entities],
            "validators": [
                {"id": v.entity_id, "public_key": v.public_key.hex()} for v in self.validators.validators
            ],
            "params": {
                "block_txs_max": self.params.block_txs_max,
                "block_bytes_max": self.params.block_bytes_max,
                "tx_bytes_max": self.params.tx_bytes_max,
                "timestamp_drift_ms_max": self.params.timestamp_drift_ms_max,
                "view_timeout_ms": self.params.view_timeout_ms,
            },
        }
        if self.state_machine:
            document["state_machine"] = self.state_machine
            document["state_root"] = self.state_root.hex()
        return json.dumps(document, indent=1, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Genesis:
        """Parse the JSON form; `ConfigError` on any missing or mistyped field."""
        try:
            document = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as error:
            raise ConfigError(f"genesis is not valid JSON: {error}") from error
        try:
            return _genesis_from_document(Fields(document, "genesis", table_word="object"))
        except ChainError as error:
            if isinstance(error, ConfigError):
                raise
            raise ConfigError(f"genesis: {error.message}") from error


def _der_to_pem(der: bytes) -> str:
    return identity.certificate_to_pem(identity.certificate_from_der(der)).decode("ascii")


def _entity_to_json(entity: identity_records.EntityRecord) -> dict[str, Any]:
    return {
        "id": entity.entity_id,
        "zone": entity.zone,
        "public_key": entity.public_key.hex(),
        "roles": list(entity.roles),
        "sectors": list(entity.sectors),
        "not_before_ms": entity.not_before_ms,
        "not_after_ms": entity.not_after_ms,
        "revoked": entity.revoked,
        "certificate": _der_to_pem(entity.certificate),
    }


def _get_certificate_der(fields: Fields, key: str) -> bytes:
    text = fields.get_str(key)
    try:
        certificate = identity.certificate_from_pem(text.encode("ascii"))
    except (UnicodeEncodeError, ChainError) as error:
        raise ConfigError(f"{fields.get_key_path(key)}: not a PEM certificate") from error
    return identity.certificate_der(certificate)


def _genesis_from_document(fields: Fields) -> Genesis:
    council = tuple(
        CouncilMember(m.get_str("id"), m.get_str("name"), m.get_hex("public_key", length=32))
        for m in fields.get_tables("council")
    )
    zones = tuple(
        identity_records.ZoneRecord(
            z.get_str("id"), z.get_str("name"), _get_certificate_der(z, "certificate"), z.get_bool("active")
        )
        for z in fields.get_tables("zones")
    )
    entities = tuple(
        identity_records.EntityRecord(
            entity_id=e.get_str("id"),
            zone=e.get_str("zone"),
            public_key=e.get_hex("public_key", length=32),
            roles=e.get_strings("roles"),
            sectors=e.get_strings("sectors"),
            not_before_ms=e.get_int("not_before_ms"),
            not_after_ms=e.get_int("not_after_ms"),
            revoked=e.get_bool("revoked"),
            certificate=_get_certificate_der(e, "certificate"),
        )
        for e in fields.get_tables("entities")
    )
    validator_items = fields.get_tables("validators")
    validator_list = [
        quorum.Validator(v.get_str("id"), v.get_hex("public_key", length=32)) for v in validator_items
    ]
    if len(validator_list) < quorum.VALIDATORS_MIN:
        raise ConfigError(
            f"genesis.validators: {len(validator_list)} validators; a network needs at least "
            f"{quorum.VALIDATORS_MIN} (3f + 1 with f = 1) to tolerate one fault"
        )
    if len({v.entity_id for v in validator_list}) != len(validator_list):
        raise ConfigError("genesis.validators: a validator is listed twice")
    params_fields = fields.get_table("params")
    params = ChainParams(
        block_txs_max=params_fields.get_int("block_txs_max"),
        block_bytes_max=params_fields.get_int("block_bytes_max"),
        tx_bytes_max=params_fields.get_int("tx_bytes_max"),
        timestamp_drift_ms_max=params_fields.get_int("timestamp_drift_ms_max"),
        # Optional: geneses written before governance could set it have no such field.
        view_timeout_ms=params_fields.get_int("view_timeout_ms", default=0),
    )
    return Genesis(
        chain_id=fields.get_str("chain_id"),
        genesis_time_ms=fields.get_int("genesis_time_ms"),
        root_certificate=_get_certificate_der(fields, "root_certificate"),
        council=council,
        council_threshold=fields.get_int("council_threshold"),
        zones=zones,
        entities=entities,
        validators=quorum.ValidatorSet(tuple(validator_list)),
        params=params,
        # Both or neither: a genesis written before the binding existed has neither.
        state_machine=fields.get_str("state_machine") if fields.has("state_root") else "",
        state_root=fields.get_hex("state_root", length=32) if fields.has("state_machine") else b"",
    )


# ---------------------------------------------------------------- verification


def _require_distinct(values: list[str], what: str) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ConfigError(f"genesis lists {what} {value!r} twice")
        seen.add(value)


def _verify_zones(genesis: Genesis, root: x509.Certificate) -> dict[str, x509.Certificate]:
    zone_certificates: dict[str, x509.Certificate] = {}
    for zone in genesis.zones:
        try:
            certificate = identity.certificate_from_der(zone.certificate)
            zone_id = identity.verify_zone_certificate(certificate, root, at_ms=genesis.genesis_time_ms)
        except ChainError as error:
            raise ConfigError(f"genesis zone {zone.zone_id}: {error.message}") from error
        if zone_id != zone.zone_id:
            raise ConfigError(f"genesis zone {zone.zone_id}: its CA certificate is for {zone_id}")
        zone_certificates[zone.zone_id] = certificate
    return zone_certificates


def _verify_entities(
    genesis: Genesis, root: x509.Certificate, zone_certificates: dict[str, x509.Certificate]
) -> None:
    for entity in genesis.entities:
        zone_certificate = zone_certificates.get(entity.zone)
        if zone_certificate is None:
            raise ConfigError(f"genesis entity {entity.entity_id}: unknown zone {entity.zone!r}")
        try:
            certificate = identity.certificate_from_der(entity.certificate)
            identity.verify_entity_certificate(
                certificate, zone_certificate, root, at_ms=genesis.genesis_time_ms
            )
            expected = identity.entity_record_from_certificate(certificate)
        except ChainError as error:
            raise ConfigError(f"genesis entity {entity.entity_id}: {error.message}") from error
        if entity.revoked:
            raise ConfigError(f"genesis entity {entity.entity_id}: revoked at genesis")
        if entity != expected:
            raise ConfigError(f"genesis entity {entity.entity_id}: the record does not match its certificate")


def _verify_validators(genesis: Genesis) -> None:
    for validator in genesis.validators.validators:
        entity = genesis.get_entity(validator.entity_id)
        if entity is None:
            raise ConfigError(f"genesis validator {validator.entity_id} is not a registered entity")
        if not entity.has_role("validator"):
            raise ConfigError(f"genesis validator {validator.entity_id} lacks the validator role")
        if entity.public_key != validator.public_key:
            raise ConfigError(f"genesis validator {validator.entity_id}: key differs from its certificate")


def verify_genesis(genesis: Genesis) -> None:
    """Check every rule `load_genesis` promises; `ConfigError` on the first violation."""
    if not genesis.chain_id or len(genesis.chain_id) > 64:
        raise ConfigError("genesis chain id must be 1..64 characters")
    _require_distinct([m.member_id for m in genesis.council], "council member")
    _require_distinct([m.public_key.hex() for m in genesis.council], "council key")
    if not 1 <= genesis.council_threshold <= len(genesis.council):
        raise ConfigError(
            f"council threshold {genesis.council_threshold} is outside 1..{len(genesis.council)}"
        )
    _require_distinct([z.zone_id for z in genesis.zones], "zone")
    _require_distinct([e.entity_id for e in genesis.entities], "entity")
    try:
        root = identity.certificate_from_der(genesis.root_certificate)
    except ChainError as error:
        raise ConfigError(f"genesis root certificate: {error.message}") from error
    zone_certificates = _verify_zones(genesis, root)
    _verify_entities(genesis, root, zone_certificates)
    _verify_validators(genesis)
    if genesis.params.tx_bytes_max > types.TX_BYTES_MAX:
        raise ConfigError(f"genesis tx_bytes_max exceeds the codec limit {types.TX_BYTES_MAX}")
    _verify_state_machine(genesis)


def _verify_state_machine(genesis: Genesis) -> None:
    """The genesis was written for this state machine, which computes the state root it names."""
    if not genesis.state_machine:
        return  # written before the binding existed (see the module doc)
    if genesis.state_machine != STATE_MACHINE:
        raise ConfigError(
            f"genesis of chain {genesis.chain_id!r} is for state machine {genesis.state_machine!r}; this "
            f"node runs {STATE_MACHINE!r}: run the release that wrote the genesis, or start a new chain"
        )
    from chainnode.app.state import compute_genesis_state_root

    computed = compute_genesis_state_root(genesis.initial_state())
    if genesis.state_root != computed:
        raise ConfigError(
            f"genesis of chain {genesis.chain_id!r} names state root {genesis.state_root.hex()[:16]}...; "
            f"this state machine computes {computed.hex()[:16]}... from it: the genesis was written by "
            "another state machine or edited"
        )


def load_genesis(path: Path) -> Genesis:
    """Read, parse and fully verify a genesis JSON file; `ConfigError` if it cannot be used."""
    try:
        with Path(path).open("rb") as file:
            data = file.read(GENESIS_FILE_BYTES_MAX + 1)
    except OSError as error:
        raise ConfigError(f"cannot read genesis file {path}: {error}") from error
    if len(data) > GENESIS_FILE_BYTES_MAX:
        raise ConfigError(f"genesis file {path} is larger than {GENESIS_FILE_BYTES_MAX} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"genesis file {path} is not UTF-8") from error
    genesis = Genesis.from_json(text)
    verify_genesis(genesis)
    return genesis
