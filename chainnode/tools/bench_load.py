"""The benchmark's load side: the signed workload, the submitter process and the commit watcher.

Theory of operation
-------------------
`sign_workload` signs the whole workload before any clock starts, spread over
C spawned worker processes, into hex files (one transaction per line) under
`DIR/workload/`.  Three mixes.  `records` (the workload of the earlier figures):
`records.put` from every pilot entity with the submitter role: meter readings
that update a few keys per entity again and again (new versions), document
records (hash, URI, type of an off-chain document) under fresh keys, and status
updates.  `pilot` (`PILOT_MIX`): 80% of the same puts, 10% record sharing
(grantee writes and anchors, new grants) and 10% digital assets (mints,
transfers of unique and editioned assets, approvals, freezes).  `realistic`
(the default, `REALISTIC_MIX`): per 1000, 700 puts, 150 document anchors, 30
grants, 60 mints, 59 transfers and one council vote, signed with the council
member's key from `DIR/council/<member>/key.pem` (`load_signers`).

The submitter sends batch k to node k mod n, and the nodes' mempools interleave
them, so the timed transactions commit in no order the workload can rely on.
Whatever they depend on (collections, grants, the assets they move) is
therefore committed by `run_setup` before the clock starts, and no timed
transaction depends on another (see `compute_pilot_item`): every order is
valid, and a failed receipt in a run is a bug of this module.

`run_submitter` is the body of a separate process: it loads the files, says
"ready", waits for "go", then posts batches through the public HTTP API with the
SDK's client (`Client.send`, the SDK's one request, on a keep-alive connection;
the hex lines are joined into the body as they are, much cheaper than encoding
megabytes of JSON), batch k to node k mod n, one thread and one connection per
node.  With a rate R batch k leaves at `start + k * batch / R`; without one each
thread sends as soon as the previous answer arrived.  With a duration
(`--duration`) a thread stops before the first batch that would leave after it
(`is_submit_over`); the signed workload is then only the cap.  Items refused for a full
mempool (a 503, or `mempool_full` items in a batch answer) are sent again after
the `Retry-After` the node advertised.  It records, per transaction, when the
request that admitted it was sent (`time.monotonic()`, one clock for all
processes on Linux).

`CommitWatcher` asks one node for the height above the last it saw
(`/v1/blocks/{h}?transactions=hashes&wait_ms=250`, the cheap form, answered when
that height commits), through the SDK's client too; each transaction in it is
stamped with the time that answer arrived.  (It used to poll `/v1/status` every
20 ms: commits were stamped up to 20 ms late, and the polls cost the watched
validator ~5% more CPU than the others.)  Every loop here is bounded in count or time.
"""

from __future__ import annotations

import array
import json
import math
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from chainnode.app import genesis
from chainnode.core import types
from chainnode.core.errors import ChainError
from chainnode.core.hexstr import parse_hex
from chainnode.core.statuses import TxStatus
from chainnode.sdk.client import AuthoritySigner, Client, Identity, Reply
from chainnode.sdk.errors import ClientError
from chainnode.tools.bench_mix import (
    MIX_RECORDS,
    SETUP_NONCE_BASE,
    PilotCast,
    WorkItem,
    build_cast,
    compute_item,
)
from chainnode.tools.devnet import LocalNetwork, load_submitters, submit_all

WORKLOAD_CHUNK_TXS = 10_000
# The watcher asks for the next height and the node answers when it commits (or 404 after this):
# each commit is stamped within a few ms, and a status poll every 20 ms no longer loads the node.
WATCH_WAIT_MS = 250
VALID_UNTIL_HEIGHT = 100_000_000
READY_TIMEOUT_S = 60.0
HTTP_TIMEOUT_S = 120.0
RETRY_AFTER_S_MAX = 10.0
SUBMIT_ATTEMPTS_MAX = 1_000
METER_KEYS_PER_ENTITY = 20


class BenchError(ChainError):
    """A benchmark run that could not complete."""

    code = "bench"


