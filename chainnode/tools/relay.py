"""The relayer: carries committed transactions of one chain into another (issue 14).

Theory of operation
-------------------
A relayer reads the committed events of a source chain (`GET /v1/events`, long-polled) from a
cursor, selects the transactions to carry (`Selection`: every `xchain.send` whose destination
is the destination chain, and, if asked, every transaction of a module and entity, such as the
record writes of one entity), and for each batch of them, in chain order:

1. reads the destination's on-chain light client of the source chain (its height) and brings
   it up to the highest source height in the batch (`plan_client_updates`): one
   `xchain.update_client` transaction per certified header, skipping heights while the
   validator set is unchanged, and stopping at the block that wrote each new validator set
   so the next header is carried with its change proof (`GET /v1/light/changes`); headers and
   their commit certificates come from `GET /v1/light/headers`;
2. fetches each transaction's inclusion proof (`GET /v1/transactions/{hash}/proof`) and submits
   `xchain.import(source_chain, proof)` for all of them in one batch, then waits for each
   outcome: an OK receipt, or `already_imported` (some relayer, maybe this one before a crash,
   did it first), both count as done; any other code stops the relayer with that code;
3. saves its state (`RelayState`: the events cursor just past the batch's last transaction, the
   hash of that transaction, a count) to a small JSON file, atomically: written to a temporary
   file, synced, renamed over the old one, and the directory synced.

Resuming.  After a crash the relayer starts from the saved cursor, so it re-reads at most the
batch it was in the middle of.  Every transaction of that batch is submitted again; those that
were imported before the crash come back `already_imported` and count as done: nothing is lost
(the cursor never passes a transaction whose import is not committed) and nothing is imported
twice (the destination records each source transaction once).  A transaction whose events
straddle two pages is carried once: the state's `last_relayed` is skipped when it reappears.

Why it needs no trust.  A relayer holds no key that the destination trusts for anything but
paying its own transactions' way through admission: everything it carries is checked inside
the destination's block execution.  A header advances the light client only with a quorum of
COMMIT signatures of the validator set the client already trusts (or, at a set change, of the
set proven to have been written by the previous certified block); an import is accepted only
with an inclusion proof of the transaction and its receipt under a header the client has
accepted.  So a relayer that lies (alters a record, forges a certificate, brings a header of
another chain, replays an import) gets its transaction refused with a stable code, and a
relayer that stops, crashes or withholds only delays delivery: anyone else can run one from
the same events and finish the work, and the destination's once-only record of imports makes
their overlap harmless.

Bounds: events are read `events_per_page` at a time with a long poll of `wait_ms`; at most
`batch_txs_max` imports per batch; every request has a timeout; a failed round is tried again
after a pause that doubles from `backoff_s` up to `backoff_max_s`, and `retries_max` failures
in a row stop the relayer with the last error.  `stop` (set by SIGTERM or SIGINT in the CLI) is
looked at between requests: the relayer saves what is done and returns.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from chainnode.core import types
from chainnode.core.errors import ChainError, LocalError
from chainnode.sdk.client import Client, Identity, build_transaction
from chainnode.sdk.errors import ClientError
from chainnode.sdk.events import get_events_page
from chainnode.tools.relay_state import RelayState, load_relay_state, save_relay_state

log = logging.getLogger(__name__)

EVENTS_PER_PAGE_DEFAULT = 500
BATCH_TXS_MAX_DEFAULT = 200
WAIT_MS_DEFAULT = 1_000
TIMEOUT_S_DEFAULT = 30.0
RETRIES_MAX_DEFAULT = 30
BACKOFF_S_DEFAULT = 0.2
BACKOFF_MAX_S_DEFAULT = 5.0
VALID_FOR_BLOCKS = 1_000
COMMIT_POLL_MS = 20

# The xchain module's names (chainnode.app.xchain): actions, events, receipt codes.
XCHAIN_MODULE = "xchain"
UPDATE_ACTION = "update_client"
IMPORT_ACTION = "import"
SEND_EVENT = "xchain.sent"
ALREADY_IMPORTED = "already_imported"


class RelayError(LocalError):
    """The relayer cannot go on: the destination refused an update or an import it was sent."""

    code = "relay_failed"


# ---------------------------------------------------------------- selection


@dataclass(frozen=True, slots=True)
class Selection:
    """Which source transactions a relayer carries."""

    destination_chain: str  # every xchain send to this chain
    module: str | None = None  # and, when set, every transaction with an event of this module
    entity: str | None = None  # ... about or signed by this entity (with `module` or alone)

    def is_selected(self, event: Mapping[str, Any]) -> bool:
        """Whether the transaction that emitted `event` (an event of `GET /v1/events`) is carried."""
        if event.get("name") == SEND_EVENT:
            attributes = event.get("attributes") or []
            return bool(attributes) and attributes[0] == self.destination_chain
        if self.module is None and self.entity is None:
            return False
        if self.module is not None and event.get("module") != self.module:
            return False
        return self.entity is None or self.entity in (event.get("entity"), event.get("signer"))


@dataclass(frozen=True, slots=True)
class SelectedTx:
    """A source transaction to carry, with where its events put it."""

    tx_hash: str  # hex
    height: int
    tx_index: int
    timestamp_ms: int  # its block's timestamp on the source chain
    cursor: str  # the cursor just past its last selected event in the page


def select_transactions(
    events: Iterable[Mapping[str, Any]], selection: Selection, *, skip: str = ""
) -> list[SelectedTx]:
    """The transactions `selection` carries among `events` (in chain order), each once, except
    `skip` (the last one already carried, whose events may straddle pages)."""
    selected: dict[str, SelectedTx] = {}
    for event in events:
        tx_hash = str(event["tx_hash"])
        if tx_hash == skip:
            continue
        if tx_hash in selected:
            selected[tx_hash] = replace(selected[tx_hash], cursor=str(event["cursor"]))
        elif selection.is_selected(event):
            selected[tx_hash] = SelectedTx(
                tx_hash,
                int(event["height"]),
                int(event["tx_index"]),
                int(event["timestamp_ms"]),
                str(event["cursor"]),
            )
    return list(selected.values())


# ---------------------------------------------------------------- light-client updates


@dataclass(frozen=True, slots=True)
class UpdateStep:
    """One header to carry to the destination's light client."""

    height: int
    change_height: int | None  # the block that wrote this header's new validator set, if any


