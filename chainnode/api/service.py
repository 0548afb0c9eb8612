"""What the API needs from a node, declared here by its user (CometBFT style): `NodeService`,
the read side of the ledger it uses, and the values they answer with.

No aiohttp and no I/O: the node implements these protocols, the API and the tests call them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from chainnode.core import quorum, types
from chainnode.core.fastinit import install_fast_init
from chainnode.core.statuses import TxStatus


@install_fast_init
@dataclass(frozen=True, slots=True)
class SubmitResult:
    """The node's verdict on one submitted transaction."""

    tx_hash: bytes | None  # None when the bytes did not even decode
    accepted: bool
    code: str  # "ok" when accepted, otherwise a stable rejection code
    message: str


@dataclass(frozen=True, slots=True)
class TransactionStatus:
    """Where a transaction is: in the mempool, in a block, refused, or unknown."""

    status: TxStatus
    height: int | None = None  # committed: the block height
    index: int | None = None  # committed: the position in the block
    receipt: types.Receipt | None = None  # committed: the outcome
    code: str = ""  # rejected: the stable rejection code
    message: str = ""  # rejected: the reason


@dataclass(frozen=True, slots=True)
class ReadinessProblem:
    """One reason the node is not ready."""

    name: str  # stable and machine-readable, e.g. "disk_space_low"
    message: str  # what is wrong, for the operator
    blocks_writes: bool  # the node cannot write its ledger: health fails, submissions are refused


class HeadView(Protocol):
    """The part of `storage.ledger.Head` the API reads."""

    @property
    def height(self) -> int: ...
    @property
    def block_hash(self) -> bytes: ...
    @property
    def state_root(self) -> bytes: ...
    @property
    def timestamp_ms(self) -> int: ...


class LedgerReader(Protocol):
    """The read side of `storage.ledger.Ledger` the API uses."""

    def get_head(self) -> HeadView: ...
    def get_genesis_hash(self) -> bytes: ...
    def get_block(self, height: int) -> bytes | None: ...
    def get_certificate(self, height: int) -> bytes | None: ...
    def get_receipt(self, height: int, index: int) -> bytes | None: ...
    def get_state(self, key: bytes) -> bytes | None: ...
    def get_latest_checkpoint(self) -> bytes | None: ...


class NodeService(Protocol):
    """What the API needs from a node; `chainnode.node.runtime` implements it."""

    chain_id: str
    node_id: str

    @property
    def ledger(self) -> LedgerReader: ...

    def get_status(self) -> dict[str, Any]:
        """JSON-ready: chain_id, node_id, validator_index, height, head_hash, state_root,
        view, peers, mempool_txs, genesis_hash."""
        ...

    def submit_transactions(self, encoded: Sequence[bytes], *, replicate: bool = False) -> list[SubmitResult]:
        """Decode and admit each transaction; one result per input, in order.  May raise
        `chainnode.node.mempool.MempoolFullError` for the whole batch.  With `replicate`, the
        accepted ones are gossiped asking peers to say they hold them (`wait_for_replication`)."""
        ...

    async def wait_for_replication(self, tx_hash: bytes, timeout_s: float) -> int | None:
        """Once a quorum of validators' mempools hold the transaction: how many do (-1 once it
        is committed); None after `timeout_s` (`chainnode.node.replication`)."""
        ...

    def get_transaction_status(self, tx_hash: bytes) -> TransactionStatus: ...

    def get_busy_reason(self) -> str | None:
        """Why the node takes no transactions right now (answered 503 before the body is read)."""
        ...

    def get_readiness_problems(self) -> list[ReadinessProblem]:
        """What keeps the node from being ready, by name; empty when it is ready."""
        ...

    def get_validator_set(self, height: int) -> quorum.ValidatorSet: ...

    def get_evidence(self) -> list[bytes]:
        """Encoded proofs of validator equivocation (`consensus.messages.Evidence`), by height."""
        ...

    def render_metrics(self) -> str:
        """The node's metrics in Prometheus text format."""
        ...

    async def wait_for_commit(self, height: int, timeout_s: float) -> None:
        """Return once the head is above `height` (at once if it is), at the next commit, or
        after `timeout_s`; callers read the head again (`chainnode.api.events.CommitSignal`)."""
        ...