Signer = Identity | AuthoritySigner

_worker_identities: list[Signer] = []
_worker_cast: list[PilotCast] = []


def load_signers(directory: Path, entity_ids: Sequence[str]) -> tuple[list[Signer], PilotCast]:
    """Every signer of the mixes, indexed as `WorkItem.signer` counts (the submitter entities,
    then the council members in genesis order, from `council/<member>/key.pem`), and the cast."""
    identities = load_submitters(directory, entity_ids)
    chain_genesis = genesis.load_genesis(directory / "genesis.json")
    council = tuple(member.member_id for member in chain_genesis.council)
    members = [AuthoritySigner.load_council(directory / "council" / member, member) for member in council]
    return [*identities, *members], build_cast(identities, council, chain_genesis.council_threshold)


def _load_worker_identities(directory: str, entity_ids: list[str]) -> None:
    signers, cast = load_signers(Path(directory), entity_ids)
    _worker_identities[:] = signers
    _worker_cast[:] = [cast]


def sign_item(identities: Sequence[Signer], item: WorkItem, chain_id: str, nonce: int) -> types.Transaction:
    who = identities[item.signer]
    return types.Transaction.create(
        who.key,
        chain_id=chain_id,
        signer=who.entity_id if isinstance(who, Identity) else who.signer_id,
        nonce=nonce,
        valid_until=VALID_UNTIL_HEIGHT,
        module=item.module,
        action=item.action,
        args=item.args,
    )


def _sign_chunk(task: tuple[int, int, str, str, str, str]) -> bytes:
    """Sign workload transactions [start, end) into `path` (hex lines); their hashes, concatenated."""
    start, end, path, chain_id, label, mix = task
    identities, cast = _worker_identities, _worker_cast[0]
    hashes = bytearray()
    lines = []
    for sequence in range(start, end):
        tx = sign_item(identities, compute_item(mix, sequence, cast, label), chain_id, sequence)
        hashes += tx.hash
        lines.append(tx.encoded.hex())
    Path(path).write_text("\n".join(lines) + "\n")
    return bytes(hashes)


def sign_workload(
    network: LocalNetwork, count: int, label: str, mix: str = MIX_RECORDS
) -> tuple[list[Path], list[bytes]]:
    """Sign `count` transactions of `mix` in parallel; the chunk files (in order) and every tx hash.

    The default is the records mix, which needs no set-up (`tests/perf/pipeline.py` runs it on
    nodes that commit nothing else); the pilot and realistic mixes need `run_setup` committed first."""
    workload_dir = network.directory / "workload"
    workload_dir.mkdir(exist_ok=True)
    tasks = [
        (
            start,
            min(start + WORKLOAD_CHUNK_TXS, count),
            str(workload_dir / f"chunk-{start // WORKLOAD_CHUNK_TXS:05d}.hex"),
            network.chain_id,
            label,
            mix,
        )
        for start in range(0, count, WORKLOAD_CHUNK_TXS)
    ]
    context = multiprocessing.get_context("spawn")
    with context.Pool(
        processes=os.cpu_count() or 1,
        initializer=_load_worker_identities,
        initargs=(str(network.directory), network.entity_ids),
    ) as pool:
        blobs = pool.map(_sign_chunk, tasks, chunksize=1)
    hashes = [blob[offset : offset + 32] for blob in blobs for offset in range(0, len(blob), 32)]
    return [Path(task[2]) for task in tasks], hashes


