"""The light client's rules: follow a chain by headers and commit certificates alone.

Theory of operation
-------------------
A light client trusts a `LightState`: the chain id and genesis hash it started from, the latest
header it accepted (height, hash, state root) and the validator sets it has learned, each with
the height from which it certifies blocks.  It starts from a genesis (`start_light_state`: the
genesis validator set, the genesis hash standing for "header 0" and the genesis state root) and
moves only by `advance`, which never re-executes a block and never needs a block body.

What a header needs to be accepted (`advance`):

- the state is not halted, the header is for this chain and above the latest height;
- in sequential mode (the offline client, `chainnode light sync`) it is exactly the next height;
- the header right after the latest names the latest as its parent;
- its validator-set hash is the current set's, or, only for the header right after the latest,
  a new set proven by a `ValidatorChangeProof` against the latest header's state root;
- its commit certificate carries a quorum (`compute_quorum`) of valid COMMIT signatures of the
  set it names.

Why validator-set changes need a proof, and which one: a header names the set that certifies
it (`validator_set_hash`), so a header can only vouch for itself once the client already trusts
that set; a header naming a set the client does not know is a claim by strangers.  The set of
block h + 1 is the value that block h wrote at `VALIDATOR_SET_KEY` (governance and authority
write it there and only there, see `chainnode.app.governance.apply_validator_set`).  The state
root of block h commits to block h's write set (`chainnode.app.state.compute_state_root`:
`H_state(previous root || MerkleRoot(sorted write-set leaves))`), so the leaf
`(VALIDATOR_SET_KEY, new set)` with its RFC 6962 path, the previous root and the tree size prove
what block h decided, with nothing trusted but the certificate of block h by the old set.  That
is the write-set inclusion proof this module checks (`verify_validator_change`).  We chose it over
adding a next-validator-set hash to the header because it needs no change to the block format
(every ledger, proof and audit checkpoint written so far stays valid) and it proves the decided
value itself, not a hash the client would still have to be handed a preimage for.  The node
records the proof when it commits a block that changes the set (`compute_validator_change_proof`,
served as `GET /v1/light/changes`).

Skipping: in sparse mode (the on-chain light clients of `chainnode.app.xchain`) a header may skip
heights when it names the current set: a quorum of the set the client trusts certified it, which
is all a sequential client would have checked at that height too.  A set change between the two
heights cannot be skipped (the later header names another set and is refused until the change is
proven at the height where it happened), so `get_validator_set` is exact for every height up to
the latest.  A change and a change back between two sparse headers is missed; proofs from inside
that window then fail the `validator_set` check, never pass.

Forks: `check_conflict` is handed a certified header at a height already accepted; a different
hash, certified by the set of that height, means the chain's validators signed two blocks at one
height (more than f of them are faulty).  The state is returned halted with the reason; the
caller keeps both headers as evidence, and a halted state accepts nothing until an operator
starts again from a trusted point.

Every failure raises `LightError` whose `check` names the rule, one of `LIGHT_CHECKS`.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from chainnode.core import codec, crypto, merkle, quorum, types
from chainnode.core.codec import expect_bytes, expect_int, expect_str, expect_tuple
from chainnode.core.errors import ChainError, ValidationError
from chainnode.core.hexstr import HexError, parse_hex
from chainnode.core.identity_records import VALIDATOR_SET_KEY
from chainnode.core.tags import TAG_LIGHT_STATE, TAG_VALIDATOR_CHANGE_PROOF

LIGHT_CHECKS = (
    "format",  # the bytes or JSON do not decode
    "chain_id",  # a header or certificate of another chain
    "height",  # not above the latest (advance), or above it (get_validator_set)
    "gap",  # sequential mode: not the next height
    "parent",  # the next header does not name the latest as its parent
    "validator_set",  # names a set the client does not trust, without a proof of the change
    "change_proof",  # the change proof does not prove the set against the latest state root
    "certificate_binding",  # the certificate is for another header
    "quorum",  # too few, unknown, duplicate or invalid signatures
    "fork",  # two certified headers at one height (the state is halted)
    "halted",  # the state was halted by a fork
)
_SETS_MAX = 10_000  # validator-set changes a light state keeps (ample: changes are council votes)
_PATH_MAX = 64


class LightError(ValidationError):
    """A header, certificate or proof the light client refuses; `check` is one of `LIGHT_CHECKS`."""

    code = "light_client"

    def __init__(self, check: str, message: str) -> None:
        assert check in LIGHT_CHECKS, f"unknown light-client check {check!r}"
        super().__init__(f"{check}: {message}")
        self.check = check


# ---------------------------------------------------------------- validator-set change proofs


@dataclass(frozen=True, slots=True)
class ValidatorChangeProof:
    """Block `height` wrote `validators` at `VALIDATOR_SET_KEY` (the set from `height + 1` on).

    The leaf `encode((VALIDATOR_SET_KEY, validators))` is leaf `leaf_index` of the `leaf_count`
    leaves of block `height`'s write-set tree (path `path`, from the leaf upward), and
    `H_state(previous_state_root || root)` is that block's state root.
    """

    height: int
    validators: bytes  # encoded quorum.ValidatorSet
    previous_state_root: bytes
    leaf_index: int
    leaf_count: int
    path: tuple[bytes, ...]

    def encode(self) -> bytes:
        return codec.encode(
            (
                TAG_VALIDATOR_CHANGE_PROOF,
                types.VERSION,
                self.height,
                self.validators,
                self.previous_state_root,
                self.leaf_index,
                self.leaf_count,
                self.path,
            )
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "height": self.height,
            "validators": self.validators.hex(),
            "previous_state_root": self.previous_state_root.hex(),
            "leaf_index": self.leaf_index,
            "leaf_count": self.leaf_count,
            "path": [item.hex() for item in self.path],
        }


def decode_validator_change_proof(data: bytes) -> ValidatorChangeProof:
    try:
        fields = codec.decode_struct(
            data, TAG_VALIDATOR_CHANGE_PROOF, types.VERSION, 8, "validator change proof"
        )
        return ValidatorChangeProof(
            height=expect_int(fields[2], "change height", 1),
            validators=expect_bytes(fields[3], "change validators", length_max=1 << 20),
            previous_state_root=expect_bytes(fields[4], "change previous state root", 32),
            leaf_index=expect_int(fields[5], "change leaf index"),
            leaf_count=expect_int(fields[6], "change leaf count", 1),
            path=tuple(
                expect_bytes(item, "change path item", 32)
                for item in expect_tuple(fields[7], "change path", _PATH_MAX)
            ),
        )
    except ChainError as error:
        raise LightError("format", f"validator change proof: {error.message}") from error


def validator_change_proof_from_json(value: Any) -> ValidatorChangeProof:
    """The proof from its JSON form (`to_json`); strict lowercase hex, no unknown fields."""
    names = ("height", "validators", "previous_state_root", "leaf_index", "leaf_count", "path")
    if not isinstance(value, Mapping) or set(value) != set(names):
        raise LightError("format", f"a validator change proof is an object with exactly {list(names)}")
    try:
        for name in ("height", "leaf_index", "leaf_count"):
            if not isinstance(value[name], int) or isinstance(value[name], bool):
                raise LightError("format", f"{name} must be an integer")
        path = value["path"]
        if not isinstance(path, list) or len(path) > _PATH_MAX:
            raise LightError("format", f"path must be a list of at most {_PATH_MAX} hashes")
        proof = ValidatorChangeProof(
            height=value["height"],
            validators=parse_hex(value["validators"], "validators", lowercase=True),
            previous_state_root=parse_hex(
                value["previous_state_root"], "previous_state_root", length=32, lowercase=True
            ),
            leaf_index=value["leaf_index"],
            leaf_count=value["leaf_count"],
            path=tuple(parse_hex(item, "path item", length=32, lowercase=True) for item in path),
        )
    except HexError as error:
        raise LightError("format", error.message) from error
    # One canonical form: what decodes from the bytes is what the JSON said.
    return decode_validator_change_proof(proof.encode())


def compute_validator_change_proof(
    height: int, previous_state_root: bytes, write_set: Mapping[bytes, bytes | None]
) -> ValidatorChangeProof | None:
    """The proof for block `height` with `write_set`, or None when the block left the set alone."""
    validators = write_set.get(VALIDATOR_SET_KEY)
    if validators is None:
        return None
    keys = sorted(write_set)
    leaves = [codec.encode((key, write_set[key])) for key in keys]
    index = keys.index(VALIDATOR_SET_KEY)
    return ValidatorChangeProof(
        height=height,
        validators=validators,
        previous_state_root=previous_state_root,
        leaf_index=index,
        leaf_count=len(leaves),
        path=tuple(merkle.compute_inclusion_proof(leaves, index)),
    )


def verify_validator_change(state_root: bytes, proof: ValidatorChangeProof) -> quorum.ValidatorSet:
    """The set block `proof.height` wrote, proven against that block's `state_root`."""
    leaf = codec.encode((VALIDATOR_SET_KEY, proof.validators))
    # The root this path and leaf imply; the leaf count and index are bound by the RFC 6962 path.
    root = merkle.compute_root_from_inclusion(leaf, proof.leaf_index, proof.leaf_count, proof.path)
    if root is None or crypto.hash_tagged("state", proof.previous_state_root + root) != state_root:
        raise LightError(
            "change_proof", f"the proof does not show block {proof.height} writing that validator set"
        )
    try:
        return quorum.decode_validator_set(proof.validators)
    except ChainError as error:
        raise LightError(
            "change_proof", f"the proven validator set does not decode: {error.message}"
        ) from error


