"""The `xchain` module: cross-chain data exchange verified against on-chain light clients.

Theory of operation
-------------------
**Trust.**  No relayer is trusted.  Whatever a relayer carries (certified headers, proofs of
validator-set changes, inclusion proofs) is verified inside block execution, by every validator,
against the light client of the counterparty chain that this chain keeps in its own state.  A
lying relayer gets a failed receipt with a stable code; a silent one delays, never forges.  The
assumption left is the counterparty's own: fewer than a third of its validators at any height
are faulty (a quorum of them could certify anything, and the client would follow).

**Counterparty chains** are registered by the council (`governance` proposals `register_chain`
with the chain's id, genesis hash, genesis validator set and genesis state root, and
`remove_chain`; `chainnode council propose --kind register_chain --genesis FILE` computes them
from the counterparty's genesis file).  Approval starts the chain's light client at its genesis
(`chainnode.light.start_light_state`); removal stops it (updates, imports and sends fail with
`unknown_chain`) and keeps what was imported readable.

**Actions** (entities with the `submitter` role sign them; anyone may relay):

- `update_client(chain, steps)`: steps are `(header, certificate, change proof or None)` as
  bytes, at most `STEPS_MAX`.  Each step above the client's height goes through
  `chainnode.light.advance` in sparse mode: heights may be skipped while the validator set is
  unchanged; a header that names a new set must be the next height and carry the
  `ValidatorChangeProof` that the previous block wrote that set.  A step at the client's height
  with another hash is checked by `chainnode.light.check_conflict`: when both are certified, the
  client halts, both headers are stored as `ForkEvidence` and `xchain.fork_detected` is emitted
  (the transaction succeeds, so the halt is committed; later steps are ignored).  A step at the
  client's height with the same hash, or below it, is skipped (two relayers racing do not fail
  each other).  The latest accepted header and its certificate are kept (`xc/h/<chain>`) so that
  a fork at that height can be shown with both headers.
- `import(source_chain, proof)`: `proof` is an inclusion proof (`GET /v1/transactions/{hash}/proof`
  on a node of the source chain) in the argument form of `xchain_args.encode_proof_args`.  A
  proof above the client's height fails with `client_behind` (the relayer updates the client
  first); otherwise `chainnode.app.proof.verify_proof_for_chain` checks it against the light
  state (the header's certificate by the set of its height, the transaction and receipt by
  Merkle paths).  The receipt must be a success (`source_tx_failed`).  The fact (source chain,
  height, tx hash, block hash, module, action, signer, the arguments' hash, the receipt's events,
  importer, local height) is recorded once under `xc/in/<chain> NUL <tx hash>`; a second import
  of the same source transaction fails with `already_imported`.
- `send(dest_chain, payload)`: writes outbound message `seq` (per channel = destination chain,
  from 1) with the payload's hash, the sender and the height, and emits `xchain.sent (dest, seq,
  sender, payload hash)`; the payload itself is in the transaction, which the relayer proves.

**Ordering and acknowledgement.**  Importing a source transaction that is an `xchain.send` to
*this* chain delivers its message: the seq (read from the proven receipt's `xchain.sent` event)
must be the next expected one of the channel (`out_of_order` otherwise, and nothing is written,
so the relayer retries in order; `already_imported` for a seq already delivered).  The message
is stored with its payload (`xc/r/<chain> NUL <seq>`) and `xchain.received (source, seq, sender,
payload hash)` is emitted.  So delivery per channel is exactly once and in order.  Importing back,
on the sending chain, the counterparty's transaction that received one of our messages (its
receipt holds `xchain.received` naming our chain) marks that outbound seq acknowledged, with
`xchain.acknowledged (dest, seq)`; a receipt naming a message we never sent, or with another
payload hash, acknowledges nothing.

**Stable codes** (`types.ErrorCode` 80-89): `unknown_chain` (not registered, or removed),
`client_halted` (fork seen: checks `halted`, `fork`), `bad_header` (light-client checks
`format`, `chain_id`, `parent`, `height`, `gap`), `bad_quorum` (`quorum`,
`certificate_binding`), `bad_validator_change` (`validator_set`, `change_proof`),
`client_behind`, `bad_proof` (any check of the inclusion proof), `source_tx_failed`,
`already_imported`, `out_of_order`; plus the shared `bad_arguments` and `too_large` (a payload
over `PAYLOAD_BYTES_MAX`).  A refusal's message starts with the name of the failed check
(`quorum: ...`, `tx_inclusion: ...`, `chain_id: ...`), so a relayer can tell them apart.

The state layout and its readers are in `chainnode.app.xchain_state`, the records in
`chainnode.app.xchain_records`, the argument forms in `chainnode.app.xchain_args`; registration
and removal (carried out by governance) in `chainnode.app.xchain_registry`.  Size limit: an
import carries the source transaction inside its own, with about 1 KB more for a 4-validator
source (header, certificate at ~70 bytes per signature, two Merkle paths), so a source
transaction that close to `tx_bytes_max` cannot be imported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from chainnode import light
from chainnode.app import proof as proofs
from chainnode.app.state import Action, Event, ExecutionContext, Overlay, TransactionError
from chainnode.app.xchain_registry import put_chain
from chainnode.app.xchain_state import (
    MODULE,
    PAYLOAD_BYTES_MAX,
    STEPS_MAX,
    ChainRecord,
    Fact,
    ForkEvidence,
    InboundMessage,
    OutboundMessage,
    compute_args_hash,
    compute_fact_index_key,
    compute_fact_key,
    compute_fork_key,
    compute_head_key,
    compute_inbound_key,
    compute_light_key,
    compute_outbound_key,
    compute_payload_hash,
    decode_proof_args,
    get_chain,
    get_head,
    get_light_state,
    get_outbound_message,
    is_valid_chain_id,
)
from chainnode.core import codec, quorum, types
from chainnode.core.errors import DecodeError

ErrorCode = types.ErrorCode

# Every event the module emits and its attributes, for subscribers (`chainnode.app.events`).
EVENTS: dict[str, tuple[str, ...]] = {
    "xchain.chain_registered": ("chain", "genesis_hash", "validators"),
    "xchain.chain_removed": ("chain",),
    "xchain.client_updated": ("chain", "from_height", "to_height", "header_hash", "skipped"),
    "xchain.client_validators_changed": ("chain", "from_height", "validator_set_hash"),
    "xchain.fork_detected": ("chain", "height", "known_hash", "other_hash"),
    "xchain.imported": ("chain", "height", "tx_hash", "module", "action", "signer"),
    "xchain.sent": ("dest", "seq", "sender", "payload_hash"),
    "xchain.received": ("source", "seq", "sender", "payload_hash"),
    "xchain.acknowledged": ("dest", "seq"),
}

# The code of each light-client check (`chainnode.light.LightError.check`).
LIGHT_CHECK_CODES: dict[str, ErrorCode] = {
    "format": ErrorCode.BAD_HEADER,
    "chain_id": ErrorCode.BAD_HEADER,
    "parent": ErrorCode.BAD_HEADER,
    "height": ErrorCode.BAD_HEADER,
    "gap": ErrorCode.BAD_HEADER,
    "quorum": ErrorCode.BAD_QUORUM,
    "certificate_binding": ErrorCode.BAD_QUORUM,
    "validator_set": ErrorCode.BAD_VALIDATOR_CHANGE,
    "change_proof": ErrorCode.BAD_VALIDATOR_CHANGE,
    "halted": ErrorCode.CLIENT_HALTED,
    "fork": ErrorCode.CLIENT_HALTED,
}


def _fail(code: ErrorCode, message: str) -> TransactionError:
    return TransactionError(code, message)


def _light_failure(error: light.LightError, where: str) -> TransactionError:
    # The message starts with the check's name (`LightError` puts it first).
    return _fail(LIGHT_CHECK_CODES[error.check], f"{error.message} ({where})")


# ---------------------------------------------------------------- argument checks


def check_update_client_args(args: tuple[Any, ...]) -> None:
    """`xchain.update_client(chain, ((header, certificate, change proof or None), ...))`."""
    if len(args) != 2 or not is_valid_chain_id(args[0]):
        raise _fail(ErrorCode.BAD_ARGUMENTS, "xchain.update_client takes (chain id, steps)")
    steps = args[1]
    if not isinstance(steps, tuple) or not 1 <= len(steps) <= STEPS_MAX:
        raise _fail(ErrorCode.BAD_ARGUMENTS, f"steps must be 1..{STEPS_MAX} (header, certificate, change)")
    for step in steps:
        if not (
            isinstance(step, tuple)
            and len(step) == 3
            and isinstance(step[0], bytes)
            and isinstance(step[1], bytes)
            and (step[2] is None or isinstance(step[2], bytes))
        ):
            raise _fail(
                ErrorCode.BAD_ARGUMENTS,
                "each step is (header bytes, certificate bytes, change proof bytes or None)",
            )


def check_import_args(args: tuple[Any, ...]) -> None:
    """`xchain.import(source chain, proof in the form of xchain_state.encode_proof_args)`."""
    if len(args) != 2 or not is_valid_chain_id(args[0]):
        raise _fail(ErrorCode.BAD_ARGUMENTS, "xchain.import takes (source chain id, proof)")
    if decode_proof_args(args[1]) is None:
        raise _fail(ErrorCode.BAD_ARGUMENTS, "the proof is not in the form of xchain_state.encode_proof_args")


def check_send_args(args: tuple[Any, ...]) -> None:
    """`xchain.send(dest chain id, payload bytes)`."""
    if len(args) != 2 or not is_valid_chain_id(args[0]) or not isinstance(args[1], bytes):
        raise _fail(ErrorCode.BAD_ARGUMENTS, "xchain.send takes (destination chain id, payload bytes)")
    if len(args[1]) > PAYLOAD_BYTES_MAX:
        raise _fail(
            ErrorCode.TOO_LARGE, f"a payload is at most {PAYLOAD_BYTES_MAX} bytes, got {len(args[1])}"
        )


# ---------------------------------------------------------------- shared rules


def _require_chain(overlay: Overlay, chain: str) -> ChainRecord:
    record = get_chain(overlay, chain)
    if record is None or not record.is_active:
        raise _fail(ErrorCode.UNKNOWN_CHAIN, f"chain {chain!r} is not registered")
    return record


def _require_client(overlay: Overlay, chain: str) -> light.LightState:
    state = get_light_state(overlay, chain)
    if state is None:
        raise _fail(ErrorCode.UNKNOWN_CHAIN, f"chain {chain!r} has no light client")
    if state.halted:
        raise _fail(ErrorCode.CLIENT_HALTED, f"the light client of {chain!r} is halted: {state.halted}")
    return state


# ---------------------------------------------------------------- update_client


def apply_update_client(
    overlay: Overlay, tx: types.Transaction, context: ExecutionContext
) -> Sequence[Event]:
    chain, steps = tx.args
    _require_chain(overlay, chain)
    client = _require_client(overlay, chain)
    from_height = client.height
    head = get_head(overlay, chain)
    events: list[Event] = []
    skipped = 0
    for index, (header_bytes, certificate_bytes, change_bytes) in enumerate(steps):
        where = f"step {index}"
        try:
            header = types.decode_block_header(header_bytes)
        except DecodeError as error:
            raise _fail(ErrorCode.BAD_HEADER, f"format: {where}: {error.message}") from error
        where = f"step {index} (height {header.height})"
        if 1 <= header.height < client.height:
            skipped += 1  # below what the client knows: nothing to learn, nothing to check against
            continue
        if header.height == client.height and header.height >= 1:
            try:
                checked = light.check_conflict(client, client.header_hash, header_bytes, certificate_bytes)
            except light.LightError as error:
                raise _light_failure(error, where) from error
            if not checked.halted:
                skipped += 1  # the header the client holds
                continue
            known_header, known_certificate = head if head is not None else (b"", b"")
            evidence = ForkEvidence(
                header.height,
                known_header,
                known_certificate,
                header_bytes,
                certificate_bytes,
                context.height,
            )
            overlay.put(compute_fork_key(chain), evidence.encode())
            events.append(
                ("xchain.fork_detected", (chain, header.height, client.header_hash, header.compute_hash()))
            )
            client = checked
            break
        change = None
        if change_bytes is not None:
            try:
                change = light.decode_validator_change_proof(change_bytes)
            except (DecodeError, light.LightError) as error:
                raise _fail(
                    ErrorCode.BAD_VALIDATOR_CHANGE, f"change_proof: {error.message} ({where})"
                ) from error
        sets_before = len(client.sets)
        try:
            client = light.advance(client, header_bytes, certificate_bytes, change)
        except light.LightError as error:
            raise _light_failure(error, where) from error
        if len(client.sets) > sets_before:
            from_set_height, encoded_set = client.sets[-1]
            set_hash = quorum.decode_validator_set(encoded_set).compute_hash()
            events.append(("xchain.client_validators_changed", (chain, from_set_height, set_hash)))
        head = (header_bytes, certificate_bytes)
    overlay.put(compute_light_key(chain), client.encode())
    if head is not None:
        overlay.put(compute_head_key(chain), codec.encode(head))
    updated: Event = (
        "xchain.client_updated",
        (chain, from_height, client.height, client.header_hash, skipped),
    )
    return [updated, *events]


# ---------------------------------------------------------------- import


def _find_event(receipt: types.Receipt, name: str) -> tuple[Any, ...] | None:
    for event_name, attributes in receipt.events:
        if event_name == name:
            return attributes
    return None


def _deliver(
    overlay: Overlay,
    record: ChainRecord,
    result: proofs.ProofResult,
    tx: types.Transaction,
    context: ExecutionContext,
) -> tuple[ChainRecord, list[Event]]:
    """Deliver the message of a proven `xchain.send` to this chain, in channel order."""
    sent = _find_event(result.receipt, "xchain.sent")
    source_tx = result.transaction
    if sent is None or len(sent) != 4 or not isinstance(sent[1], int) or len(source_tx.args) != 2:
        raise _fail(ErrorCode.BAD_PROOF, "receipt: the send's receipt holds no xchain.sent event")
    seq = sent[1]
    payload = source_tx.args[1]
    if not isinstance(payload, bytes) or len(payload) > PAYLOAD_BYTES_MAX:
        raise _fail(ErrorCode.BAD_PROOF, "receipt: the send's payload is not bytes of the allowed size")
    if seq <= record.delivered:
        raise _fail(
            ErrorCode.ALREADY_IMPORTED, f"message {seq} from {record.chain_id!r} is already delivered"
        )
    if seq != record.delivered + 1:
        raise _fail(
            ErrorCode.OUT_OF_ORDER,
            f"message {seq} from {record.chain_id!r}: the next one to deliver is {record.delivered + 1}",
        )
    message = InboundMessage(
        record.chain_id,
        seq,
        source_tx.signer,
        payload,
        result.height,
        source_tx.hash,
        context.height,
        tx.hash,
    )
    overlay.put(compute_inbound_key(record.chain_id, seq), message.encode())
    received: Event = (
        "xchain.received",
        (record.chain_id, seq, source_tx.signer, compute_payload_hash(payload)),
    )
    return replace(record, delivered=seq), [received]


def _acknowledge(
    overlay: Overlay, record: ChainRecord, result: proofs.ProofResult, own_chain_id: str, height: int
) -> tuple[ChainRecord, list[Event]]:
    """Mark acknowledged each of our messages that the proven counterparty import received."""
    events: list[Event] = []
    for name, attributes in result.receipt.events:
        if name != "xchain.received" or len(attributes) != 4 or attributes[0] != own_chain_id:
            continue
        seq, payload_hash = attributes[1], attributes[3]
        if not isinstance(seq, int) or isinstance(seq, bool) or not 1 <= seq < 2**64:
            continue
        message = get_outbound_message(overlay, record.chain_id, seq)
        if message is None or message.payload_hash != payload_hash or message.acknowledged_height:
            continue
        overlay.put(
            compute_outbound_key(record.chain_id, seq), replace(message, acknowledged_height=height).encode()
        )
        record = replace(record, acknowledged=record.acknowledged + 1)
        events.append(("xchain.acknowledged", (record.chain_id, seq)))
    return record, events


def _verify_import(overlay: Overlay, source_chain: str, proof_args: Any) -> proofs.ProofResult:
    """The source transaction an import proves: the proof checked against the chain's light
    client, and the transaction's receipt a success."""
    client = _require_client(overlay, source_chain)
    proof = decode_proof_args(proof_args)
    assert proof is not None, "checked by check_import_args"
    if proof["height"] > client.height:
        raise _fail(
            ErrorCode.CLIENT_BEHIND,
            f"the proof is for height {proof['height']}; "
            f"the client of {source_chain!r} is at {client.height}",
        )
    try:
        result = proofs.verify_proof_for_chain(proof, source_chain, client)
    except proofs.ProofError as error:
        raise _fail(ErrorCode.BAD_PROOF, error.message) from error
    except light.LightError as error:
        raise _fail(ErrorCode.BAD_PROOF, f"{error.check}: {error.message}") from error
    receipt = result.receipt
    if not receipt.ok:
        raise _fail(
            ErrorCode.SOURCE_TX_FAILED,
            f"the source transaction failed on {source_chain!r} (code {receipt.code}: {receipt.message})",
        )
    return result


