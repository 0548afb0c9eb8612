"""A governance `Chain` that also certifies its blocks, for the light-client and cross-chain tests.

`CertifiedChain.run` executes a block with the real executor (as `Chain` does), then builds its
header with the roots of the result, naming the validator set in force at that height, and signs
a commit certificate with the real keys of that set (loaded from the network directory, or
registered with `add_key` for validators added later).  It keeps what a node's ledger keeps for
light clients and proofs: blocks, certificates, receipts and the validator-change proof of every
block that changed the set, and answers the `ProofReader` calls of `chainnode.app.proof`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from chainnode import light
from chainnode.app import governance, proof
from chainnode.core import crypto, quorum, types
from tests.factories import make_executed_block
from tests.governance_harness import Chain


@dataclass
class CertifiedChain(Chain):
    """Blocks executed over a network's genesis, each with a header and a commit certificate."""

    keys: dict[str, crypto.SigningKey] = field(init=False, default_factory=dict)
    blocks: dict[int, types.Block] = field(init=False, default_factory=dict)
    certificates: dict[int, quorum.CommitCertificate] = field(init=False, default_factory=dict)
    receipts: dict[int, tuple[types.Receipt, ...]] = field(init=False, default_factory=dict)
    changes: dict[int, light.ValidatorChangeProof] = field(init=False, default_factory=dict)
    signers: int | None = None  # how many of the set sign each certificate (default: all)

    def __post_init__(self) -> None:
        super().__post_init__()
        for validator in self.net.genesis.validators.validators:
            self.keys[validator.entity_id] = self.net.entity_key(validator.entity_id)

    def add_key(self, entity_id: str, key: crypto.SigningKey) -> None:
        """The key `entity_id` signs with from now on (a new validator, or a rotated key)."""
        self.keys[entity_id] = key

    @property
    def head_hash(self) -> bytes:
        return self.blocks[self.height].hash if self.height else self.net.genesis.compute_hash()

    def run(self, *txs: types.Transaction, timestamp_ms: int | None = None) -> list[types.Receipt]:
        height = self.height + 1
        validators = governance.get_validator_set(self.state)  # the set that certifies `height`
        parent_hash, previous_root = self.head_hash, self.state_root
        result = self.execute(*txs, timestamp_ms=timestamp_ms)
        receipts = super().run(*txs, timestamp_ms=timestamp_ms)
        block = make_executed_block(
            result,
            txs,
            chain_id=self.net.genesis.chain_id,
            height=height,
            timestamp_ms=self.time_ms,
            parent_hash=parent_hash,
            validator_set_hash=validators.compute_hash(),
        )
        self.blocks[height] = block
        self.certificates[height] = self.certify(block, validators)
        self.receipts[height] = result.receipts
        change = light.compute_validator_change_proof(height, previous_root, result.write_set)
        if change is not None:
            self.changes[height] = change
        return receipts

    def certify(
        self, block: types.Block, validators: quorum.ValidatorSet, *, signers: int | None = None
    ) -> quorum.CommitCertificate:
        keys = [self.keys[validator.entity_id] for validator in validators.validators]
        count = signers if signers is not None else self.signers if self.signers is not None else len(keys)
        payload = types.compute_vote_payload(
            types.VoteKind.COMMIT, block.header.chain_id, 0, block.height, block.hash
        )
        return quorum.CommitCertificate(
            block.height, 0, block.hash, tuple((index, keys[index].sign(payload)) for index in range(count))
        )

    # ------------------------------------------------------------ what a node serves

    def header_bytes(self, height: int) -> bytes:
        return self.blocks[height].header.encode()

    def certificate_bytes(self, height: int) -> bytes:
        return self.certificates[height].encode()

    def get_block(self, height: int) -> bytes | None:
        block = self.blocks.get(height)
        return None if block is None else block.encoded

    def get_certificate(self, height: int) -> bytes | None:
        certificate = self.certificates.get(height)
        return None if certificate is None else certificate.encode()

    def get_receipt(self, height: int, index: int) -> bytes | None:
        receipts = self.receipts.get(height, ())
        return receipts[index].encode() if index < len(receipts) else None

    def compute_proof(self, height: int, index: int = 0) -> dict[str, Any]:
        return proof.compute_proof(self, height, index)

    def start_light_state(self) -> light.LightState:
        genesis = self.net.genesis
        from chainnode.app.state import compute_genesis_state_root

        return light.start_light_state(
            genesis.chain_id,
            genesis.compute_hash(),
            compute_genesis_state_root(genesis.initial_state()),
            genesis.validators,
        )

    def follow(self, state: light.LightState, up_to: int | None = None) -> light.LightState:
        """`state` advanced header by header (sequential mode) up to `up_to` (default: the head)."""
        for height in range(state.height + 1, (up_to or self.height) + 1):
            state = light.advance(
                state,
                self.header_bytes(height),
                self.certificate_bytes(height),
                self.changes.get(height - 1),
                sequential=True,
            )
        return state