# ---------------------------------------------------------------- light state


@dataclass(frozen=True, slots=True)
class LightState:
    """What a light client trusts about one chain (see the module doc)."""

    chain_id: str
    genesis_hash: bytes
    height: int  # latest accepted header; 0 = the genesis
    header_hash: bytes  # its hash (the genesis hash at 0)
    state_root: bytes  # its state root (the genesis state root at 0)
    sets: tuple[tuple[int, bytes], ...]  # (from height, encoded ValidatorSet), ascending, first from 1
    halted: str  # "" or why the state accepts nothing any more

    def validators(self) -> quorum.ValidatorSet:
        """The set that certifies the next header."""
        return quorum.decode_validator_set(self.sets[-1][1])

    def get_validator_set(self, height: int) -> quorum.ValidatorSet:
        """The set that certified `height`, for 1 <= height <= the latest accepted height."""
        if not 1 <= height <= self.height:
            raise LightError(
                "height", f"height {height} is outside what the light client verified (1..{self.height})"
            )
        starts = [start for start, _ in self.sets]
        return quorum.decode_validator_set(self.sets[bisect.bisect_right(starts, height) - 1][1])

    def encode(self) -> bytes:
        return codec.encode(
            (
                TAG_LIGHT_STATE,
                types.VERSION,
                self.chain_id,
                self.genesis_hash,
                self.height,
                self.header_hash,
                self.state_root,
                self.sets,
                self.halted,
            )
        )

    def to_json(self) -> dict[str, Any]:
        validators = self.validators()
        return {
            "chain_id": self.chain_id,
            "genesis_hash": self.genesis_hash.hex(),
            "height": self.height,
            "header_hash": self.header_hash.hex(),
            "state_root": self.state_root.hex(),
            "validator_set_hash": validators.compute_hash().hex(),
            "validators": [v.entity_id for v in validators.validators],
            "validator_changes": [start for start, _ in self.sets[1:]],
            "halted": self.halted,
        }


