"""Follow a chain from its genesis through a node's API, trusting the node for nothing.

Theory of operation: `sync_light_client` asks a node for consecutive headers and certificates
(`GET /v1/light/headers`) and for the validator-set changes it recorded (`GET /v1/light/changes`),
and feeds them to `chainnode.light.advance` in sequential mode: every header is the next height,
links to the previous one and carries a quorum of the set the client has proven so far; a header
that names a new set is accepted only with the write-set proof of that set from the block before
it.  Before moving, it asks the node for the header at the height it already accepted and compares
(`check_conflict`): a different header certified by that height's set is a fork, kept as evidence
in the store, and the client halts.  A node that lies, omits a change or serves another chain
makes the sync fail with the `LightError` check that caught it; it can never make the client
accept a header the chain's validators did not certify.

The store is saved after every page, so an interrupted sync resumes where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chainnode.app.genesis import Genesis
from chainnode.app.state import compute_genesis_state_root
from chainnode.core import types
from chainnode.core.errors import ChainError
from chainnode.core.hexstr import parse_hex
from chainnode.light import (
    LightError,
    LightState,
    ValidatorChangeProof,
    advance,
    check_conflict,
    start_light_state,
    validator_change_proof_from_json,
)
from chainnode.light.store import LightStore
from chainnode.sdk.client import Client
from chainnode.sdk.errors import ClientError

PAGE_HEADERS = 500


@dataclass(frozen=True, slots=True)
class SyncResult:
    state: LightState
    accepted: int  # headers accepted by this sync
    evidence: Path | None  # the fork evidence written, if the sync halted on a fork


def get_light_headers(client: Client, from_height: int, limit: int = PAGE_HEADERS) -> dict[str, Any]:
    """A page of `{"headers": [{"height", "header", "certificate"}], "head", "next_from"}`."""
    return client._get_object(f"/v1/light/headers?from={int(from_height)}&limit={int(limit)}")


def get_validator_changes(client: Client) -> dict[int, ValidatorChangeProof]:
    """Every validator-set change the node recorded, by the height of the block that made it."""
    answer = client._get_object("/v1/light/changes")
    changes = answer.get("changes")
    if not isinstance(changes, list):
        raise ClientError("GET /v1/light/changes: expected a list of changes", code="bad_response")
    proofs = [validator_change_proof_from_json(item) for item in changes]
    return {proof.height: proof for proof in proofs}


def _item_bytes(item: Any, name: str) -> bytes:
    if not isinstance(item, dict):
        raise LightError("format", "a header item is an object")
    return parse_hex(item.get(name), name, lowercase=True)


def start_from_genesis(genesis: Genesis) -> LightState:
    """The state of a client that trusts `genesis` alone."""
    return start_light_state(
        genesis.chain_id,
        genesis.compute_hash(),
        compute_genesis_state_root(genesis.initial_state()),
        genesis.validators,
    )


def _check_known_head(client: Client, store: LightStore, state: LightState) -> tuple[LightState, Path | None]:
    """Compare the node's header at our latest height with ours; a certified difference halts the
    client and is kept as evidence (returned: the halted state and the evidence file)."""
    if state.height == 0:
        return state, None
    items = get_light_headers(client, state.height, 1).get("headers") or []
    if not items:
        raise LightError("height", f"the node has no header at {state.height}; it is behind this client")
    header, certificate = _item_bytes(items[0], "header"), _item_bytes(items[0], "certificate")
    checked = check_conflict(state, state.header_hash, header, certificate)
    if not checked.halted:
        return state, None
    evidence = store.save_evidence(
        state.height,
        {
            "accepted_header_hash": state.header_hash.hex(),
            "header": header.hex(),
            "certificate": certificate.hex(),
            "reason": checked.halted,
        },
    )
    store.save(checked, [])
    return checked, evidence


def sync_light_client(
    client: Client,
    store: LightStore,
    genesis: Genesis,
    *,
    height_max: int | None = None,
    on_page: Callable[[LightState], None] | None = None,
) -> SyncResult:
    """Advance the store's client (or a new one from `genesis`) to the node's head (or `height_max`)."""
    state = store.load()
    start = start_from_genesis(genesis)
    if state is None:
        state = start
    elif (state.chain_id, state.genesis_hash) != (start.chain_id, start.genesis_hash):
        raise LightError(
            "chain_id", f"{store.directory} follows chain {state.chain_id!r} from another genesis"
        )
    if state.halted:
        raise LightError("halted", f"{store.directory} is halted: {state.halted}")
    state, evidence = _check_known_head(client, store, state)
    if evidence is not None:
        return SyncResult(state, 0, evidence)
    changes = get_validator_changes(client)
    accepted = 0
    while height_max is None or state.height < height_max:
        page = get_light_headers(client, state.height + 1)
        items = page.get("headers") or []
        if height_max is not None:
            items = items[: height_max - state.height]
        hashes = []
        for item in items:
            header_bytes, certificate_bytes = _item_bytes(item, "header"), _item_bytes(item, "certificate")
            change = None
            try:
                header = types.decode_block_header(header_bytes)
            except ChainError as error:
                raise LightError("format", error.message) from error
            if header.validator_set_hash != state.validators().compute_hash():
                change = changes.get(state.height)
            state = advance(state, header_bytes, certificate_bytes, change, sequential=True)
            hashes.append(state.header_hash)
        if not hashes:
            break
        store.save(state, hashes)
        accepted += len(hashes)
        if on_page is not None:
            on_page(state)
        if page.get("next_from") is None:
            break
    if store.load() is None:
        store.save(state, [])
    return SyncResult(state, accepted, None)
