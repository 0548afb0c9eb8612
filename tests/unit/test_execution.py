"""Block execution, admission checks and the records module, with real Ed25519 keys."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chainnode.app import execution, records
from chainnode.app.execution import (
    ExecutionResult,
    Executor,
    InvalidBlockError,
    SignatureCache,
)
from chainnode.app.state import compute_genesis_state_root, compute_state_root
from chainnode.core import codec, crypto, identity_records, types
from chainnode.core.errors import StorageError
from tests import factories
from tests.factories import MapState, make_key

ErrorCode = types.ErrorCode
CHAIN_ID = "exec-test"
NOW_MS = 1_750_000_000_000
HEIGHT = 10
DAY_MS = 86_400_000


KEYS = {name: make_key(name) for name in ("alice", "bob", "revoked", "expired", "early", "reader")}
OUTSIDER_KEY = make_key("outsider")


def make_record(
    name: str,
    *,
    roles: tuple[str, ...] = ("submitter",),
    revoked: bool = False,
    not_before_ms: int = NOW_MS - DAY_MS,
    not_after_ms: int = NOW_MS + DAY_MS,
) -> identity_records.EntityRecord:
    return identity_records.EntityRecord(
        entity_id=name,
        zone="beijing",
        public_key=KEYS[name].public_key,
        roles=tuple(sorted(roles)),
        sectors=("education",),
        not_before_ms=not_before_ms,
        not_after_ms=not_after_ms,
        revoked=revoked,
        certificate=b"",
    )


ENTITIES = [
    make_record("alice"),
    make_record("bob", roles=("auditor", "submitter")),
    make_record("revoked", revoked=True),
    make_record("expired", not_after_ms=NOW_MS - 1),
    make_record("early", not_before_ms=NOW_MS + 1),
    make_record("reader", roles=("observer",)),
]
INITIAL_STATE = {identity_records.entity_key(record.entity_id): record.encode() for record in ENTITIES}
GENESIS_ROOT = compute_genesis_state_root(INITIAL_STATE)


def make_tx(
    signer: str = "alice", *, key: crypto.SigningKey | None = None, **fields: Any
) -> types.Transaction:
    """A transaction of `signer` signed with its own key (or `key`): a put on this module's chain
    valid for 100 blocks past `HEIGHT`, unless `fields` say otherwise."""
    fields = {"chain_id": CHAIN_ID, "valid_until": HEIGHT + 100, "args": ("doc", b"value"), **fields}
    return factories.make_tx(key or KEYS.get(signer, OUTSIDER_KEY), signer=signer, **fields)


def never_committed(_: bytes) -> bool:
    return False


def execute(
    transactions: Sequence[types.Transaction],
    *,
    state: MapState | None = None,
    height: int = HEIGHT,
    is_committed: Callable[[bytes], bool] = never_committed,
    executor: Executor | None = None,
) -> ExecutionResult:
    return (executor or Executor(CHAIN_ID, SignatureCache())).execute_block(
        state or MapState(INITIAL_STATE),
        previous_state_root=GENESIS_ROOT,
        height=height,
        timestamp_ms=NOW_MS,
        transactions=transactions,
        is_committed=is_committed,
    )


# ------------------------------------------------------------------ the block refused

ALREADY_COMMITTED = make_tx(nonce=77)
FORGED_SIGNATURE = make_tx(key=OUTSIDER_KEY)
REFUSED_BLOCKS = {
    "bad signature": ([make_tx(nonce=1), FORGED_SIGNATURE], ErrorCode.BAD_SIGNATURE, 1),
    "unknown signer": ([make_tx("outsider")], ErrorCode.UNKNOWN_SIGNER, 0),
    "wrong chain": ([make_tx(chain_id="other-chain")], ErrorCode.WRONG_CHAIN, 0),
    "duplicate in block": ([make_tx(nonce=2), make_tx(nonce=3), make_tx(nonce=2)], ErrorCode.DUPLICATE, 2),
    "already committed": ([make_tx(nonce=4), ALREADY_COMMITTED], ErrorCode.DUPLICATE, 1),
}


@pytest.mark.parametrize("case", sorted(REFUSED_BLOCKS))
def test_unauthentic_or_replayed_transaction_refuses_the_block(case: str) -> None:
    transactions, code, index = REFUSED_BLOCKS[case]
    with pytest.raises(InvalidBlockError) as caught:
        execute(transactions, is_committed=lambda tx_hash: tx_hash == ALREADY_COMMITTED.hash)
    assert caught.value.error_code == code
    assert caught.value.tx_index == index
    assert caught.value.code == "invalid_block"


def test_cached_hash_with_another_signature_is_still_refused() -> None:
    """The signature cache keys on (hash, key, signature): a cached body cannot carry a garbage signature."""
    cache = SignatureCache()
    executor = Executor(CHAIN_ID, cache)
    tx = make_tx(nonce=5)
    state = MapState(INITIAL_STATE)
    assert executor.check_transaction(
        state, tx, height=HEIGHT, timestamp_ms=NOW_MS, is_committed=never_committed
    ) == (ErrorCode.OK, "")
    assert cache.is_verified(tx.hash, KEYS["alice"].public_key, tx.signature)
    body = types.Transaction.body(CHAIN_ID, "alice", 5, tx.valid_until, "records", "put", tx.args)
    forged = types.decode_transaction(codec.encode((*body, b"\x01" * 64)))
    assert forged.hash == tx.hash and forged.signature != tx.signature
    with pytest.raises(InvalidBlockError) as caught:
        execute([forged], executor=executor)
    assert caught.value.error_code == ErrorCode.BAD_SIGNATURE
    assert execute([tx], executor=executor).receipts[0].ok


def test_signature_cache_is_bounded_and_first_in_first_out() -> None:
    cache = SignatureCache(entries_max=3)
    for index in range(3):
        cache.mark_verified(bytes([index]) * 32, b"k", b"s")
    assert cache.is_verified(b"\x00" * 32, b"k", b"s")  # a hit does not reorder
    cache.mark_verified(b"\x01" * 32, b"k", b"s")  # marking again does: 1 is now the newest
    cache.mark_verified(b"\x09" * 32, b"k", b"s")
    assert len(cache) == 3
    assert not cache.is_verified(b"\x00" * 32, b"k", b"s"), "the oldest entry went"
    assert cache.is_verified(b"\x01" * 32, b"k", b"s") and cache.is_verified(b"\x09" * 32, b"k", b"s")
    cache.mark_verified(b"\x0a" * 32, b"k", b"s")
    assert not cache.is_verified(b"\x02" * 32, b"k", b"s")
    assert not cache.is_verified(b"\x01" * 32, b"other-key", b"s")


def _counting_put_action(calls: list[tuple[object, ...]]) -> dict[tuple[str, str], Any]:
    """The action table with `records.put` whose argument check records each call."""
    put = records.ACTIONS[("records", "put")]

    def check_args(args: tuple[object, ...]) -> None:
        calls.append(args)
        put.check_args(args)

    return {("records", "put"): dataclasses.replace(put, check_args=check_args)}


def test_arguments_checked_at_admission_are_not_checked_again_in_the_block() -> None:
    calls: list[tuple[object, ...]] = []
    executor = Executor(CHAIN_ID, SignatureCache(), actions=_counting_put_action(calls))
    admitted, fresh = make_tx(nonce=31), make_tx(nonce=32)
    state = MapState(INITIAL_STATE)
    code, _ = executor.check_transaction(
        state, admitted, height=HEIGHT, timestamp_ms=NOW_MS, is_committed=never_committed
    )
    assert code == ErrorCode.OK and len(calls) == 1
    result = execute([admitted, fresh], executor=executor)
    assert [receipt.code for receipt in result.receipts] == [0, 0]
    assert calls == [admitted.args, fresh.args], "the admitted one once, the new one once"
    execute([make_tx(nonce=33), admitted], executor=executor)
    assert len(calls) == 3


def test_arguments_that_failed_are_checked_again_and_the_memo_is_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(execution, "ARGS_CHECKED_MAX", 2)
    calls: list[tuple[object, ...]] = []
    executor = Executor(CHAIN_ID, SignatureCache(), actions=_counting_put_action(calls))
    bad = make_tx(args=("", b"v"))
    for _ in range(2):
        assert execute([bad], executor=executor).receipts[0].code == int(ErrorCode.BAD_ARGUMENTS)
    assert len(calls) == 2, "a failure is not remembered"
    first, second, third = (make_tx(nonce=40 + index) for index in range(3))
    execute([first, second, third], executor=executor)
    assert len(calls) == 5
    execute([first], executor=executor)  # the oldest went when the third came
    execute([third], executor=executor)  # still remembered
    assert len(calls) == 6


# ------------------------------------------------------------------ failed receipts

FAILED_TRANSACTIONS = {
    "revoked signer": (make_tx("revoked"), ErrorCode.SIGNER_REVOKED),
    "expired certificate": (make_tx("expired"), ErrorCode.SIGNER_EXPIRED),
    "certificate not yet valid": (make_tx("early"), ErrorCode.SIGNER_NOT_YET_VALID),
    "missing role": (make_tx("reader"), ErrorCode.MISSING_ROLE),
    "valid_until passed": (make_tx(valid_until=HEIGHT - 1), ErrorCode.EXPIRED),
    "unknown module": (make_tx(module="lottery"), ErrorCode.UNKNOWN_MODULE),
    "unknown action": (make_tx(action="delete"), ErrorCode.UNKNOWN_ACTION),
    "no arguments": (make_tx(args=()), ErrorCode.BAD_ARGUMENTS),
    "three arguments": (make_tx(args=("k", b"v", 1)), ErrorCode.BAD_ARGUMENTS),
    "empty key": (make_tx(args=("", b"v")), ErrorCode.BAD_ARGUMENTS),
    "key with slash": (make_tx(args=("a/b", b"v")), ErrorCode.BAD_ARGUMENTS),
    "key with NUL": (make_tx(args=("a\x00b", b"v")), ErrorCode.BAD_ARGUMENTS),
    "key not printable": (make_tx(args=("a\nb", b"v")), ErrorCode.BAD_ARGUMENTS),
    "key too long": (make_tx(args=("k" * 129, b"v")), ErrorCode.BAD_ARGUMENTS),
    "key not text": (make_tx(args=(b"k", b"v")), ErrorCode.BAD_ARGUMENTS),
    "value not bytes": (make_tx(args=("k", "text")), ErrorCode.BAD_ARGUMENTS),
    "value too large": (make_tx(args=("k", b"x" * 4097)), ErrorCode.VALUE_TOO_LARGE),
}


@pytest.mark.parametrize("case", sorted(FAILED_TRANSACTIONS))
def test_failing_transaction_gets_a_failed_receipt_and_leaves_no_writes(case: str) -> None:
    bad, code = FAILED_TRANSACTIONS[case]
    good_before, good_after = make_tx("bob", nonce=1), make_tx("bob", nonce=2)
    result = execute([good_before, bad, good_after])
    assert [receipt.code for receipt in result.receipts] == [0, int(code), 0]
    failed = result.receipts[1]
    assert failed.tx_hash == bad.hash and failed.message and failed.events == ()
    # Only bob's two puts are in the write set: versions 1 and 2 of "doc".
    assert result.write_set.keys() == {
        records.compute_latest_key("bob", "doc"),
        records.compute_history_key("bob", "doc", 1),
        records.compute_history_key("bob", "doc", 2),
    }
    assert result.receipts_root == types.compute_receipts_root(result.receipts)
    assert result.state_root == compute_state_root(GENESIS_ROOT, result.write_set)


@pytest.mark.parametrize("case", sorted(FAILED_TRANSACTIONS))
def test_admission_reports_the_same_code(case: str) -> None:
    bad, code = FAILED_TRANSACTIONS[case]
    executor = Executor(CHAIN_ID, SignatureCache())
    checked_code, reason = executor.check_transaction(
        MapState(INITIAL_STATE), bad, height=HEIGHT, timestamp_ms=NOW_MS, is_committed=never_committed
    )
    assert (checked_code, bool(reason)) == (code, True)


@pytest.mark.parametrize(
    ("tx", "code"),
    [
        (FORGED_SIGNATURE, ErrorCode.BAD_SIGNATURE),
        (make_tx("outsider"), ErrorCode.UNKNOWN_SIGNER),
        (make_tx(chain_id="other-chain"), ErrorCode.WRONG_CHAIN),
        (ALREADY_COMMITTED, ErrorCode.DUPLICATE),
        (make_tx(nonce=9), ErrorCode.OK),
    ],
)
def test_admission_of_unauthentic_or_replayed_transactions(tx: types.Transaction, code: ErrorCode) -> None:
    executor = Executor(CHAIN_ID, SignatureCache())
    checked_code, _ = executor.check_transaction(
        MapState(INITIAL_STATE),
        tx,
        height=HEIGHT,
        timestamp_ms=NOW_MS,
        is_committed=lambda tx_hash: tx_hash == ALREADY_COMMITTED.hash,
    )
    assert checked_code == code
    assert executor.signatures.is_verified(tx.hash, KEYS["alice"].public_key, tx.signature) == (
        code == ErrorCode.OK
    )


# ------------------------------------------------------------------ records


def test_record_versions_increment_and_history_is_kept() -> None:
    state = MapState(INITIAL_STATE)
    first = execute(
        [make_tx(nonce=1, args=("doc", b"one")), make_tx(nonce=2, args=("doc", b"two"))],
        state=state,
        height=5,
    )
    assert [receipt.events for receipt in first.receipts] == [
        (("records.put", ("alice", "doc", 1)),),
        (("records.put", ("alice", "doc", 2)),),
    ]
    state.apply(first.write_set)
    third = make_tx(nonce=3, args=("doc", b"three"))
    other = make_tx("bob", nonce=4, args=("doc", b"bob's"))
    second = execute([third, other], state=state, height=6)
    state.apply(second.write_set)
    latest = records.get_record(state, "alice", "doc")
    assert latest == records.RecordVersion("alice", "doc", 3, b"three", 6, third.hash)
    assert records.get_record(state, "alice", "doc", 1) is not None
    assert [records.get_record(state, "alice", "doc", v).value for v in (1, 2, 3)] == [  # type: ignore[union-attr]
        b"one",
        b"two",
        b"three",
    ]
    assert records.get_record(state, "alice", "doc", 4) is None
    assert records.get_record(state, "alice", "doc", 0) is None
    assert records.get_record(state, "alice", "missing") is None
    assert records.get_record(state, "alice", "bad/key") is None
    bob = records.get_record(state, "bob", "doc")
    assert bob is not None and (bob.version, bob.value) == (1, b"bob's"), "namespaces are per entity"
    # The latest entry is a pointer to its version; the value is stored once, in the history.
    assert state.get_state(records.compute_latest_key("alice", "doc")) == (3).to_bytes(8, "big")
    assert b"three" in (state.get_state(records.compute_history_key("alice", "doc", 3)) or b"")
    state.apply({records.compute_latest_key("alice", "doc"): b"\x03"})
    with pytest.raises(StorageError, match="corrupt record alice/doc"):
        records.get_record(state, "alice", "doc")


def test_same_block_gives_the_same_result_twice() -> None:
    transactions = [
        make_tx(nonce=1, args=("a", b"1")),
        make_tx("bob", nonce=2, args=("b", b"2")),
        make_tx("revoked", nonce=3),
        make_tx(nonce=4, args=("a", b"3")),
    ]
    first = execute(transactions)
    second = execute(transactions, executor=Executor(CHAIN_ID, SignatureCache()))
    assert first == second
    changed = execute([*transactions[:3], make_tx(nonce=4, args=("a", b"4"))])
    assert changed.state_root != first.state_root


PUTS = st.lists(
    st.tuples(st.sampled_from(["alice", "bob"]), st.sampled_from(["a", "b", "c"]), st.binary(max_size=16)),
    min_size=1,
    max_size=12,
)


@settings(max_examples=40, deadline=None)
@given(puts=PUTS, block_size=st.integers(min_value=1, max_value=5))
def test_random_record_puts_match_a_model(puts: list[tuple[str, str, bytes]], block_size: int) -> None:
    state = MapState(INITIAL_STATE)
    replica = MapState(INITIAL_STATE)
    executor, replica_executor = Executor(CHAIN_ID, SignatureCache()), Executor(CHAIN_ID, SignatureCache())
    model: dict[tuple[str, str], list[bytes]] = {}
    transactions = [
        make_tx(signer, nonce=index, args=(key, value)) for index, (signer, key, value) in enumerate(puts)
    ]
    root = replica_root = GENESIS_ROOT
    for start in range(0, len(transactions), block_size):
        block = transactions[start : start + block_size]
        height = HEIGHT + start
        result = executor.execute_block(
            state,
            previous_state_root=root,
            height=height,
            timestamp_ms=NOW_MS,
            transactions=block,
            is_committed=never_committed,
        )
        again = replica_executor.execute_block(
            replica,
            previous_state_root=replica_root,
            height=height,
            timestamp_ms=NOW_MS,
            transactions=block,
            is_committed=never_committed,
        )
        assert again == result, "execution is deterministic"
        assert all(receipt.ok for receipt in result.receipts)
        state.apply(result.write_set)
        replica.apply(again.write_set)
        root, replica_root = result.state_root, again.state_root
        for tx in block:
            model.setdefault((tx.signer, tx.args[0]), []).append(tx.args[1])
    for (signer, key), values in model.items():
        latest = records.get_record(state, signer, key)
        assert latest is not None and latest.version == len(values) and latest.value == values[-1]
        assert [
            records.get_record(state, signer, key, v).value  # type: ignore[union-attr]
            for v in range(1, len(values) + 1)
        ] == values
    for signer in ("alice", "bob"):
        for key in ("a", "b", "c"):
            if (signer, key) not in model:
                assert records.get_record(state, signer, key) is None