def decode_light_state(data: bytes) -> LightState:
    try:
        fields = codec.decode_struct(data, TAG_LIGHT_STATE, types.VERSION, 9, "light state")
        sets = []
        for raw in expect_tuple(fields[7], "light state sets", _SETS_MAX):
            item = expect_tuple(raw, "light state set", 2)
            if len(item) != 2:
                raise LightError("format", "a light state set is [from height, validators]")
            sets.append((expect_int(item[0], "set start", 1), expect_bytes(item[1], "set validators")))
        if not sets or sets[0][0] != 1 or [s for s, _ in sets] != sorted({s for s, _ in sets}):
            raise LightError("format", "light state sets must start at 1 and ascend")
        return LightState(
            chain_id=expect_str(fields[2], "light state chain id", 64),
            genesis_hash=expect_bytes(fields[3], "light state genesis hash", 32),
            height=expect_int(fields[4], "light state height"),
            header_hash=expect_bytes(fields[5], "light state header hash", 32),
            state_root=expect_bytes(fields[6], "light state state root", 32),
            sets=tuple(sets),
            halted=expect_str(fields[8], "light state halted", 1024, allow_empty=True),
        )
    except LightError:
        raise
    except ChainError as error:
        raise LightError("format", f"light state: {error.message}") from error


def start_light_state(
    chain_id: str, genesis_hash: bytes, genesis_state_root: bytes, validators: quorum.ValidatorSet
) -> LightState:
    """The state of a client that trusts a genesis and nothing else."""
    return LightState(
        chain_id=chain_id,
        genesis_hash=genesis_hash,
        height=0,
        header_hash=genesis_hash,
        state_root=genesis_state_root,
        sets=((1, validators.encode()),),
        halted="",
    )


# ---------------------------------------------------------------- headers


def _decode_certified(
    header_bytes: bytes, certificate_bytes: bytes
) -> tuple[types.BlockHeader, quorum.CommitCertificate]:
    try:
        header = types.decode_block_header(header_bytes)
        certificate = quorum.decode_commit_certificate(certificate_bytes)
    except ChainError as error:
        raise LightError("format", error.message) from error
    return header, certificate


