"""A subscriber of `/v1/events/ws` (through the SDK's reconnecting generator) receives every
event of a run exactly once and in order, while the validator it reads from is killed and
restarted and its own connection is cut twice.

Black box: the subscriber reads validator-01 through a TCP proxy the test can cut; load goes
to the other validators; the expected events are read afterwards by paging `GET /v1/events`
from the start on another validator.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chainnode.sdk import events as sdk_events
from chainnode.sdk.client import Client
from tests.cluster.conftest import (
    Cluster,
    build_puts,
    get_valid_until,
    running_cluster,
    submit_batches,
    wait_for_same_head,
    wait_until,
)
from tests.tcp_proxy import CuttingProxy

pytestmark = pytest.mark.cluster

SUBSCRIBED = "validator-01"
ENTITIES = 12
TXS_PER_PHASE = 150
BATCH_TXS = 25
READY_TIMEOUT_S = 30.0
CATCH_UP_TIMEOUT_S = 60.0
RECEIVE_TIMEOUT_S = 60.0


@pytest.fixture
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    module = request.node.getparent(pytest.Module)
    assert module is not None
    with running_cluster(tmp_path, module.nodeid) as started:
        yield started


class Subscriber:
    """The SDK's event generator on a thread, reading through `proxy`."""

    def __init__(self, url: str) -> None:
        self.received: list[dict[str, Any]] = []
        self.error: BaseException | None = None
        self._url = url
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            with Client(self._url) as client:
                for event in sdk_events.events(
                    client, idle_timeout_s=10, reconnect_delay_s=0.1, reconnect_delay_max_s=1.0
                ):
                    self.received.append(event)
        except BaseException as error:
            self.error = error


def _load(cluster: Cluster, label: str, node_ids: list[str]) -> None:
    identities = cluster.load_submitters(ENTITIES)
    valid_until = get_valid_until(cluster, node_ids[0])
    txs = build_puts(cluster, identities, TXS_PER_PHASE, label=label, valid_until=valid_until)
    submit_batches(cluster, txs, node_ids, BATCH_TXS)


def _wait_received(subscriber: Subscriber, count: int, what: str) -> None:
    wait_until(
        lambda: len(subscriber.received) >= count or subscriber.error is not None, what, RECEIVE_TIMEOUT_S
    )
    assert subscriber.error is None, repr(subscriber.error)


def test_subscriber_gets_every_event_once_through_a_restart_and_two_cuts(cluster: Cluster) -> None:
    others = [node_id for node_id in cluster.node_ids if node_id != SUBSCRIBED]
    api_port = int(cluster.client(SUBSCRIBED).url.rsplit(":", 1)[1])
    proxy = CuttingProxy(api_port)
    subscriber = Subscriber(proxy.url)
    try:
        _load(cluster, "before", others)
        _wait_received(subscriber, TXS_PER_PHASE // 3, "the subscriber streams")
        assert proxy.cut() >= 1  # first disconnection, mid-stream
        _load(cluster, "after-cut-1", others)
        # Back on the stream before the crash, so the cut and the crash are two disconnections
        # (a crash before the reconnect would merge them into one).
        wait_until(lambda: proxy.connections_accepted >= 2, "the subscriber reconnects", RECEIVE_TIMEOUT_S)

        cluster.network.kill(SUBSCRIBED)  # the node it reads from crashes
        _load(cluster, "while-down", others)
        height = max(int(cluster.client(node_id).get_status()["height"]) for node_id in others)
        cluster.network.start(SUBSCRIBED)
        cluster.network.wait_ready([SUBSCRIBED], timeout_s=READY_TIMEOUT_S)
        wait_until(
            lambda: int(cluster.client(SUBSCRIBED).get_status()["height"]) >= height,
            f"{SUBSCRIBED} catches up to {height}",
            CATCH_UP_TIMEOUT_S,
        )
        _load(cluster, "after-restart", others)
        _wait_received(subscriber, 3 * TXS_PER_PHASE, "the subscriber reads past the restart")
        assert proxy.cut() >= 1  # second disconnection
        _load(cluster, "after-cut-2", others)
        expected: list[dict[str, Any]] = []

        def has_every_event() -> bool:
            nonlocal expected
            with Client(cluster.client(others[0]).url) as client:
                expected = list(sdk_events.read_events(client, page_size=97))
            return len(expected) >= 5 * TXS_PER_PHASE  # one records.put event per transaction

        wait_until(has_every_event, "every transaction is committed", CATCH_UP_TIMEOUT_S)
        assert len(expected) == 5 * TXS_PER_PHASE
        wait_for_same_head(cluster, cluster.node_ids, CATCH_UP_TIMEOUT_S)
        _wait_received(subscriber, len(expected), "the subscriber has every event")
        time.sleep(0.5)  # anything repeated at the end would show now
        received = list(subscriber.received)
        assert len(received) == len(expected), "events repeated or lost"
        for index, (got, want) in enumerate(zip(received, expected, strict=True)):
            assert got == want, f"event {index} differs: {got} != {want}"
        assert proxy.cuts >= 2
        # Connected at the start, after each cut and after the restart (failed attempts while
        # the node was down never reached it).
        assert proxy.connections_accepted >= 4
    finally:
        proxy.close()