def run_setup(network: LocalNetwork, phases: list[list[WorkItem]], timeout_s: float) -> int:
    """Sign, submit and commit the set-up phase by phase (each before the next), before any
    clock starts; every receipt must succeed.  The watched (last) node's height afterwards."""
    identities, _ = load_signers(network.directory, network.entity_ids)
    deadline = time.monotonic() + timeout_s
    nonce = SETUP_NONCE_BASE
    with Client(network.nodes[-1].api_url, timeout_s=HTTP_TIMEOUT_S) as client:
        for phase in phases:
            txs = []
            for item in phase:
                txs.append(sign_item(identities, item, network.chain_id, nonce))
                nonce += 1
            if submit_all(network, txs, retry_s_max=timeout_s) != len(txs):
                raise BenchError("the node refused set-up transactions (see above)")
            for tx, item in zip(txs, phase, strict=True):
                remaining_s = max(deadline - time.monotonic(), 1.0)
                receipt = client.wait_for_commit(tx.hash.hex(), timeout_s=remaining_s, poll_ms=50)["receipt"]
                if receipt["code"] != 0:
                    raise BenchError(
                        f"set-up {item.name} failed: {receipt['code_name']}: {receipt['message']}"
                    )
        return int(client.get_status()["height"])


# ---------------------------------------------------------------- the submitter process


@dataclass(frozen=True, slots=True)
class SubmitPlan:
    api_urls: tuple[str, ...]
    chunk_paths: tuple[str, ...]
    txs: int
    batch_txs: int
    rate_tps: int | None
    duration_s: float | None = None  # stop before the first batch due after it (None: send all)


@dataclass(slots=True)
class _SubmitTally:
    """One submit thread's counts; `accepted_at` is shared (each thread writes its own positions)."""

    accepted_at: array.array[float]
    sent: int = 0  # transactions of the batches this thread sent (all of them unless a duration ended it)
    rejected: int = 0
    retries: int = 0
    full_answers: int = 0
    errors: int = 0
    first_rejection: str = ""


def _post_batch(client: Client, items: list[str]) -> Reply:
    # The items are hex lines this module wrote: nothing in them needs escaping in JSON.
    body = ('{"txs":["' + '","'.join(items) + '"]}').encode()
    return client.send("POST", "/v1/transactions", body)


def _compute_delay_s(retry_after_s: float | None) -> float:
    return min(retry_after_s, RETRY_AFTER_S_MAX) if retry_after_s else 0.0


def _submit_one_batch(client: Client, positions: list[int], items: list[str], tally: _SubmitTally) -> None:
    """Send one batch until every item is admitted or refused for good."""
    for _ in range(SUBMIT_ATTEMPTS_MAX):
        sent_at = time.monotonic()
        try:
            reply = _post_batch(client, items)
        except ClientError as error:
            if error.status is None:
                # No answer: the client opens a new connection next time; the node may just be busy.
                tally.errors += 1
                time.sleep(0.5)
                continue
            # A full node (503, Retry-After) or an answer that is not a batch result.
            tally.full_answers += error.status == 503
            tally.errors += error.status != 503
            time.sleep(_compute_delay_s(error.retry_after_s) or 1.0)
            tally.retries += len(items)
            continue
        answer, delay_s = reply.value, _compute_delay_s(reply.retry_after_s)
        if not isinstance(answer, dict) or "results" not in answer:
            tally.errors += 1
            time.sleep(delay_s or 1.0)
            tally.retries += len(items)
            continue
        again_positions, again_items = [], []
        for position, item, result in zip(positions, items, answer["results"], strict=True):
            if result["status"] == TxStatus.PENDING:
                tally.accepted_at[position] = sent_at
            elif result.get("error", {}).get("code") == "mempool_full":
                again_positions.append(position)
                again_items.append(item)
            else:
                tally.rejected += 1
                tally.first_rejection = tally.first_rejection or json.dumps(result)
        if not again_items:
            return
        tally.full_answers += 1
        tally.retries += len(again_items)
        time.sleep(delay_s or 1.0)
        positions, items = again_positions, again_items
    tally.rejected += len(items)


