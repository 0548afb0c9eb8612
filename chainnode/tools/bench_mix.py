"""The bench's workloads, as data: which transaction comes at each position of a run.

`records` is the earlier workload (records.put from every submitter); `pilot` mixes, per 100
transactions, 80 records.put, 10 of record sharing and 10 of assets; `realistic` (the default,
`REALISTIC_MIX`) mixes, per 1000, records.put, document anchors, grants, asset mints and
transfers and one governance vote.  What they depend on (collections, grants, the minted assets
they move, the council's open proposals) is in set-up phases committed before the clock starts,
so that no timed transaction depends on another and every commit order is valid.  Pure: signing
and submitting are `chainnode.tools.bench_load`'s.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chainnode.core import crypto
from chainnode.core import identity as pki
from chainnode.core.errors import InvariantError
from chainnode.sdk.client import Identity

WORKLOAD_CHUNK_TXS = 10_000
VALID_UNTIL_HEIGHT = 100_000_000
READY_TIMEOUT_S = 60.0
HTTP_TIMEOUT_S = 120.0
RETRY_AFTER_S_MAX = 10.0
SUBMIT_ATTEMPTS_MAX = 1_000
METER_KEYS_PER_ENTITY = 20


MIX_REALISTIC = "realistic"
MIX_PILOT = "pilot"
MIX_RECORDS = "records"
MIXES = (MIX_REALISTIC, MIX_PILOT, MIX_RECORDS)
MIX_DEFAULT = MIX_REALISTIC
MIX_PERIOD_TXS = 100  # the pilot mix's period
REALISTIC_PERIOD_TXS = 1000
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
# The realistic mix: transactions of each kind in every 1000 of the timed workload.  The vote
# comes first so that it is placed early in the period (83rd): a run of 100 txs holds one.
REALISTIC_MIX: dict[str, int] = {
    "governance.vote": 1,  # a council member's first vote on a proposal opened in the set-up
    "records.put": 700,  # own namespace: meter readings, document records, status
    "records.anchor": 150,  # document anchors: half in the signer's namespace, half as a grantee
    "records.grant": 30,  # new grants to pairs no timed write depends on
    "assets.mint": 60,  # fresh token ids into the issuer's unique collection
    "assets.transfer": 59,  # a unique asset minted in the set-up, moved once by its owner
}
# A set-up proposal that never reaches its threshold (see `PilotCast.count_votes_per_proposal`);
# were it executed it would change nothing (0 is the genesis default).
PROPOSAL_PAYLOAD = ("set_params", ((("view_timeout_ms", 0),),))
PROPOSAL_EXPIRES_AT_HEIGHT = 1_000_000  # = PROPOSAL_LIFETIME_BLOCKS_MAX: valid from height 0
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
REALISTIC_SLOTS = _spread_slots(REALISTIC_MIX)
if len(REALISTIC_SLOTS) != REALISTIC_PERIOD_TXS:
    raise InvariantError(f"the realistic mix must name {REALISTIC_PERIOD_TXS} transactions per period")
# The kinds per period of each mix that has a table, and the order they come in.
MIX_TABLES: dict[str, dict[str, int]] = {MIX_PILOT: PILOT_MIX, MIX_REALISTIC: REALISTIC_MIX}
_SLOTS: dict[str, tuple[tuple[str, int], ...]] = {MIX_PILOT: PILOT_SLOTS, MIX_REALISTIC: REALISTIC_SLOTS}


@dataclass(frozen=True, slots=True)
class PilotCast:
    """Who does what: the submitter entities (in the network's order), the issuers among them and
    the council (member ids in genesis order, threshold M).  A `WorkItem.signer` below
    len(entity_ids) is an entity, from there on council member signer - len(entity_ids)."""

    entity_ids: tuple[str, ...]
    issuers: tuple[int, ...]  # indexes into entity_ids of the issuers that own collections
    council: tuple[str, ...] = ()
    council_threshold: int = 0

    def find_problem(self, mix: str = MIX_PILOT) -> str | None:
        """Why `mix` cannot run with this cast, or None."""
        if mix == MIX_RECORDS:
            return None
        if len(self.entity_ids) < 4 or not self.issuers:
            return f"the {mix} mix needs 4 submitter entities and an issuer among them"
        if mix == MIX_REALISTIC and self.count_votes_per_proposal() < 1:
            return "the realistic mix needs a council whose proposals stay open after a vote (M >= 2)"
        return None

    def count_votes_per_proposal(self) -> int:
        """How many members may vote on one proposal of its proposer (member 0) and leave it open:
        at most M - 2 approvals (with the proposer's, M - 1) and N - M rejections, each member once."""
        members, threshold = len(self.council), self.council_threshold
        if threshold < 2:
            return 0  # the proposer's own approval decides it
        return max(0, min(members - 1, threshold - 2 + members - threshold))

    def get_council_signer(self, member: int) -> int:
        """The `WorkItem.signer` of council member `member` (its index in `council`)."""
        return len(self.entity_ids) + member


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


def build_cast(
    identities: list[Identity], council: tuple[str, ...] = (), council_threshold: int = 0
) -> PilotCast:
    """The cast of the mixes from the submitter identities (`load_submitters`, in its order) and
    the council (genesis order and threshold; only the realistic mix needs it)."""
    issuers = [i for i, who in enumerate(identities) if "issuer" in pki.read_claims(who.certificate).roles]
    return PilotCast(
        tuple(who.entity_id for who in identities),
        tuple(issuers[:COLLECTIONS_ISSUERS_MAX]),
        council,
        council_threshold,
    )


def compute_kind_rank(mix: str, sequence: int) -> tuple[str, int]:
    """(kind, rank) of timed transaction `sequence` of a mix with a table: the rank counts the
    kind's transactions from the start."""
    slots = _SLOTS[mix]
    kind, slot_rank = slots[sequence % len(slots)]
    return kind, sequence // len(slots) * MIX_TABLES[mix][kind] + slot_rank


def compute_pilot_kind(sequence: int) -> str:
    """The kind (`PILOT_MIX`) of timed transaction `sequence` of the pilot mix."""
    return PILOT_SLOTS[sequence % MIX_PERIOD_TXS][0]


def count_kind(txs: int, kind: str, mix: str = MIX_PILOT) -> int:
    """How many transactions of `kind` the first `txs` of `mix` (the pilot mix) hold."""
    slots, table = _SLOTS[mix], MIX_TABLES[mix]
    full, rest = divmod(txs, len(slots))
    return full * table.get(kind, 0) + sum(1 for slot_kind, _ in slots[:rest] if slot_kind == kind)


def count_proposals(cast: PilotCast, txs: int, mix: str) -> int:
    """The proposals the set-up opens for the votes of the first `txs` transactions of `mix`."""
    votes = count_kind(txs, "governance.vote", mix) if mix in MIX_TABLES else 0
    return -(-votes // cast.count_votes_per_proposal()) if votes else 0


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


def _build_realistic_anchor(sequence: int, rank: int, cast: PilotCast, label: str) -> WorkItem:
    """Even ranks: the signer anchors a document in its own namespace; odd: a grantee's anchor."""
    if rank % 2:
        return _build_anchor(sequence, rank // 2, cast, label)
    entity = rank // 2 % len(cast.entity_ids)
    key, digest = f"anchor-{label}-{rank:08d}", _hash(label, "own-anchor", rank)
    uri = f"https://files.example/{label}/own-{rank}.pdf"
    return WorkItem(
        entity, "records", "anchor", (cast.entity_ids[entity], key, digest, "application/pdf", 2048, uri)
    )


def _build_vote(sequence: int, rank: int, cast: PilotCast, label: str) -> WorkItem:
    """Member 1 + slot votes on set-up proposal 1 + rank // per (proposal ids count from 1 on the
    bench's fresh chain): the first M - 2 slots approve, the rest reject, so it stays open."""
    proposal, slot = divmod(rank, cast.count_votes_per_proposal())
    approve = slot < cast.council_threshold - 2
    return WorkItem(cast.get_council_signer(1 + slot), "governance", "vote", (1 + proposal, approve))


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
_REALISTIC_BUILDERS: dict[str, Callable[[int, int, PilotCast, str], WorkItem]] = {
    "records.put": _build_put,
    "records.anchor": _build_realistic_anchor,
    "records.grant": _build_grant,
    "assets.mint": _build_mint,
    "assets.transfer": _build_transfer,
    "governance.vote": _build_vote,
}
if set(_REALISTIC_BUILDERS) != set(REALISTIC_MIX):
    raise InvariantError("every kind of the realistic mix needs a builder")
_BUILDERS = {MIX_PILOT: _PILOT_BUILDERS, MIX_REALISTIC: _REALISTIC_BUILDERS}


def compute_pilot_item(sequence: int, cast: PilotCast, label: str) -> WorkItem:
    """Timed transaction `sequence` of the pilot mix (`PILOT_MIX`).

    Each kind's `rank` counts its transactions from the start.  Nothing here depends on what
    another timed transaction did, so any commit order is valid: writes by grantees use the
    set-up's grants (to i+1 and i+2), new grants go to other pairs; each set-up asset of the
    transfer, approve and freeze pools is touched by one timed transaction only; an editioned
    holder sends at most the units the set-up minted to it and never receives its own token.
    """
    kind, rank = compute_kind_rank(MIX_PILOT, sequence)
    return _PILOT_BUILDERS[kind](sequence, rank, cast, label)


def compute_setup_phases(cast: PilotCast, txs: int, label: str, mix: str = MIX_PILOT) -> list[list[WorkItem]]:
    """What the timed transactions of `mix` (the pilot mix; the records mix needs nothing) rely on,
    in phases each committed before the next: collections, grants and the council's proposals,
    then the mints of every asset the timed workload moves or freezes."""
    if mix not in MIX_TABLES:
        return []
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
    # Every proposal by member 0: whatever order they commit in, ids 1..P are alike.
    proposal = WorkItem(
        cast.get_council_signer(0), "governance", "propose", (*PROPOSAL_PAYLOAD, PROPOSAL_EXPIRES_AT_HEIGHT)
    )
    proposals = [proposal] * count_proposals(cast, txs, mix)
    return [collections + grants + proposals, _compute_setup_mints(cast, txs, label, mix)]


def _compute_setup_mints(cast: PilotCast, txs: int, label: str, mix: str) -> list[WorkItem]:
    """The mint batches of the unique assets the timed transactions of `mix` move, approve or
    freeze (one each) and of the editioned tokens its holders send."""
    count = len(cast.entity_ids)
    items_by_collection: dict[str, list[tuple[Any, ...]]] = {}
    for pool, kind in (("t", "assets.transfer"), ("a", "assets.approve"), ("f", "assets.freeze")):
        for rank in range(count_kind(txs, kind, mix)):
            collection, token, owner = _pool_token(cast, pool, rank)
            item = (token, cast.entity_ids[owner], 1, _hash(label, pool, rank), "")
            items_by_collection.setdefault(collection, []).append(item)
    if "assets.transfer_editioned" in MIX_TABLES[mix]:
        units = count_kind(txs, "assets.transfer_editioned", mix) // count + 1
        for holder in range(count):
            collection, token = _editioned_token(cast, holder)
            item = (token, cast.entity_ids[holder], units, _hash(label, "e", holder), "")
            items_by_collection.setdefault(collection, []).append(item)
    issuer_of = {
        _collection(cast, k, kind): cast.issuers[k]
        for k in range(len(cast.issuers))
        for kind in ("unique", "editioned")
    }
    return [
        WorkItem(
            issuer_of[collection],
            "assets",
            "mint_batch",
            (collection, tuple(items[start : start + MINT_BATCH_ITEMS])),
        )
        for collection, items in items_by_collection.items()
        for start in range(0, len(items), MINT_BATCH_ITEMS)
    ]


def compute_item(mix: str, sequence: int, cast: PilotCast, label: str) -> WorkItem:
    """Timed transaction `sequence` of `mix`.

    Each kind's `rank` counts its transactions from the start (see `compute_pilot_item` for why
    any commit order is valid); the realistic mix's votes are each a member's first on its
    proposal, never enough to close it (`PilotCast.count_votes_per_proposal`)."""
    if mix in _BUILDERS:
        kind, rank = compute_kind_rank(mix, sequence)
        return _BUILDERS[mix][kind](sequence, rank, cast, label)
    entity = sequence % len(cast.entity_ids)
    return WorkItem(entity, "records", "put", compute_record_args(sequence, entity, label))


def describe_workload(mix: str) -> str:
    """The report's "workload" text: the mix's proportions."""
    if mix not in MIX_TABLES:
        return "records.put (meter readings, document records, status) from the pilot's submitter entities"
    table = MIX_TABLES[mix]
    return f"per {sum(table.values())} txs: " + ", ".join(f"{count} {kind}" for kind, count in table.items())
