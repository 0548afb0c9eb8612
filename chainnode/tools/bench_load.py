"""The benchmark's load side: the signed workload, the submitter process and the commit watcher.

Theory of operation
-------------------
`sign_workload` signs the whole workload before any clock starts, spread over
C spawned worker processes, into hex files (one transaction per line) under
`DIR/workload/`.  Two mixes.  `records` (the workload of the earlier figures):
`records.put` from every pilot entity with the submitter role: meter readings
that update a few keys per entity again and again (new versions), document
records (hash, URI, type of an off-chain document) under fresh keys, and status
updates.  `pilot` (the default, `PILOT_MIX`): 80% of the same puts, 10% record
sharing (grantee writes and anchors, new grants) and 10% digital assets (mints,
transfers of unique and editioned assets, approvals, freezes).

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
thread sends as soon as the previous answer arrived.  Items refused for a full
mempool (a 503, or `mempool_full` items in a batch answer) are sent again after
the `Retry-After` the node advertised.  It records, per transaction, when the
request that admitted it was sent (`time.monotonic()`, one clock for all
processes on Linux).

`CommitWatcher` polls one node's `/v1/status` every ~20 ms and fetches each new
block (`/v1/blocks/{h}?transactions=hashes`, the cheap form), through the SDK's
client too; each transaction in it is stamped with the time of the status answer
that first showed its height.  Every loop here is bounded in count or time.
"""

from __future__ import annotations

import array
import json
import math
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from chainnode.core import crypto, types
from chainnode.core import identity as pki
from chainnode.core.errors import ChainError, InvariantError
from chainnode.core.hexstr import parse_hex
from chainnode.core.statuses import TxStatus
from chainnode.sdk.client import Client, Identity, Reply
from chainnode.sdk.errors import ClientError
from chainnode.tools.devnet import LocalNetwork, load_submitters, submit_all

WORKLOAD_CHUNK_TXS = 10_000
WATCH_INTERVAL_S = 0.02
VALID_UNTIL_HEIGHT = 100_000_000
READY_TIMEOUT_S = 60.0
HTTP_TIMEOUT_S = 120.0
RETRY_AFTER_S_MAX = 10.0
SUBMIT_ATTEMPTS_MAX = 1_000
METER_KEYS_PER_ENTITY = 20


class BenchError(ChainError):
    """A benchmark run that could not complete."""

    code = "bench"


# ---------------------------------------------------------------- the workload (signed before the clock)

MIX_PILOT = "pilot"
MIX_RECORDS = "records"
MIXES = (MIX_PILOT, MIX_RECORDS)
MIX_PERIOD_TXS = 100
# The pilot mix: transactions of each kind in every 100 of the timed workload.  Every kind is
# valid whatever order the validators commit it in (see `compute_pilot_item`), given the set-up.
PILOT_MIX: dict[str, int] = {
    "records.put": 80,  # own namespace: meter readings, document records, status
    "records.put_to": 7,  # a grantee writes under the prefix its setup grant covers
    "records.anchor": 1,  # a grantee anchors a document there
    "records.grant": 2,  # new grants to pairs no timed write depends on
    "assets.mint": 3,  # fresh token ids into the issuer's unique collection
    "assets.transfer": 2,  # a unique asset minted in the set-up, moved once by its owner
    "assets.transfer_editioned": 2,  # one unit of the holder's editioned token
    "assets.approve": 1,  # an owner approves a spender for a unique asset nothing else touches
    "assets.approve_all": 1,  # an operator for a collection (always valid, never used)
    "assets.freeze": 1,  # the issuer freezes a holding nothing else touches
}
COLLECTIONS_ISSUERS_MAX = 8  # issuers that create a unique and an editioned collection each
SETUP_NONCE_BASE = 1 << 60  # set-up nonces, apart from the timed workload's sequence numbers
SHARED_PREFIX = "shared."
SETUP_GRANT_OFFSETS = (1, 2)  # entity i grants entities i+1 and i+2 (mod m) in the set-up
MINT_BATCH_ITEMS = 100


