"""A small real node service for the API, client and CLI tests.

`LocalService` implements `chainnode.api.service.NodeService` over the real parts: a
LevelDB `Ledger` in a temporary directory initialised with a genesis state of
real X.509 identities, a real `Mempool` and a real `Executor`.  It has no
consensus: `commit_pending()` executes the pooled transactions as the next
block and commits it with a real commit certificate signed by all validator
keys.  `ServerThread` serves an application on 127.0.0.1 from a thread of its
own, for synchronous clients (the SDK, the CLI); with `commit_interval_ms` it
commits the mempool periodically on the server's loop, like a node would.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from chainnode.api.events import CommitSignal
from chainnode.api.server import create_app
from chainnode.api.service import SubmitResult, TransactionStatus
from chainnode.app.execution import Executor, SignatureCache
from chainnode.app.state import compute_genesis_state_root
from chainnode.core import crypto, identity, identity_records, metrics, quorum, types
from chainnode.core.errors import DecodeError
from chainnode.node.health import Readiness, ReadinessProblem
from chainnode.node.mempool import Mempool
from storage.ledger import Ledger
from tests.factories import Pki, create_pki, make_executed_block, sign_commit_certificate

CHAIN_ID = "test-net"
ZONE = "beijing"
SUBMITTER = "pku-hospital-3"
OBSERVER = "court-observer-1"  # registered, but without the submitter role
OUTSIDER = "not-registered-1"  # has a certificate, but is not in the genesis state
VALIDATORS = 4


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _write_identity(
    directory: Path, pki: Pki, claims: identity.EntityClaims
) -> identity_records.EntityRecord:
    certificate, key = pki.issue(claims)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cert.pem").write_bytes(identity.certificate_to_pem(certificate))
    (directory / "key.pem").write_bytes(key.to_pem())
    return identity.entity_record_from_certificate(certificate)


class LocalService:
    """A single-process `NodeService` without consensus (see the module docstring)."""

    def __init__(self, directory: Path, *, mempool_capacity_txs: int = 10_000) -> None:
        pki = create_pki("Test Council", ((ZONE, "Beijing"),))
        entities = {
            SUBMITTER: ("submitter",),
            OBSERVER: ("observer",),
            OUTSIDER: ("submitter",),
        }
        state: dict[bytes, bytes] = {}
        for entity_id, roles in entities.items():
            claims = identity.EntityClaims(entity_id, ZONE, roles, ("health",), entity_id.title())
            record = _write_identity(directory / "entities" / entity_id, pki, claims)
            if entity_id != OUTSIDER:
                state[identity_records.entity_key(entity_id)] = record.encode()
        validator_keys = [crypto.SigningKey.generate() for _ in range(VALIDATORS)]
        validators = quorum.ValidatorSet(
            tuple(
                quorum.Validator(f"validator-{index + 1:02d}", key.public_key)
                for index, key in enumerate(validator_keys)
            )
        )
        state[identity_records.VALIDATOR_SET_KEY] = validators.encode()
        state[identity_records.zone_key(ZONE)] = identity_records.ZoneRecord(
            ZONE, "Beijing", identity.certificate_der(pki.zones[ZONE]), True
        ).encode()
        self.open_chain(
            directory,
            chain_id=CHAIN_ID,
            validator_keys=validator_keys,
            validators=validators,
            genesis_hash=crypto.hash_tagged("genesis", b"api test genesis"),
            genesis_time_ms=_now_ms() - 1000,
            initial_state=state,
            mempool_capacity_txs=mempool_capacity_txs,
            mempool_capacity_bytes=64 * 1024 * 1024,
        )

    def open_chain(
        self,
        directory: Path,
        *,
        chain_id: str,
        validator_keys: Sequence[crypto.SigningKey],
        validators: quorum.ValidatorSet,
        genesis_hash: bytes,
        genesis_time_ms: int,
        initial_state: dict[bytes, bytes],
        mempool_capacity_txs: int,
        mempool_capacity_bytes: int,
    ) -> None:
        """Serve a fresh ledger in `directory / "data"` that starts from `initial_state`, with an
        empty mempool; a subclass over another genesis calls this instead of `__init__`."""
        self.chain_id = chain_id
        self.node_id = "validator-01"
        self.directory = directory
        self.validator_keys = list(validator_keys)
        self.validators = validators
        self.genesis_hash = genesis_hash
        self.ledger = Ledger(directory / "data")
        self.ledger.initialize(
            genesis_hash=genesis_hash,
            genesis_time_ms=genesis_time_ms,
            initial_state=initial_state,
            state_root=compute_genesis_state_root(initial_state),
        )
        self.mempool = Mempool(capacity_txs=mempool_capacity_txs, capacity_bytes=mempool_capacity_bytes)
        self.executor = Executor(chain_id, SignatureCache())
        self.rejected: dict[bytes, tuple[str, str]] = {}
        self.commit_signal = CommitSignal()

    def close(self) -> None:
        self.ledger.close()

    def _is_committed(self, tx_hash: bytes) -> bool:
        return self.ledger.get_tx_location(tx_hash) is not None

    # ------------------------------------------------------------ NodeService

    def get_status(self) -> dict[str, Any]:
        head = self.ledger.get_head()
        return {
            "chain_id": self.chain_id,
            "node_id": self.node_id,
            "validator_index": 0,
            "height": head.height,
            "head_hash": head.block_hash.hex(),
            "state_root": head.state_root.hex(),
            "view": 0,
            "peers": [],
            "mempool_txs": len(self.mempool),
            "genesis_hash": self.genesis_hash.hex(),
        }

    async def wait_for_replication(self, tx_hash: bytes, timeout_s: float) -> int | None:
        """This service has no peers: no quorum of validators can say it holds anything."""
        return None

    def submit_transactions(self, encoded: Sequence[bytes], *, replicate: bool = False) -> list[SubmitResult]:
        height = self.ledger.get_head().height + 1
        results = []
        for data in encoded:
            try:
                tx = types.decode_transaction(data)
            except DecodeError as error:
                results.append(SubmitResult(None, False, "malformed", error.message))
                continue
            code, reason = self.executor.check_transaction(
                self.ledger,
                tx,
                height=height,
                timestamp_ms=_now_ms(),
                is_committed=self._is_committed,
            )
            if code != types.ErrorCode.OK:
                self.rejected[tx.hash] = (code.label, reason)
                results.append(SubmitResult(tx.hash, False, code.label, reason))
                continue
            self.mempool.add(tx)
            results.append(SubmitResult(tx.hash, True, "ok", ""))
        return results

    def get_transaction_status(self, tx_hash: bytes) -> TransactionStatus:
        if self.mempool.contains(tx_hash):
            return TransactionStatus("pending")
        location = self.ledger.get_tx_location(tx_hash)
        if location is not None:
            height, index = location
            encoded = self.ledger.get_receipt(height, index)
            assert encoded is not None
            return TransactionStatus("committed", height, index, types.decode_receipt(encoded))
        if tx_hash in self.rejected:
            code, message = self.rejected[tx_hash]
            return TransactionStatus("rejected", code=code, message=message)
        return TransactionStatus("unknown")

    def get_busy_reason(self) -> str | None:
        return None

    def get_readiness_problems(self) -> list[ReadinessProblem]:
        return self.readiness.find_problems()

    def get_evidence(self) -> list[bytes]:
        return list(self.ledger.iter_evidence())

    def render_metrics(self) -> str:
        head = self.ledger.get_head()
        return metrics.render(
            [metrics.Sample("chainnode_height", "gauge", "Committed height.", head.height)],
            {"chain_id": self.chain_id, "node": self.node_id},
        )

    def get_validator_set(self, height: int) -> quorum.ValidatorSet:
        return self.validators

    async def wait_for_commit(self, height: int, timeout_s: float) -> None:
        if self.ledger.get_head().height <= height:
            await self.commit_signal.wait(timeout_s)

    # ------------------------------------------------------------ test controls

    _readiness: Readiness | None = None

    @property
    def readiness(self) -> Readiness:
        """The service's readiness checks (none until a test adds one, as a node part would).
        Made on first use: subclasses build their state without this class's __init__."""
        if self._readiness is None:
            self._readiness = Readiness()
        return self._readiness

    def commit_pending(self) -> int | None:
        """Execute and commit the pooled transactions as the next block; its height or None."""
        txs = self.mempool.select(txs_max=2000, bytes_max=4 * 1024 * 1024)
        if not txs:
            return None
        head = self.ledger.get_head()
        height = head.height + 1
        timestamp_ms = max(head.timestamp_ms + 1, _now_ms())
        result = self.executor.execute_block(
            self.ledger,
            previous_state_root=head.state_root,
            height=height,
            timestamp_ms=timestamp_ms,
            transactions=txs,
            is_committed=self._is_committed,
        )
        block = make_executed_block(
            result,
            txs,
            chain_id=self.chain_id,
            height=height,
            timestamp_ms=timestamp_ms,
            parent_hash=head.block_hash,
            validator_set_hash=self.validators.compute_hash(),
        )
        certificate = sign_commit_certificate(block, self.validator_keys)
        self.ledger.commit_block(block, certificate, result.receipts, result.write_set)
        self.mempool.remove(tx.hash for tx in txs)
        self.commit_signal.notify()
        return height