def _check_certificate(
    chain_id: str,
    header: types.BlockHeader,
    certificate: quorum.CommitCertificate,
    validators: quorum.ValidatorSet,
) -> None:
    if header.chain_id != chain_id:
        raise LightError("chain_id", f"the header is for chain {header.chain_id!r}, not {chain_id!r}")
    if header.validator_set_hash != validators.compute_hash():
        raise LightError(
            "validator_set",
            f"the header at height {header.height} names a validator set the client does not trust",
        )
    if certificate.height != header.height or certificate.block_hash != header.compute_hash():
        raise LightError("certificate_binding", "the commit certificate is for another block")
    if certificate.view < header.view:
        raise LightError("certificate_binding", "the certificate's view precedes the block's view")
    problem = certificate.find_problem(chain_id, validators)
    if problem is not None:
        raise LightError("quorum", f"height {header.height}: {problem}")


def verify_certified_header(
    state: LightState, header_bytes: bytes, certificate_bytes: bytes
) -> tuple[types.BlockHeader, quorum.CommitCertificate]:
    """Decode and check a header and its certificate against the set the state holds for its height.

    For a height above the latest, that is the current set (a header naming another set fails
    `validator_set`: the change must be proven first, by `advance`).
    """
    header, certificate = _decode_certified(header_bytes, certificate_bytes)
    if header.height < 1:
        raise LightError("height", "headers start at height 1")
    validators = (
        state.get_validator_set(header.height) if header.height <= state.height else state.validators()
    )
    _check_certificate(state.chain_id, header, certificate, validators)
    return header, certificate


def advance(
    state: LightState,
    header_bytes: bytes,
    certificate_bytes: bytes,
    change: ValidatorChangeProof | None = None,
    *,
    sequential: bool = False,
) -> LightState:
    """The state after accepting a certified header above the latest (rules in the module doc)."""
    if state.halted:
        raise LightError("halted", f"the light client of {state.chain_id!r} is halted: {state.halted}")
    header, certificate = _decode_certified(header_bytes, certificate_bytes)
    if header.chain_id != state.chain_id:
        raise LightError("chain_id", f"the header is for chain {header.chain_id!r}, not {state.chain_id!r}")
    if header.height <= state.height:
        raise LightError("height", f"height {header.height} is not above the latest ({state.height})")
    is_next = header.height == state.height + 1
    if sequential and not is_next:
        raise LightError("gap", f"the next header is {state.height + 1}, not {header.height}")
    if is_next and header.parent_hash != state.header_hash:
        raise LightError(
            "parent", f"header {header.height} does not follow the accepted header {state.height}"
        )
    validators = state.validators()
    sets = state.sets
    if header.validator_set_hash != validators.compute_hash():
        if change is None or not is_next:
            raise LightError(
                "validator_set",
                f"header {header.height} names a new validator set; the change must be proven "
                f"at height {header.height - 1} first",
            )
        if change.height != state.height:
            raise LightError(
                "change_proof", f"the change proof is for block {change.height}, not {state.height}"
            )
        validators = verify_validator_change(state.state_root, change)
        if header.validator_set_hash != validators.compute_hash():
            raise LightError("validator_set", f"header {header.height} names another set than the proven one")
        sets = (*sets, (header.height, change.validators))
        if len(sets) > _SETS_MAX:
            raise LightError("format", f"more than {_SETS_MAX} validator-set changes")
    elif change is not None:
        raise LightError("change_proof", f"header {header.height} keeps the set; no change proof is expected")
    _check_certificate(state.chain_id, header, certificate, validators)
    return replace(
        state,
        height=header.height,
        header_hash=header.compute_hash(),
        state_root=header.state_root,
        sets=sets,
    )


def check_conflict(
    state: LightState, known_header_hash: bytes, header_bytes: bytes, certificate_bytes: bytes
) -> LightState:
    """Compare a certified header with the one accepted at its height; a difference halts the state.

    Raises `LightError` when the header is not validly certified (then it is no evidence of
    anything); returns the state unchanged when it is the known header, halted when it is not.
    """
    header, _ = verify_certified_header(state, header_bytes, certificate_bytes)
    if header.height > state.height:
        raise LightError("height", f"height {header.height} was not accepted yet")
    header_hash = header.compute_hash()
    if header_hash == known_header_hash:
        return state
    return replace(
        state,
        halted=f"fork at height {header.height}: certified headers {known_header_hash.hex()[:16]} "
        f"and {header_hash.hex()[:16]}",
    )
