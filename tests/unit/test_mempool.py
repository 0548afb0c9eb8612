"""The bounded, insertion-ordered mempool."""

from __future__ import annotations

import functools
import time

import pytest

from chainnode.core import crypto, types
from chainnode.node.mempool import Mempool, MempoolFullError
from tests import factories

KEY = crypto.SigningKey(b"\x07" * 32)
VALUE_BYTES = 10

make_tx = functools.partial(
    factories.make_tx, KEY, chain_id="pool-test", valid_until=1000, args=("k", b"v" * VALUE_BYTES)
)
TXS = [make_tx(nonce=nonce) for nonce in range(10)]
TX_BYTES = len(TXS[0].encoded)


def test_add_contains_get_and_duplicates() -> None:
    pool = Mempool(capacity_txs=100, capacity_bytes=1 << 20)
    assert pool.add(TXS[0]) is True
    assert pool.add(TXS[0]) is False, "a pooled transaction is not added twice"
    assert len(pool) == 1 and pool.size_bytes == TX_BYTES
    assert pool.contains(TXS[0].hash) and pool.get(TXS[0].hash) is TXS[0]
    assert not pool.contains(TXS[1].hash) and pool.get(TXS[1].hash) is None


def test_full_by_count_refuses_and_keeps_what_it_has() -> None:
    pool = Mempool(capacity_txs=3, capacity_bytes=1 << 20)
    for tx in TXS[:3]:
        pool.add(tx)
    with pytest.raises(MempoolFullError) as caught:
        pool.add(TXS[3])
    assert caught.value.code == "mempool_full"
    assert pool.add(TXS[0]) is False, "a duplicate is reported as such even when full"
    assert [tx.hash for tx in pool.select(txs_max=10, bytes_max=1 << 20)] == [tx.hash for tx in TXS[:3]]
    pool.remove([TXS[1].hash])
    assert pool.add(TXS[3]) is True


def test_full_by_bytes() -> None:
    pool = Mempool(capacity_txs=100, capacity_bytes=2 * TX_BYTES + 1)
    pool.add(TXS[0])
    pool.add(TXS[1])
    with pytest.raises(MempoolFullError):
        pool.add(TXS[2])
    assert len(pool) == 2 and pool.size_bytes == 2 * TX_BYTES


def test_select_is_oldest_first_within_both_limits_and_removes_nothing() -> None:
    pool = Mempool(capacity_txs=100, capacity_bytes=1 << 20)
    for tx in TXS:
        pool.add(tx)
    assert pool.select(txs_max=4, bytes_max=1 << 20) == TXS[:4]
    assert pool.select(txs_max=100, bytes_max=3 * TX_BYTES) == TXS[:3]
    assert pool.select(txs_max=100, bytes_max=TX_BYTES - 1) == []
    assert pool.select(txs_max=0, bytes_max=1 << 20) == []
    assert len(pool) == 10
    pool.remove([TXS[0].hash, TXS[2].hash, b"\x00" * 32])
    assert pool.select(txs_max=3, bytes_max=1 << 20) == [TXS[1], TXS[3], TXS[4]]
    assert len(pool) == 8 and pool.size_bytes == 8 * TX_BYTES
    pool.add(TXS[0])
    assert pool.select(txs_max=100, bytes_max=1 << 20)[-1] is TXS[0], "a re-added tx queues at the end"


def test_select_stops_at_the_first_transaction_that_does_not_fit() -> None:
    pool = Mempool(capacity_txs=100, capacity_bytes=1 << 20)
    big = make_tx(nonce=100, args=("k", b"v" * 2000))
    pool.add(TXS[0])
    pool.add(big)
    pool.add(TXS[1])
    assert pool.select(txs_max=10, bytes_max=2 * TX_BYTES) == [TXS[0]]


def test_remove_expired() -> None:
    pool = Mempool(capacity_txs=100, capacity_bytes=1 << 20)
    short = [make_tx(nonce=200 + i, valid_until=5) for i in range(3)]
    for tx in [*short, TXS[0]]:
        pool.add(tx)
    assert pool.remove_expired(5) == 0
    assert pool.remove_expired(6) == 3
    assert pool.select(txs_max=10, bytes_max=1 << 20) == [TXS[0]]
    assert pool.size_bytes == TX_BYTES


def test_remove_expired_keeps_finding_expiries_after_removals_and_later_additions() -> None:
    """The pool skips its scan while no transaction can have expired; the bound it keeps
    must never hide one (removals only raise the true minimum, additions may lower it)."""
    pool = Mempool(capacity_txs=100, capacity_bytes=1 << 20)
    early, middle, late = (make_tx(nonce=300 + i, valid_until=until) for i, until in enumerate((10, 20, 30)))
    for tx in (early, middle, late):
        pool.add(tx)
    pool.remove([early.hash])  # committed before it expired
    assert pool.remove_expired(11) == 0
    assert pool.remove_expired(21) == 1 and not pool.contains(middle.hash)
    sooner = make_tx(nonce=303, valid_until=25)
    pool.add(sooner)
    assert pool.remove_expired(26) == 1 and not pool.contains(sooner.hash)
    assert pool.remove_expired(30) == 0 and pool.contains(late.hash)
    assert pool.remove_expired(31) == 1 and len(pool) == 0


def test_add_and_remove_stay_fast_when_the_pool_is_large() -> None:
    """O(1) add/remove: 20k operations on a pool of 20k take well under a second."""
    count = 20_000
    template = TXS[0]
    # Distinct hashes without 20k signatures: the pool keys on the hash only.
    txs = [
        types.Transaction(
            template.chain_id,
            template.signer,
            n,
            template.valid_until,
            template.module,
            template.action,
            template.args,
            template.signature,
            crypto.sha256(n.to_bytes(8, "big")),
            template.encoded,
        )
        for n in range(count)
    ]
    pool = Mempool(capacity_txs=count, capacity_bytes=count * TX_BYTES)
    started = time.perf_counter()
    for tx in txs:
        pool.add(tx)
    assert len(pool.select(txs_max=500, bytes_max=1 << 30)) == 500
    pool.remove(tx.hash for tx in txs[::2])
    elapsed_s = time.perf_counter() - started
    assert len(pool) == count // 2
    assert pool.size_bytes == (count // 2) * TX_BYTES
    assert elapsed_s < 1.0