def _record_fact(
    overlay: Overlay,
    record: ChainRecord,
    result: proofs.ProofResult,
    tx: types.Transaction,
    context: ExecutionContext,
) -> tuple[ChainRecord, Event]:
    """Record the proven source transaction as the chain's next fact, once."""
    source_chain = record.chain_id
    source_tx = result.transaction
    fact_key = compute_fact_key(source_chain, source_tx.hash)
    if overlay.get_state(fact_key) is not None:
        raise _fail(
            ErrorCode.ALREADY_IMPORTED,
            f"transaction {source_tx.hash.hex()} of {source_chain!r} is already imported",
        )
    index = record.facts + 1
    fact = Fact(
        source_chain=source_chain,
        height=result.height,
        tx_hash=source_tx.hash,
        block_hash=result.block_hash,
        module=source_tx.module,
        action=source_tx.action,
        signer=source_tx.signer,
        args_hash=compute_args_hash(source_tx.args),
        events=result.receipt.events,
        importer=tx.signer,
        local_height=context.height,
        local_tx_hash=tx.hash,
        index=index,
    )
    overlay.put(fact_key, fact.encode())
    overlay.put(compute_fact_index_key(source_chain, index), source_tx.hash)
    imported: Event = (
        "xchain.imported",
        (
            source_chain,
            result.height,
            source_tx.hash,
            source_tx.module,
            source_tx.action,
            source_tx.signer,
        ),
    )
    return replace(record, facts=index), imported