def _spread_slots(mix: dict[str, int]) -> tuple[tuple[str, int], ...]:
    """The kind and its rank in the period for each position: each kind evenly spaced, the kinds
    shifted apart so that the rare ones do not bunch up in one place."""
    shifts = {kind: (index + 0.5) / len(mix) for index, kind in enumerate(mix)}
    places = sorted(
        ((rank + shifts[kind]) / count, kind, rank) for kind, count in mix.items() for rank in range(count)
    )
    return tuple((kind, rank) for _, kind, rank in places)


PILOT_SLOTS = _spread_slots(PILOT_MIX)
if len(PILOT_SLOTS) != MIX_PERIOD_TXS:
    raise InvariantError(f"the pilot mix must name {MIX_PERIOD_TXS} transactions per period")


@dataclass(frozen=True, slots=True)
class PilotCast:
    """Who does what: the submitter entities (in the network's order) and the issuers among them."""

    entity_ids: tuple[str, ...]
    issuers: tuple[int, ...]  # indexes into entity_ids of the issuers that own collections

    def find_problem(self) -> str | None:
        """Why the pilot mix cannot run with this cast, or None."""
        if len(self.entity_ids) < 4 or not self.issuers:
            return "the pilot mix needs 4 submitter entities and an issuer among them"
        return None


@dataclass(frozen=True, slots=True)
class WorkItem:
    """One transaction to sign: the signer (an index into the cast) and what it does."""

    signer: int
    module: str
    action: str
    args: tuple[Any, ...]

    @property
    def name(self) -> str:
        return f"{self.module}.{self.action}"


def build_cast(identities: list[Identity]) -> PilotCast:
    """The cast of the pilot mix from the submitter identities (`load_submitters`, in its order)."""
    issuers = [i for i, who in enumerate(identities) if "issuer" in pki.read_claims(who.certificate).roles]
    return PilotCast(tuple(who.entity_id for who in identities), tuple(issuers[:COLLECTIONS_ISSUERS_MAX]))


def compute_pilot_kind(sequence: int) -> str:
    """The kind (`PILOT_MIX`) of timed transaction `sequence` of the pilot mix."""
    return PILOT_SLOTS[sequence % MIX_PERIOD_TXS][0]


def count_kind(txs: int, kind: str) -> int:
    """How many transactions of `kind` the first `txs` of the pilot mix hold."""
    full, rest = divmod(txs, MIX_PERIOD_TXS)
    return full * PILOT_MIX[kind] + sum(1 for slot_kind, _ in PILOT_SLOTS[:rest] if slot_kind == kind)


