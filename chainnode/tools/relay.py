"""The relayer: carries committed transactions of one chain into another (issue 14).

Theory of operation
-------------------
A relayer reads the committed events of a source chain (`GET /v1/events`, long-polled) from a
cursor, selects the transactions to carry (`Selection`: every `xchain.send` whose destination
is the destination chain, every import that delivered one of the destination's messages here,
which carried back acknowledges it there, and, if asked, every transaction of a module and
entity, such as the record writes of one entity), and for each batch of them, in chain order:

1. brings the destination's on-chain light client of the source chain up to the highest source
   height in the batch (`plan_client_updates`): `xchain.update_client` transactions of up to
   `STEPS_MAX` certified headers each (`GET /v1/light/headers`), skipping heights while the
   validator set is unchanged, and stopping at the block that wrote each new validator set so
   the next header is carried with its change proof (`GET /v1/light/changes`).  The relayer
   reads the client's height from the destination (`GET /v1/xchain/chains/{id}`), then follows
   it in its updates' receipts (`xchain.client_updated`); the client skips any step it is past;
2. fetches each transaction's inclusion proof (`GET /v1/transactions/{hash}/proof`) and submits
   `xchain.import(source_chain, proof)` for all of them in one batch, then waits for each
   outcome: an OK receipt, or `already_imported` (some relayer, maybe this one before a crash,
   did it first), both count as done; `out_of_order` (a message a block put after a later one)
   is submitted again alone, in order; any other code stops the relayer (`import_refused`);
3. saves its state (`RelayState`: the events cursor just past the batch's last transaction, the
   hash of that transaction, a count) to a small JSON file, atomically: written to a temporary
   file, synced, renamed over the old one, and the directory synced.

Resuming.  After a crash the relayer starts from the saved cursor, so it re-reads at most the
batch it was in the middle of.  Every transaction of that batch is submitted again; those that
were imported before the crash come back `already_imported` and count as done: nothing is lost
(the cursor never passes a transaction whose import is not committed) and nothing is imported
twice (the destination records each source transaction once).  A transaction whose events
straddle two pages is carried once: the state's `last_relayed` is skipped when it reappears.

Why it needs no trust.  A relayer's key only signs its own transactions (it is an entity with
the submitter role on the destination); the destination trusts it for nothing, and everything it
carries is checked inside the destination's block execution, by every validator.  A header
advances the light client only with a quorum of COMMIT signatures of the validator set the
client already trusts (or, at a set change, of the set proven to have been written by the
previous certified block); an import is accepted only with an inclusion proof of the transaction
and its receipt under a header the client has accepted.  So a relayer that lies (alters a
record, forges a certificate, brings a header of another chain, replays an import) gets its
transaction refused with a stable code, and a relayer that stops, crashes or withholds only
delays delivery: anyone else can run one from the same events and finish the work, and the
destination's once-only record of imports makes their overlap harmless.  Nor can it reorder
messages: a message is delivered only as the next of its channel.  What is left to trust is the
source chain's own assumption, that fewer than a third of its validators are faulty at any
height.

Bounds: events are read `events_per_page` at a time with a long poll of `wait_ms`; at most
`batch_txs_max` imports per batch, their proofs read and commits awaited on `fetch_threads`
threads; every request has a timeout; a failed round is tried again after a pause that doubles
from `backoff_s` up to `backoff_max_s`, and `retries_max` failures in a row stop the relayer
with the last error.  `stop` (set by SIGTERM or SIGINT in the CLI) is looked at between
requests: the relayer saves what is done and returns.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from chainnode.app.xchain_state import STEPS_MAX as STEPS_PER_UPDATE_MAX
from chainnode.core import types
from chainnode.core.errors import ChainError, InvariantError, LocalError
from chainnode.sdk import light as light_sdk
from chainnode.sdk import xchain as xchain_sdk
from chainnode.sdk.client import Client, Identity
from chainnode.sdk.errors import ClientError
from chainnode.sdk.events import get_events_page
from chainnode.tools.relay_select import SelectedTx, Selection, plan_client_updates, select_transactions
from chainnode.tools.relay_state import RelayState, load_relay_state, save_relay_state

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

EVENTS_PER_PAGE_DEFAULT = 500
BATCH_TXS_MAX_DEFAULT = 200
WAIT_MS_DEFAULT = 1_000
TIMEOUT_S_DEFAULT = 30.0
RETRIES_MAX_DEFAULT = 30
BACKOFF_S_DEFAULT = 0.2
BACKOFF_MAX_S_DEFAULT = 5.0
VALID_FOR_BLOCKS = 1_000
COMMIT_POLL_MS = 20
FETCH_THREADS_DEFAULT = 4

# The xchain module's names (chainnode.app.xchain): an event and receipt codes.
UPDATED_EVENT = "xchain.client_updated"
ALREADY_IMPORTED = "already_imported"
OUT_OF_ORDER = "out_of_order"
CLIENT_BEHIND = "client_behind"
# Failures without an answer, which a later try may not meet (a node restarting, a cut connection).
TRANSIENT_CLIENT_CODES = frozenset({"unreachable", "timeout", "bad_response"})
# Refusals of an update that no retry cures: the operator (or the council) must act.
PERMANENT_UPDATE_CODES = frozenset({"client_halted", "unknown_chain", "bad_arguments"})


class RelayError(LocalError):
    """The relayer cannot go on: the destination refused an update or an import it was sent."""

    code = "relay_failed"


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
    fetch_threads: int = FETCH_THREADS_DEFAULT  # concurrent proof reads and commit waits


@dataclass(frozen=True, slots=True)
class Imported:
    """A source transaction whose import committed on the destination (or was there already)."""

    source: SelectedTx
    destination_tx: str  # hash (hex) of the import transaction this relayer submitted
    destination_height: int | None  # its height (None: refused at admission as already imported)
    already: bool


@dataclass
class RelayReport:
    """What a run did."""

    state: RelayState
    imported: int = 0
    already_imported: int = 0
    updates: int = 0
    stopped: str = ""

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


def is_transient_failure(error: ChainError) -> bool:
    """A failure that trying again later can cure: no answer, a busy or failing node, or a client
    update that raced another relayer's (the round reads the client again)."""
    if isinstance(error, ClientUpdateError):
        return True
    if isinstance(error, ClientError):
        if error.status is None:
            return error.code in TRANSIENT_CLIENT_CODES
        return error.status >= 500 or error.status == 429
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
        self._valid_until = 0  # of the transactions being built (read once per batch)
        # Proof reads and commit waits of a batch run on a few threads (the client keeps one
        # connection per thread): one at a time, the round trips dominate a batch.  Made by `run`.
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._client_height = 0  # the destination's client of the source, as last seen (0: unknown)

    @property
    def state(self) -> RelayState:
        return self.report.state

    def run(self) -> RelayReport:
        """Relay until stopped (or caught up, with `stop_when_caught_up`); raises the last error
        after `retries_max` failed rounds in a row, or at once for a refused import."""
        with concurrent.futures.ThreadPoolExecutor(self.config.fetch_threads, "relay") as pool:
            self._pool = pool
            try:
                return self._run_rounds()
            finally:
                self._pool = None

    def _map(self, function: Callable[[T], R], items: Sequence[T]) -> list[R]:
        if self._pool is None:
            raise InvariantError("the relayer's threads exist while it runs")
        return list(self._pool.map(function, items))

    def _run_rounds(self) -> RelayReport:
        failures = 0
        delay_s = self.config.backoff_s
        while not self.stop.is_set():
            try:
                caught_up = self._run_round()
            except ChainError as error:
                if not is_transient_failure(error) or failures >= self.config.retries_max:
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
        """Update the client, then import every transaction of `chunk`: one batch, then (for
        messages a block ordered after a later one: `out_of_order`) one at a time, in order."""
        self._valid_until = int(self.destination.get_status()["height"]) + VALID_FOR_BLOCKS
        self._update_client(max(item.height for item in chunk))
        fetched = self._map(self.source.get_proof, [item.tx_hash for item in chunk])
        proofs = dict(zip((item.tx_hash for item in chunk), fetched, strict=True))
        for item in self._import(chunk, proofs):
            if self._import([item], proofs):
                raise RelayError(f"message {item.tx_hash} stays out of order", code="import_refused")
        log.info(
            "carried %d transactions up to height %d of %s (%d imported, %d found imported)",
            len(chunk),
            chunk[-1].height,
            self.source_chain,
            self.report.imported,
            self.report.already_imported,
        )

    def _import(
        self, items: Sequence[SelectedTx], proofs: Mapping[str, Mapping[str, Any]]
    ) -> list[SelectedTx]:
        """Submit the imports of `items` and wait for each; those refused `out_of_order`."""
        transactions = [
            xchain_sdk.build_import_transaction(
                self.identity,
                self.source_chain,
                proofs[item.tx_hash],
                chain_id=self.destination_chain,
                valid_until=self._valid_until,
            )
            for item in items
        ]
        answer = self.destination.submit_batch(transactions)
        pending: list[tuple[SelectedTx, types.Transaction]] = []
        for item, tx, result in zip(items, transactions, answer["results"], strict=True):
            if result["status"] == "pending":
                pending.append((item, tx))
                continue
            error = result.get("error") or {}
            code = str(error.get("code", "rejected"))
            if code == ALREADY_IMPORTED:
                self._record(Imported(item, tx.hash.hex(), None, already=True))
                continue
            if code in ("mempool_full", "overloaded"):
                raise ClientError(f"the destination is busy: {code}", code=code, status=503)
            raise RelayError(
                f"the destination refused the import of {item.tx_hash}: {code}: {error.get('message', '')}",
                code="import_refused",
            )
        out_of_order = []
        answers = self._map(
            lambda tx: self.destination.wait_for_commit(
                tx.hash.hex(), timeout_s=self.config.timeout_s, poll_ms=COMMIT_POLL_MS
            ),
            [tx for _, tx in pending],
        )
        for (item, tx), answer in zip(pending, answers, strict=True):
            receipt = answer.get("receipt") or {}
            code_name = receipt.get("code_name")
            if receipt.get("code") == 0 or code_name == ALREADY_IMPORTED:
                self._record(
                    Imported(item, tx.hash.hex(), int(answer["height"]), code_name == ALREADY_IMPORTED)
                )
            elif code_name == OUT_OF_ORDER:
                out_of_order.append(item)
            elif code_name == CLIENT_BEHIND:
                self._client_height = 0  # read the client's height again from the next update
                raise ClientUpdateError(
                    f"the destination's client is behind {item.height}", code=CLIENT_BEHIND
                )
            else:
                raise RelayError(
                    f"the import of {item.tx_hash} failed on the destination: "
                    f"{code_name}: {receipt.get('message', '')}",
                    code="import_refused",
                )
        return out_of_order

    def _record(self, outcome: Imported) -> None:
        if outcome.already:
            self.report.already_imported += 1
        else:
            self.report.imported += 1
        if self.on_imported is not None:
            self.on_imported(outcome)

    # ------------------------------------------------------------ the light client

    def _update_client(self, target_height: int) -> None:
        """Bring the destination's light client of the source chain to `target_height` or above.

        The relayer reads the client's height from the destination (`GET /v1/xchain/chains/{id}`)
        when it does not know it (at start, after a `client_behind`), and then from the receipts of
        its own updates (`xchain.client_updated` names the height reached).  Another relayer may
        have moved the client meanwhile: the client skips every step at or below its height, so a
        stale height costs a few extra steps, never a refusal."""
        if self._client_height == 0:
            self._client_height = get_client_height(self.destination, self.source_chain)
        if self._client_height >= target_height:
            return
        changes = get_validator_changes(self.source)
        steps = plan_client_updates(self._client_height, target_height, sorted(changes))
        for start in range(0, len(steps), STEPS_PER_UPDATE_MAX):
            if self.stop.is_set():
                raise ClientUpdateError("stopping before the client is up to date", code="stopping")
            encoded = []
            for step in steps[start : start + STEPS_PER_UPDATE_MAX]:
                header, certificate = get_certified_header(self.source, step.height)
                change = None if step.change_height is None else changes[step.change_height]
                encoded.append((header, certificate, change))
            self._client_height = self._submit_update(tuple(encoded))
        if self._client_height < target_height:
            raise ClientUpdateError(
                f"the client of {self.source_chain} is at {self._client_height}, not {target_height}"
            )

    def _submit_update(self, steps: tuple[tuple[bytes, bytes, bytes | None], ...]) -> int:
        """Submit one `xchain.update_client`; the client's height after it."""
        tx = xchain_sdk.build_update_client_transaction(
            self.identity,
            self.source_chain,
            steps,
            chain_id=self.destination_chain,
            valid_until=self._valid_until,
        )
        self.destination.submit(tx)
        answer = self.destination.wait_for_commit(
            tx.hash.hex(), timeout_s=self.config.timeout_s, poll_ms=COMMIT_POLL_MS
        )
        receipt = answer.get("receipt") or {}
        if receipt.get("code") != 0:
            code_name = str(receipt.get("code_name"))
            message = (
                f"the destination refused an update of its client of {self.source_chain}: "
                f"{code_name}: {receipt.get('message', '')}"
            )
            if code_name in PERMANENT_UPDATE_CODES:
                raise RelayError(message, code=code_name)
            raise ClientUpdateError(message)
        self.report.updates += 1
        for event in receipt.get("events", []):
            if event.get("name") == UPDATED_EVENT and event["attributes"][0] == self.source_chain:
                return int(event["attributes"][2])
        raise ClientUpdateError("the update's receipt names no height reached", code="bad_response")


