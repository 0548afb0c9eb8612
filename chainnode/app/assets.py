"""The `assets` module: non-currency digital assets after the national service network's DDC
(distributed digital certificate) specification.

Theory of operation
-------------------
An entity with the `issuer` role creates a **collection** (`create_collection`): an id, a name,
a symbol, a kind and optionally the SHA-256 of the metadata schema its assets follow.  A
`unique` collection (721-like) holds assets of exactly one unit with one owner; an `editioned`
collection (1155-like) holds token ids each minted with an amount that may be split among
holders.  Only the collection's issuer mints into it (`mint`, `mint_batch`), each asset with a
new token id (ids are never reused, not even after a burn), an owner, the SHA-256 of its
metadata document and a URI that may be empty at mint and set once later (`set_uri`).

Holders move their units with `transfer` / `transfer_batch (from, to, amount)`.  The signer must
be the holder `from`, an operator `from` approved for the whole collection (`approve_all`), or,
for a unique asset, the one entity its owner approved for it (`approve`; cleared by every
transfer).  `burn` destroys the signer's own units; an asset with no units left reads as burned.
There is no currency and no fee anywhere: every action costs its signer only a transaction.

**Ownership is always an entity of this chain**: a mint or transfer to an id that is not a
registered entity, or whose certificate is revoked or expired at the block time, or whose zone
is suspended or removed, fails (`recipient_not_active`, or `unknown_entity` for no such entity).

**Freezing** is per holding (asset, holder): the issuer (`freeze`) or the zone authority of the
holder (`zone_freeze`, signed as `zone:<id>`) freezes it; a frozen holding neither sends,
receives, burns nor approves.  A freeze is lifted by whoever set it (`unfreeze` by the issuer,
`zone_unfreeze` by the zone), so an issuer cannot undo a regulator's freeze.  **Pausing** a
collection (`pause` / `unpause`, its issuer only) stops every mint, transfer, approval, burn and
URI change in it; freezes may still be set and lifted.

Every action appends a `ProvenanceEntry` (action, signer, source, target, amount, height, tx
hash) to each asset it touches, so an auditor reads an asset's full history with point reads,
and emits typed events, each naming the asset id (`<collection>/<token>`) or the collection
first and the parties after it (see `EVENTS`).  Refusals are failed
receipts with stable codes (`types.ErrorCode`, 60-74 plus the shared `bad_arguments`,
`too_large`, `unknown_entity` and `wrong_zone`); a failed transaction leaves no write behind, a
batch fails as a whole.  Argument shapes and sizes are checked before state is read
(`chainnode.app.asset_args`), so mempool admission refuses them too.

Actions and their arguments (all signed by entities except `zone_freeze` / `zone_unfreeze`):

| action | role | args |
| --- | --- | --- |
| create_collection | issuer | (collection, name, symbol, kind, schema_hash: b"" or 32 bytes) |
| mint | issuer | (collection, token, owner, amount, metadata_hash, uri) |
| mint_batch | issuer | (collection, ((token, owner, amount, metadata_hash, uri), ...)) |
| set_uri | issuer | (collection, token, uri) |
| transfer | submitter | (collection, token, from, to, amount) |
| transfer_batch | submitter | (collection, ((token, from, to, amount), ...)) |
| approve | submitter | (collection, token, spender or "") |
| approve_all | submitter | (collection, operator, approved: bool) |
| burn | submitter | (collection, token, amount) |
| freeze, unfreeze | issuer | (collection, token, holder) |
| zone_freeze, zone_unfreeze | (zone) | (collection, token, holder) |
| pause, unpause | issuer | (collection,) |

The state layout and the readers are in `chainnode.app.asset_state`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from chainnode.app import asset_state, governance
from chainnode.app.asset_args import (
    check_approve_all_args,
    check_approve_args,
    check_burn_args,
    check_create_collection_args,
    check_freeze_args,
    check_mint_args,
    check_mint_batch_args,
    check_pause_args,
    check_set_uri_args,
    check_transfer_args,
    check_transfer_batch_args,
)
from chainnode.app.asset_state import KIND_UNIQUE, Asset, Collection, ProvenanceEntry
from chainnode.app.state import Action, Event, ExecutionContext, Overlay, SignerKind, TransactionError
from chainnode.core import types
from chainnode.core.statuses import ZoneStatus

ErrorCode = types.ErrorCode
MODULE = "assets"

# Every event the module emits and its attributes, for subscribers (`chainnode.app.events`).
EVENTS: dict[str, tuple[str, ...]] = {
    "assets.collection_created": ("collection", "issuer", "kind"),
    "assets.minted": ("asset_id", "owner", "amount"),
    "assets.uri_set": ("asset_id", "uri"),
    "assets.transferred": ("asset_id", "from", "to", "amount"),
    "assets.approved": ("asset_id", "owner", "spender"),
    "assets.approved_all": ("collection", "owner", "operator", "approved"),
    "assets.burned": ("asset_id", "holder", "amount"),
    "assets.frozen": ("asset_id", "holder", "by"),
    "assets.unfrozen": ("asset_id", "holder", "by"),
    "assets.paused": ("collection", "issuer"),
    "assets.unpaused": ("collection", "issuer"),
}


def _fail(code: ErrorCode, message: str) -> TransactionError:
    return TransactionError(code, message)


# ---------------------------------------------------------------- shared rules


def _require_collection(overlay: Overlay, collection_id: str) -> Collection:
    collection = asset_state.get_collection(overlay, collection_id)
    if collection is None:
        raise _fail(ErrorCode.UNKNOWN_COLLECTION, f"there is no collection {collection_id!r}")
    return collection


def _require_issuer(collection: Collection, signer: str) -> None:
    if collection.issuer != signer:
        raise _fail(
            ErrorCode.NOT_ISSUER,
            f"only {collection.issuer}, the issuer of {collection.collection_id}, may do this",
        )


def _require_not_paused(collection: Collection) -> None:
    if collection.paused:
        raise _fail(ErrorCode.COLLECTION_PAUSED, f"collection {collection.collection_id} is paused")


def _require_asset(overlay: Overlay, collection_id: str, token_id: str) -> Asset:
    asset = asset_state.get_asset(overlay, collection_id, token_id)
    if asset is None:
        asset_id = asset_state.compute_asset_id(collection_id, token_id)
        raise _fail(ErrorCode.UNKNOWN_ASSET, f"there is no asset {asset_id}")
    if asset.is_burned:
        raise _fail(ErrorCode.ASSET_BURNED, f"asset {asset.asset_id} is burned")
    return asset


def _require_not_frozen(overlay: Overlay, asset: Asset, holder: str) -> None:
    freeze = asset_state.get_freeze(overlay, asset.collection_id, asset.token_id, holder)
    if freeze is not None:
        raise _fail(
            ErrorCode.ASSET_FROZEN,
            f"{holder}'s holding of {asset.asset_id} is frozen by {freeze.frozen_by} "
            f"since height {freeze.height}",
        )


def _require_active_recipient(overlay: Overlay, entity_id: str, context: ExecutionContext) -> None:
    """A recipient is a registered entity with a valid, unrevoked certificate in an active zone."""
    entity = governance.get_entity_record(overlay, entity_id)
    if entity is None:
        raise _fail(ErrorCode.UNKNOWN_ENTITY, f"{entity_id!r} is not a registered entity")
    problem = None
    if entity.is_revoked_at(context.height):
        problem = "its certificate is revoked"
    elif not entity.not_before_ms <= context.timestamp_ms <= entity.not_after_ms:
        problem = "its certificate is not valid at the block time"
    else:
        zone = governance.get_zone_record(overlay, entity.zone)
        if zone is not None and zone.status != ZoneStatus.ACTIVE:
            problem = f"its zone {entity.zone!r} is {zone.status}"
    if problem is not None:
        raise _fail(ErrorCode.RECIPIENT_NOT_ACTIVE, f"{entity_id} cannot hold assets: {problem}")


def _record(
    overlay: Overlay,
    asset: Asset,
    action: str,
    context: ExecutionContext,
    tx: types.Transaction,
    *,
    source: str = "",
    target: str = "",
    amount: int = 0,
) -> Asset:
    """Append one provenance entry; the asset with its history count advanced (not yet written)."""
    index = asset.history + 1
    entry = ProvenanceEntry(index, action, tx.signer, source, target, amount, context.height, tx.hash)
    overlay.put(asset_state.compute_history_key(asset.collection_id, asset.token_id, index), entry.encode())
    return replace(asset, history=index)


def _put_asset(overlay: Overlay, asset: Asset) -> None:
    overlay.put(asset_state.compute_asset_key(asset.collection_id, asset.token_id), asset.encode())


def _put_collection(overlay: Overlay, collection: Collection) -> None:
    overlay.put(asset_state.compute_collection_key(collection.collection_id), collection.encode())


# ---------------------------------------------------------------- collections


def apply_create_collection(
    overlay: Overlay, tx: types.Transaction, context: ExecutionContext
) -> Sequence[Event]:
    collection_id, name, symbol, kind, schema_hash = tx.args
    if asset_state.get_collection(overlay, collection_id) is not None:
        raise _fail(ErrorCode.DUPLICATE_ID, f"collection {collection_id!r} already exists")
    collection = Collection(
        collection_id, tx.signer, name, symbol, kind, schema_hash, context.height, False, 0, 0, 0, 0, 0
    )
    _put_collection(overlay, collection)
    return [("assets.collection_created", (collection_id, tx.signer, kind))]


def _apply_pause(overlay: Overlay, tx: types.Transaction, *, paused: bool) -> Sequence[Event]:
    collection = _require_collection(overlay, tx.args[0])
    _require_issuer(collection, tx.signer)
    if paused and collection.paused:
        raise _fail(ErrorCode.COLLECTION_PAUSED, f"collection {collection.collection_id} is already paused")
    if not paused and not collection.paused:
        raise _fail(ErrorCode.NOT_PAUSED, f"collection {collection.collection_id} is not paused")
    _put_collection(overlay, replace(collection, paused=paused))
    return [("assets.paused" if paused else "assets.unpaused", (collection.collection_id, tx.signer))]


def apply_pause(overlay: Overlay, tx: types.Transaction, context: ExecutionContext) -> Sequence[Event]:
    return _apply_pause(overlay, tx, paused=True)


def apply_unpause(overlay: Overlay, tx: types.Transaction, context: ExecutionContext) -> Sequence[Event]:
    return _apply_pause(overlay, tx, paused=False)


# ---------------------------------------------------------------- minting


def _mint_one(
    overlay: Overlay,
    collection: Collection,
    item: tuple[Any, ...],
    context: ExecutionContext,
    tx: types.Transaction,
) -> tuple[Collection, Event]:
    token_id, owner, amount, metadata_hash, uri = item
    collection_id = collection.collection_id
    if collection.kind == KIND_UNIQUE and amount != 1:
        raise _fail(ErrorCode.WRONG_ASSET_KIND, f"{collection_id} is unique: mint exactly 1, not {amount}")
    if asset_state.get_asset(overlay, collection_id, token_id) is not None:
        asset_id = asset_state.compute_asset_id(collection_id, token_id)
        raise _fail(ErrorCode.DUPLICATE_ID, f"asset {asset_id} already exists (ids are never reused)")
    _require_active_recipient(overlay, owner, context)
    seq = collection.tokens + 1
    asset = Asset(
        collection_id,
        token_id,
        seq,
        metadata_hash,
        uri,
        context.height,
        amount,
        owner if collection.kind == KIND_UNIQUE else "",
        "",
        0,
    )
    asset = _record(overlay, asset, "mint", context, tx, target=owner, amount=amount)
    _put_asset(overlay, asset)
    overlay.put(asset_state.compute_sequence_key(collection_id, seq), token_id.encode())
    asset_state.put_balance(overlay, collection_id, token_id, owner, amount)
    grown = replace(collection, tokens=seq, units=collection.units + amount)
    return grown, ("assets.minted", (asset.asset_id, owner, amount))


def _apply_mint_items(
    overlay: Overlay, tx: types.Transaction, context: ExecutionContext, items: Sequence[tuple[Any, ...]]
) -> Sequence[Event]:
    collection = _require_collection(overlay, tx.args[0])
    _require_issuer(collection, tx.signer)
    _require_not_paused(collection)
    events = []
    for item in items:
        collection, event = _mint_one(overlay, collection, item, context, tx)
        events.append(event)
    _put_collection(overlay, collection)
    return events


def apply_mint(overlay: Overlay, tx: types.Transaction, context: ExecutionContext) -> Sequence[Event]:
    return _apply_mint_items(overlay, tx, context, [tx.args[1:]])


def apply_mint_batch(overlay: Overlay, tx: types.Transaction, context: ExecutionContext) -> Sequence[Event]:
    return _apply_mint_items(overlay, tx, context, tx.args[1])


def apply_set_uri(overlay: Overlay, tx: types.Transaction, context: ExecutionContext) -> Sequence[Event]:
    collection_id, token_id, uri = tx.args
    collection = _require_collection(overlay, collection_id)
    _require_issuer(collection, tx.signer)
    _require_not_paused(collection)
    asset = _require_asset(overlay, collection_id, token_id)
    if asset.uri:
        raise _fail(ErrorCode.URI_ALREADY_SET, f"the URI of {asset.asset_id} is set and never changes")
    asset = _record(overlay, replace(asset, uri=uri), "set_uri", context, tx)
    _put_asset(overlay, asset)
    return [("assets.uri_set", (asset.asset_id, uri))]


# ---------------------------------------------------------------- transfers


def _require_may_move(overlay: Overlay, asset: Asset, holder: str, signer: str) -> None:
    """The signer may move `holder`'s units: it is the holder, an operator, or approved."""
    if signer == holder:
        return
    if asset_state.is_operator(overlay, asset.collection_id, holder, signer):
        return
    if asset.approved == signer and asset.owner == holder:
        return
    raise _fail(ErrorCode.NOT_APPROVED, f"{signer} may not move {holder}'s units of {asset.asset_id}")