def compute_record_args(sequence: int, entity_index: int, label: str) -> tuple[str, bytes]:
    """The (key, value) of workload transaction `sequence`: a realistic records.put mix."""
    kind = sequence % 20
    if kind < 12:
        meter = (sequence // 20) % METER_KEYS_PER_ENTITY
        value = {
            "kind": "meter-reading",
            "meter": meter,
            "sequence": sequence,
            "kwh_milli": sequence * 37 % 99991,
        }
        return f"meter-{meter:02d}", json.dumps(value).encode()
    if kind < 17:
        digest = crypto.sha256(f"{label}/{sequence}".encode()).hex()
        value = {"kind": "document", "sha256": digest, "uri": f"docs://{label}/{sequence}", "type": "invoice"}
        return f"doc-{label}-{sequence:08d}", json.dumps(value).encode()
    return "status", json.dumps(
        {"kind": "status", "entity_index": entity_index, "sequence": sequence}
    ).encode()


def _collection(cast: PilotCast, issuer_rank: int, kind: str) -> str:
    return f"{'certs' if kind == 'unique' else 'tickets'}-{cast.entity_ids[cast.issuers[issuer_rank]]}"


def _other(cast: PilotCast, entity: int, spin: int) -> int:
    """An entity other than `entity`, chosen by `spin`."""
    count = len(cast.entity_ids)
    return (entity + 1 + spin % (count - 1)) % count


def _pool_token(cast: PilotCast, pool: str, rank: int) -> tuple[str, str, int]:
    """(collection, token, owner) of unique asset `rank` minted in the set-up for `pool`."""
    return (
        _collection(cast, rank % len(cast.issuers), "unique"),
        f"{pool}-{rank}",
        rank % len(cast.entity_ids),
    )


def _editioned_token(cast: PilotCast, holder: int) -> tuple[str, str]:
    return _collection(cast, holder % len(cast.issuers), "editioned"), f"e-{holder}"


def _hash(label: str, what: str, rank: int) -> bytes:
    return crypto.sha256(f"{label}/{what}/{rank}".encode())


def _build_put(sequence: int, rank: int, cast: PilotCast, label: str) -> WorkItem:
    entity = sequence % len(cast.entity_ids)
    return WorkItem(entity, "records", "put", compute_record_args(sequence, entity, label))


def _find_shared_pair(rank: int, cast: PilotCast) -> tuple[int, str, str]:
    """(grantee, owner id, prefix): a pair the set-up granted, the grantee writing under its prefix."""
    count = len(cast.entity_ids)
    grantee = rank % count
    owner = (grantee - SETUP_GRANT_OFFSETS[rank // count % len(SETUP_GRANT_OFFSETS)]) % count
    return grantee, cast.entity_ids[owner], f"{SHARED_PREFIX}{cast.entity_ids[grantee]}."


def _build_put_to(sequence: int, rank: int, cast: PilotCast, label: str) -> WorkItem:
    grantee, owner, prefix = _find_shared_pair(rank, cast)
    key = f"{prefix}reading-{rank // (2 * len(cast.entity_ids)) % METER_KEYS_PER_ENTITY:02d}"
    value = json.dumps({"kind": "shared-reading", "rank": rank, "by": cast.entity_ids[grantee]}).encode()
    return WorkItem(grantee, "records", "put_to", (owner, key, value))


def _build_anchor(sequence: int, rank: int, cast: PilotCast, label: str) -> WorkItem:
    grantee, owner, prefix = _find_shared_pair(rank, cast)
    key, digest, size = f"{prefix}doc-{rank:08d}", _hash(label, "anchor", rank), 10_000 + rank % 5000
    uri = f"https://files.example/{label}/anchor-{rank}.pdf"
    return WorkItem(grantee, "records", "anchor", (owner, key, digest, "application/pdf", size, uri))


def _build_grant(sequence: int, rank: int, cast: PilotCast, label: str) -> WorkItem:
    # Offsets past the set-up's (3 .. m-1): pairs that no timed write depends on.
    count = len(cast.entity_ids)
    owner = rank % count
    spin = len(SETUP_GRANT_OFFSETS) + rank // count % (count - 1 - len(SETUP_GRANT_OFFSETS))
    grantee = cast.entity_ids[_other(cast, owner, spin)]
    right = "write" if rank % 2 == 0 else "read-marker"
    return WorkItem(owner, "records", "grant", (grantee, SHARED_PREFIX, right, VALID_UNTIL_HEIGHT))


def _build_mint(sequence: int, rank: int, cast: PilotCast, label: str) -> WorkItem:
    issuer_rank = rank % len(cast.issuers)
    collection = _collection(cast, issuer_rank, "unique")
    owner = cast.entity_ids[rank * 7 % len(cast.entity_ids)]
    uri = f"https://certs.example/{collection}/m-{rank}.json"
    args = (collection, f"m-{rank}", owner, 1, _hash(label, "mint", rank), uri)
    return WorkItem(cast.issuers[issuer_rank], "assets", "mint", args)


def _build_transfer(sequence: int, rank: int, cast: PilotCast, label: str) -> WorkItem:
    collection, token, owner = _pool_token(cast, "t", rank)
    recipient = cast.entity_ids[_other(cast, owner, rank // len(cast.entity_ids))]
    return WorkItem(owner, "assets", "transfer", (collection, token, cast.entity_ids[owner], recipient, 1))


def _build_transfer_editioned(sequence: int, rank: int, cast: PilotCast, label: str) -> WorkItem:
    holder = rank % len(cast.entity_ids)
    collection, token = _editioned_token(cast, holder)
    recipient = cast.entity_ids[_other(cast, holder, rank // len(cast.entity_ids))]
    return WorkItem(holder, "assets", "transfer", (collection, token, cast.entity_ids[holder], recipient, 1))


def _build_approve(sequence: int, rank: int, cast: PilotCast, label: str) -> WorkItem:
    collection, token, owner = _pool_token(cast, "a", rank)
    spender = cast.entity_ids[_other(cast, owner, rank // len(cast.entity_ids))]
    return WorkItem(owner, "assets", "approve", (collection, token, spender))


def _build_approve_all(sequence: int, rank: int, cast: PilotCast, label: str) -> WorkItem:
    entity = rank % len(cast.entity_ids)
    collection = _collection(cast, rank % len(cast.issuers), "unique")
    operator = cast.entity_ids[_other(cast, entity, rank // len(cast.entity_ids))]
    return WorkItem(entity, "assets", "approve_all", (collection, operator, True))


def _build_freeze(sequence: int, rank: int, cast: PilotCast, label: str) -> WorkItem:
    collection, token, owner = _pool_token(cast, "f", rank)
    issuer = cast.issuers[rank % len(cast.issuers)]
    return WorkItem(issuer, "assets", "freeze", (collection, token, cast.entity_ids[owner]))


_PILOT_BUILDERS: dict[str, Callable[[int, int, PilotCast, str], WorkItem]] = {
    "records.put": _build_put,
    "records.put_to": _build_put_to,
    "records.anchor": _build_anchor,
    "records.grant": _build_grant,
    "assets.mint": _build_mint,
    "assets.transfer": _build_transfer,
    "assets.transfer_editioned": _build_transfer_editioned,
    "assets.approve": _build_approve,
    "assets.approve_all": _build_approve_all,
    "assets.freeze": _build_freeze,
}
if set(_PILOT_BUILDERS) != set(PILOT_MIX):
    raise InvariantError("every kind of the pilot mix needs a builder")


def compute_pilot_item(sequence: int, cast: PilotCast, label: str) -> WorkItem:
    """Timed transaction `sequence` of the pilot mix (`PILOT_MIX`).

    Each kind's `rank` counts its transactions from the start.  Nothing here depends on what
    another timed transaction did, so any commit order is valid: writes by grantees use the
    set-up's grants (to i+1 and i+2), new grants go to other pairs; each set-up asset of the
    transfer, approve and freeze pools is touched by one timed transaction only; an editioned
    holder sends at most the units the set-up minted to it and never receives its own token.
    """
    kind, slot_rank = PILOT_SLOTS[sequence % MIX_PERIOD_TXS]
    rank = sequence // MIX_PERIOD_TXS * PILOT_MIX[kind] + slot_rank
    return _PILOT_BUILDERS[kind](sequence, rank, cast, label)


def compute_setup_phases(cast: PilotCast, txs: int, label: str) -> list[list[WorkItem]]:
    """What the pilot mix's timed transactions rely on, in phases each committed before the next:
    collections and grants, then the mints of every asset the timed workload moves or freezes."""
    count = len(cast.entity_ids)
    collections, grants = [], []
    for issuer_rank, issuer in enumerate(cast.issuers):
        for kind, symbol in (("unique", "CRT"), ("editioned", "TKT")):
            collection = _collection(cast, issuer_rank, kind)
            name = f"Bench {kind} assets of {cast.entity_ids[issuer]}"
            collections.append(
                WorkItem(issuer, "assets", "create_collection", (collection, name, symbol, kind, b""))
            )
    for owner in range(count):
        for offset in SETUP_GRANT_OFFSETS:
            grantee = (owner + offset) % count
            prefix = f"{SHARED_PREFIX}{cast.entity_ids[grantee]}."
            args = (cast.entity_ids[grantee], prefix, "write", VALID_UNTIL_HEIGHT)
            grants.append(WorkItem(owner, "records", "grant", args))
    items_by_collection: dict[str, list[tuple[Any, ...]]] = {}
    for pool, kind in (("t", "assets.transfer"), ("a", "assets.approve"), ("f", "assets.freeze")):
        for rank in range(count_kind(txs, kind)):
            collection, token, owner = _pool_token(cast, pool, rank)
            item = (token, cast.entity_ids[owner], 1, _hash(label, pool, rank), "")
            items_by_collection.setdefault(collection, []).append(item)
    units = count_kind(txs, "assets.transfer_editioned") // count + 1
    for holder in range(count):
        collection, token = _editioned_token(cast, holder)
        item = (token, cast.entity_ids[holder], units, _hash(label, "e", holder), "")
        items_by_collection.setdefault(collection, []).append(item)
    issuer_of = {
        _collection(cast, k, kind): cast.issuers[k]
        for k in range(len(cast.issuers))
        for kind in ("unique", "editioned")
    }
    mints = [
        WorkItem(
            issuer_of[collection],
            "assets",
            "mint_batch",
            (collection, tuple(items[start : start + MINT_BATCH_ITEMS])),
        )
        for collection, items in items_by_collection.items()
        for start in range(0, len(items), MINT_BATCH_ITEMS)
    ]
    return [collections + grants, mints]


def compute_item(mix: str, sequence: int, cast: PilotCast, label: str) -> WorkItem:
    """Timed transaction `sequence` of `mix`."""
    if mix == MIX_PILOT:
        return compute_pilot_item(sequence, cast, label)
    entity = sequence % len(cast.entity_ids)
    return WorkItem(entity, "records", "put", compute_record_args(sequence, entity, label))


_worker_identities: list[Identity] = []
_worker_cast: list[PilotCast] = []


def _load_worker_identities(directory: str, entity_ids: list[str]) -> None:
    _worker_identities[:] = load_submitters(Path(directory), entity_ids)
    _worker_cast[:] = [build_cast(_worker_identities)]


def sign_item(identities: list[Identity], item: WorkItem, chain_id: str, nonce: int) -> types.Transaction:
    return types.Transaction.create(
        identities[item.signer].key,
        chain_id=chain_id,
        signer=identities[item.signer].entity_id,
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
    nodes that commit nothing else); the pilot mix needs `run_setup` committed first."""
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
    identities = load_submitters(network.directory, network.entity_ids)
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


@dataclass(slots=True)
class _SubmitTally:
    """One submit thread's counts; `accepted_at` is shared (each thread writes its own positions)."""

    accepted_at: array.array[float]
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
            if plan.rate_tps is not None:
                due = started + batch_index * plan.batch_txs / plan.rate_tps
                time.sleep(max(0.0, due - time.monotonic()))
            first = batch_index * plan.batch_txs
            items = batches[batch_index]
            _submit_one_batch(client, list(range(first, first + len(items))), items, tally)


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
            status = client.get_status()
            stamp = time.monotonic()
            for height in range(seen + 1, int(status["height"]) + 1):
                block = client.get_block(height, hashes_only=True)
                hashes = [
                    parse_hex(item["hash"], "transaction hash", length=32) for item in block["transactions"]
                ]
                for tx_hash in hashes:
                    self.committed_at.setdefault(tx_hash, stamp)
                self.commits.append((stamp, len(hashes)))
                seen = height
            self.stop.wait(WATCH_INTERVAL_S)
