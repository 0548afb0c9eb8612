"""Pure JSON forms of the chain's values (receipts, transactions, headers, certificates), shared by
the API and the tools that write the same shapes (export), and the JSON Schemas that describe
them in the API's OpenAPI document (`chainnode.api.openapi`; the fuzz test holds every answer to
them).  No aiohttp, no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from chainnode.core import quorum, types
from chainnode.core.statuses import TxStatus


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


# ---------------------------------------------------------------- JSON Schemas of the forms

Schema = Mapping[str, Any]

STRING: Schema = {"type": "string"}
INTEGER: Schema = {"type": "integer", "minimum": 0}
BOOLEAN: Schema = {"type": "boolean"}
HEX: Schema = {"type": "string", "pattern": "^([0-9a-f]{2})*$"}
HASH: Schema = {"type": "string", "minLength": 64, "maxLength": 64, "pattern": "^[0-9a-f]{64}$"}
ANY: Schema = {}


def compute_object_schema(
    required: Mapping[str, Schema], optional: Mapping[str, Schema] | None = None
) -> Schema:
    """An object with these properties (more may come: clients ignore what they do not know)."""
    return {
        "type": "object",
        "required": list(required),
        "properties": {**required, **(optional or {})},
    }


def compute_nullable_schema(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def compute_array_schema(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def compute_page_schema(items_field: str, items: Schema, **others: Schema) -> Schema:
    """A page of a list: its items and `next_cursor` (null on the last page)."""
    return compute_object_schema(
        {items_field: compute_array_schema(items), "next_cursor": compute_nullable_schema(STRING), **others}
    )


# `compute_json_value`: bytes as {"hex": ...}, tuples as lists, other values as they are.
JSON_VALUE_SCHEMA: Schema = ANY

RECEIPT_SCHEMA = compute_object_schema(
    {
        "code": INTEGER,
        "code_name": STRING,
        "message": STRING,
        "events": compute_array_schema(compute_object_schema({"name": STRING, "attributes": ANY})),
    }
)

TRANSACTION_SCHEMA = compute_object_schema(
    {
        "hash": HASH,
        "signer": STRING,
        "nonce": INTEGER,
        "valid_until": INTEGER,
        "module": STRING,
        "action": STRING,
        "args": compute_array_schema(ANY),
        "signature": HEX,
    }
)

HEADER_SCHEMA = compute_object_schema(
    {
        "chain_id": STRING,
        "height": INTEGER,
        "view": INTEGER,
        "proposer": INTEGER,
        "timestamp_ms": INTEGER,
        "parent_hash": HASH,
        "tx_root": HASH,
        "receipts_root": HASH,
        "state_root": HASH,
        "validator_set_hash": HASH,
        "tx_count": INTEGER,
    }
)

SIGNATURE_SCHEMA = compute_object_schema(
    {"validator_index": INTEGER, "validator": compute_nullable_schema(STRING), "signature": HEX}
)

CERTIFICATE_SCHEMA = compute_object_schema(
    {
        "height": INTEGER,
        "view": INTEGER,
        "block_hash": HASH,
        "signatures": compute_array_schema(SIGNATURE_SCHEMA),
    }
)


# ---------------------------------------------------------------- schemas of the core routes' answers

PROBLEMS_SCHEMA = compute_object_schema(
    {
        "status": {"enum": ["ok", "failing", "not_ready"]},
        "problems": {"type": "object", "additionalProperties": STRING},
    }
)
HEALTH_SCHEMA = compute_object_schema({"status": {"enum": ["ok"]}})
STATUS_SCHEMA = compute_object_schema(
    {
        "chain_id": STRING,
        "node_id": STRING,
        "validator_index": compute_nullable_schema(INTEGER),
        "height": INTEGER,
        "head_hash": HASH,
        "state_root": HASH,
        "view": INTEGER,
        "peers": compute_array_schema(STRING),
        "mempool_txs": INTEGER,
        "genesis_hash": HASH,
    }
)
EVIDENCE_SCHEMA = compute_object_schema(
    {
        "count": INTEGER,
        "next_cursor": compute_nullable_schema(STRING),
        "evidence": compute_array_schema(
            compute_object_schema(
                {
                    "validator": STRING,
                    "validator_index": INTEGER,
                    "kind": STRING,
                    "view": INTEGER,
                    "height": INTEGER,
                    "first_block_hash": HASH,
                    "second_block_hash": HASH,
                    "encoded": HEX,
                }
            )
        ),
    }
)
CHECKPOINT_SCHEMA = compute_object_schema(
    {
        "height": INTEGER,
        "block_hash": HASH,
        "signatures": compute_array_schema(
            compute_object_schema({"validator_index": INTEGER, "validator": STRING, "signature": HEX})
        ),
        "encoded": HEX,
    }
)
ITEM_ERROR_SCHEMA = compute_object_schema({"code": STRING, "message": STRING})
SUBMIT_ITEM_SCHEMA = compute_object_schema(
    {"hash": compute_nullable_schema(HASH), "status": {"enum": [TxStatus.PENDING, TxStatus.REJECTED]}},
    {"error": ITEM_ERROR_SCHEMA, "replicated": BOOLEAN, "holders": compute_nullable_schema(INTEGER)},
)
SUBMIT_BATCH_SCHEMA = compute_object_schema(
    {"accepted": INTEGER, "rejected": INTEGER, "results": compute_array_schema(SUBMIT_ITEM_SCHEMA)}
)
TX_STATUS_SCHEMA = compute_object_schema(
    {"hash": HASH, "status": {"enum": [TxStatus.PENDING, TxStatus.COMMITTED, TxStatus.REJECTED]}},
    {"height": INTEGER, "index": INTEGER, "receipt": RECEIPT_SCHEMA, "error": ITEM_ERROR_SCHEMA},
)
PROOF_SCHEMA = compute_object_schema(
    {
        "version": INTEGER,
        "chain_id": STRING,
        "height": INTEGER,
        "tx_hash": HASH,
        "tx_index": INTEGER,
        "tx_count": INTEGER,
        "block_hash": HASH,
        "block_header": HEX,
        "commit_certificate": HEX,
        "transaction": HEX,
        "receipt": HEX,
        "tx_proof": compute_array_schema(HEX),
        "receipt_proof": compute_array_schema(HEX),
    }
)
BLOCK_SCHEMA = {
    "anyOf": [
        compute_object_schema(
            {
                "height": {"const": 0},
                "hash": HASH,
                "genesis": {"const": True},
                "transactions": {"maxItems": 0},
            }
        ),
        compute_object_schema(
            {
                "height": INTEGER,
                "hash": HASH,
                "header": HEADER_SCHEMA,
                "certificate": CERTIFICATE_SCHEMA,
                "transactions": compute_array_schema(
                    {"anyOf": [TRANSACTION_SCHEMA, compute_object_schema({"hash": HASH})]}
                ),
            },
            {"block_encoded": HEX, "certificate_encoded": HEX},
        ),
    ]
}