def _transfer_one(
    overlay: Overlay,
    collection: Collection,
    item: tuple[Any, ...],
    context: ExecutionContext,
    tx: types.Transaction,
) -> Event:
    token_id, source, target, amount = item
    collection_id = collection.collection_id
    asset = _require_asset(overlay, collection_id, token_id)
    if collection.kind == KIND_UNIQUE and amount != 1:
        raise _fail(ErrorCode.WRONG_ASSET_KIND, f"{collection_id} is unique: transfer exactly 1")
    held = asset_state.get_balance(overlay, collection_id, token_id, source)
    if held < amount:
        raise _fail(ErrorCode.NOT_OWNER, f"{source} holds {held} of {asset.asset_id}, not {amount}")
    _require_may_move(overlay, asset, source, tx.signer)
    _require_not_frozen(overlay, asset, source)
    _require_not_frozen(overlay, asset, target)
    _require_active_recipient(overlay, target, context)
    if source != target:
        asset_state.put_balance(overlay, collection_id, token_id, source, held - amount)
        received = asset_state.get_balance(overlay, collection_id, token_id, target)
        asset_state.put_balance(overlay, collection_id, token_id, target, received + amount)
    if collection.kind == KIND_UNIQUE:
        asset = replace(asset, owner=target, approved="")
    asset = _record(overlay, asset, "transfer", context, tx, source=source, target=target, amount=amount)
    _put_asset(overlay, asset)
    return ("assets.transferred", (asset.asset_id, source, target, amount))


