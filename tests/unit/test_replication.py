"""`ReplicationWaiters`: a submission waits until a quorum of the validators hold it."""

from __future__ import annotations

import asyncio

import pytest

from chainnode.core import crypto, quorum
from chainnode.core.errors import RemoteError
from chainnode.node import replication
from chainnode.node.replication import ReplicationWaiters

TX = b"\x01" * 32
OTHER = b"\x02" * 32


def _validators(count: int) -> quorum.ValidatorSet:
    return quorum.ValidatorSet(
        tuple(quorum.Validator(f"v{i}", crypto.SigningKey.generate().public_key) for i in range(count))
    )


@pytest.mark.parametrize("size", [4, 5, 7])
async def test_resolves_at_the_quorum_of_validators_counting_itself(size: int) -> None:
    validators = _validators(size)
    waiters = ReplicationWaiters(lambda: validators, "v0")
    waiting = asyncio.create_task(waiters.wait(TX, 5.0))
    await asyncio.sleep(0)
    # Observers and strangers, and acknowledgements of other transactions, count for nothing.
    waiters.note_ack("observer-01", [TX])
    waiters.note_ack("v1", [OTHER])
    for index in range(1, validators.quorum - 1):
        waiters.note_ack(f"v{index}", [TX])
        waiters.note_ack(f"v{index}", [TX])  # twice is once
    await asyncio.sleep(0)
    assert not waiting.done()
    waiters.note_ack(f"v{validators.quorum - 1}", [TX])
    assert await waiting == validators.quorum
    assert len(waiters) == 0


async def test_a_node_outside_the_set_needs_the_whole_quorum_from_peers() -> None:
    validators = _validators(4)
    waiters = ReplicationWaiters(lambda: validators, "observer-01")
    waiting = asyncio.create_task(waiters.wait(TX, 5.0))
    await asyncio.sleep(0)
    waiters.note_ack("v0", [TX])
    waiters.note_ack("v1", [TX])
    await asyncio.sleep(0)
    assert not waiting.done()
    waiters.note_ack("v2", [TX])
    assert await waiting == 3


async def test_times_out_and_a_commit_resolves() -> None:
    validators = _validators(4)
    waiters = ReplicationWaiters(lambda: validators, "v0")
    assert await waiters.wait(TX, 0.05) is None
    assert len(waiters) == 0
    waiting = asyncio.create_task(waiters.wait(TX, 5.0))
    await asyncio.sleep(0)
    waiters.note_committed([TX])
    assert await waiting == -1


async def test_two_clients_share_a_waiter_and_the_count_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    validators = _validators(4)
    waiters = ReplicationWaiters(lambda: validators, "v0")
    first = asyncio.create_task(waiters.wait(TX, 5.0))
    second = asyncio.create_task(waiters.wait(TX, 5.0))
    await asyncio.sleep(0)
    assert len(waiters) == 1
    waiters.note_ack("v1", [TX])
    waiters.note_ack("v2", [TX])
    assert await first == await second == 3
    monkeypatch.setattr(replication, "WAITERS_MAX", 1)
    held = asyncio.create_task(waiters.wait(TX, 5.0))
    await asyncio.sleep(0)
    with pytest.raises(RemoteError) as refused:
        await waiters.wait(OTHER, 1.0)
    assert refused.value.code == "too_many"
    waiters.note_committed([TX])
    assert await held == -1
