"""A running network's `/metrics`, read the way Prometheus reads it.

Four validator processes of a network written by `network init` (the cluster fixtures of
`tests/cluster`), real TLS, real LevelDB, on 127.0.0.1.  Transactions are committed, a forged one
is refused, and validator-01's `/metrics` is parsed with prometheus-client's own text parser
(`text_string_to_metric_families`): every family the README lists is there with its type, the
counters and gauges agree with `/v1/status`, and the two latency histograms have observed one
value per committed block.
"""

from __future__ import annotations

import http.client
import time
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.cluster.conftest import (
    Cluster,
    build_puts,
    get_valid_until,
    running_cluster,
    submit_batches,
    wait_for_same_head,
)

pytestmark = pytest.mark.cluster

NODE = "validator-01"
TXS = 24
WAIT_S = 30.0

# Every family /metrics carries, with its type (prometheus-client's parser names a counter's
# family without `_total`).
FAMILIES = {
    "chainnode_height": "gauge",
    "chainnode_view": "gauge",
    "chainnode_changing_view": "gauge",
    "chainnode_view_changes": "counter",
    "chainnode_committed_blocks": "counter",
    "chainnode_committed_transactions": "counter",
    "chainnode_stable_checkpoint_height": "gauge",
    "chainnode_evidence": "counter",
    "chainnode_mempool_transactions": "gauge",
    "chainnode_gossip_inbox_transactions": "gauge",
    "chainnode_gossip_batches_dropped": "counter",
    "chainnode_transactions_admitted": "counter",
    "chainnode_transactions_rejected": "counter",
    "chainnode_peers_connected": "gauge",
    "chainnode_frames_malformed": "counter",
    "chainnode_peer_messages_received": "counter",
    "chainnode_p2p_frames_received": "counter",
    "chainnode_p2p_frames_sent": "counter",
    "chainnode_clock_offset_milliseconds": "gauge",
    "chainnode_leveldb_bytes": "gauge",
    "chainnode_disk_free_bytes": "gauge",
    "chainnode_disk_free_bytes_min": "gauge",
    "chainnode_certificates_expiring": "gauge",
    "chainnode_node_certificate_expiry_timestamp_seconds": "gauge",
    "chainnode_api_connections_open": "gauge",
    "chainnode_api_connections_refused": "counter",
    "chainnode_event_subscribers": "gauge",
    "chainnode_event_subscribers_dropped_slow": "counter",
    "chainnode_event_subscribers_refused": "counter",
    "chainnode_gc_seconds": "counter",
    "chainnode_ready": "gauge",
    "chainnode_block_commit_seconds": "histogram",
    "chainnode_propose_to_commit_seconds": "histogram",
}


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("metrics"), request.node.nodeid) as started:
        yield started


def get_text(cluster: Cluster, node_id: str, path: str, body: bytes | None = None) -> tuple[int, str]:
    host, port = cluster.network.get_node(node_id).api_url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        headers = {"Content-Type": "application/json"}
        connection.request("GET" if body is None else "POST", path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def scrape(cluster: Cluster, node_id: str) -> dict[str, Any]:
    status, text = get_text(cluster, node_id, "/metrics")
    assert status == 200, text
    return {family.name: family for family in text_string_to_metric_families(text)}


def find_sample(family: Any, name: str, **labels: str) -> Sample:
    found = [
        sample
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(key) == value for key, value in labels.items())
    ]
    assert len(found) == 1, (name, labels, family.samples)
    return found[0]


def test_metrics_parse_with_prometheus_client_and_histograms_count_commits(cluster: Cluster) -> None:
    txs = build_puts(
        cluster, cluster.load_submitters(4), TXS, label="metrics", valid_until=get_valid_until(cluster, NODE)
    )
    submit_batches(cluster, txs, [NODE], batch_txs=TXS)
    forged = bytearray(
        build_puts(cluster, cluster.load_submitters(1), 1, label="forged", valid_until=10**6)[0].encoded
    )
    forged[-1] ^= 0x01  # the signature is the last field: the transaction is refused as bad_signature
    status, answer = get_text(cluster, NODE, "/v1/transactions", f'{{"tx": "{forged.hex()}"}}'.encode())
    assert status == 422, answer
    deadline = time.monotonic() + WAIT_S
    while cluster.client(NODE).get_transaction(txs[-1].hash.hex())["status"] != "committed":
        assert time.monotonic() < deadline, "the transactions did not commit"
        time.sleep(0.05)
    height = wait_for_same_head(cluster, cluster.node_ids, WAIT_S)[0]

    families = scrape(cluster, NODE)
    missing = {name: kind for name, kind in FAMILIES.items() if families.get(name, None) is None}
    assert not missing, f"missing families: {missing}"
    assert {name: families[name].type for name in FAMILIES} == FAMILIES
    common = {"chain_id": cluster.chain_id, "node": NODE}
    assert find_sample(families["chainnode_height"], "chainnode_height", **common).value == height
    assert find_sample(families["chainnode_peers_connected"], "chainnode_peers_connected").value == 3
    admitted = families["chainnode_transactions_admitted"]
    assert find_sample(admitted, "chainnode_transactions_admitted_total", source="api").value == TXS
    rejected = families["chainnode_transactions_rejected"]
    assert find_sample(rejected, "chainnode_transactions_rejected_total", reason="bad_signature").value == 1
    committed_txs = families["chainnode_committed_transactions"]
    assert find_sample(committed_txs, "chainnode_committed_transactions_total").value >= TXS
    messages = families["chainnode_peer_messages_received"]
    kinds = {sample.labels["kind"] for sample in messages.samples if sample.name.endswith("_total")}
    assert {"prepare", "commit", "status"} <= kinds, kinds
    databases = families["chainnode_leveldb_bytes"]
    assert find_sample(databases, "chainnode_leveldb_bytes", database="main").value > 0
    assert find_sample(databases, "chainnode_leveldb_bytes", database="blocks").value > 0
    expiry = families["chainnode_node_certificate_expiry_timestamp_seconds"].samples[0].value
    assert expiry > time.time()

    # The histograms observed one value per block this node committed since it started.
    blocks = find_sample(families["chainnode_committed_blocks"], "chainnode_committed_blocks_total").value
    assert blocks >= 1
    for name in ("chainnode_block_commit_seconds", "chainnode_propose_to_commit_seconds"):
        family = families[name]
        assert find_sample(family, f"{name}_count", **common).value == blocks, name
        assert find_sample(family, f"{name}_bucket", le="+Inf").value == blocks, name
        assert find_sample(family, f"{name}_sum").value > 0, name


def test_metrics_of_every_node_carry_its_own_labels(cluster: Cluster) -> None:
    for node_id in cluster.node_ids:
        families = scrape(cluster, node_id)
        labels = {(s.labels["chain_id"], s.labels["node"]) for f in families.values() for s in f.samples}
        assert labels == {(cluster.chain_id, node_id)}, (node_id, labels)


def test_text_is_the_0_0_4_exposition(cluster: Cluster) -> None:
    host, port = cluster.network.get_node(NODE).api_url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("GET", "/metrics")
        response = connection.getresponse()
        assert response.getheader("Content-Type", "").startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    finally:
        connection.close()
    assert "# TYPE chainnode_block_commit_seconds histogram" in text
