"""Counterparty chains registered and removed by the council: the `register_chain` and
`remove_chain` proposals of `chainnode.app.governance`, carried out on the state of the `xchain`
module (`chainnode.app.xchain_state`; the rules are in `chainnode.app.xchain`'s theory of
operation).  Apart from `chainnode.app.xchain` so that governance does not import the proof
verifier (which reads governance's validator history)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from chainnode import light
from chainnode.app.state import Event, Overlay, TransactionError, compute_genesis_state_root
from chainnode.app.xchain_state import (
    CHAINS_KEY,
    HASH_BYTES,
    VALIDATOR_SET_BYTES_MAX,
    ChainRecord,
    compute_chain_key,
    compute_fork_key,
    compute_head_key,
    compute_light_key,
    get_chain,
    get_chain_ids,
    is_valid_chain_id,
)
from chainnode.core import codec, quorum, types
from chainnode.core.errors import ChainError

if TYPE_CHECKING:
    from chainnode.app.genesis import Genesis

ErrorCode = types.ErrorCode


def _fail(code: ErrorCode, message: str) -> TransactionError:
    return TransactionError(code, message)


def put_chain(overlay: Overlay, record: ChainRecord) -> None:
    overlay.put(compute_chain_key(record.chain_id), record.encode())


def check_chain_payload(kind: str, payload: tuple[Any, ...]) -> None:
    """The shape of a `register_chain` / `remove_chain` payload; `TransactionError(BAD_ARGUMENTS)`."""
    if kind == "remove_chain":
        if len(payload) != 1 or not is_valid_chain_id(payload[0]):
            raise _fail(ErrorCode.BAD_ARGUMENTS, "remove_chain takes (chain id,)")
        return
    if len(payload) != 4:
        raise _fail(
            ErrorCode.BAD_ARGUMENTS,
            "register_chain takes (chain id, genesis hash, encoded validator set, genesis state root)",
        )
    chain_id, genesis_hash, validators, state_root = payload
    if not is_valid_chain_id(chain_id):
        raise _fail(ErrorCode.BAD_ARGUMENTS, "a chain id is 1..64 printable characters without '/' or NUL")
    for value, what in ((genesis_hash, "genesis hash"), (state_root, "genesis state root")):
        if not isinstance(value, bytes) or len(value) != HASH_BYTES:
            raise _fail(ErrorCode.BAD_ARGUMENTS, f"the {what} must be {HASH_BYTES} bytes")
    if not isinstance(validators, bytes) or not 0 < len(validators) <= VALIDATOR_SET_BYTES_MAX:
        raise _fail(
            ErrorCode.BAD_ARGUMENTS, f"the validator set must be 1..{VALIDATOR_SET_BYTES_MAX} encoded bytes"
        )


def apply_register_chain(
    overlay: Overlay, payload: tuple[Any, ...], height: int, *, own_chain_id: str
) -> list[Event]:
    """Register a counterparty and start its light client at genesis (payload already shaped)."""
    chain_id, genesis_hash, validators_encoded, state_root = payload
    if chain_id == own_chain_id:
        raise _fail(ErrorCode.BAD_PROPOSAL, f"register_chain: {chain_id!r} is this chain's own id")
    existing = get_chain(overlay, chain_id)
    if existing is not None and existing.is_active:
        raise _fail(ErrorCode.BAD_PROPOSAL, f"register_chain: {chain_id!r} is already registered")
    try:
        validators = quorum.decode_validator_set(validators_encoded)
    except ChainError as error:
        raise _fail(ErrorCode.BAD_PROPOSAL, f"register_chain: bad validator set: {error.message}") from error
    if validators.size < quorum.VALIDATORS_MIN:
        raise _fail(
            ErrorCode.BAD_PROPOSAL,
            f"register_chain: a validator set of {validators.size} tolerates no fault "
            f"(at least {quorum.VALIDATORS_MIN})",
        )
    started = light.start_light_state(chain_id, genesis_hash, state_root, validators)
    overlay.put(compute_light_key(chain_id), started.encode())
    overlay.delete(compute_head_key(chain_id))
    overlay.delete(compute_fork_key(chain_id))
    if existing is None:
        record = ChainRecord(chain_id, genesis_hash, state_root, height, 0, 0, 0, 0, 0)
        overlay.put(CHAINS_KEY, codec.encode((*get_chain_ids(overlay), chain_id)))
    else:
        # Registered again after a removal: a fresh client; facts and sequence numbers go on.
        record = replace(
            existing,
            genesis_hash=genesis_hash,
            genesis_state_root=state_root,
            registered_height=height,
            removed_height=0,
        )
    put_chain(overlay, record)
    return [("xchain.chain_registered", (chain_id, genesis_hash, validators.size))]


def apply_remove_chain(overlay: Overlay, chain_id: str, height: int) -> list[Event]:
    record = get_chain(overlay, chain_id)
    if record is None or not record.is_active:
        raise _fail(ErrorCode.BAD_PROPOSAL, f"remove_chain: {chain_id!r} is not registered")
    put_chain(overlay, replace(record, removed_height=height))
    return [("xchain.chain_removed", (chain_id,))]


def compute_register_chain_payload(counterparty: Genesis) -> tuple[str, bytes, bytes, bytes]:
    """The `register_chain` payload of the chain that starts at `counterparty` (its genesis file)."""
    return (
        counterparty.chain_id,
        counterparty.compute_hash(),
        counterparty.validators.encode(),
        compute_genesis_state_root(counterparty.initial_state()),
    )
