"""HTTP endpoints for transactions and blocks: submit, status, inclusion proofs, blocks.

Theory of operation: like every route table (`chainnode.api.common`), a thin translation between
JSON over HTTP and the `NodeService`; `chainnode.api.server.create_app` mounts `ROUTES`, which
also describe the endpoints in `/openapi.json`.

Submitting: `POST /v1/transactions` takes `{"tx": hex}` or `{"txs": [hex, ...]}` (at most
`SUBMIT_TXS_MAX`).  A single transaction that is accepted answers 202: it passed every admission
check (signature, signer, replay, module rules) against the committed state and is in this
node's mempool, from where it is gossiped; it is not yet committed, and a node that dies before
gossiping it loses it, so a client that must know waits for `GET /v1/transactions/{hash}` to say
`committed` (the SDK's and the CLI's `--wait`) and resubmits otherwise (an id is committed at
most once).  With `?wait=replicated` (and `wait_ms`, default 5000) the answer waits until a
quorum of the validators hold the transaction in their mempools (`chainnode.node.replication`):
a 202 then also says `"replicated": true` and how many validators hold it (`holders`; null if it
was committed first), and no f crashes can lose it.  When the quorum does not answer in time,
504 `not_replicated`: the transaction is in this node's mempool, and submitting it again (at
once, or to another node) is safe.  A batch waits for each accepted item and marks it
`"replicated": true|false`.  A full mempool answers 503 with `Retry-After` (a batch answers 200 with the items
refused as `mempool_full` and the same header, so the client learns which items were pooled);
one that is refused answers 400 when it is not a well-formed encoding (`malformed`,
`too_large`, `bad_hex`) and 422 when it is well-formed but breaks a rule (bad signature,
unknown signer, replay, ...), always with the hash when it is known.  A batch answers 200 with
one result per item, in order; an item that is not hex is rejected on its own without failing
the rest.

Blocks: height 0 is the genesis state, which has no block and no commit certificate;
`GET /v1/blocks/0` (and `latest` before the first block) answers a small genesis summary
`{"height": 0, "hash", "genesis": true, ...}` so that clients can always follow the head.
`?transactions=hashes` lists only the transaction hashes and leaves out the raw encodings (a
cheap way to follow commits).  `?wait_ms=W` (at most `BLOCK_WAIT_MS_MAX`) asks for a height above
the head and answers when it commits, or 404 after W: a follower asks for head + 1 and learns of
each commit as it happens, without polling.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from chainnode.api.common import (
    Route,
    compute_error_status,
    error_body,
    find_write_problems,
    get_service,
    json_response,
    parse_height,
    parse_natural,
    path_param,
    query_param,
    read_json_object,
)
from chainnode.api.forms import (
    BLOCK_SCHEMA,
    HASH,
    HEX,
    PROOF_SCHEMA,
    SUBMIT_BATCH_SCHEMA,
    SUBMIT_ITEM_SCHEMA,
    TX_STATUS_SCHEMA,
    compute_array_schema,
    compute_certificate_json,
    compute_header_json,
    compute_receipt_json,
    compute_transaction_json,
)
from chainnode.api.openapi import TX_ERROR_CODES
from chainnode.api.service import LedgerReader, NodeService, SubmitResult
from chainnode.app import proof
from chainnode.core import quorum, types
from chainnode.core.errors import ChainError, LocalError, RemoteError
from chainnode.core.hexstr import parse_hex
from chainnode.core.statuses import TxStatus

SUBMIT_TXS_MAX = 10_000
RETRY_AFTER_S = 1
REPLICATION_WAIT_MS_DEFAULT = 5_000
REPLICATION_WAIT_MS_MAX = 60_000
# `GET /v1/blocks/{height}?wait_ms=W`: a follower asks for the next height and the answer comes
# when it commits (or 404 after W), instead of polling the status.
BLOCK_WAIT_MS_MAX = 30_000
# Rejection codes that mean "this is not a transaction at all" rather than
# "this transaction breaks a rule"; they answer 400 instead of 422.
_MALFORMED_CODES = frozenset({"malformed", "too_large", "bad_hex", "bad_request"})


def _compute_submit_item(result: SubmitResult) -> dict[str, Any]:
    item: dict[str, Any] = {
        "hash": result.tx_hash.hex() if result.tx_hash is not None else None,
        "status": TxStatus.PENDING if result.accepted else TxStatus.REJECTED,
    }
    if not result.accepted:
        item["error"] = {"code": result.code, "message": result.message}
    return item


async def _submit_single(service: NodeService, text: Any, wait_s: float | None) -> web.Response:
    try:
        encoded = parse_hex(text, "tx")
        (result,) = service.submit_transactions([encoded], replicate=wait_s is not None)
    except ChainError as error:
        if error.code == "mempool_full" or not isinstance(error, RemoteError):
            raise
        return json_response(
            error_body(error.code, error.message, hash=None), status=compute_error_status(error)
        )
    tx_hash = result.tx_hash.hex() if result.tx_hash is not None else None
    if result.accepted and wait_s is not None and result.tx_hash is not None:
        holders = await service.wait_for_replication(result.tx_hash, wait_s)
        if holders is None:
            message = (
                f"a quorum of validators did not confirm holding it within {wait_s:g} s; resubmitting is safe"
            )
            return json_response(error_body("not_replicated", message, hash=tx_hash), status=504)
        item = _compute_submit_item(result)
        item.update(replicated=True, holders=holders if holders >= 0 else None)
        return json_response(item, status=202)
    if result.accepted:
        return json_response(_compute_submit_item(result), status=202)
    if result.code == "mempool_full":
        return json_response(
            error_body(result.code, result.message, hash=tx_hash),
            status=503,
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    status = 400 if result.code in _MALFORMED_CODES else 422
    return json_response(error_body(result.code, result.message, hash=tx_hash), status=status)


async def _submit_batch(service: NodeService, items: Any, wait_s: float | None) -> web.Response:
    if not isinstance(items, list) or not items:
        raise RemoteError("txs must be a non-empty list of hex strings", code="bad_request")
    if len(items) > SUBMIT_TXS_MAX:
        raise RemoteError(
            f"at most {SUBMIT_TXS_MAX} transactions per request, got {len(items)}", code="too_many"
        )
    # Items that are not hex are refused here; the rest go to the service in one call.
    results: list[SubmitResult | None] = []
    encoded: list[bytes] = []
    for position, text in enumerate(items):
        try:
            encoded.append(parse_hex(text, f"txs[{position}]"))
            results.append(None)
        except RemoteError as error:
            results.append(SubmitResult(None, False, error.code, error.message))
    admitted = service.submit_transactions(encoded, replicate=wait_s is not None) if encoded else []
    if len(admitted) != len(encoded):
        raise LocalError(
            f"the node answered {len(admitted)} results for {len(encoded)} transactions", code="internal"
        )
    pending = iter(admitted)
    merged = [result if result is not None else next(pending) for result in results]
    accepted = sum(1 for result in merged if result.accepted)
    # Items refused only because the pool is full may be retried: say when.
    is_full = any(result.code == "mempool_full" for result in merged)
    answers = [_compute_submit_item(result) for result in merged]
    if wait_s is not None:
        waited: list[tuple[dict[str, Any], bytes]] = [
            (answer, result.tx_hash)
            for answer, result in zip(answers, merged, strict=True)
            if result.accepted and result.tx_hash is not None
        ]
        holders = await asyncio.gather(
            *(service.wait_for_replication(tx_hash, wait_s) for _, tx_hash in waited)
        )
        for (answer, _), count in zip(waited, holders, strict=True):
            answer["replicated"] = count is not None
    return json_response(
        {
            "accepted": accepted,
            "rejected": len(merged) - accepted,
            "results": answers,
        },
        headers={"Retry-After": str(RETRY_AFTER_S)} if is_full else None,
    )


def _parse_replication_wait(request: web.Request) -> float | None:
    """Seconds to wait for replication (`?wait=replicated[&wait_ms=N]`), or None not to wait."""
    wait = request.query.get("wait")
    if wait is None:
        if "wait_ms" in request.query:
            raise RemoteError("wait_ms goes with wait=replicated", code="bad_request")
        return None
    if wait != "replicated":
        raise RemoteError(f"wait must be 'replicated', got {wait[:40]!r}", code="bad_request")
    text = request.query.get("wait_ms")
    wait_ms = (
        REPLICATION_WAIT_MS_DEFAULT if text is None else parse_natural(text, "wait_ms", code="bad_request")
    )
    if not 1 <= wait_ms <= REPLICATION_WAIT_MS_MAX:
        raise RemoteError(f"wait_ms must be 1..{REPLICATION_WAIT_MS_MAX}, got {wait_ms}", code="bad_request")
    return wait_ms / 1000


async def handle_submit(request: web.Request) -> web.Response:
    write_problems = find_write_problems(get_service(request))
    if write_problems:
        # A node that cannot write its ledger could pool a transaction but never commit it:
        # the client should take it to another node.
        message = "; ".join(problem.message for problem in write_problems)
        return json_response(error_body("storage_unavailable", message), status=503)
    busy = get_service(request).get_busy_reason()
    if busy is not None:
        # Refuse before reading and decoding the body: a client flooding a busy node
        # must not cost it the work the refusal is meant to spare.
        raise RemoteError(busy, code="mempool_full")
    wait_s = _parse_replication_wait(request)
    body = await read_json_object(request)
    keys = set(body)
    if keys == {"tx"}:
        return await _submit_single(get_service(request), body["tx"], wait_s)
    if keys == {"txs"}:
        return await _submit_batch(get_service(request), body["txs"], wait_s)
    raise RemoteError('the body must be {"tx": hex} or {"txs": [hex, ...]}', code="bad_request")


async def handle_transaction(request: web.Request) -> web.Response:
    service = get_service(request)
    tx_hash = parse_hex(request.match_info["hash"], "transaction hash", length=32)
    status = service.get_transaction_status(tx_hash)
    result: dict[str, Any] = {"hash": tx_hash.hex(), "status": status.status}
    if status.status == TxStatus.PENDING:
        return json_response(result)
    if status.status == TxStatus.COMMITTED:
        if status.height is None or status.index is None:
            raise LocalError("a committed transaction without a location", code="internal")
        receipt = status.receipt
        if receipt is None:
            encoded = service.ledger.get_receipt(status.height, status.index)
            if encoded is None:
                raise LocalError(f"no receipt at {status.height}/{status.index}", code="internal")
            receipt = types.decode_receipt(encoded)
        result.update(height=status.height, index=status.index, receipt=compute_receipt_json(receipt))
        return json_response(result)
    if status.status == TxStatus.REJECTED:
        result["error"] = {"code": status.code, "message": status.message}
        return json_response(result)
    return json_response(
        error_body("not_found", f"transaction {tx_hash.hex()} is not known to this node"),
        status=404,
    )


async def handle_transaction_proof(request: web.Request) -> web.Response:
    """Everything to verify offline that a committed transaction and its receipt are in the chain."""
    service = get_service(request)
    tx_hash = parse_hex(request.match_info["hash"], "transaction hash", length=32)
    status = service.get_transaction_status(tx_hash)
    if status.status != TxStatus.COMMITTED or status.height is None or status.index is None:
        return json_response(
            error_body(
                "not_found",
                f"transaction {tx_hash.hex()} is not committed on this node (status: {status.status})",
            ),
            status=404,
        )
    return json_response(proof.compute_proof(service.ledger, status.height, status.index))


def _compute_genesis_json(ledger: LedgerReader) -> dict[str, Any]:
    return {
        "height": 0,
        "hash": ledger.get_genesis_hash().hex(),
        "genesis": True,
        "message": "height 0 is the genesis state defined by genesis.json; it has no block",
        "transactions": [],
    }


async def _wait_for_height(service: NodeService, height: int, timeout_s: float) -> int:
    """The head's height once it reaches `height`, or when `timeout_s` has passed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        head_height = service.ledger.get_head().height
        remaining_s = deadline - loop.time()
        if head_height >= height or remaining_s <= 0:
            return head_height
        await service.wait_for_commit(head_height, remaining_s)


