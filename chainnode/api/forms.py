"""Pure JSON forms of the chain's values (receipts, transactions, headers, certificates), shared by
the API and the tools that write the same shapes (export).  No aiohttp, no I/O."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from chainnode.core import quorum, types


def compute_json_value(value: Any) -> Any:
    """The JSON form of a canonical value: bytes as {"hex": ...}, tuples as lists."""
    if isinstance(value, bytes):
        return {"hex": value.hex()}
    if isinstance(value, (tuple, list)):
        return [compute_json_value(item) for item in value]
    return value


def compute_receipt_json(receipt: types.Receipt) -> dict[str, Any]:
    try:
        code_name = types.ErrorCode(receipt.code).label
    except ValueError:
        code_name = "unknown"
    return {
        "code": receipt.code,
        "code_name": code_name,
        "message": receipt.message,
        "events": [
            {"name": name, "attributes": compute_json_value(attributes)}
            for name, attributes in receipt.events
        ],
    }


def compute_transaction_json(tx: types.Transaction) -> dict[str, Any]:
    return {
        "hash": tx.hash.hex(),
        "signer": tx.signer,
        "nonce": tx.nonce,
        "valid_until": tx.valid_until,
        "module": tx.module,
        "action": tx.action,
        "args": compute_json_value(tx.args),
        "signature": tx.signature.hex(),
    }


def compute_header_json(header: types.BlockHeader) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for item in fields(header):
        value = getattr(header, item.name)
        result[item.name] = value.hex() if isinstance(value, bytes) else value
    return result


def compute_certificate_json(
    certificate: quorum.CommitCertificate, validators: quorum.ValidatorSet | None
) -> dict[str, Any]:
    signatures = []
    for index, signature in certificate.signatures:
        name = None
        if validators is not None and index < validators.size:
            name = validators.validators[index].entity_id
        signatures.append({"validator_index": index, "validator": name, "signature": signature.hex()})
    return {
        "height": certificate.height,
        "view": certificate.view,
        "block_hash": certificate.block_hash.hex(),
        "signatures": signatures,
    }