def _apply_transfer_items(
    overlay: Overlay, tx: types.Transaction, context: ExecutionContext, items: Sequence[tuple[Any, ...]]
) -> Sequence[Event]:
    collection = _require_collection(overlay, tx.args[0])
    _require_not_paused(collection)
    events = [_transfer_one(overlay, collection, item, context, tx) for item in items]
    _put_collection(overlay, replace(collection, transfers=collection.transfers + len(items)))
    return events


def apply_transfer(overlay: Overlay, tx: types.Transaction, context: ExecutionContext) -> Sequence[Event]:
    return _apply_transfer_items(overlay, tx, context, [tx.args[1:]])


def apply_transfer_batch(
    overlay: Overlay, tx: types.Transaction, context: ExecutionContext
) -> Sequence[Event]:
    return _apply_transfer_items(overlay, tx, context, tx.args[1])


def apply_approve(overlay: Overlay, tx: types.Transaction, context: ExecutionContext) -> Sequence[Event]:
    collection_id, token_id, spender = tx.args
    collection = _require_collection(overlay, collection_id)
    _require_not_paused(collection)
    if collection.kind != KIND_UNIQUE:
        raise _fail(ErrorCode.WRONG_ASSET_KIND, f"{collection_id} is editioned: use approve_all")
    asset = _require_asset(overlay, collection_id, token_id)
    if asset.owner != tx.signer:
        raise _fail(ErrorCode.NOT_OWNER, f"{asset.asset_id} belongs to {asset.owner}, not {tx.signer}")
    _require_not_frozen(overlay, asset, tx.signer)
    if spender:
        _require_active_recipient(overlay, spender, context)
    asset = _record(
        overlay, replace(asset, approved=spender), "approve", context, tx, source=tx.signer, target=spender
    )
    _put_asset(overlay, asset)
    return [("assets.approved", (asset.asset_id, tx.signer, spender))]