def plan_client_updates(
    client_height: int, target_height: int, change_heights: Sequence[int]
) -> list[UpdateStep]:
    """The headers that take a light client at `client_height` to at least `target_height`.

    A validator-set change written by block c is effective from c + 1; a client may skip
    heights while the set is unchanged, but must accept header c and then header c + 1 with the
    proof that block c wrote the new set (`chainnode.light.verify.advance`)."""
    steps: list[UpdateStep] = []
    height = client_height
    for change in sorted(set(change_heights)):
        if change < height or change >= target_height:
            continue  # already followed, or effective past what is needed now
        if change > height:
            steps.append(UpdateStep(change, None))
        steps.append(UpdateStep(change + 1, change))
        height = change + 1
    if target_height > height:
        steps.append(UpdateStep(target_height, None))
    return steps


# ---------------------------------------------------------------- the relayer


@dataclass(frozen=True, slots=True)
class RelayConfig:
    """How a relayer runs (see the module docstring for the bounds)."""

    state_path: Path
    selection_module: str | None = None
    selection_entity: str | None = None
    events_per_page: int = EVENTS_PER_PAGE_DEFAULT
    batch_txs_max: int = BATCH_TXS_MAX_DEFAULT
    wait_ms: int = WAIT_MS_DEFAULT
    timeout_s: float = TIMEOUT_S_DEFAULT
    retries_max: int = RETRIES_MAX_DEFAULT
    backoff_s: float = BACKOFF_S_DEFAULT
    backoff_max_s: float = BACKOFF_MAX_S_DEFAULT
    stop_when_caught_up: bool = False  # return once every committed event is read (bench, tests)


@dataclass(frozen=True, slots=True)
class Imported:
    """A source transaction whose import committed on the destination (or was there already)."""

    source: SelectedTx
    destination_tx: str  # hash (hex) of the import transaction this relayer submitted
    destination_height: int | None  # its height; None when an earlier import was found
    already: bool


@dataclass
class RelayReport:
    """What a run did."""

    state: RelayState
    imported: int = 0
    already_imported: int = 0
    updates: int = 0
    stopped: str = ""
    outcomes: list[Imported] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "source_chain": self.state.source_chain,
            "destination_chain": self.state.destination_chain,
            "cursor": self.state.cursor,
            "last_relayed": self.state.last_relayed,
            "relayed_total": self.state.relayed,
            "imported": self.imported,
            "already_imported": self.already_imported,
            "client_updates": self.updates,
            "stopped": self.stopped,
        }


