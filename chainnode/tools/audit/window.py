"""Windows of blocks read ahead of re-execution, their signatures handed to the verifier pool.

`WindowReader` is the part of the `Auditor` that reads ahead (see "Parallel signature checks" in
the package docstring): it fetches up to `WINDOW_SIGNATURES` signatures' worth of blocks from the
source, decodes them, and submits every transaction signature (with the signer's key in the
replayed state now) and every commit-certificate signature (with the validator set of the
replayed state now) to the `SignatureVerifier` as fixed 128-byte items.  A block that does not
decode keeps its problem in its `LoadedBlock`, raised when the block's turn comes, in order.

A window holds whole blocks, taken one at a time until their signatures reach the budget; blocks
fetched beyond it wait in `fetched_ahead` for the next window.  (Windows used to take every block
of a fetch, 32 at a time: a chain of fewer, larger blocks was then one window, all verified
before any of it executed, and the pool and the re-execution never overlapped.)
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from chainnode.app.execution import get_entity
from chainnode.app.genesis import Genesis
from chainnode.core import quorum, types
from chainnode.core.crypto import SIGNATURE_ITEM_BYTES
from chainnode.core.errors import DecodeError, InvariantError
from chainnode.tools.audit.replay import ReplayState
from chainnode.tools.audit.report import AuditError, fail
from chainnode.tools.audit.verify import SignatureVerifier, Verified
from chainnode.tools.export import BlockSource, RawBlock

WINDOW_SIGNATURES = 8_192  # signatures verified ahead of re-execution per window
# The first window is small: nothing is re-executed until its verdicts are in, so the pool's
# start and that first wait are short, and later windows are verified while others execute.
WINDOW_SIGNATURES_FIRST = 1_024
WINDOW_FETCH_BLOCKS = 32  # heights asked of the source at once (an API source fetches them in parallel)


@dataclass
class LoadedBlock:
    """One height of a window: what the source holds, decoded, and where its signatures went."""

    height: int
    raw: RawBlock | None
    block: types.Block | None = None
    certificate: quorum.CommitCertificate | None = None
    problem: AuditError | None = None
    tx_items: list[int] = field(default_factory=list)  # item index per transaction, -1 if none
    tx_keys: list[bytes] = field(default_factory=list)
    certificate_items: list[int] = field(default_factory=list)  # item index per signature, -1 if none
    certificate_set: bytes = b""  # encoding of the validator set the pool checked the certificate with


@dataclass
class Window:
    """The blocks of one window and the pool's pending verdicts on their signatures."""

    loaded: list[LoadedBlock]
    verified: Verified
    items: int


class WindowReader:
    """Reads windows ahead of re-execution; the `Auditor` holds the replayed state that they read."""

    genesis: Genesis
    source: BlockSource
    state: ReplayState
    fetched_ahead: deque[tuple[int, RawBlock | None]]  # fetched, not yet in a window, in height order

    def _prepare_window(
        self, verifier: SignatureVerifier, height_first: int, last: int, signatures_max: int
    ) -> Window:
        """The blocks from `height_first` on, whole, until they hold `signatures_max` signatures."""
        fetched = self.fetched_ahead
        loaded: list[LoadedBlock] = []
        items = bytearray()
        keys: dict[str, bytes | None] = {}
        height = height_first
        while height <= last and len(items) < signatures_max * SIGNATURE_ITEM_BYTES:
            if not fetched:
                heights = list(range(height, min(height + WINDOW_FETCH_BLOCKS, last + 1)))
                fetched.extend(zip(heights, self.source.get_blocks(heights), strict=True))
            item_height, raw = fetched.popleft()
            if item_height != height:
                raise InvariantError(f"window at height {height} met the block fetched for {item_height}")
            entry = LoadedBlock(item_height, raw)
            self._decode(entry)
            self._add_items(entry, items, keys)
            loaded.append(entry)
            height += 1
        return Window(loaded, verifier.submit(bytes(items)), len(items) // SIGNATURE_ITEM_BYTES)

    def _decode(self, entry: LoadedBlock) -> None:
        if entry.raw is None:
            entry.problem = fail(entry.height, "block_missing", "the source has no block or certificate")
            return
        try:
            # Each transaction is decoded here, once, and that object is what is re-executed.
            entry.block = types.decode_block(
                entry.raw.block_encoded, check_body=False, share_transactions=False
            )
        except DecodeError as error:
            entry.problem = fail(entry.height, "block_decode", error.message)
            return
        try:
            entry.certificate = quorum.decode_commit_certificate(entry.raw.certificate_encoded)
        except DecodeError as error:
            entry.problem = fail(entry.height, "certificate_decode", error.message)

    def _add_items(self, entry: LoadedBlock, items: bytearray, keys: dict[str, bytes | None]) -> None:
        block, certificate = entry.block, entry.certificate
        if block is None or certificate is None:
            return
        for tx in block.transactions:
            if tx.signer not in keys:
                signer = get_entity(self.state, tx.signer)
                keys[tx.signer] = None if signer is None else signer.public_key
            key = keys[tx.signer]
            entry.tx_keys.append(key or b"")
            entry.tx_items.append(-1 if key is None else len(items) // SIGNATURE_ITEM_BYTES)
            if key is not None:
                items += key + tx.hash + tx.signature
        try:
            entry.certificate_set, validators = self.state.get_validators(entry.height)
        except AuditError:
            # Reported in order when the block is checked; nothing to verify ahead.
            entry.certificate_items = [-1] * len(certificate.signatures)
            return
        payload = types.compute_vote_payload(
            types.VoteKind.COMMIT,
            self.genesis.chain_id,
            certificate.view,
            certificate.height,
            certificate.block_hash,
        )
        for index, signature in certificate.signatures:
            if index >= validators.size:
                entry.certificate_items.append(-1)
                continue
            entry.certificate_items.append(len(items) // SIGNATURE_ITEM_BYTES)
            items += validators.validators[index].public_key + payload + signature