def apply_approve_all(overlay: Overlay, tx: types.Transaction, context: ExecutionContext) -> Sequence[Event]:
    collection_id, operator, approved = tx.args
    collection = _require_collection(overlay, collection_id)
    _require_not_paused(collection)
    if operator == tx.signer:
        raise _fail(ErrorCode.BAD_ARGUMENTS, "an entity is always its own operator")
    if approved:
        _require_active_recipient(overlay, operator, context)
    asset_state.set_operator(overlay, collection_id, tx.signer, operator, approved)
    return [("assets.approved_all", (collection_id, tx.signer, operator, approved))]


def apply_burn(overlay: Overlay, tx: types.Transaction, context: ExecutionContext) -> Sequence[Event]:
    collection_id, token_id, amount = tx.args
    collection = _require_collection(overlay, collection_id)
    _require_not_paused(collection)
    asset = _require_asset(overlay, collection_id, token_id)
    held = asset_state.get_balance(overlay, collection_id, token_id, tx.signer)
    if held < amount:
        raise _fail(ErrorCode.NOT_OWNER, f"{tx.signer} holds {held} of {asset.asset_id}, not {amount}")
    _require_not_frozen(overlay, asset, tx.signer)
    asset_state.put_balance(overlay, collection_id, token_id, tx.signer, held - amount)
    units = asset.units - amount
    asset = replace(asset, units=units)
    if units == 0:
        asset = replace(asset, owner="", approved="")
    asset = _record(overlay, asset, "burn", context, tx, source=tx.signer, amount=amount)
    _put_asset(overlay, asset)
    _put_collection(
        overlay,
        replace(
            collection,
            units=collection.units - amount,
            tokens_burned=collection.tokens_burned + (units == 0),
        ),
    )
    return [("assets.burned", (asset.asset_id, tx.signer, amount))]


