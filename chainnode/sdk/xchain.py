"""The client SDK for cross-chain exchange: build, sign and submit `xchain.update_client`,
`xchain.import` and `xchain.send`, and read the module's queries.

Theory of operation: `Xchain` wraps a `chainnode.sdk.client.Client` of one chain's node and an
optional entity `Identity` (any entity with the `submitter` role may relay).  Each action method
signs one transaction valid for `valid_for_blocks` blocks past the node's height, submits it and
returns a `Submitted`; with `wait=True` it waits for the commit and raises `ClientError` with the
receipt's stable code (`client_behind`, `already_imported`, `out_of_order`, `bad_proof`, ...)
when the transaction failed.  The `build_*_transaction` functions are the pure builders
underneath, for relayers that sign and batch their own submissions.

Nothing a relayer carries is trusted: the destination verifies headers and proofs in execution.
`compute_update_steps` turns what a source node serves (`chainnode.sdk.light.get_light_headers`,
`get_validator_changes`) into the sparse steps of an update; `import_transaction` takes the
proof JSON of `Client.get_proof` on the source node as it comes.

    source, dest = Client("http://a:8080"), Client("http://b:8080")
    relay = Xchain(dest, Identity.load(Path("devnet/entities/pku")))
    proof = source.get_proof(tx_hash)
    relay.update_to("chain-a", source, proof["height"], wait=True)
    relay.import_transaction("chain-a", proof, wait=True)
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chainnode.app import xchain_state
from chainnode.core import types
from chainnode.light import ValidatorChangeProof
from chainnode.sdk.client import Client, Identity, build_transaction
from chainnode.sdk.errors import ClientError
from chainnode.sdk.light import PAGE_HEADERS, get_light_headers, get_validator_changes

MODULE = xchain_state.MODULE
VALID_FOR_BLOCKS = 1000
Step = tuple[bytes, bytes, bytes | None]  # (header, certificate, validator change proof or None)


def build_xchain_transaction(
    signer: Identity,
    action: str,
    args: Sequence[Any],
    *,
    chain_id: str,
    valid_until: int,
    nonce: int | None = None,
) -> types.Transaction:
    """A signed `xchain.<action>(*args)` transaction (the nonce is random unless given)."""
    return build_transaction(
        signer,
        chain_id=chain_id,
        module=MODULE,
        action=action,
        args=tuple(args),
        valid_until=valid_until,
        nonce=nonce,
    )


def build_update_client_transaction(
    signer: Identity,
    chain: str,
    steps: Sequence[Step],
    *,
    chain_id: str,
    valid_until: int,
    nonce: int | None = None,
) -> types.Transaction:
    """`xchain.update_client(chain, steps)` on the chain `chain_id`."""
    args = (chain, xchain_state.compute_steps_args(steps))
    return build_xchain_transaction(
        signer, "update_client", args, chain_id=chain_id, valid_until=valid_until, nonce=nonce
    )


def build_import_transaction(
    signer: Identity,
    source_chain: str,
    proof: Mapping[str, Any],
    *,
    chain_id: str,
    valid_until: int,
    nonce: int | None = None,
) -> types.Transaction:
    """`xchain.import(source_chain, proof)` on the chain `chain_id`, the proof as its node serves it."""
    try:
        proof_args = xchain_state.encode_proof_args(proof)
    except (ValueError, TypeError) as error:
        raise ClientError(f"not an inclusion proof: {error}", code="bad_proof") from error
    return build_xchain_transaction(
        signer, "import", (source_chain, proof_args), chain_id=chain_id, valid_until=valid_until, nonce=nonce
    )


def build_send_transaction(
    signer: Identity,
    dest_chain: str,
    payload: bytes,
    *,
    chain_id: str,
    valid_until: int,
    nonce: int | None = None,
) -> types.Transaction:
    """`xchain.send(dest_chain, payload)` on the chain `chain_id`."""
    return build_xchain_transaction(
        signer, "send", (dest_chain, bytes(payload)), chain_id=chain_id, valid_until=valid_until, nonce=nonce
    )


def compute_update_steps(
    headers: Sequence[Mapping[str, Any]],
    changes: Mapping[int, ValidatorChangeProof],
    *,
    from_height: int,
    target: int,
) -> list[Step]:
    """Sparse steps from a client at `from_height` to `target`: each block that changed the
    validator set and the header after it (with the change's proof), then the target.

    `headers` are the items of `GET /v1/light/headers` covering those heights, `changes` the
    proofs of `GET /v1/light/changes` by height.  A needed header that is missing raises
    `ClientError`; nothing here is checked, the destination checks it all.
    """
    by_height = {int(item["height"]): item for item in headers}
    steps: list[Step] = []
    for height in range(from_height + 1, target + 1):
        change = changes.get(height - 1)
        if change is None and height not in changes and height != target:
            continue
        item = by_height.get(height)
        if item is None:
            raise ClientError(f"the source node served no header at height {height}", code="missing_header")
        header = bytes.fromhex(str(item["header"]))
        certificate = bytes.fromhex(str(item["certificate"]))
        steps.append((header, certificate, None if change is None else change.encode()))
    return steps


@dataclass(frozen=True, slots=True)
class Submitted:
    """A submitted xchain transaction."""

    tx_hash: str  # hex
    action: str
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


class Xchain:
    """The `xchain` module over one node's API, signing as `signer` (optional for reads)."""

    def __init__(
        self,
        client: Client,
        signer: Identity | None = None,
        *,
        valid_for_blocks: int = VALID_FOR_BLOCKS,
        timeout_s: float = 30.0,
    ) -> None:
        self.client = client
        self.signer = signer
        self.valid_for_blocks = valid_for_blocks
        self.timeout_s = timeout_s

    # ------------------------------------------------------------ submitting

    def submit(self, tx: types.Transaction, *, wait: bool = False) -> Submitted:
        """Submit a built transaction; with `wait`, require its receipt to be a success."""
        tx_hash = self.client.submit(tx)
        committed = None
        if wait:
            committed = self.client.wait_for_commit(tx_hash, timeout_s=self.timeout_s)
            receipt = committed.get("receipt") or {}
            if receipt.get("code", 0) != 0:
                raise ClientError(
                    f"xchain.{tx.action} ({tx_hash}) failed: {receipt.get('message', '')}",
                    code=str(receipt.get("code_name", "failed")),
                )
        return Submitted(tx_hash, tx.action, committed)

    def _context(self) -> tuple[Identity, str, int]:
        if self.signer is None:
            raise ClientError("a signer is needed to submit xchain transactions", code="no_signer")
        status = self.client.get_status()
        return self.signer, str(status["chain_id"]), int(status["height"]) + self.valid_for_blocks

    def update_client(self, chain: str, steps: Sequence[Step], *, wait: bool = False) -> Submitted:
        signer, chain_id, valid_until = self._context()
        tx = build_update_client_transaction(signer, chain, steps, chain_id=chain_id, valid_until=valid_until)
        return self.submit(tx, wait=wait)

    def update_to(self, chain: str, source: Client, target: int, *, wait: bool = False) -> Submitted | None:
        """Advance this chain's client of `chain` to `target` with what the source node serves;
        None when the client is there already.  At most `xchain_state.STEPS_MAX` steps (for
        more, call again)."""
        found = self.get_chain(chain)
        if found is None or found.get("client") is None:
            raise ClientError(f"chain {chain!r} is not registered on this node", code="unknown_chain")
        height = int(found["client"]["height"])
        if height >= target:
            return None
        headers: list[dict[str, Any]] = []
        start = height + 1
        for _ in range(target - height):  # bounded: each page advances at least one height
            if start > target:
                break
            items = (
                get_light_headers(source, start, min(PAGE_HEADERS, target - start + 1)).get("headers") or []
            )
            if not items:
                break
            headers.extend(items)
            start = int(items[-1]["height"]) + 1
        changes = get_validator_changes(source)
        steps = compute_update_steps(headers, changes, from_height=height, target=target)
        return self.update_client(chain, steps[: xchain_state.STEPS_MAX], wait=wait)

    def import_transaction(
        self, source_chain: str, proof: Mapping[str, Any], *, wait: bool = False
    ) -> Submitted:
        """`xchain.import` of the transaction `proof` shows (the proof JSON of its source node)."""
        signer, chain_id, valid_until = self._context()
        tx = build_import_transaction(signer, source_chain, proof, chain_id=chain_id, valid_until=valid_until)
        return self.submit(tx, wait=wait)

    def send(self, dest_chain: str, payload: bytes, *, wait: bool = False) -> Submitted:
        signer, chain_id, valid_until = self._context()
        tx = build_send_transaction(signer, dest_chain, payload, chain_id=chain_id, valid_until=valid_until)
        return self.submit(tx, wait=wait)

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

    def get_chains(self, *, limit: int | None = None, cursor: str | None = None) -> dict[str, Any]:
        """A page of registered chains: {"chains", "next_cursor"}."""
        return self._get_page("/v1/xchain/chains" + _page_query(limit, cursor))

    def get_all_chains(self) -> list[dict[str, Any]]:
        return self.client.get_all_pages("/v1/xchain/chains", "chains")

    def get_chain(self, chain: str) -> dict[str, Any] | None:
        """One chain with its light client, head and fork evidence; None when never registered."""
        return self._get(f"/v1/xchain/chains/{_quote(chain)}")

    def get_fact(self, chain: str, tx_hash_hex: str) -> dict[str, Any] | None:
        """The fact of a source transaction imported from `chain`; None when not imported."""
        return self._get(f"/v1/xchain/chains/{_quote(chain)}/facts/{_quote(tx_hash_hex)}")

    def get_facts(self, chain: str, *, limit: int | None = None, cursor: str | None = None) -> dict[str, Any]:
        return self._get_page(f"/v1/xchain/chains/{_quote(chain)}/facts" + _page_query(limit, cursor))

    def get_outbound(
        self, chain: str, *, limit: int | None = None, cursor: str | None = None
    ) -> dict[str, Any]:
        return self._get_page(f"/v1/xchain/chains/{_quote(chain)}/outbound" + _page_query(limit, cursor))

    def get_inbound(
        self, chain: str, *, limit: int | None = None, cursor: str | None = None
    ) -> dict[str, Any]:
        return self._get_page(f"/v1/xchain/chains/{_quote(chain)}/inbound" + _page_query(limit, cursor))

    def get_all(self, chain: str, what: str) -> list[dict[str, Any]]:
        """Every item of `facts`, `outbound` or `inbound` of `chain`, following the pages."""
        if what not in ("facts", "outbound", "inbound"):
            raise ClientError(f"no list {what!r}; facts, outbound or inbound", code="bad_request")
        field = "facts" if what == "facts" else "messages"
        return self.client.get_all_pages(f"/v1/xchain/chains/{_quote(chain)}/{what}", field)
