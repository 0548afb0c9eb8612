"""A steady client load for cluster tests, and the height helpers the tests that use it share.

`SteadyLoad` is a background thread that submits small batches through chosen
nodes and polls until each transaction is reported committed; the hashes a node
reported committed go to a list the test checks against every validator later.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from chainnode.core import types
from chainnode.sdk.errors import ClientError
from tests.cluster.conftest import Cluster, build_puts, get_heads, get_valid_until, wait_until

BATCH_TXS = 2
BATCH_PAUSE_S = 0.03
LOAD_DURATION_S_MAX = 150.0
LOAD_BATCHES_MAX = 20_000
CONFIRM_INTERVAL_S = 0.1
CONFIRM_PER_PASS_MAX = 60
CONFIRM_AFTER_S = 0.05  # a transaction is not polled before it had a chance to commit
DRAIN_TIMEOUT_S = 10.0
REQUEST_TIMEOUT_S = 5.0
SUBMITTERS = 16
COMMITS_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class _Submitted:
    tx_hash: str
    node_id: str  # the node that accepted it
    submitted_s: float  # time.monotonic() of the submission


class SteadyLoad:
    """A background client: small batches through `targets`, polling until told committed."""

    def __init__(self, cluster: Cluster, told: list[str], *, label: str, targets: Sequence[str]) -> None:
        self.cluster = cluster
        self.told = told  # shared by the test: every hash a node reported committed (OK receipt)
        self.label = label
        self.identities = cluster.load_submitters(SUBMITTERS)
        self.valid_until = get_valid_until(cluster, targets[0])
        self.told_here = 0
        self.accepted = 0
        self.submit_errors = 0
        self.failed: list[str] = []  # committed with a failed receipt, or rejected: never expected
        self._targets = list(targets)
        self._pending: collections.deque[_Submitted] = collections.deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"load-{label}", daemon=True)

    # ------------------------------------------------------------ control (test thread)

    def __enter__(self) -> SteadyLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopping.set()
        self._thread.join(timeout=REQUEST_TIMEOUT_S * 4)

    def set_targets(self, node_ids: Sequence[str]) -> None:
        with self._lock:
            self._targets = list(node_ids)

    def get_told_count(self) -> int:
        if self._error is not None:
            raise AssertionError(f"the load thread failed: {self._error!r}") from self._error
        with self._lock:
            return self.told_here

    def wait_for_told(self, count: int, what: str, timeout_s: float = COMMITS_TIMEOUT_S) -> float:
        """Wait until `count` more transactions were told committed; returns the seconds it took."""
        started_s = time.monotonic()
        target = self.get_told_count() + count
        wait_until(lambda: self.get_told_count() >= target, f"{count} transactions commit {what}", timeout_s)
        return time.monotonic() - started_s

    def stop(self) -> int:
        """Stop submitting, keep polling until what was accepted commits (or the drain time ends);
        returns how many accepted transactions were never told committed."""
        self._stopping.set()
        self._thread.join(timeout=REQUEST_TIMEOUT_S * 4)
        assert not self._thread.is_alive(), "the load thread did not stop"
        self.get_told_count()  # raises if the thread failed
        deadline_s = time.monotonic() + DRAIN_TIMEOUT_S
        while self._pending and time.monotonic() < deadline_s:
            self._confirm_some()
            time.sleep(CONFIRM_INTERVAL_S)
        assert self.failed == [], f"transactions that failed: {self.failed[:3]}"
        unconfirmed = collections.Counter(item.node_id for item in self._pending)
        print(
            f"  load {self.label}: accepted {self.accepted}, told committed {self.told_here}, "
            f"never confirmed {len(self._pending)} {dict(unconfirmed)}, submit errors {self.submit_errors}"
        )
        return len(self._pending)

    # ------------------------------------------------------------ the thread

    def _run(self) -> None:
        try:
            deadline_s = time.monotonic() + LOAD_DURATION_S_MAX
            confirmed_s = 0.0
            for batch_number in range(LOAD_BATCHES_MAX):
                if self._stopping.is_set() or time.monotonic() > deadline_s:
                    return
                self._submit_batch(batch_number)
                if time.monotonic() - confirmed_s >= CONFIRM_INTERVAL_S:
                    confirmed_s = time.monotonic()
                    self._confirm_some()
                self._stopping.wait(BATCH_PAUSE_S)
        except BaseException as error:
            self._error = error

    def _submit_batch(self, batch_number: int) -> None:
        with self._lock:
            targets = list(self._targets)
        if not targets:
            return
        node_id = targets[batch_number % len(targets)]
        batch = build_puts(
            self.cluster,
            self.identities,
            BATCH_TXS,
            label=f"{self.label}-{batch_number:05d}",
            valid_until=self.valid_until,
        )
        try:
            answer = self.cluster.client(node_id, timeout_s=REQUEST_TIMEOUT_S).submit_batch(batch)
        except ClientError:
            self.submit_errors += 1  # the node is down or busy: a client would just try another
            return
        now_s = time.monotonic()
        for item in answer["results"]:
            if item["status"] == "pending":
                self.accepted += 1
                self._pending.append(_Submitted(str(item["hash"]), node_id, now_s))

    def _confirm_some(self) -> None:
        """Poll the oldest pending transactions, each at the node that accepted it while it is up."""
        with self._lock:
            targets = list(self._targets)
        if not targets:
            return
        now_s = time.monotonic()
        for _ in range(min(CONFIRM_PER_PASS_MAX, len(self._pending))):
            item = self._pending.popleft()
            if now_s - item.submitted_s < CONFIRM_AFTER_S:
                self._pending.appendleft(item)
                return
            node_id = item.node_id if item.node_id in targets else targets[0]
            try:
                answer = self.cluster.client(node_id, timeout_s=REQUEST_TIMEOUT_S).get_transaction(
                    item.tx_hash
                )
            except ClientError:
                answer = {"status": "unknown"}  # not gossiped there yet, or the node is down
            if answer["status"] == "committed" and answer["receipt"]["code"] == types.ErrorCode.OK:
                with self._lock:
                    self.told.append(item.tx_hash)
                    self.told_here += 1
            elif answer["status"] in ("committed", "rejected"):
                self.failed.append(f"{item.tx_hash} on {node_id}: {answer}")
            else:
                self._pending.append(item)


def get_min_height(cluster: Cluster, node_ids: Sequence[str]) -> int:
    heights = {node_id: head[0] for node_id, head in get_heads(cluster, node_ids).items()}
    return min(heights.values()) if len(heights) == len(node_ids) else -1


def get_max_height(cluster: Cluster, node_ids: Sequence[str]) -> int:
    return max((head[0] for head in get_heads(cluster, node_ids).values()), default=-1)