async def handle_block(request: web.Request) -> web.Response:
    service = get_service(request)
    ledger = service.ledger
    text = request.match_info["height"]
    view = request.query.get("transactions", "full")
    if view not in ("full", "hashes"):
        raise RemoteError(f"transactions must be 'full' or 'hashes', got {view[:40]!r}", code="bad_request")
    wait_ms = parse_natural(request.query.get("wait_ms", "0"), "wait_ms", code="bad_request")
    if wait_ms > BLOCK_WAIT_MS_MAX:
        raise RemoteError(f"wait_ms must be at most {BLOCK_WAIT_MS_MAX}, got {wait_ms}", code="bad_request")
    head_height = ledger.get_head().height
    height = head_height if text == "latest" else parse_height(text)
    if height > head_height and wait_ms > 0:
        head_height = await _wait_for_height(service, height, wait_ms / 1000)
    if height == 0:
        return json_response(_compute_genesis_json(ledger))
    block_encoded = ledger.get_block(height) if height <= head_height else None
    certificate_encoded = ledger.get_certificate(height) if block_encoded is not None else None
    if block_encoded is None or certificate_encoded is None:
        return json_response(
            error_body("not_found", f"no block at height {height}; the head is {head_height}"),
            status=404,
        )
    certificate = quorum.decode_commit_certificate(certificate_encoded)
    validators = service.get_validator_set(height)
    if view == "hashes":
        # For followers that only need to know what committed (the benchmark's watcher):
        # ids without decoding the transactions, no per-transaction JSON, no raw encodings.
        header, tx_hashes = types.decode_block_summary(block_encoded)
        return json_response(
            {
                "height": header.height,
                "hash": header.compute_hash().hex(),
                "header": compute_header_json(header),
                "certificate": compute_certificate_json(certificate, validators),
                "transactions": [{"hash": tx_hash.hex()} for tx_hash in tx_hashes],
            }
        )
    block = types.decode_block(block_encoded, check_body=False)
    body: dict[str, Any] = {
        "height": block.height,
        "hash": block.hash.hex(),
        "header": compute_header_json(block.header),
        "certificate": compute_certificate_json(certificate, validators),
    }
    body["transactions"] = [compute_transaction_json(tx) for tx in block.transactions]
    body["block_encoded"] = block_encoded.hex()
    body["certificate_encoded"] = certificate_encoded.hex()
    return json_response(body)


