"""The engine's `Application`: proposals from the mempool, re-execution of proposed blocks.

Theory of operation.  The consensus engine asks three things of the state machine: build a
block on the current head (the primary), say whether a proposed block re-executes to the roots
its header claims (every replica), and tell which validators decide a height.  Each execution
result is kept by block hash, so committing the block only writes what was already computed;
every commit empties the cache, since every other result was computed on the previous head.
The validator set of the next height is cached per head (it is asked on every message).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from chainnode.app import governance
from chainnode.app.execution import ExecutionResult, Executor, InvalidBlockError
from chainnode.app.genesis import ChainParams
from chainnode.core import quorum, types
from chainnode.core.errors import InvariantError
from chainnode.node.mempool import Mempool
from storage.ledger import Ledger

log = logging.getLogger("chainnode.node.application")


class ChainApplication:
    """Implements `consensus.engine.Application` over the ledger, the mempool and the executor."""

    def __init__(
        self, *, chain_id: str, ledger: Ledger, mempool: Mempool, executor: Executor, params: ChainParams
    ) -> None:
        self.chain_id = chain_id
        self._ledger = ledger
        self._mempool = mempool
        self._executor = executor
        self._genesis_params = params
        self._results: dict[bytes, ExecutionResult] = {}
        self._validators_cache: tuple[bytes, quorum.ValidatorSet] | None = None  # (head hash, next set)

    # ------------------------------------------------------------ consensus.engine.Application

    def propose_block(
        self, *, height: int, view: int, proposer: int, timestamp_ms: int, parent_hash: bytes
    ) -> types.Block | None:
        params = self.get_chain_params()
        self._mempool.remove_expired(height)
        for _ in range(3):
            transactions = self._mempool.select(
                txs_max=params.block_txs_max, bytes_max=params.block_bytes_max
            )
            if not transactions:
                return None
            head = self._ledger.get_head()
            try:
                result = self._execute_block(height, timestamp_ms, transactions, head.state_root)
            except InvalidBlockError as error:
                # Admitted earlier, refused now (for instance committed through another
                # node's block): drop it and build again.
                log.info("dropping transaction from the mempool: %s", error.message)
                self._mempool.remove([transactions[error.tx_index].hash])
                continue
            header = types.BlockHeader(
                chain_id=self.chain_id,
                height=height,
                view=view,
                proposer=proposer,
                timestamp_ms=timestamp_ms,
                parent_hash=parent_hash,
                tx_root=types.compute_tx_root(transactions),
                receipts_root=result.receipts_root,
                state_root=result.state_root,
                validator_set_hash=self.get_validator_set(height).compute_hash(),
                tx_count=len(transactions),
            )
            block = types.Block.create(header, transactions)
            self._results[block.hash] = result
            return block
        return None

    def has_pending_transactions(self) -> bool:
        return len(self._mempool) > 0

    def find_block_problem(self, block: types.Block) -> str | None:
        if block.hash in self._results:
            return None
        header = block.header
        head = self._ledger.get_head()
        try:
            result = self._execute_block(
                header.height, header.timestamp_ms, block.transactions, head.state_root
            )
        except InvalidBlockError as error:
            return error.message
        if result.state_root != header.state_root:
            return "state root differs from our re-execution"
        if result.receipts_root != header.receipts_root:
            return "receipts root differs from our re-execution"
        self._results[block.hash] = result
        return None

    def get_validator_set(self, height: int) -> quorum.ValidatorSet:
        """The validators that certify `height`: the set in state after block height-1."""
        head = self._ledger.get_head()
        if height != head.height + 1:
            return governance.get_validator_set_at(self._ledger, height)
        if self._validators_cache is not None and self._validators_cache[0] == head.block_hash:
            return self._validators_cache[1]
        validators = governance.get_validator_set(self._ledger)
        self._validators_cache = (head.block_hash, validators)
        return validators

    # ------------------------------------------------------------ for the node

    def get_chain_params(self) -> ChainParams:
        return governance.get_chain_params(self._ledger, self._genesis_params)

    def take_result(self, block: types.Block) -> ExecutionResult:
        """The execution result of a block the engine decided, for its commit; forgets the rest
        (every other result was computed on the head this commit replaces)."""
        result = self._results.pop(block.hash, None)
        if result is None:
            raise InvariantError(f"block {block.height} is committed without having been executed")
        self._results.clear()
        return result

    def _execute_block(
        self, height: int, timestamp_ms: int, transactions: Sequence[types.Transaction], state_root: bytes
    ) -> ExecutionResult:
        return self._executor.execute_block(
            self._ledger,
            previous_state_root=state_root,
            height=height,
            timestamp_ms=timestamp_ms,
            transactions=transactions,
            is_committed=self._is_committed_unless_pooled,
        )

    def _is_committed_unless_pooled(self, tx_hash: bytes) -> bool:
        """The ledger's answer, skipped for pooled transactions, which are never committed:
        admission asked the ledger before pooling, and each commit removes its block's
        transactions from the pool before anything else runs.  A proposal is mostly
        pooled transactions, so execution rarely needs the committed-id filter."""
        return not self._mempool.contains(tx_hash) and self._ledger.is_committed(tx_hash)
