"""The client SDK for digital assets: build, sign and submit each action of the `assets` module,
and read its queries.

Theory of operation: `Assets` wraps a `chainnode.sdk.client.Client` (every request goes through
`Client.send`) and an optional signer (an entity's `Identity`, or a zone authority's
`AuthoritySigner` for the zone freezes).  Each action method signs one transaction valid for
`valid_for_blocks` blocks past the node's height, submits it and returns a `Submitted` (the tx
hash and the asset ids it names); with `wait=True` it waits for the commit and raises
`ClientError` with the receipt's stable code (`not_owner`, `asset_frozen`, ...) when the
transaction failed.  `build_asset_transaction` is the pure builder underneath, for callers
that sign offline or batch their own submissions.

The read methods answer the API's JSON (`chainnode.api.assets`); `None` for an unknown
collection or asset.  Lists come a page at a time (`limit`, `cursor` from the previous page's
`next_cursor`); `iter_provenance` walks every page of an asset's history.

    assets = Assets(Client(url), Identity.load(Path("devnet/entities/cert-office")))
    assets.create_collection("diplomas", "University Diplomas", "DIP", wait=True)
    minted = assets.mint("diplomas", "2026-0001", owner="pku", metadata_hash=digest, wait=True)
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from chainnode.core import types
from chainnode.sdk.client import AuthoritySigner, Client, Identity, build_transaction
from chainnode.sdk.errors import ClientError

MODULE = "assets"
VALID_FOR_BLOCKS = 1000


def build_asset_transaction(
    signer: Identity | AuthoritySigner,
    action: str,
    args: Sequence[Any],
    *,
    chain_id: str,
    valid_until: int,
    nonce: int | None = None,
) -> types.Transaction:
    """A signed `assets.<action>(*args)` transaction (the nonce is random unless given)."""
    return build_transaction(
        signer,
        chain_id=chain_id,
        module=MODULE,
        action=action,
        args=tuple(args),
        valid_until=valid_until,
        nonce=nonce,
    )


@dataclass(frozen=True, slots=True)
class Submitted:
    """A submitted asset transaction."""

    tx_hash: str  # hex
    action: str
    asset_ids: tuple[str, ...]  # `<collection>/<token>` of the assets it names (or the collection id)
    status: dict[str, Any] | None  # the committed status when waited for, else None


def _quote(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def _page_query(limit: int | None, cursor: str | None) -> str:
    query = {}
    if limit is not None:
        query["limit"] = str(int(limit))
    if cursor:
        query["cursor"] = cursor
    return ("?" + urllib.parse.urlencode(query)) if query else ""


class Assets:
    """The `assets` module over one node's API, signing as `signer` (optional for reads)."""

    def __init__(
        self,
        client: Client,
        signer: Identity | AuthoritySigner | None = None,
        *,
        valid_for_blocks: int = VALID_FOR_BLOCKS,
        timeout_s: float = 30.0,
    ) -> None:
        self.client = client
        self.signer = signer
        self.valid_for_blocks = valid_for_blocks
        self.timeout_s = timeout_s

    # ------------------------------------------------------------ submitting

    def submit(
        self, action: str, args: Sequence[Any], *, asset_ids: Sequence[str] = (), wait: bool = False
    ) -> Submitted:
        """Sign `assets.<action>(*args)`, submit it, and with `wait` require it to succeed."""
        if self.signer is None:
            raise ClientError("a signer is needed to submit asset transactions", code="no_signer")
        status = self.client.get_status()
        tx = build_asset_transaction(
            self.signer,
            action,
            args,
            chain_id=str(status["chain_id"]),
            valid_until=int(status["height"]) + self.valid_for_blocks,
        )
        tx_hash = self.client.submit(tx)
        committed = None
        if wait:
            committed = self.client.wait_for_commit(tx_hash, timeout_s=self.timeout_s)
            receipt = committed.get("receipt") or {}
            if receipt.get("code", 0) != 0:
                raise ClientError(
                    f"assets.{action} ({tx_hash}) failed: {receipt.get('message', '')}",
                    code=str(receipt.get("code_name", "failed")),
                )
        return Submitted(tx_hash, action, tuple(asset_ids), committed)

    def create_collection(
        self,
        collection_id: str,
        name: str,
        symbol: str,
        *,
        kind: str = "unique",
        schema_hash: bytes = b"",
        wait: bool = False,
    ) -> Submitted:
        args = (collection_id, name, symbol, kind, schema_hash)
        return self.submit("create_collection", args, asset_ids=(collection_id,), wait=wait)

    def mint(
        self,
        collection_id: str,
        token_id: str,
        *,
        owner: str,
        metadata_hash: bytes,
        uri: str = "",
        amount: int = 1,
        wait: bool = False,
    ) -> Submitted:
        args = (collection_id, token_id, owner, amount, metadata_hash, uri)
        return self.submit("mint", args, asset_ids=(f"{collection_id}/{token_id}",), wait=wait)

    def mint_batch(
        self, collection_id: str, items: Sequence[tuple[str, str, int, bytes, str]], *, wait: bool = False
    ) -> Submitted:
        """Items are (token, owner, amount, metadata_hash, uri); all or none are minted."""
        ids = tuple(f"{collection_id}/{item[0]}" for item in items)
        return self.submit(
            "mint_batch", (collection_id, tuple(tuple(item) for item in items)), asset_ids=ids, wait=wait
        )

    def set_uri(self, collection_id: str, token_id: str, uri: str, *, wait: bool = False) -> Submitted:
        return self.submit(
            "set_uri", (collection_id, token_id, uri), asset_ids=(f"{collection_id}/{token_id}",), wait=wait
        )

    def _signer_id(self) -> str:
        if isinstance(self.signer, Identity):
            return self.signer.entity_id
        raise ClientError("this action is signed by an entity", code="no_signer")

    def transfer(
        self,
        collection_id: str,
        token_id: str,
        to: str,
        *,
        amount: int = 1,
        from_holder: str | None = None,
        wait: bool = False,
    ) -> Submitted:
        """Move `amount` units from `from_holder` (default: the signer) to `to`."""
        source = from_holder or self._signer_id()
        args = (collection_id, token_id, source, to, amount)
        return self.submit("transfer", args, asset_ids=(f"{collection_id}/{token_id}",), wait=wait)

    def transfer_batch(
        self, collection_id: str, items: Sequence[tuple[str, str, str, int]], *, wait: bool = False
    ) -> Submitted:
        """Items are (token, from, to, amount); all or none move."""
        ids = tuple(f"{collection_id}/{item[0]}" for item in items)
        args = (collection_id, tuple(tuple(item) for item in items))
        return self.submit("transfer_batch", args, asset_ids=ids, wait=wait)

    def approve(self, collection_id: str, token_id: str, spender: str, *, wait: bool = False) -> Submitted:
        """Approve `spender` to transfer one unique asset ("" clears the approval)."""
        args = (collection_id, token_id, spender)
        return self.submit("approve", args, asset_ids=(f"{collection_id}/{token_id}",), wait=wait)

    def approve_all(
        self, collection_id: str, operator: str, approved: bool = True, *, wait: bool = False
    ) -> Submitted:
        return self.submit(
            "approve_all", (collection_id, operator, approved), asset_ids=(collection_id,), wait=wait
        )

    def burn(self, collection_id: str, token_id: str, *, amount: int = 1, wait: bool = False) -> Submitted:
        return self.submit(
            "burn", (collection_id, token_id, amount), asset_ids=(f"{collection_id}/{token_id}",), wait=wait
        )

    def _freeze(self, action: str, collection_id: str, token_id: str, holder: str, wait: bool) -> Submitted:
        if isinstance(self.signer, AuthoritySigner):
            action = "zone_" + action  # a zone authority freezes its own entities' holdings
        args = (collection_id, token_id, holder)
        return self.submit(action, args, asset_ids=(f"{collection_id}/{token_id}",), wait=wait)

    def freeze(self, collection_id: str, token_id: str, holder: str, *, wait: bool = False) -> Submitted:
        """Freeze `holder`'s units: as the issuer, or as the holder's zone authority."""
        return self._freeze("freeze", collection_id, token_id, holder, wait)

    def unfreeze(self, collection_id: str, token_id: str, holder: str, *, wait: bool = False) -> Submitted:
        return self._freeze("unfreeze", collection_id, token_id, holder, wait)

    def pause(self, collection_id: str, *, wait: bool = False) -> Submitted:
        return self.submit("pause", (collection_id,), asset_ids=(collection_id,), wait=wait)

    def unpause(self, collection_id: str, *, wait: bool = False) -> Submitted:
        return self.submit("unpause", (collection_id,), asset_ids=(collection_id,), wait=wait)

    # ------------------------------------------------------------ reading

    def _get(self, path: str) -> dict[str, Any] | None:
        try:
            value = self.client.send("GET", path).value
        except ClientError as error:
            if error.status == 404 and error.code == "not_found":
                return None
            raise
        if not isinstance(value, dict):
            raise ClientError(f"GET {path}: expected a JSON object", code="bad_response")
        return value

    def _get_page(self, path: str) -> dict[str, Any]:
        value = self._get(path)
        if value is None:
            raise ClientError(f"GET {path}: not found", code="not_found", status=404)
        return value

    def get_collection(self, collection_id: str) -> dict[str, Any] | None:
        return self._get(f"/v1/collections/{_quote(collection_id)}")

    def list_collection_assets(
        self, collection_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> dict[str, Any]:
        """One page: {"assets": [...], "next_cursor"}; ClientError `not_found` for no such collection."""
        return self._get_page(f"/v1/collections/{_quote(collection_id)}/assets" + _page_query(limit, cursor))

    def get_asset(
        self,
        collection_id: str,
        token_id: str,
        *,
        holders_limit: int | None = None,
        holders_cursor: str | None = None,
    ) -> dict[str, Any] | None:
        """The asset with a page of its holders ("holders", "next_cursor": the last holder id
        when more follow); None for no such asset."""
        path = f"/v1/collections/{_quote(collection_id)}/assets/{_quote(token_id)}"
        return self._get(path + _page_query(holders_limit, holders_cursor))

    def iter_holders(
        self, collection_id: str, token_id: str, *, limit: int = 100
    ) -> Iterator[dict[str, Any]]:
        """Every holder of the asset in holder id order, page after page."""
        cursor: str | None = None
        while True:
            asset = self.get_asset(collection_id, token_id, holders_limit=limit, holders_cursor=cursor)
            if asset is None:
                raise ClientError(f"no asset {collection_id}/{token_id}", code="not_found", status=404)
            yield from asset["holders"]
            cursor = asset.get("next_cursor")
            if not cursor:
                return

    def get_provenance(
        self, collection_id: str, token_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> dict[str, Any]:
        """One page of the asset's history: {"entries": [...], "next_cursor"}."""
        path = f"/v1/collections/{_quote(collection_id)}/assets/{_quote(token_id)}/provenance"
        return self._get_page(path + _page_query(limit, cursor))

    def iter_provenance(
        self, collection_id: str, token_id: str, *, limit: int = 100
    ) -> Iterator[dict[str, Any]]:
        """Every entry of the asset's history, oldest first, page after page."""
        cursor: str | None = None
        while True:
            page = self.get_provenance(collection_id, token_id, limit=limit, cursor=cursor)
            yield from page["entries"]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def list_owned(
        self, entity_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> dict[str, Any]:
        """One page of what `entity_id` holds: {"assets": [...], "next_cursor"}."""
        return self._get_page(f"/v1/entities/{_quote(entity_id)}/assets" + _page_query(limit, cursor))