def apply_import(overlay: Overlay, tx: types.Transaction, context: ExecutionContext) -> Sequence[Event]:
    source_chain, proof_args = tx.args
    record = _require_chain(overlay, source_chain)
    result = _verify_import(overlay, source_chain, proof_args)
    source_tx = result.transaction
    record, imported = _record_fact(overlay, record, result, tx, context)
    events: list[Event] = [imported]
    if source_tx.module == MODULE and source_tx.action == "send" and source_tx.args[:1] == (tx.chain_id,):
        record, delivered = _deliver(overlay, record, result, tx, context)
        events += delivered
    elif source_tx.module == MODULE and source_tx.action == "import":
        record, acknowledged = _acknowledge(overlay, record, result, tx.chain_id, context.height)
        events += acknowledged
    put_chain(overlay, record)
    return events


# ---------------------------------------------------------------- send


def apply_send(overlay: Overlay, tx: types.Transaction, context: ExecutionContext) -> Sequence[Event]:
    dest_chain, payload = tx.args
    record = _require_chain(overlay, dest_chain)
    seq = record.sent + 1
    payload_hash = compute_payload_hash(payload)
    message = OutboundMessage(dest_chain, seq, tx.signer, payload_hash, context.height, tx.hash, 0)
    overlay.put(compute_outbound_key(dest_chain, seq), message.encode())
    put_chain(overlay, replace(record, sent=seq))
    return [("xchain.sent", (dest_chain, seq, tx.signer, payload_hash))]


ACTIONS: dict[tuple[str, str], Action] = {
    (MODULE, "update_client"): Action(
        role="submitter", check_args=check_update_client_args, apply=apply_update_client
    ),
    (MODULE, "import"): Action(role="submitter", check_args=check_import_args, apply=apply_import),
    (MODULE, "send"): Action(role="submitter", check_args=check_send_args, apply=apply_send),
}