_SUBMIT_BODY_SCHEMA = {
    "oneOf": [
        {"type": "object", "required": ["tx"], "properties": {"tx": HEX}, "additionalProperties": False},
        {
            "type": "object",
            "required": ["txs"],
            "properties": {"txs": {**compute_array_schema(HEX), "minItems": 1, "maxItems": SUBMIT_TXS_MAX}},
            "additionalProperties": False,
        },
    ]
}
_HASH_PARAM = path_param("hash", "a transaction hash: 64 lowercase hex digits", HASH)

ROUTES: tuple[Route, ...] = (
    Route(
        "POST",
        "/v1/transactions",
        handle_submit,
        "Submit one transaction (202) or a batch (200, a result per item)",
        params=(
            query_param(
                "wait",
                "replicated: answer once a quorum of validators' mempools hold it",
                {"enum": ["replicated"]},
            ),
            query_param(
                "wait_ms",
                f"how long to wait for replication, 1..{REPLICATION_WAIT_MS_MAX} "
                f"(default {REPLICATION_WAIT_MS_DEFAULT})",
                {"type": "integer", "minimum": 1, "maximum": REPLICATION_WAIT_MS_MAX},
            ),
        ),
        request_body=_SUBMIT_BODY_SCHEMA,
        responses={200: SUBMIT_BATCH_SCHEMA, 202: SUBMIT_ITEM_SCHEMA},
        errors={
            400: ("bad_request", "malformed_json", "bad_hex", "too_many", "malformed", "too_large"),
            413: ("too_large",),
            422: TX_ERROR_CODES,
            503: ("mempool_full", "storage_unavailable"),
            504: ("not_replicated",),
        },
    ),
    Route(
        "GET",
        "/v1/transactions/{hash}",
        handle_transaction,
        "A transaction's status: pending, committed (with its receipt) or rejected",
        params=(_HASH_PARAM,),
        responses={200: TX_STATUS_SCHEMA},
        errors={400: ("bad_hex",), 404: ("not_found",)},
    ),
    Route(
        "GET",
        "/v1/transactions/{hash}/proof",
        handle_transaction_proof,
        "An offline-verifiable inclusion proof of a committed transaction and its receipt",
        params=(_HASH_PARAM,),
        responses={200: PROOF_SCHEMA},
        errors={400: ("bad_hex",), 404: ("not_found",)},
    ),
    Route(
        "GET",
        "/v1/blocks/{height}",
        handle_block,
        "A block with its header, certificate and transactions (height 0: the genesis summary)",
        params=(
            path_param(
                "height",
                "a height or 'latest'",
                {"anyOf": [{"type": "string", "pattern": "^[0-9]{1,20}$"}, {"const": "latest"}]},
            ),
            query_param(
                "transactions",
                "full (default) or hashes only",
                {"enum": ["full", "hashes"], "default": "full"},
            ),
            query_param(
                "wait_ms",
                f"wait up to this long for a height above the head to commit, 0..{BLOCK_WAIT_MS_MAX}",
                {"type": "integer", "minimum": 0, "maximum": BLOCK_WAIT_MS_MAX, "default": 0},
            ),
        ),
        responses={200: BLOCK_SCHEMA},
        errors={400: ("bad_height", "bad_request"), 404: ("not_found",)},
    ),
)