def _run_submit_thread(
    plan: SubmitPlan, node_position: int, batches: list[list[str]], started: float, tally: _SubmitTally
) -> None:
    nodes = len(plan.api_urls)
    with Client(plan.api_urls[node_position], timeout_s=HTTP_TIMEOUT_S) as client:
        for batch_index in range(node_position, len(batches), nodes):
            due = started if plan.rate_tps is None else started + batch_index * plan.batch_txs / plan.rate_tps
            if is_submit_over(plan.duration_s, started, due):
                return
            time.sleep(max(0.0, due - time.monotonic()))
            first = batch_index * plan.batch_txs
            items = batches[batch_index]
            tally.sent += len(items)
            _submit_one_batch(client, list(range(first, first + len(items))), items, tally)


def is_submit_over(
    duration_s: float | None, started: float, due: float, clock: Callable[[], float] | None = None
) -> bool:
    """Whether the submitter, which started at `started`, stops before a batch due to leave at
    `due` (its place at a fixed rate; `started` at max): with a duration, when the batch would
    leave (now, or later at its due time) once the duration has passed.  Never without one.
    `clock` defaults to `time.monotonic`."""
    if duration_s is None:
        return False
    now = time.monotonic() if clock is None else clock()
    return max(due, now) - started >= duration_s


def run_submitter(plan: SubmitPlan, pipe: Connection) -> None:
    """The submitter process: load, report ready, wait for "go", submit, report the tally."""
    items: list[str] = []
    for path in plan.chunk_paths:
        items.extend(Path(path).read_text().split())
    assert len(items) == plan.txs, "the workload files hold the whole workload"
    batches = [items[start : start + plan.batch_txs] for start in range(0, len(items), plan.batch_txs)]
    accepted_at = array.array("d", [math.nan]) * plan.txs
    tallies = [_SubmitTally(accepted_at) for _ in plan.api_urls]
    pipe.send("ready")
    if not pipe.poll(READY_TIMEOUT_S) or pipe.recv() != "go":
        return
    started = time.monotonic()
    threads = [
        threading.Thread(
            target=_run_submit_thread, args=(plan, position, batches, started, tallies[position]), daemon=True
        )
        for position in range(len(plan.api_urls))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    pipe.send(
        {
            "started": started,
            "finished": time.monotonic(),
            "accepted_at": accepted_at.tobytes(),
            "sent": sum(tally.sent for tally in tallies),
            "rejected": sum(tally.rejected for tally in tallies),
            "retries": sum(tally.retries for tally in tallies),
            "full_answers": sum(tally.full_answers for tally in tallies),
            "errors": sum(tally.errors for tally in tallies),
            "first_rejection": next((t.first_rejection for t in tallies if t.first_rejection), ""),
        }
    )


# ---------------------------------------------------------------- the watcher


class CommitWatcher:
    """Polls one node and stamps each transaction of each new block with when it was first seen."""

    def __init__(self, api_url: str, started: float) -> None:
        self._api_url = api_url
        self.started = started
        self.commits: list[tuple[float, int]] = []  # (commit time, transactions) per block
        self.committed_at: dict[bytes, float] = {}
        self.error = ""
        self.stop = threading.Event()

    def run(self, height_from: int) -> None:
        """The thread body: follow blocks above `height_from` until `stop` is set."""
        try:
            with Client(self._api_url, timeout_s=HTTP_TIMEOUT_S) as client:
                self._follow(client, height_from)
        except (ValueError, KeyError, TypeError, ChainError) as error:
            self.error = f"{type(error).__name__}: {error}"

    def _follow(self, client: Client, seen: int) -> None:
        while not self.stop.is_set():
            try:
                block = client.get_block(seen + 1, hashes_only=True, wait_ms=WATCH_WAIT_MS)
            except ClientError as error:
                if error.status == 404 and error.code == "not_found":
                    continue  # nothing committed within the wait: ask again (or stop)
                raise
            stamp = time.monotonic()
            hashes = [
                parse_hex(item["hash"], "transaction hash", length=32) for item in block["transactions"]
            ]
            for tx_hash in hashes:
                self.committed_at.setdefault(tx_hash, stamp)
            self.commits.append((stamp, len(hashes)))
            seen += 1
