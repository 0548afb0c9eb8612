"""Inclusion proofs: a transaction and its receipt were committed, checkable offline.

Theory of operation
-------------------
A proof (`compute_proof`, served as `GET /v1/transactions/{hash}/proof`) is a
JSON object that carries everything needed, with nothing to trust but the
genesis the verifier already holds:

    version, chain_id, height, tx_hash, tx_index, tx_count, block_hash,
    block_header       encoded BlockHeader (hex)
    commit_certificate encoded CommitCertificate (hex)
    transaction        encoded signed Transaction (hex)
    receipt            encoded Receipt (hex)
    tx_proof           RFC 6962 audit path of the transaction in header.tx_root
    receipt_proof      RFC 6962 audit path of the receipt in header.receipts_root

`verify_proof` binds every field to the validators' signatures:
the certificate must carry a quorum of valid COMMIT signatures of the
validator set of that height over (chain id, view, height, H(header)); the
header must name that validator set; the transaction and the receipt must be
leaves `tx_index` of trees of `tx_count` leaves with the header's roots; the
receipt must be for that transaction; and every redundant field (`block_hash`,
`tx_hash`, `height`, ...) must equal what it is computed from.  Hex is strict
lowercase, so a proof has one spelling: any altered byte or digit fails.

The receipt says whether the transaction succeeded (`receipt.code == 0`); a
failed transaction is committed too.  The signer's signature over the
transaction is not checked here: the signer's key at that height is chain
state the verifier may not hold, and the validators re-executed the block
(which checks it) before they signed the certificate.

Validator sets: the set of a height comes from a `ValidatorSets` lookup.  With
the genesis alone (`GenesisValidatorSets`) that is the genesis set, right up to
the first council-approved change; a proof from after a change then fails the
`validator_set` check, never passes.  For later heights, a light client's state
(`chainnode.light.LightState`) knows the set of every height it followed, or
`chainnode.tools.audit.StateValidatorSets` reads the validator-set history
(`chainnode.app.governance.get_validator_set_at`)
from a state the verifier replayed itself: the checkpoint of an audit
(`chainnode verify-proof --checkpoint`), which is exact up to the height after
the checkpoint; later heights are refused, because a change committed after
the checkpoint is unknown to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from chainnode.core import merkle, quorum, types
from chainnode.core.errors import ChainError, StorageError, ValidationError
from chainnode.core.hexstr import HexError, parse_hex

if TYPE_CHECKING:
    from chainnode.app.genesis import Genesis

PROOF_VERSION = 1
_PROOF_DEPTH_MAX = 64
PROOF_FIELDS = (
    "version",
    "chain_id",
    "height",
    "tx_hash",
    "tx_index",
    "tx_count",
    "block_hash",
    "block_header",
    "commit_certificate",
    "transaction",
    "receipt",
    "tx_proof",
    "receipt_proof",
)


class ProofError(ValidationError):
    """A proof that does not show what it claims; `check` names the failed check."""

    code = "invalid_proof"

    def __init__(self, check: str, message: str) -> None:
        super().__init__(f"{check}: {message}")
        self.check = check


class ValidatorSets(Protocol):
    """The validator set that certifies blocks at a height."""

    def get_validator_set(self, height: int) -> quorum.ValidatorSet: ...


class GenesisValidatorSets:
    """Every height is certified by the genesis set (no validator-set changes yet, see the module doc)."""

    def __init__(self, validators: quorum.ValidatorSet) -> None:
        self.validators = validators

    def get_validator_set(self, height: int) -> quorum.ValidatorSet:
        return self.validators


@dataclass(frozen=True, slots=True)
class ProofResult:
    """What a valid proof shows."""

    chain_id: str
    height: int
    block_hash: bytes
    header: types.BlockHeader
    transaction: types.Transaction
    tx_index: int
    receipt: types.Receipt
    signatures: int  # COMMIT signatures in the certificate, all valid


class ProofReader(Protocol):
    """The ledger reads a proof needs (`storage.ledger.Ledger` has them)."""

    def get_block(self, height: int) -> bytes | None: ...
    def get_certificate(self, height: int) -> bytes | None: ...
    def get_receipt(self, height: int, index: int) -> bytes | None: ...


def compute_proof(ledger: ProofReader, height: int, tx_index: int) -> dict[str, Any]:
    """The proof JSON of the transaction at (`height`, `tx_index`); `StorageError` if data is missing."""
    block_encoded = ledger.get_block(height)
    certificate_encoded = ledger.get_certificate(height)
    if block_encoded is None or certificate_encoded is None:
        raise StorageError(f"no block or certificate at height {height}")
    try:
        block = types.decode_block(block_encoded, check_body=False)
    except ChainError as error:
        raise StorageError(f"the stored block {height} does not decode: {error.message}") from error
    count = len(block.transactions)
    if not 0 <= tx_index < count:
        raise StorageError(f"block {height} has no transaction {tx_index}")
    receipts: list[bytes] = []
    for index in range(count):
        receipt = ledger.get_receipt(height, index)
        if receipt is None:
            raise StorageError(f"no receipt {index} of block {height}")
        receipts.append(receipt)
    leaves = [tx.encoded for tx in block.transactions]
    tx = block.transactions[tx_index]
    return {
        "version": PROOF_VERSION,
        "chain_id": block.header.chain_id,
        "height": height,
        "tx_hash": tx.hash.hex(),
        "tx_index": tx_index,
        "tx_count": count,
        "block_hash": block.hash.hex(),
        "block_header": block.header.encode().hex(),
        "commit_certificate": certificate_encoded.hex(),
        "transaction": tx.encoded.hex(),
        "receipt": receipts[tx_index].hex(),
        "tx_proof": [item.hex() for item in merkle.compute_inclusion_proof(leaves, tx_index)],
        "receipt_proof": [item.hex() for item in merkle.compute_inclusion_proof(receipts, tx_index)],
    }


# ---------------------------------------------------------------- verification


def _get_int(proof: Mapping[str, Any], name: str) -> int:
    value = proof[name]
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ProofError("format", f"{name} must be a non-negative integer")
    return value


def _get_hex(value: Any, name: str, length: int | None = None) -> bytes:
    try:
        return parse_hex(value, name, length=length, lowercase=True)
    except HexError as error:
        raise ProofError("format", error.message) from error


def _get_path(proof: Mapping[str, Any], name: str) -> list[bytes]:
    items = proof[name]
    if not isinstance(items, list) or len(items) > _PROOF_DEPTH_MAX:
        raise ProofError("format", f"{name} must be a list of at most {_PROOF_DEPTH_MAX} hashes")
    return [_get_hex(item, f"{name}[{position}]", 32) for position, item in enumerate(items)]


def _decode_parts(
    proof: Mapping[str, Any],
) -> tuple[types.BlockHeader, quorum.CommitCertificate, types.Transaction, types.Receipt]:
    try:
        header = types.decode_block_header(_get_hex(proof["block_header"], "block_header"))
        certificate = quorum.decode_commit_certificate(
            _get_hex(proof["commit_certificate"], "commit_certificate")
        )
        transaction = types.decode_transaction(_get_hex(proof["transaction"], "transaction"))
        receipt_encoded = _get_hex(proof["receipt"], "receipt")
        receipt = types.decode_receipt(receipt_encoded)
    except ProofError:
        raise
    except ChainError as error:
        raise ProofError("decode", error.message) from error
    if receipt.encode() != receipt_encoded:
        raise ProofError("decode", "the receipt is not canonically encoded")
    return header, certificate, transaction, receipt


def _check_certificate(
    header: types.BlockHeader,
    certificate: quorum.CommitCertificate,
    block_hash: bytes,
    validators: quorum.ValidatorSet,
) -> None:
    if header.validator_set_hash != validators.compute_hash():
        raise ProofError(
            "validator_set",
            f"the header at height {header.height} names another validator set than the verifier's "
            "(after a validator-set change, verify with the checkpoint of an audit that reached it)",
        )
    if certificate.height != header.height or certificate.block_hash != block_hash:
        raise ProofError("certificate_binding", "the commit certificate is for another block")
    if certificate.view < header.view:
        raise ProofError("certificate_binding", "the certificate's view precedes the block's view")
    problem = certificate.find_problem(header.chain_id, validators)
    if problem is not None:
        raise ProofError("certificate", problem)


def verify_proof(
    proof: Mapping[str, Any], genesis: Genesis, validator_sets: ValidatorSets | None = None
) -> ProofResult:
    """Check a proof against the chain that starts at `genesis`; `ProofError` names the failed check.

    Without `validator_sets`, the genesis set is the set of every height (see the module doc).
    """
    sets = validator_sets if validator_sets is not None else GenesisValidatorSets(genesis.validators)
    return verify_proof_for_chain(proof, genesis.chain_id, sets)


def verify_proof_for_chain(
    proof: Mapping[str, Any], chain_id: str, validator_sets: ValidatorSets
) -> ProofResult:
    """Check a proof of chain `chain_id` whose validator set at each height `validator_sets` knows.

    A light client's state (`chainnode.light.LightState`) is such a lookup: it knows the set of
    every height it verified, so a proof of any height up to its latest checks with it alone.
    """
    if not isinstance(proof, Mapping):
        raise ProofError("format", "a proof is a JSON object")
    missing = [name for name in PROOF_FIELDS if name not in proof]
    if missing or len(proof) != len(PROOF_FIELDS):
        extra = sorted(set(proof) - set(PROOF_FIELDS))
        raise ProofError("format", f"fields missing {missing} or unknown {extra}")
    if _get_int(proof, "version") != PROOF_VERSION:
        raise ProofError("format", f"unsupported proof version {proof['version']!r}")
    if proof["chain_id"] != chain_id:
        raise ProofError("chain_id", f"the proof is for chain {proof['chain_id']!r}, not {chain_id!r}")
    height, tx_index, tx_count = (_get_int(proof, name) for name in ("height", "tx_index", "tx_count"))
    header, certificate, transaction, receipt = _decode_parts(proof)
    block_hash = header.compute_hash()
    if header.chain_id != chain_id or transaction.chain_id != chain_id:
        raise ProofError("chain_id", "the header or the transaction is for another chain")
    if header.height != height or height < 1:
        raise ProofError("height", f"the header is for height {header.height}, the proof says {height}")
    if _get_hex(proof["block_hash"], "block_hash", 32) != block_hash:
        raise ProofError("block_hash", "block_hash is not the hash of the header")
    try:
        validators = validator_sets.get_validator_set(height)
    except ProofError:
        raise
    except ChainError as error:
        raise ProofError("validator_set", error.message) from error
    _check_certificate(header, certificate, block_hash, validators)
    if tx_count != header.tx_count:
        raise ProofError("tx_count", f"the header counts {header.tx_count} transactions, not {tx_count}")
    if _get_hex(proof["tx_hash"], "tx_hash", 32) != transaction.hash:
        raise ProofError("tx_hash", "tx_hash is not the hash of the transaction")
    if not merkle.verify_inclusion(
        transaction.encoded, tx_index, tx_count, _get_path(proof, "tx_proof"), header.tx_root
    ):
        raise ProofError("tx_inclusion", f"the transaction is not leaf {tx_index} of the header's tx root")
    if receipt.tx_hash != transaction.hash:
        raise ProofError("receipt", "the receipt is for another transaction")
    if not merkle.verify_inclusion(
        receipt.encode(), tx_index, tx_count, _get_path(proof, "receipt_proof"), header.receipts_root
    ):
        raise ProofError(
            "receipt_inclusion", f"the receipt is not leaf {tx_index} of the header's receipts root"
        )
    return ProofResult(
        chain_id=chain_id,
        height=height,
        block_hash=block_hash,
        header=header,
        transaction=transaction,
        tx_index=tx_index,
        receipt=receipt,
        signatures=len(certificate.signatures),
    )
