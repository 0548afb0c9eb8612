"""Argument checks of the `assets` module's actions (`chainnode.app.assets`): shapes, types and
sizes, checked before any state is read, so mempool admission refuses the same transactions that
execution would.  Each check raises `TransactionError`: `bad_arguments` for a wrong shape or
type, `too_large` past a size limit, `bad_metadata_hash` for a hash that is not a SHA-256
digest, `duplicate_id` for a batch that names a token twice.
"""

from __future__ import annotations

from typing import Any

from chainnode.app import asset_state
from chainnode.app.state import TransactionError
from chainnode.core import types

ErrorCode = types.ErrorCode
BATCH_ITEMS_MAX = 100


def _fail(code: ErrorCode, message: str) -> TransactionError:
    return TransactionError(code, message)


def _check_arity(args: tuple[Any, ...], count: int, shape: str) -> None:
    if len(args) != count:
        raise _fail(ErrorCode.BAD_ARGUMENTS, f"assets.{shape}, got {len(args)} arguments")


def _check_text(value: Any, what: str, chars_max: int, *, allow_empty: bool = False) -> None:
    if not isinstance(value, str) or not value.isprintable():
        raise _fail(ErrorCode.BAD_ARGUMENTS, f"{what} must be printable text")
    if len(value) > chars_max:
        raise _fail(ErrorCode.TOO_LARGE, f"{what} of {len(value)} characters exceeds {chars_max}")
    if not value and not allow_empty:
        raise _fail(ErrorCode.BAD_ARGUMENTS, f"{what} must not be empty")


def _check_collection_id(value: Any) -> None:
    if isinstance(value, str) and len(value) > 64:
        raise _fail(ErrorCode.TOO_LARGE, f"a collection id of {len(value)} characters exceeds 64")
    if not asset_state.is_valid_collection_id(value):
        raise _fail(ErrorCode.BAD_ARGUMENTS, "a collection id is a lowercase [a-z0-9-] id")


def _check_token_id(value: Any) -> None:
    if isinstance(value, str) and len(value) > asset_state.TOKEN_CHARS_MAX:
        raise _fail(
            ErrorCode.TOO_LARGE,
            f"a token id of {len(value)} characters exceeds {asset_state.TOKEN_CHARS_MAX}",
        )
    if not asset_state.is_valid_token_id(value):
        raise _fail(ErrorCode.BAD_ARGUMENTS, "a token id is 1..64 characters of [A-Za-z0-9._-]")


def _check_entity_id(value: Any, what: str, *, allow_empty: bool = False) -> None:
    if allow_empty and value == "":
        return
    if not isinstance(value, str) or not 1 <= len(value) <= asset_state.ENTITY_CHARS_MAX:
        raise _fail(ErrorCode.BAD_ARGUMENTS, f"{what} must be an entity id")


