"""`POST /v1/transactions?wait=replicated`: a 202 that no single crash can take back (issue 15).

Four validators run as real processes.  With the primary paused (so nothing can commit), a
transaction submitted to another validator with `wait=replicated` is answered once exactly a
quorum (3 of 4) of validators hold it; that node is then killed (SIGKILL) and the primary
resumed, and the transaction still commits on the others.  With two validators paused (SIGSTOP)
no quorum can hold a new transaction, and the answer is 504 `not_replicated` after `wait_ms`;
resumed, they commit it.
The plain 202 makes no such promise; what it means is in `chainnode.api.chain`.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
from collections.abc import Iterator

import pytest

from chainnode.core import types
from chainnode.sdk.client import Identity, build_transaction
from chainnode.sdk.errors import ClientError
from tests.cluster.conftest import Cluster, running_cluster

pytestmark = pytest.mark.cluster

COMMIT_S = 30.0


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("replication"), request.node.nodeid) as started:
        yield started


def _record(cluster: Cluster, signer: Identity, key: str, node_id: str) -> types.Transaction:
    height = int(cluster.client(node_id).get_status()["height"])
    return build_transaction(
        signer,
        chain_id=cluster.chain_id,
        module="records",
        action="put",
        args=(key, b"replicated"),
        valid_until=height + 200,
    )


@contextlib.contextmanager
def paused(process: subprocess.Popen[bytes]) -> Iterator[None]:
    process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        process.send_signal(signal.SIGCONT)


def test_a_replicated_answer_survives_the_crash_of_the_node_that_gave_it(cluster: Cluster) -> None:
    # The primary is paused while the answer is awaited, so nothing commits meanwhile: the
    # answer can only come from the other validators saying they hold it.
    view = int(cluster.client("validator-01").get_status()["view"])
    validators = cluster.genesis.validators
    primary = validators.validators[validators.primary(view)].entity_id
    submitter = next(node_id for node_id in cluster.node_ids if node_id != primary)
    signer = cluster.load_submitters(1)[0]
    tx = _record(cluster, signer, "survives-its-node", submitter)
    with paused(cluster.network.processes[primary]):
        answer = cluster.client(submitter).submit_replicated(tx, wait_ms=2_000)
        assert answer["hash"] == tx.hash.hex() and answer["replicated"] is True, answer
        assert answer["holders"] == validators.quorum == 3, answer
        cluster.network.kill(submitter)
    try:
        survivor = next(node_id for node_id in cluster.node_ids if node_id not in (primary, submitter))
        status = cluster.client(survivor).wait_for_commit(tx.hash.hex(), timeout_s=COMMIT_S)
        assert status["receipt"]["code"] == 0, status
    finally:
        cluster.network.start(submitter)
        cluster.network.wait_ready([submitter])


def test_without_a_quorum_the_answer_is_not_replicated_and_resubmitting_is_safe(cluster: Cluster) -> None:
    signer = cluster.load_submitters(2)[1]
    tx = _record(cluster, signer, "no-quorum", "validator-01")
    processes = cluster.network.processes
    with paused(processes["validator-03"]), paused(processes["validator-04"]):
        with pytest.raises(ClientError) as refused:
            cluster.client("validator-01", timeout_s=20.0).submit_replicated(tx, wait_ms=1_500)
        assert (refused.value.status, refused.value.code) == (504, "not_replicated")
    # The quorum is back: the same transaction, submitted again, is replicated, then committed.
    # The resumed validators may commit it (they read the proposal waiting in their sockets)
    # before the resubmission arrives: then the answer is the typed refusal of a committed id.
    try:
        answer = cluster.client("validator-01", timeout_s=20.0).submit_replicated(tx, wait_ms=10_000)
    except ClientError as error:
        assert error.code == "duplicate" and "already committed" in error.message, error
    else:
        assert answer["replicated"] is True, answer
    status = cluster.client("validator-01").wait_for_commit(tx.hash.hex(), timeout_s=COMMIT_S)
    assert status["receipt"]["code"] == 0, status
