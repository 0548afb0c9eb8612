"""The checks of one block against the auditor's replayed chain (see the package docstring).

`BlockChecks` is the part of the `Auditor` that judges: the header against the replayed parent,
the commit certificate against the validator set of the replayed state, what a node's data
directory stores against what replay produced, and the source's head against the replayed one.
Each check that holds is counted by name; the first that fails raises `AuditError` (through
`fail`), naming the height, the check and, when there is one, the transaction.  The replay itself
(windows, re-execution, the report) is `chainnode.tools.audit.auditor`'s.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from chainnode.app import governance
from chainnode.app.execution import get_entity
from chainnode.app.genesis import Genesis
from chainnode.core import crypto, quorum, types
from chainnode.core.errors import DecodeError
from chainnode.tools.audit.replay import ReplayState
from chainnode.tools.audit.report import fail
from chainnode.tools.audit.window import LoadedBlock
from chainnode.tools.export import BlockSource, LedgerSource


class BlockChecks:
    """The checks of one block; the `Auditor` holds the replayed chain that they read."""

    genesis: Genesis
    source: BlockSource
    state: ReplayState
    checks: dict[str, int]  # check name -> times it held
    height: int
    block_hash: bytes
    state_root: bytes
    timestamp_ms: int
    wall_ms: int  # the auditor's clock, read when the audit starts
    committed: set[bytes]  # every transaction id of the replayed chain

    def _count(self, check: str, times: int = 1) -> None:
        self.checks[check] = self.checks.get(check, 0) + times

    def _check_header(self, height: int, block: types.Block) -> None:
        header = block.header
        drift_ms = governance.get_chain_params(self.state, self.genesis.params).timestamp_drift_ms_max
        checks: list[tuple[str, bool, str]] = [
            ("height", header.height == height, f"the block stored at {height} says height {header.height}"),
            ("chain_id", header.chain_id == self.genesis.chain_id, f"block for chain {header.chain_id!r}"),
            (
                "parent_hash",
                header.parent_hash == self.block_hash,
                f"parent hash {header.parent_hash.hex()} is not the hash of {height - 1}",
            ),
            (
                "timestamp",
                header.timestamp_ms > self.timestamp_ms,
                f"timestamp {header.timestamp_ms} does not advance past {self.timestamp_ms}",
            ),
            (
                "timestamp_future",
                header.timestamp_ms - self.wall_ms <= drift_ms,
                f"timestamp {header.timestamp_ms} is {header.timestamp_ms - self.wall_ms} ms ahead of the "
                f"auditor's clock (at most {drift_ms} ms allowed)",
            ),
            (
                "tx_count",
                header.tx_count == len(block.transactions),
                f"the header counts {header.tx_count} transactions, the body has {len(block.transactions)}",
            ),
        ]
        for check, holds, reason in checks:
            if not holds:
                raise fail(height, check, reason)
            self._count(check)
        if types.compute_tx_root(block.transactions) != header.tx_root:
            raise fail(
                height,
                "tx_root",
                "the transactions do not hash to the header's tx root",
                self._locate_tampered_tx(height, block),
            )
        self._count("tx_root")

    def _locate_tampered_tx(self, height: int, block: types.Block) -> int | None:
        """Best effort: the first transaction whose stored receipt or signature betrays a change."""
        stored = (
            self.source.get_receipts(height, len(block.transactions))
            if isinstance(self.source, LedgerSource)
            else None
        )
        for index, tx in enumerate(block.transactions):
            if stored is not None:
                receipt = stored[index]
                try:
                    if receipt is None or types.decode_receipt(receipt).tx_hash != tx.hash:
                        return index
                except DecodeError:
                    return index
            signer = get_entity(self.state, tx.signer)
            if signer is not None and not tx.verify_signature(signer.public_key):
                return index
        return None

    def _check_certificate(
        self, entry: LoadedBlock, block: types.Block, certificate: quorum.CommitCertificate, flags: bytes
    ) -> None:
        height, header = entry.height, block.header
        encoded, validators = self.state.get_validators(height)
        if header.validator_set_hash != validators.compute_hash():
            raise fail(height, "validator_set", "the header names another set than the replayed one")
        self._count("validator_set")
        if header.proposer != validators.primary(header.view):
            raise fail(
                height, "proposer", f"proposer {header.proposer} is not the primary of view {header.view}"
            )
        self._count("proposer")
        binding = (certificate.height, certificate.block_hash) == (height, block.hash)
        if not binding or certificate.view < header.view:
            raise fail(height, "certificate_binding", "the commit certificate is for another block or view")
        self._count("certificate_binding")
        indexes = [index for index, _ in certificate.signatures]
        if indexes != sorted(set(indexes)) or any(index >= validators.size for index in indexes):
            raise fail(
                height,
                "certificate_signers",
                f"signers {indexes} are not distinct known validators in ascending order",
            )
        self._count("certificate_signers")
        if len(indexes) < validators.quorum:
            raise fail(
                height, "certificate_quorum", f"{len(indexes)} signatures, quorum is {validators.quorum}"
            )
        self._count("certificate_quorum")
        payload = types.compute_vote_payload(
            types.VoteKind.COMMIT, self.genesis.chain_id, certificate.view, height, block.hash
        )
        for (index, signature), item in zip(certificate.signatures, entry.certificate_items, strict=True):
            if encoded != entry.certificate_set:  # the set changed after the pool checked it
                holds = crypto.verify(validators.validators[index].public_key, payload, signature)
            else:
                holds = item >= 0 and bool(flags[item])
            if not holds:
                raise fail(
                    height,
                    "certificate_signature",
                    f"invalid COMMIT signature of validator {validators.validators[index].entity_id}",
                )
        self._count("certificate_signature", len(indexes))

    def _check_stored(
        self,
        source: LedgerSource,
        height: int,
        block: types.Block,
        receipts: Sequence[types.Receipt],
        stored: Sequence[bytes | None],
    ) -> None:
        for index, (tx, receipt) in enumerate(zip(block.transactions, receipts, strict=True)):
            if stored[index] != receipt.encode():
                raise fail(height, "stored_receipt", "the node's receipt is not the replayed one", index)
            if not source.is_tx_at(tx.hash, height, index):
                raise fail(height, "tx_index", f"the node's index places {tx.hash.hex()} elsewhere", index)
        self._count("stored_receipt", len(receipts))
        self._count("tx_index", len(receipts))
        if source.get_block_height(block.hash) != height:
            raise fail(height, "block_index", "the node's block-hash index does not point to this height")
        self._count("block_index")

    # ------------------------------------------------------------ the end

    def _check_head(self, height: int, block_hash: bytes, state_root: bytes) -> None:
        if (height, block_hash, state_root) != (self.height, self.block_hash, self.state_root):
            raise fail(height, "head", "the head the source reports is not the replayed head")
        self._count("head")
        if isinstance(self.source, LedgerSource):
            difference = _find_state_difference(self.source.iter_state(), self.state.get_sorted_items())
            if difference is not None:
                raise fail(height, "stored_state", difference)
            self._count("stored_state")
            # Each transaction's entry was checked where its block put it; an entry more (in
            # another epoch of the index, say, where a lookup by id would find it first) shows here.
            indexed = self.source.count_tx_index()
            if indexed != len(self.committed):
                raise fail(
                    height,
                    "tx_index",
                    f"the node's tx index holds {indexed} entries; "
                    f"the chain has {len(self.committed)} transactions",
                )


def _find_state_difference(
    stored: Iterator[tuple[bytes, bytes]], replayed: Sequence[tuple[bytes, bytes]]
) -> str | None:
    """The first key where the node's stored state and the replayed state differ, described; or None."""
    position = 0
    for key, value in stored:
        if position < len(replayed) and replayed[position][0] < key:
            return f"key {replayed[position][0]!r} is missing from the node's stored state"
        if position >= len(replayed) or replayed[position][0] != key:
            return f"the node's stored state holds key {key!r}, which replay never wrote"
        if replayed[position][1] != value:
            return f"the node's stored value of key {key!r} differs from the replayed value"
        position += 1
    if position < len(replayed):
        return f"key {replayed[position][0]!r} is missing from the node's stored state"
    return None