# ---------------------------------------------------------------- freezing


def _apply_freeze(
    overlay: Overlay, tx: types.Transaction, context: ExecutionContext, *, frozen: bool
) -> Sequence[Event]:
    collection_id, token_id, holder = tx.args
    collection = _require_collection(overlay, collection_id)
    signer = context.signer
    if signer.kind == SignerKind.ZONE:
        entity = governance.get_entity_record(overlay, holder)
        if entity is None or entity.zone != signer.name:
            raise _fail(
                ErrorCode.WRONG_ZONE, f"zone {signer.name} may only freeze the holdings of its own entities"
            )
    else:
        _require_issuer(collection, tx.signer)
    asset = _require_asset(overlay, collection_id, token_id)
    if asset_state.get_balance(overlay, collection_id, token_id, holder) == 0:
        raise _fail(ErrorCode.NOT_OWNER, f"{holder} holds none of {asset.asset_id}")
    key = asset_state.compute_freeze_key(collection_id, token_id, holder)
    freeze = asset_state.get_freeze(overlay, collection_id, token_id, holder)
    if frozen:
        if freeze is not None:
            raise _fail(ErrorCode.ASSET_FROZEN, f"{holder}'s holding is already frozen by {freeze.frozen_by}")
        overlay.put(key, asset_state.Freeze(tx.signer, context.height).encode())
    else:
        if freeze is None:
            raise _fail(ErrorCode.NOT_FROZEN, f"{holder}'s holding of {asset.asset_id} is not frozen")
        if freeze.frozen_by != tx.signer:
            code = ErrorCode.WRONG_ZONE if signer.kind == SignerKind.ZONE else ErrorCode.NOT_ISSUER
            raise _fail(code, f"only {freeze.frozen_by}, who froze it, may unfreeze it")
        overlay.delete(key)
    action = "freeze" if frozen else "unfreeze"
    asset = _record(overlay, asset, action, context, tx, source=holder)
    _put_asset(overlay, asset)
    _put_collection(overlay, replace(collection, frozen=collection.frozen + (1 if frozen else -1)))
    name = "assets.frozen" if frozen else "assets.unfrozen"
    return [(name, (asset.asset_id, holder, tx.signer))]