class ServerThread:
    """Serve `create_app(service)` on 127.0.0.1 from a background thread."""

    def __init__(self, service: LocalService, *, commit_interval_ms: int | None = None) -> None:
        self.service = service
        self.commit_interval_ms = commit_interval_ms
        self.loop = asyncio.new_event_loop()
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._start())
        self._ready.set()
        self.loop.run_forever()

    async def _start(self) -> None:
        self._runner = web.AppRunner(create_app(self.service))
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        if self.commit_interval_ms is not None:
            self._commit_task = asyncio.ensure_future(self._commit_periodically())

    async def _commit_periodically(self) -> None:
        assert self.commit_interval_ms is not None
        while True:
            await asyncio.sleep(self.commit_interval_ms / 1000)
            self.service.commit_pending()

    def call(self, function: Any, *args: Any) -> Any:
        """Run `function(*args)` on the server's loop (the service is single-threaded)."""

        async def run() -> Any:
            return function(*args)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=30)

    def __enter__(self) -> ServerThread:
        self._thread.start()
        if not self._ready.wait(timeout=30):
            raise RuntimeError("the API server did not start within 30 s")
        return self

    def __exit__(self, *_: object) -> None:
        async def stop() -> None:
            if self.commit_interval_ms is not None:
                self._commit_task.cancel()
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=30)
        self.loop.close()
