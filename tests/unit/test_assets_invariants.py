"""Random sequences of asset actions (hypothesis) keep the module's books consistent, whatever
succeeds or fails: every holding sums to its asset's units, the collections' statistics match
their assets, the holder index matches the holdings, a unique asset has exactly its owner as
holder, frozen holdings are counted, and provenance has exactly `history` entries."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings, target
from hypothesis import strategies as st

from chainnode.app import asset_state
from chainnode.core import types
from tests.governance_harness import Network
from tests.unit.test_assets import ISSUER, META, World

HOLDERS = ("pku", "fudan", "hainan-university")
TOKENS = ("d1", "d2", "t1", "t2")


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Network:
    return Network.create(tmp_path_factory.mktemp("assets-invariants"))


def _collection_of(token: str) -> str:
    return "diplomas" if token.startswith("d") else "tickets"


TRANSFERS = st.tuples(
    st.just("transfer"),
    st.sampled_from(TOKENS),
    st.sampled_from(HOLDERS),  # from
    st.sampled_from(HOLDERS),  # to
    st.integers(1, 3),
    st.sampled_from([None, *HOLDERS]),  # the signer: the holder itself, or maybe not
)
ACTIONS = st.one_of(
    TRANSFERS,
    st.tuples(st.just("mint"), st.sampled_from(TOKENS), st.sampled_from(HOLDERS), st.integers(1, 3)),
    st.tuples(st.just("burn"), st.sampled_from(TOKENS), st.sampled_from(HOLDERS), st.integers(1, 3)),
    st.tuples(st.just("freeze"), st.sampled_from(TOKENS), st.sampled_from(HOLDERS), st.booleans()),
    st.tuples(st.just("approve_all"), st.sampled_from(HOLDERS), st.sampled_from(HOLDERS), st.booleans()),
    st.tuples(
        st.just("approve"), st.sampled_from(TOKENS), st.sampled_from(HOLDERS), st.sampled_from(HOLDERS)
    ),
    st.tuples(st.just("pause"), st.booleans()),
)


def _build(world: World, step: tuple[object, ...]) -> types.Transaction:
    kind = step[0]
    if kind == "mint":
        _, token, owner, amount = step
        return world.tx(ISSUER, "mint", _collection_of(str(token)), token, owner, amount, META, "")
    if kind == "transfer":
        _, token, source, target, amount, signer = step
        return world.tx(
            str(signer or source), "transfer", _collection_of(str(token)), token, source, target, amount
        )
    if kind == "burn":
        _, token, holder, amount = step
        return world.tx(str(holder), "burn", _collection_of(str(token)), token, amount)
    if kind == "freeze":
        _, token, holder, frozen = step
        action = "freeze" if frozen else "unfreeze"
        return world.tx(ISSUER, action, _collection_of(str(token)), token, holder)
    if kind == "approve_all":
        _, owner, operator, approved = step
        return world.tx(str(owner), "approve_all", "tickets", operator, approved)
    if kind == "approve":
        _, token, owner, spender = step
        return world.tx(str(owner), "approve", _collection_of(str(token)), token, spender)
    _, paused = step
    return world.tx(ISSUER, "pause" if paused else "unpause", "tickets")


def check_books(world: World) -> None:
    state = world.chain.state
    values = state.values
    holdings: Counter[tuple[str, str]] = Counter()
    for key, value in values.items():
        if key.startswith(b"ast/b/"):
            collection_id, token_id, holder = key[6:].decode().split("\x00")
            amount = int.from_bytes(value, "big")
            assert amount > 0
            holdings[(collection_id, token_id)] += amount
            assert asset_state.compute_owned_key(holder, collection_id, token_id) in values
    owned = [key for key in values if key.startswith(b"ast/o/")]
    assert len(owned) == sum(1 for key in values if key.startswith(b"ast/b/"))
    frozen: Counter[str] = Counter()
    for key in values:
        if key.startswith(b"ast/f/"):
            collection_id, token_id, holder = key[6:].decode().split("\x00")
            frozen[collection_id] += 1
            assert asset_state.get_balance(state, collection_id, token_id, holder) > 0
    for collection_id in ("diplomas", "tickets"):
        collection = world.collection(collection_id)
        found = asset_state.list_collection_assets(state, collection, after=0, limit=1000)
        assert len(found) == collection.tokens
        assert sum(asset.units for asset in found) == collection.units
        assert sum(asset.is_burned for asset in found) == collection.tokens_burned
        assert collection.frozen == frozen[collection_id]
        for asset in found:
            assert holdings[(collection_id, asset.token_id)] == asset.units
            entries = asset_state.list_provenance(state, asset, after=0, limit=10_000)
            assert [entry.index for entry in entries] == list(range(1, asset.history + 1))
            if collection.kind == asset_state.KIND_UNIQUE and not asset.is_burned:
                assert asset_state.get_balance(state, collection_id, asset.token_id, asset.owner) == 1


def _draw_transfer(world: World, data: st.DataObject) -> tuple[object, ...]:
    """A transfer that mostly could succeed: from a current holder, at most what it holds."""
    token = data.draw(st.sampled_from(TOKENS))
    collection_id = _collection_of(token)
    held = {h: asset_state.get_balance(world.chain.state, collection_id, token, h) for h in HOLDERS}
    holders = [h for h, amount in held.items() if amount > 0] or list(HOLDERS)
    source = data.draw(st.sampled_from(holders))
    amount = data.draw(st.integers(1, max(1, held[source])))
    target = data.draw(st.sampled_from(HOLDERS))
    signer = data.draw(st.sampled_from([None, None, None, *HOLDERS]))
    return ("transfer", token, source, target, amount, signer)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_random_actions_keep_the_books(net: Network, data: st.DataObject) -> None:
    world = World(net)
    succeeded = 0
    for _ in range(data.draw(st.integers(1, 30), label="steps")):
        step = _draw_transfer(world, data) if data.draw(st.booleans()) else data.draw(ACTIONS)
        (receipt,) = world.chain.run(_build(world, step))
        succeeded += receipt.ok
        check_books(world)
    target(float(succeeded), label="successful actions")  # steer toward runs where much succeeds
