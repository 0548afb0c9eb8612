"""The `assets` module: collections, mint, transfer, approvals, burn, freeze and pause, their
provenance and events, and every refusal with its stable code (one table); all through
`Executor.execute_block` over a real network's genesis state."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from chainnode.app import asset_state, assets
from chainnode.app.authority import compute_zone_signer
from chainnode.core import crypto, types
from chainnode.core.errors import StorageError
from tests.governance_harness import Chain, Network, codes, event_names

ErrorCode = types.ErrorCode
ISSUER = "cert-office"  # beijing, issuer of "diplomas" (unique) and "tickets" (editioned)
OTHER_ISSUER = "other-issuer"  # shanghai, an issuer of nothing here
META = crypto.sha256(b"diploma metadata")
SCHEMA = crypto.sha256(b"diploma schema")


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Network:
    return Network.create(tmp_path_factory.mktemp("assets"))


@dataclass
class World:
    """A chain with two registered issuers, a unique and an editioned collection, and
    `diplomas/d1` (owned by pku) and 10 units of `tickets/t1` (held by pku) minted."""

    net: Network
    chain: Chain = field(init=False)
    keys: dict[str, crypto.SigningKey] = field(init=False, default_factory=dict)
    receipts: list[types.Receipt] = field(init=False, default_factory=list)  # of every run_ok

    def __post_init__(self) -> None:
        self.chain = Chain(self.net)
        registrations = []
        for zone, entity_id in (("beijing", ISSUER), ("shanghai", OTHER_ISSUER)):
            certificate, key = self.net.issue(zone, entity_id, roles=("submitter", "issuer"))
            self.keys[entity_id] = key
            registrations.append(self.chain.zone_tx(zone, "register", certificate))
        self.run_ok(*registrations)
        self.run_ok(
            self.tx(ISSUER, "create_collection", "diplomas", "University Diplomas", "DIP", "unique", SCHEMA),
            self.tx(ISSUER, "create_collection", "tickets", "Event Tickets", "TIX", "editioned", b""),
        )
        self.run_ok(
            self.tx(ISSUER, "mint", "diplomas", "d1", "pku", 1, META, ""),
            self.tx(ISSUER, "mint", "tickets", "t1", "pku", 10, META, "https://example.org/t1"),
        )

    def tx(self, signer: str, action: str, *args: object) -> types.Transaction:
        key = self.keys.get(signer) or self.net.entity_key(signer)
        return self.chain.entity_tx(signer, "assets", action, *args, key=key)

    def zone(self, zone_id: str, action: str, *args: object) -> types.Transaction:
        return self.chain.tx(
            compute_zone_signer(zone_id), self.net.zone_key(zone_id), "assets", action, *args
        )

    def run_ok(self, *txs: types.Transaction) -> list[types.Receipt]:
        receipts = self.chain.run(*txs)
        self.receipts += receipts
        assert codes(receipts) == [ErrorCode.OK] * len(txs), [r.message for r in receipts]
        return receipts

    def asset(self, collection_id: str, token_id: str) -> asset_state.Asset:
        found = asset_state.get_asset(self.chain.state, collection_id, token_id)
        assert found is not None
        return found

    def collection(self, collection_id: str) -> asset_state.Collection:
        found = asset_state.get_collection(self.chain.state, collection_id)
        assert found is not None
        return found

    def balance(self, collection_id: str, token_id: str, holder: str) -> int:
        return asset_state.get_balance(self.chain.state, collection_id, token_id, holder)

    def provenance(self, collection_id: str, token_id: str) -> list[tuple[str, str, str, str, int]]:
        asset = self.asset(collection_id, token_id)
        entries = asset_state.list_provenance(self.chain.state, asset, after=0, limit=1000)
        return [(e.action, e.actor, e.source, e.target, e.amount) for e in entries]


@pytest.fixture
def world(net: Network) -> World:
    return World(net)


# ---------------------------------------------------------------- what succeeds


def test_mint_records_the_asset_its_holding_provenance_and_stats(world: World) -> None:
    asset = world.asset("diplomas", "d1")
    assert (asset.owner, asset.units, asset.seq, asset.metadata_hash, asset.uri) == ("pku", 1, 1, META, "")
    assert world.balance("diplomas", "d1", "pku") == 1
    assert world.provenance("diplomas", "d1") == [("mint", ISSUER, "", "pku", 1)]
    entry = asset_state.get_provenance_entry(world.chain.state, "diplomas", "d1", 1)
    assert entry.height == 3 and len(entry.tx_hash) == 32
    diplomas = world.collection("diplomas")
    assert (diplomas.issuer, diplomas.kind, diplomas.schema_hash, diplomas.tokens, diplomas.units) == (
        ISSUER,
        "unique",
        SCHEMA,
        1,
        1,
    )
    owned = asset_state.list_owned(world.chain.state, "pku", after="", limit=10)
    assert [(h.collection_id, h.token_id, h.amount) for h in owned] == [
        ("diplomas", "d1", 1),
        ("tickets", "t1", 10),
    ]


def test_transfer_approve_and_operator_move_a_unique_asset(world: World) -> None:
    receipt = world.run_ok(world.tx("pku", "transfer", "diplomas", "d1", "pku", "fudan", 1))[0]
    assert receipt.events == (("assets.transferred", ("diplomas/d1", "pku", "fudan", 1)),)
    assert world.asset("diplomas", "d1").owner == "fudan"
    assert world.balance("diplomas", "d1", "pku") == 0
    assert asset_state.list_owned(world.chain.state, "pku", after="", limit=10)[0].collection_id == "tickets"
    # The owner approves one entity for the asset; the approval ends with the transfer it allows.
    world.run_ok(world.tx("fudan", "approve", "diplomas", "d1", "pku"))
    assert world.asset("diplomas", "d1").approved == "pku"
    world.run_ok(world.tx("pku", "transfer", "diplomas", "d1", "fudan", "pku", 1))
    assert (world.asset("diplomas", "d1").owner, world.asset("diplomas", "d1").approved) == ("pku", "")
    # An operator for the whole collection moves the owner's assets until the grant is withdrawn.
    world.run_ok(world.tx("pku", "approve_all", "diplomas", "fudan", True))
    world.run_ok(world.tx("fudan", "transfer", "diplomas", "d1", "pku", "hainan-university", 1))
    assert world.asset("diplomas", "d1").owner == "hainan-university"
    assert world.provenance("diplomas", "d1") == [
        ("mint", ISSUER, "", "pku", 1),
        ("transfer", "pku", "pku", "fudan", 1),
        ("approve", "fudan", "fudan", "pku", 0),
        ("transfer", "pku", "fudan", "pku", 1),
        ("transfer", "fudan", "pku", "hainan-university", 1),
    ]
    assert world.collection("diplomas").transfers == 3


def test_editioned_units_split_batch_and_burn(world: World) -> None:
    world.run_ok(
        world.tx(
            "pku",
            "transfer_batch",
            "tickets",
            (("t1", "pku", "fudan", 3), ("t1", "pku", "hainan-university", 2)),
        )
    )
    assert [world.balance("tickets", "t1", h) for h in ("pku", "fudan", "hainan-university")] == [5, 3, 2]
    holders = asset_state.list_holders(world.chain.state, "tickets", "t1", limit=10)
    assert [(h.holder, h.amount) for h in holders] == [("fudan", 3), ("hainan-university", 2), ("pku", 5)]
    receipt = world.run_ok(world.tx("fudan", "burn", "tickets", "t1", 3))[0]
    assert event_names(receipt) == ["assets.burned"]
    assert world.asset("tickets", "t1").units == 7
    stats = world.collection("tickets")
    assert (stats.units, stats.tokens_burned, stats.transfers) == (7, 0, 2)


def test_mint_batch_burn_of_the_last_unit_and_set_uri_once(world: World) -> None:
    world.run_ok(
        world.tx(
            ISSUER, "mint_batch", "diplomas", (("d2", "fudan", 1, META, ""), ("d3", "fudan", 1, META, ""))
        )
    )
    page = asset_state.list_collection_assets(
        world.chain.state, world.collection("diplomas"), after=1, limit=1
    )
    assert [a.token_id for a in page] == ["d2"]
    world.run_ok(world.tx(ISSUER, "set_uri", "diplomas", "d2", "https://example.org/d2"))
    assert world.asset("diplomas", "d2").uri == "https://example.org/d2"
    world.run_ok(world.tx("fudan", "burn", "diplomas", "d3", 1))
    burned = world.asset("diplomas", "d3")
    assert burned.is_burned and burned.owner == ""
    stats = world.collection("diplomas")
    assert (stats.tokens, stats.tokens_burned, stats.units) == (3, 1, 2)


def test_freeze_by_issuer_and_by_the_owners_zone_each_lifted_by_who_set_it(world: World) -> None:
    world.run_ok(world.tx(ISSUER, "freeze", "diplomas", "d1", "pku"))
    assert world.collection("diplomas").frozen == 1
    refused = world.chain.run_one(world.tx("pku", "transfer", "diplomas", "d1", "pku", "fudan", 1))
    assert refused.code == ErrorCode.ASSET_FROZEN
    world.run_ok(world.tx(ISSUER, "unfreeze", "diplomas", "d1", "pku"))
    # pku is a beijing entity: the beijing authority may freeze its holding.
    receipt = world.run_ok(world.zone("beijing", "zone_freeze", "diplomas", "d1", "pku"))[0]
    assert receipt.events == (("assets.frozen", ("diplomas/d1", "pku", "zone:beijing")),)
    freeze = asset_state.get_freeze(world.chain.state, "diplomas", "d1", "pku")
    assert freeze is not None and freeze.frozen_by == "zone:beijing"
    # The issuer cannot lift the regulator's freeze.
    assert (
        world.chain.run_one(world.tx(ISSUER, "unfreeze", "diplomas", "d1", "pku")).code
        == ErrorCode.NOT_ISSUER
    )
    world.run_ok(world.zone("beijing", "zone_unfreeze", "diplomas", "d1", "pku"))
    assert [entry[0] for entry in world.provenance("diplomas", "d1")] == [
        "mint",
        "freeze",
        "unfreeze",
        "freeze",
        "unfreeze",
    ]


def test_pause_stops_the_collection_until_unpaused(world: World) -> None:
    world.run_ok(world.tx(ISSUER, "pause", "diplomas"))
    assert (
        world.chain.run_one(world.tx("pku", "burn", "diplomas", "d1", 1)).code == ErrorCode.COLLECTION_PAUSED
    )
    world.run_ok(world.tx(ISSUER, "unpause", "diplomas"))
    world.run_ok(world.tx("pku", "burn", "diplomas", "d1", 1))


def test_a_failed_batch_leaves_no_write(world: World) -> None:
    before = dict(world.chain.state.values)
    receipt = world.chain.run_one(
        world.tx("pku", "transfer_batch", "tickets", (("t1", "pku", "fudan", 3), ("t1", "pku", "fudan", 8)))
    )
    assert receipt.code == ErrorCode.NOT_OWNER
    assert world.chain.state.values == before


def test_corrupt_stored_values_are_storage_errors(world: World) -> None:
    world.chain.state.values[asset_state.compute_asset_key("diplomas", "d1")] = b"\x93\x01\x02\x03"
    with pytest.raises(StorageError):
        asset_state.get_asset(world.chain.state, "diplomas", "d1")
    record = world.collection("tickets").encode()
    assert asset_state.decode_collection(record) == world.collection("tickets")


# ---------------------------------------------------------------- every refusal

Setup = Callable[[World], list[types.Transaction]]


def _revoke_fudan(world: World) -> list[types.Transaction]:
    return [world.chain.zone_tx("shanghai", "revoke", "fudan", "key compromise")]


def _remove_hainan(world: World) -> list[types.Transaction]:
    chain = world.chain
    proposal = chain.council_tx("miit", "propose", "remove_zone", ("hainan",), chain.height + 20)
    return [proposal]


def _vote_hainan_removal(world: World) -> list[types.Transaction]:
    return [world.chain.council_tx("moe", "vote", 1, True)]


REFUSALS: list[tuple[str, list[Setup], Callable[[World], types.Transaction], ErrorCode]] = [
    (
        "not an issuer of this collection mints",
        [],
        lambda w: w.tx(OTHER_ISSUER, "mint", "diplomas", "d9", "pku", 1, META, ""),
        ErrorCode.NOT_ISSUER,
    ),
    ("not the issuer pauses", [], lambda w: w.tx(OTHER_ISSUER, "pause", "diplomas"), ErrorCode.NOT_ISSUER),
    (
        "creating a collection without the issuer role",
        [],
        lambda w: w.tx("pku", "create_collection", "mine", "Mine", "M", "unique", b""),
        ErrorCode.MISSING_ROLE,
    ),
    (
        "not the owner transfers from itself",
        [],
        lambda w: w.tx("fudan", "transfer", "diplomas", "d1", "fudan", "pku", 1),
        ErrorCode.NOT_OWNER,
    ),
    (
        "more units than held",
        [],
        lambda w: w.tx("pku", "transfer", "tickets", "t1", "pku", "fudan", 11),
        ErrorCode.NOT_OWNER,
    ),
    (
        "approve by someone else than the owner",
        [],
        lambda w: w.tx("fudan", "approve", "diplomas", "d1", "fudan"),
        ErrorCode.NOT_OWNER,
    ),
    (
        "burn of units not held",
        [],
        lambda w: w.tx("fudan", "burn", "diplomas", "d1", 1),
        ErrorCode.NOT_OWNER,
    ),
    (
        "transfer of another's asset without approval",
        [],
        lambda w: w.tx("fudan", "transfer", "diplomas", "d1", "pku", "fudan", 1),
        ErrorCode.NOT_APPROVED,
    ),
    (
        "an operator grant withdrawn",
        [
            lambda w: [w.tx("pku", "approve_all", "tickets", "fudan", True)],
            lambda w: [w.tx("pku", "approve_all", "tickets", "fudan", False)],
        ],
        lambda w: w.tx("fudan", "transfer", "tickets", "t1", "pku", "fudan", 1),
        ErrorCode.NOT_APPROVED,
    ),
    (
        "transfer of a frozen holding",
        [lambda w: [w.tx(ISSUER, "freeze", "diplomas", "d1", "pku")]],
        lambda w: w.tx("pku", "transfer", "diplomas", "d1", "pku", "fudan", 1),
        ErrorCode.ASSET_FROZEN,
    ),
    (
        "transfer into a frozen holding",
        [
            lambda w: [w.tx("pku", "transfer", "tickets", "t1", "pku", "fudan", 1)],
            lambda w: [w.zone("shanghai", "zone_freeze", "tickets", "t1", "fudan")],
        ],
        lambda w: w.tx("pku", "transfer", "tickets", "t1", "pku", "fudan", 1),
        ErrorCode.ASSET_FROZEN,
    ),
    (
        "burn of a frozen holding",
        [lambda w: [w.tx(ISSUER, "freeze", "tickets", "t1", "pku")]],
        lambda w: w.tx("pku", "burn", "tickets", "t1", 1),
        ErrorCode.ASSET_FROZEN,
    ),
    (
        "freeze twice",
        [lambda w: [w.tx(ISSUER, "freeze", "diplomas", "d1", "pku")]],
        lambda w: w.zone("beijing", "zone_freeze", "diplomas", "d1", "pku"),
        ErrorCode.ASSET_FROZEN,
    ),
    (
        "mint into a paused collection",
        [lambda w: [w.tx(ISSUER, "pause", "diplomas")]],
        lambda w: w.tx(ISSUER, "mint", "diplomas", "d2", "pku", 1, META, ""),
        ErrorCode.COLLECTION_PAUSED,
    ),
    (
        "transfer in a paused collection",
        [lambda w: [w.tx(ISSUER, "pause", "tickets")]],
        lambda w: w.tx("pku", "transfer", "tickets", "t1", "pku", "fudan", 1),
        ErrorCode.COLLECTION_PAUSED,
    ),
    (
        "transfer of a burned asset",
        [lambda w: [w.tx("pku", "burn", "diplomas", "d1", 1)]],
        lambda w: w.tx("pku", "transfer", "diplomas", "d1", "pku", "fudan", 1),
        ErrorCode.ASSET_BURNED,
    ),
    (
        "re-mint of a burned id",
        [lambda w: [w.tx("pku", "burn", "diplomas", "d1", 1)]],
        lambda w: w.tx(ISSUER, "mint", "diplomas", "d1", "pku", 1, META, ""),
        ErrorCode.DUPLICATE_ID,
    ),
    (
        "unknown asset",
        [],
        lambda w: w.tx("pku", "transfer", "diplomas", "nope", "pku", "fudan", 1),
        ErrorCode.UNKNOWN_ASSET,
    ),
    (
        "unknown collection",
        [],
        lambda w: w.tx("pku", "transfer", "nope", "d1", "pku", "fudan", 1),
        ErrorCode.UNKNOWN_COLLECTION,
    ),
    (
        "duplicate token id",
        [],
        lambda w: w.tx(ISSUER, "mint", "diplomas", "d1", "fudan", 1, META, ""),
        ErrorCode.DUPLICATE_ID,
    ),
    (
        "duplicate token id within a batch",
        [],
        lambda w: w.tx(
            ISSUER, "mint_batch", "diplomas", (("d7", "pku", 1, META, ""), ("d7", "pku", 1, META, ""))
        ),
        ErrorCode.DUPLICATE_ID,
    ),
    (
        "duplicate collection id",
        [],
        lambda w: w.tx(OTHER_ISSUER, "create_collection", "diplomas", "Copy", "CPY", "unique", b""),
        ErrorCode.DUPLICATE_ID,
    ),
    (
        "transfer to a revoked entity",
        [_revoke_fudan],
        lambda w: w.tx("pku", "transfer", "diplomas", "d1", "pku", "fudan", 1),
        ErrorCode.RECIPIENT_NOT_ACTIVE,
    ),
    (
        "mint to an entity of a removed zone",
        [_remove_hainan, _vote_hainan_removal],
        lambda w: w.tx(ISSUER, "mint", "diplomas", "d2", "hainan-university", 1, META, ""),
        ErrorCode.RECIPIENT_NOT_ACTIVE,
    ),
    (
        "transfer to an unknown entity",
        [],
        lambda w: w.tx("pku", "transfer", "diplomas", "d1", "pku", "nobody", 1),
        ErrorCode.UNKNOWN_ENTITY,
    ),
    (
        "transfer to a zone signer",
        [],
        lambda w: w.tx("pku", "transfer", "diplomas", "d1", "pku", "zone:beijing", 1),
        ErrorCode.UNKNOWN_ENTITY,
    ),
    (
        "a metadata hash of 31 bytes",
        [],
        lambda w: w.tx(ISSUER, "mint", "diplomas", "d2", "pku", 1, META[:31], ""),
        ErrorCode.BAD_METADATA_HASH,
    ),
    (
        "an all-zero metadata hash",
        [],
        lambda w: w.tx(ISSUER, "mint", "diplomas", "d2", "pku", 1, bytes(32), ""),
        ErrorCode.BAD_METADATA_HASH,
    ),
    (
        "a schema hash that is not a digest",
        [],
        lambda w: w.tx(ISSUER, "create_collection", "c2", "C", "C", "unique", b"schema"),
        ErrorCode.BAD_METADATA_HASH,
    ),
    (
        "an oversize collection name",
        [],
        lambda w: w.tx(ISSUER, "create_collection", "c2", "n" * 129, "C", "unique", b""),
        ErrorCode.TOO_LARGE,
    ),
    (
        "an oversize URI",
        [],
        lambda w: w.tx(ISSUER, "mint", "diplomas", "d2", "pku", 1, META, "u" * 513),
        ErrorCode.TOO_LARGE,
    ),
    (
        "an oversize token id",
        [],
        lambda w: w.tx(ISSUER, "mint", "diplomas", "t" * 65, "pku", 1, META, ""),
        ErrorCode.TOO_LARGE,
    ),
    (
        "an oversize batch",
        [],
        lambda w: w.tx(
            ISSUER, "mint_batch", "diplomas", tuple((f"b{i}", "pku", 1, META, "") for i in range(101))
        ),
        ErrorCode.TOO_LARGE,
    ),
    (
        "an unknown kind",
        [],
        lambda w: w.tx(ISSUER, "create_collection", "c2", "C", "C", "fungible", b""),
        ErrorCode.BAD_ARGUMENTS,
    ),
    (
        "a zero amount",
        [],
        lambda w: w.tx("pku", "transfer", "tickets", "t1", "pku", "fudan", 0),
        ErrorCode.BAD_ARGUMENTS,
    ),
    (
        "a URI set twice",
        [],
        lambda w: w.tx(ISSUER, "set_uri", "tickets", "t1", "https://example.org/other"),
        ErrorCode.URI_ALREADY_SET,
    ),
    (
        "unfreeze of a holding not frozen",
        [],
        lambda w: w.tx(ISSUER, "unfreeze", "diplomas", "d1", "pku"),
        ErrorCode.NOT_FROZEN,
    ),
    (
        "unpause of a running collection",
        [],
        lambda w: w.tx(ISSUER, "unpause", "diplomas"),
        ErrorCode.NOT_PAUSED,
    ),
    (
        "more than one unit of a unique asset",
        [],
        lambda w: w.tx(ISSUER, "mint", "diplomas", "d2", "pku", 2, META, ""),
        ErrorCode.WRONG_ASSET_KIND,
    ),
    (
        "approve one editioned asset",
        [],
        lambda w: w.tx("pku", "approve", "tickets", "t1", "fudan"),
        ErrorCode.WRONG_ASSET_KIND,
    ),
    (
        "a zone freezes another zone's entity",
        [],
        lambda w: w.zone("shanghai", "zone_freeze", "diplomas", "d1", "pku"),
        ErrorCode.WRONG_ZONE,
    ),
    (
        "an entity signs a zone freeze",
        [],
        lambda w: w.tx(ISSUER, "zone_freeze", "diplomas", "d1", "pku"),
        ErrorCode.WRONG_SIGNER_KIND,
    ),
]


@pytest.mark.parametrize(("name", "setups", "build", "expected"), REFUSALS, ids=[row[0] for row in REFUSALS])
def test_refusals_have_stable_codes_and_leave_no_write(
    world: World,
    name: str,
    setups: list[Setup],
    build: Callable[[World], types.Transaction],
    expected: ErrorCode,
) -> None:
    for setup in setups:
        world.run_ok(*setup(world))
    before = dict(world.chain.state.values)
    tx = build(world)
    result = world.chain.execute(tx)
    (receipt,) = result.receipts
    assert (ErrorCode(receipt.code), receipt.events) == (expected, ()), receipt.message
    # A failed transaction writes nothing; the state stays as it was.
    assert result.write_set == {}
    assert world.chain.state.values == before


def test_every_assets_code_has_a_refusal_row() -> None:
    covered = {row[3] for row in REFUSALS}
    own = {code for code in ErrorCode if 60 <= code < 80}
    assert own <= covered, sorted(code.label for code in own - covered)


def test_argument_refusals_also_refuse_admission(world: World) -> None:
    tx = world.tx(ISSUER, "mint", "diplomas", "d2", "pku", 1, b"short", "")
    assert world.chain.check(tx)[0] == ErrorCode.BAD_METADATA_HASH


def test_every_event_is_listed_with_its_attributes(world: World) -> None:
    world.run_ok(world.tx("pku", "approve", "diplomas", "d1", "fudan"))
    world.run_ok(world.tx("pku", "approve_all", "tickets", "fudan", True))
    world.run_ok(world.tx(ISSUER, "freeze", "diplomas", "d1", "pku"), world.tx(ISSUER, "pause", "tickets"))
    world.run_ok(
        world.tx(ISSUER, "unfreeze", "diplomas", "d1", "pku"), world.tx(ISSUER, "unpause", "tickets")
    )
    world.run_ok(world.tx("pku", "transfer", "diplomas", "d1", "pku", "fudan", 1))
    world.run_ok(
        world.tx("pku", "burn", "tickets", "t1", 1), world.tx(ISSUER, "set_uri", "diplomas", "d1", "u:1")
    )
    emitted = {
        name: attributes
        for receipt in world.receipts
        for name, attributes in receipt.events
        if name.startswith("assets.")
    }
    assert set(emitted) == set(assets.EVENTS)
    for name, attributes in emitted.items():
        assert len(attributes) == len(assets.EVENTS[name]), name
    assert emitted["assets.transferred"] == ("diplomas/d1", "pku", "fudan", 1)


def test_actions_are_registered_with_the_executor() -> None:
    from chainnode.app.execution import DEFAULT_ACTIONS

    assert set(assets.ACTIONS) <= set(DEFAULT_ACTIONS)