def apply_freeze(overlay: Overlay, tx: types.Transaction, context: ExecutionContext) -> Sequence[Event]:
    return _apply_freeze(overlay, tx, context, frozen=True)


def apply_unfreeze(overlay: Overlay, tx: types.Transaction, context: ExecutionContext) -> Sequence[Event]:
    return _apply_freeze(overlay, tx, context, frozen=False)


ACTIONS: dict[tuple[str, str], Action] = {
    (MODULE, "create_collection"): Action("issuer", check_create_collection_args, apply_create_collection),
    (MODULE, "mint"): Action("issuer", check_mint_args, apply_mint),
    (MODULE, "mint_batch"): Action("issuer", check_mint_batch_args, apply_mint_batch),
    (MODULE, "set_uri"): Action("issuer", check_set_uri_args, apply_set_uri),
    (MODULE, "transfer"): Action("submitter", check_transfer_args, apply_transfer),
    (MODULE, "transfer_batch"): Action("submitter", check_transfer_batch_args, apply_transfer_batch),
    (MODULE, "approve"): Action("submitter", check_approve_args, apply_approve),
    (MODULE, "approve_all"): Action("submitter", check_approve_all_args, apply_approve_all),
    (MODULE, "burn"): Action("submitter", check_burn_args, apply_burn),
    (MODULE, "freeze"): Action("issuer", check_freeze_args, apply_freeze),
    (MODULE, "unfreeze"): Action("issuer", check_freeze_args, apply_unfreeze),
    (MODULE, "zone_freeze"): Action("", check_freeze_args, apply_freeze, SignerKind.ZONE),
    (MODULE, "zone_unfreeze"): Action("", check_freeze_args, apply_unfreeze, SignerKind.ZONE),
    (MODULE, "pause"): Action("issuer", check_pause_args, apply_pause),
    (MODULE, "unpause"): Action("issuer", check_pause_args, apply_unpause),
}
