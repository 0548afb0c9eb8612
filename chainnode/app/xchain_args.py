"""The transaction-argument forms of `xchain` actions: an inclusion proof as `xchain.import`
carries it, and the steps of `xchain.update_client`.  Pure: no I/O.

Theory of operation: an argument is canonical msgpack like every other, so each form is a
fixed-order array of bytes, strings and integers, with an encoder (from the proof JSON of
`chainnode.app.proof`, or from (header, certificate, change proof) triples) and, for the proof,
a decoder that checks only the shape (`chainnode.app.proof.verify_proof_for_chain` checks the
rest when the import executes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# An inclusion proof (`chainnode.app.proof`, JSON with hex strings) travels in `xchain.import` as
# one msgpack array of its fields in `PROOF_FIELDS` order, hex turned into bytes and the audit
# paths into arrays of bytes: half the size of the hex, and canonical like every argument.
_PROOF_HEX_FIELDS = frozenset(
    {"tx_hash", "block_hash", "block_header", "commit_certificate", "transaction", "receipt"}
)
_PROOF_PATH_FIELDS = frozenset({"tx_proof", "receipt_proof"})
PROOF_PATH_MAX = 64


def encode_proof_args(proof: Mapping[str, Any]) -> tuple[Any, ...]:
    """The argument form of a proof JSON; `ValueError` if a field is missing or not of its type."""
    from chainnode.app.proof import PROOF_FIELDS

    items: list[Any] = []
    for name in PROOF_FIELDS:
        if name not in proof:
            raise ValueError(f"the proof has no field {name!r}")
        value = proof[name]
        if name in _PROOF_HEX_FIELDS:
            items.append(bytes.fromhex(value))
        elif name in _PROOF_PATH_FIELDS:
            items.append(tuple(bytes.fromhex(item) for item in value))
        else:
            items.append(value)
    return tuple(items)


def decode_proof_args(value: Any) -> dict[str, Any] | None:
    """The proof JSON of an argument made by `encode_proof_args`; None if it is not of that form.

    Only the shape is checked here; `chainnode.app.proof.verify_proof_for_chain` checks the rest
    (the JSON is strict lowercase hex, so a proof has one spelling in either form).
    """
    from chainnode.app.proof import PROOF_FIELDS

    if not isinstance(value, tuple) or len(value) != len(PROOF_FIELDS):
        return None
    proof: dict[str, Any] = {}
    for name, item in zip(PROOF_FIELDS, value, strict=True):
        if name in _PROOF_HEX_FIELDS:
            if not isinstance(item, bytes):
                return None
            proof[name] = item.hex()
        elif name in _PROOF_PATH_FIELDS:
            if not (
                isinstance(item, tuple)
                and len(item) <= PROOF_PATH_MAX
                and all(isinstance(node, bytes) for node in item)
            ):
                return None
            proof[name] = [node.hex() for node in item]
        elif name == "chain_id":
            if not isinstance(item, str):
                return None
            proof[name] = item
        else:
            if not isinstance(item, int) or isinstance(item, bool):
                return None
            proof[name] = item
    return proof


def compute_steps_args(
    steps: Sequence[tuple[bytes, bytes, bytes | None]],
) -> tuple[tuple[bytes, bytes, bytes | None], ...]:
    """The `steps` argument of `xchain.update_client`: (header, certificate, change proof or None)."""
    return tuple(
        (bytes(header), bytes(certificate), None if change is None else bytes(change))
        for header, certificate, change in steps
    )