def _check_amount(value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= asset_state.AMOUNT_MAX:
        raise _fail(ErrorCode.BAD_ARGUMENTS, f"an amount is an integer within [1, {asset_state.AMOUNT_MAX}]")


def _check_hash(value: Any, what: str, *, allow_empty: bool = False) -> None:
    if allow_empty and value == b"":
        return
    if not isinstance(value, bytes) or len(value) != asset_state.HASH_BYTES or not any(value):
        raise _fail(ErrorCode.BAD_METADATA_HASH, f"{what} must be a SHA-256 digest (32 bytes, not all zero)")


def _check_batch(items: Any, arity: int, what: str) -> None:
    if not isinstance(items, tuple) or not items:
        raise _fail(ErrorCode.BAD_ARGUMENTS, f"{what} takes a non-empty list of items")
    if len(items) > BATCH_ITEMS_MAX:
        raise _fail(ErrorCode.TOO_LARGE, f"a batch of {len(items)} items exceeds {BATCH_ITEMS_MAX}")
    tokens = set()
    for item in items:
        if not isinstance(item, tuple) or len(item) != arity:
            raise _fail(ErrorCode.BAD_ARGUMENTS, f"each item of {what} has {arity} fields")
        tokens.add(item[0])
    if what == "mint_batch" and len(tokens) != len(items):
        raise _fail(ErrorCode.DUPLICATE_ID, "mint_batch names a token id twice")


def check_create_collection_args(args: tuple[Any, ...]) -> None:
    _check_arity(args, 5, "create_collection takes (collection, name, symbol, kind, schema_hash)")
    collection_id, name, symbol, kind, schema_hash = args
    _check_collection_id(collection_id)
    _check_text(name, "a collection name", asset_state.NAME_CHARS_MAX)
    _check_text(symbol, "a collection symbol", asset_state.SYMBOL_CHARS_MAX)
    if kind not in asset_state.KINDS:
        raise _fail(ErrorCode.BAD_ARGUMENTS, f"a collection kind is one of {list(asset_state.KINDS)}")
    _check_hash(schema_hash, "a metadata schema hash", allow_empty=True)


def _check_mint_item(item: tuple[Any, ...]) -> None:
    token_id, owner, amount, metadata_hash, uri = item
    _check_token_id(token_id)
    _check_entity_id(owner, "an owner")
    _check_amount(amount)
    _check_hash(metadata_hash, "a metadata hash")
    _check_text(uri, "a URI", asset_state.URI_CHARS_MAX, allow_empty=True)


def check_mint_args(args: tuple[Any, ...]) -> None:
    _check_arity(args, 6, "mint takes (collection, token, owner, amount, metadata_hash, uri)")
    _check_collection_id(args[0])
    _check_mint_item(args[1:])


def check_mint_batch_args(args: tuple[Any, ...]) -> None:
    _check_arity(args, 2, "mint_batch takes (collection, ((token, owner, amount, metadata_hash, uri), ...))")
    _check_collection_id(args[0])
    _check_batch(args[1], 5, "mint_batch")
    for item in args[1]:
        _check_mint_item(item)


def check_set_uri_args(args: tuple[Any, ...]) -> None:
    _check_arity(args, 3, "set_uri takes (collection, token, uri)")
    _check_collection_id(args[0])
    _check_token_id(args[1])
    _check_text(args[2], "a URI", asset_state.URI_CHARS_MAX)


def _check_transfer_item(item: tuple[Any, ...]) -> None:
    token_id, source, target, amount = item
    _check_token_id(token_id)
    _check_entity_id(source, "the holder to transfer from")
    _check_entity_id(target, "the recipient")
    _check_amount(amount)


def check_transfer_args(args: tuple[Any, ...]) -> None:
    _check_arity(args, 5, "transfer takes (collection, token, from, to, amount)")
    _check_collection_id(args[0])
    _check_transfer_item(args[1:])


def check_transfer_batch_args(args: tuple[Any, ...]) -> None:
    _check_arity(args, 2, "transfer_batch takes (collection, ((token, from, to, amount), ...))")
    _check_collection_id(args[0])
    _check_batch(args[1], 4, "transfer_batch")
    for item in args[1]:
        _check_transfer_item(item)


def check_approve_args(args: tuple[Any, ...]) -> None:
    _check_arity(args, 3, "approve takes (collection, token, spender or '')")
    _check_collection_id(args[0])
    _check_token_id(args[1])
    _check_entity_id(args[2], "the spender", allow_empty=True)


def check_approve_all_args(args: tuple[Any, ...]) -> None:
    _check_arity(args, 3, "approve_all takes (collection, operator, approved)")
    _check_collection_id(args[0])
    _check_entity_id(args[1], "the operator")
    if not isinstance(args[2], bool):
        raise _fail(ErrorCode.BAD_ARGUMENTS, "approve_all's third argument is true or false")


def check_burn_args(args: tuple[Any, ...]) -> None:
    _check_arity(args, 3, "burn takes (collection, token, amount)")
    _check_collection_id(args[0])
    _check_token_id(args[1])
    _check_amount(args[2])


def check_freeze_args(args: tuple[Any, ...]) -> None:
    _check_arity(args, 3, "freeze takes (collection, token, holder)")
    _check_collection_id(args[0])
    _check_token_id(args[1])
    _check_entity_id(args[2], "the holder")


def check_pause_args(args: tuple[Any, ...]) -> None:
    _check_arity(args, 1, "pause takes (collection,)")
    _check_collection_id(args[0])
