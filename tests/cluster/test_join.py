"""An observer registered after genesis joins a running network (issue 15).

Four validators run (real processes, TLS, LevelDB) and commit.  `chainnode network add-observer`
writes observer-09 (the beijing authority issues its certificate; its node.toml dials the four)
and, with `--register`, registers it on chain.  No validator's configuration changes and none
restarts.  Started, the observer is let in by the on-chain PKI, is answered on its own
connections (the validators do not list it), catches up from genesis, follows new blocks, serves
a proof of a transaction committed before it existed and forwards a transaction it is given;
it never becomes a validator.  A node whose certificate is not registered is refused.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chainnode.app import proof as proofs
from chainnode.sdk.client import build_transaction
from chainnode.tools.devnet import LocalNetwork
from tests.cluster.conftest import Cluster, running_cluster, wait_until
from tests.factories import get_free_port, run_cli_process

pytestmark = pytest.mark.cluster

OBSERVER = "observer-09"
CATCH_UP_S = 60.0


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("join"), request.node.nodeid) as started:
        yield started


def _commit_a_record(cluster: Cluster, key: str, node_id: str = "validator-01") -> str:
    submitter = cluster.load_submitters(1)[0]
    client = cluster.client(node_id)
    status = client.get_status()
    tx = build_transaction(
        submitter,
        chain_id=cluster.chain_id,
        module="records",
        action="put",
        args=(key, b"joined"),
        valid_until=int(status["height"]) + 100,
    )
    tx_hash = client.submit(tx)
    client.wait_for_commit(tx_hash, timeout_s=30.0)
    return tx_hash


def _add_observer(cluster: Cluster, name: str, *extra: str) -> dict[str, object]:
    p2p_port, api_port = get_free_port(), get_free_port()
    result = run_cli_process(
        "network",
        "add-observer",
        str(cluster.directory),
        "--node",
        f"{name}=127.0.0.1:{p2p_port}:{api_port}",
        "--zone",
        "beijing",
        "--json",
        *extra,
    )
    assert result.returncode == 0, result.stderr
    document: dict[str, object] = json.loads(result.stdout)
    return document


def test_an_observer_registered_after_genesis_joins_without_restarting_anyone(cluster: Cluster) -> None:
    early = _commit_a_record(cluster, "before-the-observer")
    validators = cluster.node_ids
    started_at = {node_id: cluster.network.processes[node_id].pid for node_id in validators}
    added = _add_observer(cluster, OBSERVER, "--register", cluster.network.get_node("validator-02").api_url)
    assert added["registered"] is not None and added["node_id"] == OBSERVER, added
    network = LocalNetwork(cluster.directory)
    assert [node.node_id for node in network.nodes] == [*validators, OBSERVER]
    try:
        started_s = time.monotonic()
        network.start(OBSERVER)
        network.wait_ready([OBSERVER])
        observer = network.client(OBSERVER)
        head = cluster.client("validator-01").get_status()["height"]
        wait_until(lambda: observer.get_status()["height"] >= head, "the observer catches up", CATCH_UP_S)
        caught_up_s = time.monotonic() - started_s
        # It follows: a block committed now reaches it, and a transaction given to it is forwarded.
        late = _commit_a_record(cluster, "after-the-observer")
        forwarded_submitter = cluster.load_submitters(1)[0]
        tx = build_transaction(
            forwarded_submitter,
            chain_id=cluster.chain_id,
            module="records",
            action="put",
            args=("through-the-observer", b"forwarded"),
            valid_until=int(observer.get_status()["height"]) + 100,
        )
        forwarded = observer.submit(tx)
        for tx_hash in (early, late, forwarded):
            status = observer.wait_for_commit(tx_hash, timeout_s=30.0)
            assert status["receipt"]["code"] == 0, status
        # The proof it serves of a transaction older than itself verifies with the genesis alone.
        result = proofs.verify_proof(observer.get_proof(early), cluster.genesis)
        assert result.transaction.hash.hex() == early
        status = observer.get_status()
        assert status["validator_index"] is None, status
        assert sorted(status["peers"]) == validators, status
        # No validator restarted, and none lists the observer in its configuration.
        assert {node_id: cluster.network.processes[node_id].pid for node_id in validators} == started_at
        for node_id in validators:
            assert OBSERVER not in cluster.network.get_node(node_id).config_path.read_text()
        print(f"  {OBSERVER} caught up {head} blocks in {caught_up_s:.1f} s")
    finally:
        network.stop_all()


def test_an_unregistered_node_is_refused(cluster: Cluster) -> None:
    added = _add_observer(cluster, "observer-10")
    assert added["registered"] is None and any("authority register" in step for step in added["next"])  # type: ignore[union-attr]
    network = LocalNetwork(cluster.directory)
    try:
        network.start("observer-10")
        network.wait_ready(["observer-10"])
        log = Path(cluster.directory / "nodes" / "validator-01" / "node.log")
        wait_until(
            lambda: "observer-10 is not a registered entity" in log.read_text(errors="replace"),
            "validator-01 refuses the unregistered node",
            30.0,
        )
        assert network.client("observer-10").get_status()["peers"] == []
    finally:
        network.stop_all()
