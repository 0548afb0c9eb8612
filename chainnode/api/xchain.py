"""HTTP endpoints for cross-chain exchange: registered counterparty chains with their on-chain
light clients, imported facts, and the messages of each channel.

Theory of operation: read-only views of the committed state of the `xchain` module, through the
readers of `chainnode.app.xchain_state` over the node's ledger (point reads only);
`chainnode.api.server.create_app` mounts their declarations (`ROUTES`).  A relayer reads here
what the destination already holds (the client's height, the next sequence number to deliver,
whether a source transaction was imported) and fetches the rest from the source node
(`/v1/light/headers`, `/v1/light/changes`, `/v1/transactions/{hash}/proof`).  Lists are paged:
`limit` (1..`common.LIMIT_MAX`) and `cursor`, the previous page's `next_cursor` (the count of
items before the page: a fact's index, a message's sequence number), null on the last page.

- `GET /v1/xchain/chains[?limit&cursor]`: every chain ever registered, in registration order,
  each with its status, channel counters and light-client head.
- `GET /v1/xchain/chains/{chain}`: one chain, with the latest header and certificate its client
  accepted and, after a fork, the evidence that halted it.
- `GET /v1/xchain/chains/{chain}/facts[?limit&cursor]`: facts imported from the chain, in import order.
- `GET /v1/xchain/chains/{chain}/facts/{tx_hash}`: the fact of one source transaction.
- `GET /v1/xchain/chains/{chain}/outbound[?limit&cursor]`: messages sent to the chain, by seq.
- `GET /v1/xchain/chains/{chain}/inbound[?limit&cursor]`: messages delivered from the chain, by seq.

An unknown chain or fact answers 404 `not_found`; a tx hash that is not 64 lowercase hex
characters 400 `bad_hex`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web

from chainnode.api.common import (
    CURSOR_PARAM,
    LIMIT_PARAM,
    PAGE_ERRORS,
    Route,
    check_name,
    compute_offset_page,
    get_ledger,
    json_response,
    not_found,
    parse_limit,
    parse_offset_cursor,
    path_param,
)
from chainnode.api.forms import (
    ANY,
    BOOLEAN,
    HASH,
    HEX,
    INTEGER,
    STRING,
    compute_array_schema,
    compute_json_value,
    compute_nullable_schema,
    compute_object_schema,
    compute_page_schema,
)
from chainnode.api.service import LedgerReader
from chainnode.app import xchain_state
from chainnode.core.hexstr import parse_hex

# ---------------------------------------------------------------- JSON forms


def compute_chain_json(ledger: LedgerReader, record: xchain_state.ChainRecord) -> dict[str, Any]:
    client = xchain_state.get_light_state(ledger, record.chain_id)
    return {
        "chain_id": record.chain_id,
        "status": "registered" if record.is_active else "removed",
        "genesis_hash": record.genesis_hash.hex(),
        "genesis_state_root": record.genesis_state_root.hex(),
        "registered_height": record.registered_height,
        "removed_height": record.removed_height or None,
        "facts": record.facts,
        "sent": record.sent,
        "delivered": record.delivered,
        "acknowledged": record.acknowledged,
        "client": None if client is None else client.to_json(),
    }


def compute_fact_json(fact: xchain_state.Fact) -> dict[str, Any]:
    return {
        "source_chain": fact.source_chain,
        "height": fact.height,
        "tx_hash": fact.tx_hash.hex(),
        "block_hash": fact.block_hash.hex(),
        "module": fact.module,
        "action": fact.action,
        "signer": fact.signer,
        "args_hash": fact.args_hash.hex(),
        "receipt": {
            "events": [
                {"name": name, "attributes": compute_json_value(attributes)}
                for name, attributes in fact.events
            ]
        },
        "importer": fact.importer,
        "local_height": fact.local_height,
        "local_tx_hash": fact.local_tx_hash.hex(),
        "index": fact.index,
    }


def compute_outbound_json(message: xchain_state.OutboundMessage) -> dict[str, Any]:
    return {
        "dest_chain": message.dest_chain,
        "seq": message.seq,
        "sender": message.sender,
        "payload_hash": message.payload_hash.hex(),
        "height": message.height,
        "tx_hash": message.tx_hash.hex(),
        "acknowledged": message.acknowledged_height != 0,
        "acknowledged_height": message.acknowledged_height or None,
    }


def compute_inbound_json(message: xchain_state.InboundMessage) -> dict[str, Any]:
    return {
        "source_chain": message.source_chain,
        "seq": message.seq,
        "sender": message.sender,
        "payload": message.payload.hex(),
        "payload_hash": xchain_state.compute_payload_hash(message.payload).hex(),
        "source_height": message.source_height,
        "source_tx_hash": message.source_tx_hash.hex(),
        "height": message.height,
        "tx_hash": message.tx_hash.hex(),
    }


# ---------------------------------------------------------------- handlers


def _find_chain(ledger: LedgerReader, request: web.Request) -> xchain_state.ChainRecord | None:
    chain = check_name(request.match_info["chain"], "chain id")
    return xchain_state.get_chain(ledger, chain)


def _no_chain(request: web.Request) -> web.Response:
    return not_found(f"no registered chain {request.match_info['chain']!r}")


async def handle_chains(request: web.Request) -> web.Response:
    ledger = get_ledger(request)
    page, next_cursor = compute_offset_page(xchain_state.get_chain_ids(ledger), request)
    chains = []
    for chain in page:
        record = xchain_state.get_chain(ledger, chain)
        if record is not None:
            chains.append(compute_chain_json(ledger, record))
    return json_response({"chains": chains, "next_cursor": next_cursor})


async def handle_chain(request: web.Request) -> web.Response:
    ledger = get_ledger(request)
    record = _find_chain(ledger, request)
    if record is None:
        return _no_chain(request)
    answer = compute_chain_json(ledger, record)
    head = xchain_state.get_head(ledger, record.chain_id)
    answer["head"] = None if head is None else {"header": head[0].hex(), "certificate": head[1].hex()}
    fork = xchain_state.get_fork_evidence(ledger, record.chain_id)
    answer["fork"] = (
        None
        if fork is None
        else {
            "height": fork.height,
            "known_header": fork.known_header.hex(),
            "known_certificate": fork.known_certificate.hex(),
            "other_header": fork.other_header.hex(),
            "other_certificate": fork.other_certificate.hex(),
            "local_height": fork.local_height,
        }
    )
    return json_response(answer)


async def _answer_page(
    request: web.Request,
    field: str,
    read: Callable[..., Sequence[Any]],
    count_of: Callable[[xchain_state.ChainRecord], int],
    to_json: Callable[[Any], dict[str, Any]],
) -> web.Response:
    """One page of a chain's dense sequence (facts by import index, messages by seq): the items
    after the cursor, and the cursor of the next page while the sequence goes on."""
    ledger = get_ledger(request)
    limit = parse_limit(request)
    after = parse_offset_cursor(request)
    record = _find_chain(ledger, request)
    if record is None:
        return _no_chain(request)
    items = read(ledger, record.chain_id, after=after, limit=limit)
    last = after + len(items)  # the sequences have no holes: the last item's index or seq
    return json_response(
        {
            "chain": record.chain_id,
            field: [to_json(item) for item in items],
            "next_cursor": str(last) if last < count_of(record) else None,
        }
    )


async def handle_facts(request: web.Request) -> web.Response:
    return await _answer_page(
        request, "facts", xchain_state.list_facts, lambda record: record.facts, compute_fact_json
    )


async def handle_fact(request: web.Request) -> web.Response:
    ledger = get_ledger(request)
    tx_hash = parse_hex(request.match_info["tx_hash"], "tx_hash", length=32, lowercase=True)
    record = _find_chain(ledger, request)
    if record is None:
        return _no_chain(request)
    fact = xchain_state.get_fact(ledger, record.chain_id, tx_hash)
    if fact is None:
        return not_found(f"no fact of transaction {tx_hash.hex()} imported from {record.chain_id!r}")
    return json_response(compute_fact_json(fact))


async def handle_outbound(request: web.Request) -> web.Response:
    return await _answer_page(
        request, "messages", xchain_state.list_outbound, lambda record: record.sent, compute_outbound_json
    )


async def handle_inbound(request: web.Request) -> web.Response:
    return await _answer_page(
        request, "messages", xchain_state.list_inbound, lambda record: record.delivered, compute_inbound_json
    )


# ---------------------------------------------------------------- the routes, declared once

CLIENT_SCHEMA = compute_object_schema(
    {
        "chain_id": STRING,
        "genesis_hash": HASH,
        "height": INTEGER,
        "header_hash": HASH,
        "state_root": HASH,
        "validator_set_hash": HASH,
        "validators": compute_array_schema(STRING),
        "validator_changes": compute_array_schema(INTEGER),
        "halted": STRING,
    }
)
CHAIN_SCHEMA = compute_object_schema(
    {
        "chain_id": STRING,
        "status": {"enum": ["registered", "removed"]},
        "genesis_hash": HASH,
        "genesis_state_root": HASH,
        "registered_height": INTEGER,
        "removed_height": compute_nullable_schema(INTEGER),
        "facts": INTEGER,
        "sent": INTEGER,
        "delivered": INTEGER,
        "acknowledged": INTEGER,
        "client": compute_nullable_schema(CLIENT_SCHEMA),
    }
)
_FORK_SCHEMA = compute_object_schema(
    {
        "height": INTEGER,
        "known_header": HEX,
        "known_certificate": HEX,
        "other_header": HEX,
        "other_certificate": HEX,
        "local_height": INTEGER,
    }
)
_CHAIN_DETAIL_SCHEMA = {
    "allOf": [
        CHAIN_SCHEMA,
        compute_object_schema(
            {
                "head": compute_nullable_schema(compute_object_schema({"header": HEX, "certificate": HEX})),
                "fork": compute_nullable_schema(_FORK_SCHEMA),
            }
        ),
    ]
}
FACT_SCHEMA = compute_object_schema(
    {
        "source_chain": STRING,
        "height": INTEGER,
        "tx_hash": HASH,
        "block_hash": HASH,
        "module": STRING,
        "action": STRING,
        "signer": STRING,
        "args_hash": HASH,
        # The source receipt's events (the receipt was a success: no code or message to keep).
        "receipt": compute_object_schema(
            {
                "events": compute_array_schema(
                    compute_object_schema({"name": STRING, "attributes": compute_array_schema(ANY)})
                )
            }
        ),
        "importer": STRING,
        "local_height": INTEGER,
        "local_tx_hash": HASH,
        "index": INTEGER,
    }
)
OUTBOUND_SCHEMA = compute_object_schema(
    {
        "dest_chain": STRING,
        "seq": INTEGER,
        "sender": STRING,
        "payload_hash": HASH,
        "height": INTEGER,
        "tx_hash": HASH,
        "acknowledged": BOOLEAN,
        "acknowledged_height": compute_nullable_schema(INTEGER),
    }
)
INBOUND_SCHEMA = compute_object_schema(
    {
        "source_chain": STRING,
        "seq": INTEGER,
        "sender": STRING,
        "payload": HEX,
        "payload_hash": HASH,
        "source_height": INTEGER,
        "source_tx_hash": HASH,
        "height": INTEGER,
        "tx_hash": HASH,
    }
)
_CHAIN_PARAM = path_param("chain", "a counterparty chain id")
_NOT_FOUND = {404: ("not_found",)}
_PAGE_ERRORS = {400: ("bad_request", *PAGE_ERRORS[400]), **_NOT_FOUND}

ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/v1/xchain/chains",
        handle_chains,
        "Counterparty chains ever registered, with their light-client heads and channel counters",
        params=(LIMIT_PARAM, CURSOR_PARAM),
        responses={200: compute_page_schema("chains", CHAIN_SCHEMA)},
        errors={400: PAGE_ERRORS[400]},
        tag="xchain",
    ),
    Route(
        "GET",
        "/v1/xchain/chains/{chain}",
        handle_chain,
        "One counterparty chain: its light client, the latest header it accepted, fork evidence",
        params=(_CHAIN_PARAM,),
        responses={200: _CHAIN_DETAIL_SCHEMA},
        errors={400: ("bad_request",), **_NOT_FOUND},
        tag="xchain",
    ),
    Route(
        "GET",
        "/v1/xchain/chains/{chain}/facts",
        handle_facts,
        "Facts imported from a chain, in import order",
        params=(_CHAIN_PARAM, LIMIT_PARAM, CURSOR_PARAM),
        responses={200: compute_page_schema("facts", FACT_SCHEMA, chain=STRING)},
        errors=_PAGE_ERRORS,
        tag="xchain",
    ),
    Route(
        "GET",
        "/v1/xchain/chains/{chain}/facts/{tx_hash}",
        handle_fact,
        "The fact of one source transaction imported from a chain",
        params=(_CHAIN_PARAM, path_param("tx_hash", "the source transaction's hash", HASH)),
        responses={200: FACT_SCHEMA},
        errors={400: ("bad_request", "bad_hex"), **_NOT_FOUND},
        tag="xchain",
    ),
    Route(
        "GET",
        "/v1/xchain/chains/{chain}/outbound",
        handle_outbound,
        "Messages sent to a chain, by sequence number, with their acknowledgement",
        params=(_CHAIN_PARAM, LIMIT_PARAM, CURSOR_PARAM),
        responses={200: compute_page_schema("messages", OUTBOUND_SCHEMA, chain=STRING)},
        errors=_PAGE_ERRORS,
        tag="xchain",
    ),
    Route(
        "GET",
        "/v1/xchain/chains/{chain}/inbound",
        handle_inbound,
        "Messages delivered from a chain, by sequence number, with their payloads",
        params=(_CHAIN_PARAM, LIMIT_PARAM, CURSOR_PARAM),
        responses={200: compute_page_schema("messages", INBOUND_SCHEMA, chain=STRING)},
        errors=_PAGE_ERRORS,
        tag="xchain",
    ),
)