def _chunks(items: Sequence[SelectedTx], size: int) -> list[Sequence[SelectedTx]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def _is_transient(error: ChainError) -> bool:
    """A failure that trying again later can cure: no answer, a busy or failing node, or a client
    update that raced another relayer's (the round reads the client again)."""
    if isinstance(error, ClientUpdateError):
        return True
    if isinstance(error, ClientError):
        return error.status is None or error.status >= 500 or error.status == 429
    return False


class ClientUpdateError(RelayError):
    """The destination refused a header update (another relayer may have advanced the client)."""

    code = "client_update_refused"


class Relayer:
    """Carries selected transactions from `source` to `destination` (see the module docstring)."""

    def __init__(
        self,
        source: Client,
        destination: Client,
        identity: Identity,
        config: RelayConfig,
        *,
        stop: threading.Event | None = None,
        on_imported: Callable[[Imported], None] | None = None,
    ) -> None:
        self.source = source
        self.destination = destination
        self.identity = identity
        self.config = config
        self.stop = stop or threading.Event()
        self.on_imported = on_imported
        self.source_chain = str(source.get_status()["chain_id"])
        self.destination_chain = str(destination.get_status()["chain_id"])
        self.selection = Selection(self.destination_chain, config.selection_module, config.selection_entity)
        self.report = RelayReport(
            load_relay_state(config.state_path, self.source_chain, self.destination_chain)
        )

    @property
    def state(self) -> RelayState:
        return self.report.state

    def run(self) -> RelayReport:
        """Relay until stopped (or caught up, with `stop_when_caught_up`); raises the last error
        after `retries_max` failed rounds in a row, or at once for a refused import."""
        failures = 0
        delay_s = self.config.backoff_s
        while not self.stop.is_set():
            try:
                caught_up = self._run_round()
            except ChainError as error:
                if not _is_transient(error) or failures >= self.config.retries_max:
                    raise
                failures += 1
                log.warning("relay round failed (%d in a row), again in %.1f s: %s", failures, delay_s, error)
                self.stop.wait(delay_s)
                delay_s = min(delay_s * 2, self.config.backoff_max_s)
                continue
            failures = 0
            delay_s = self.config.backoff_s
            if caught_up and self.config.stop_when_caught_up:
                self.report.stopped = "caught_up"
                return self.report
        self.report.stopped = "signal"
        return self.report

    def _save(self, state: RelayState) -> None:
        save_relay_state(self.config.state_path, state)
        self.report.state = state

    def _run_round(self) -> bool:
        """Read one page of events and carry what it selects; whether the page was the last."""
        page = get_events_page(
            self.source,
            from_cursor=self.state.cursor,
            limit=self.config.events_per_page,
            wait_ms=0 if self.stop.is_set() else self.config.wait_ms,
        )
        selected = select_transactions(page["events"], self.selection, skip=self.state.last_relayed)
        for chunk in _chunks(selected, self.config.batch_txs_max):
            if self.stop.is_set():
                return False
            self._relay_chunk(chunk)
            last = chunk[-1]
            self._save(
                replace(
                    self.state,
                    cursor=last.cursor,
                    last_relayed=last.tx_hash,
                    relayed=self.state.relayed + len(chunk),
                )
            )
        next_cursor = str(page["next"])
        if next_cursor != self.state.cursor:
            self._save(replace(self.state, cursor=next_cursor))
        return bool(page.get("caught_up")) and not page["events"]

    # ------------------------------------------------------------ one batch

    def _relay_chunk(self, chunk: Sequence[SelectedTx]) -> None:
        self._update_client(max(item.height for item in chunk))
        proofs = [self.source.get_proof(item.tx_hash) for item in chunk]
        transactions = [
            self._build(IMPORT_ACTION, (self.source_chain, encode_proof(proof))) for proof in proofs
        ]
        answer = self.destination.submit_batch(transactions)
        for item, tx, result in zip(chunk, transactions, answer["results"], strict=True):
            if result["status"] != "pending":
                error = result.get("error") or {}
                code = str(error.get("code", "rejected"))
                if code == ALREADY_IMPORTED:
                    self._record(Imported(item, tx.hash.hex(), None, already=True))
                    continue
                if code in ("mempool_full", "overloaded"):
                    raise ClientError(f"the destination is busy: {code}", code=code, status=503)
                message = error.get("message", "")
                raise RelayError(
                    f"the destination refused the import of {item.tx_hash}: {code}: {message}",
                    code="import_refused",
                )
        for item, tx, result in zip(chunk, transactions, answer["results"], strict=True):
            if result["status"] == "pending":
                self._record(self._wait_for_import(item, tx))

    def _wait_for_import(self, item: SelectedTx, tx: types.Transaction) -> Imported:
        answer = self.destination.wait_for_commit(
            tx.hash.hex(), timeout_s=self.config.timeout_s, poll_ms=COMMIT_POLL_MS
        )
        receipt = answer.get("receipt") or {}
        if receipt.get("code") == 0:
            return Imported(item, tx.hash.hex(), int(answer["height"]), already=False)
        if receipt.get("code_name") == ALREADY_IMPORTED:
            return Imported(item, tx.hash.hex(), int(answer["height"]), already=True)
        raise RelayError(
            f"the import of {item.tx_hash} failed on the destination: "
            f"{receipt.get('code_name')}: {receipt.get('message', '')}",
            code="import_refused",
        )

    def _record(self, outcome: Imported) -> None:
        if outcome.already:
            self.report.already_imported += 1
        else:
            self.report.imported += 1
        if self.on_imported is not None:
            self.on_imported(outcome)

    def _build(self, action: str, args: Sequence[Any]) -> types.Transaction:
        return build_transaction(
            self.identity,
            chain_id=self.destination_chain,
            module=XCHAIN_MODULE,
            action=action,
            args=args,
            valid_until=self._get_destination_height() + VALID_FOR_BLOCKS,
        )

    def _get_destination_height(self) -> int:
        return int(self.destination.get_status()["height"])

    # ------------------------------------------------------------ the light client

    def _update_client(self, target_height: int) -> None:
        """Bring the destination's light client of the source chain to `target_height` or above."""
        client_height = get_client_height(self.destination, self.source_chain)
        if client_height >= target_height:
            return
        changes = get_validator_changes(self.source)
        steps = plan_client_updates(client_height, target_height, sorted(changes))
        for step in steps:
            if self.stop.is_set():
                raise ClientUpdateError("stopping", code="stopping")
            header, certificate = get_certified_header(self.source, step.height)
            change = b"" if step.change_height is None else changes[step.change_height]
            tx = self._build(UPDATE_ACTION, (self.source_chain, header, certificate, change))
            self.destination.submit(tx)
            answer = self.destination.wait_for_commit(
                tx.hash.hex(), timeout_s=self.config.timeout_s, poll_ms=COMMIT_POLL_MS
            )
            receipt = answer.get("receipt") or {}
            if receipt.get("code") != 0:
                raise ClientUpdateError(
                    f"the destination refused header {step.height} of {self.source_chain}: "
                    f"{receipt.get('code_name')}: {receipt.get('message', '')}"
                )
            self.report.updates += 1


# ---------------------------------------------------------------- the nodes' answers


def get_client_height(destination: Client, source_chain: str) -> int:
    """The height of the destination's light client of `source_chain`."""
    answer = destination.send("GET", f"/v1/xchain/chains/{source_chain}").value
    return int(answer["light_client"]["height"])


def get_validator_changes(source: Client) -> dict[int, bytes]:
    """Every validator-set change of the source chain: the block that wrote it -> its proof."""
    from chainnode.light import validator_change_proof_from_json

    answer = source.send("GET", "/v1/light/changes").value
    proofs = [validator_change_proof_from_json(item) for item in answer["changes"]]
    return {proof.height: proof.encode() for proof in proofs}


def get_certified_header(source: Client, height: int) -> tuple[bytes, bytes]:
    """The encoded header and commit certificate of the source chain at `height`."""
    answer = source.send("GET", f"/v1/light/headers?from={int(height)}&limit=1").value
    headers = answer["headers"]
    if not headers or headers[0]["height"] != height:
        raise ClientError(f"the source has no header at height {height}", code="not_found", status=404)
    return bytes.fromhex(headers[0]["header"]), bytes.fromhex(headers[0]["certificate"])


def encode_proof(proof: Mapping[str, Any]) -> bytes:
    """A proof as the import transaction carries it."""
    import json

    return json.dumps(proof, sort_keys=True, separators=(",", ":")).encode()