# ---------------------------------------------------------------- the nodes' answers


def get_client_height(destination: Client, source_chain: str) -> int:
    """The height of the destination's light client of `source_chain` (`GET /v1/xchain/chains/{id}`);
    `RelayError` `unknown_chain` when the destination's council has not registered the chain."""
    chain = xchain_sdk.Xchain(destination).get_chain(source_chain)
    if chain is None or chain.get("status") != "registered":
        raise RelayError(
            f"{source_chain!r} is not registered on the destination (its council registers it)",
            code="unknown_chain",
        )
    try:
        return int(chain["client"]["height"])
    except (KeyError, TypeError, ValueError) as error:
        raise ClientError(
            "the destination's chain answer has no client height", code="bad_response"
        ) from error


def get_validator_changes(source: Client) -> dict[int, bytes]:
    """Every validator-set change of the source chain: the block that wrote it -> its encoded proof."""
    return {height: proof.encode() for height, proof in light_sdk.get_validator_changes(source).items()}


def get_certified_header(source: Client, height: int) -> tuple[bytes, bytes]:
    """The encoded header and commit certificate of the source chain at `height`."""
    answer = light_sdk.get_light_headers(source, height, 1)
    try:
        item = answer["headers"][0]
        if item["height"] != height:
            raise ValueError(f"height {item['height']}")
        return bytes.fromhex(item["header"]), bytes.fromhex(item["certificate"])
    except (KeyError, IndexError, TypeError, ValueError) as error:
        raise ClientError(
            f"the source has no certified header at height {height} ({error})", code="bad_response"
        ) from error
