"""The `xchain` module between two real chains: counterparty registration by the council, the
on-chain light client advanced across a validator-set change, imports of proven transactions
(once), ordered exactly-once messages with acknowledgement, and every refusal with its stable
code: forged proofs (altered record, strangers' certificate, a third chain's header), a client
behind, a fork.  All through `Executor.execute_block` with real keys, certificates and proofs
(`tests.light_harness.CertifiedChain`)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from chainnode import light
from chainnode.app import governance, xchain, xchain_registry, xchain_state
from chainnode.core import crypto, quorum, types
from tests.factories import make_key
from tests.governance_harness import Network, codes, event_names
from tests.light_harness import CertifiedChain

ErrorCode = types.ErrorCode
RELAYER = "pku"  # a submitter on every test chain: anyone may relay


@pytest.fixture(scope="module")
def net_a(tmp_path_factory: pytest.TempPathFactory) -> Network:
    return Network.create(tmp_path_factory.mktemp("xchain-a"), chain_id="chain-a")


@pytest.fixture(scope="module")
def net_b(tmp_path_factory: pytest.TempPathFactory) -> Network:
    return Network.create(tmp_path_factory.mktemp("xchain-b"), chain_id="chain-b")


@pytest.fixture(scope="module")
def net_c(tmp_path_factory: pytest.TempPathFactory) -> Network:
    return Network.create(tmp_path_factory.mktemp("xchain-c"), chain_id="chain-c")


# ---------------------------------------------------------------- helpers


def last_proposal(chain: CertifiedChain) -> int:
    return governance.get_proposal_count(chain.state)


def propose(chain: CertifiedChain, kind: str, payload: tuple[Any, ...]) -> types.Receipt:
    return chain.run_one(chain.council_tx("miit", "propose", kind, payload, chain.height + 20))


def council_decides(chain: CertifiedChain, kind: str, payload: tuple[Any, ...]) -> types.Receipt:
    """Propose (one approval of two) and vote: the receipt of the deciding vote."""
    assert propose(chain, kind, payload).ok
    return chain.run_one(chain.council_tx("moe", "vote", last_proposal(chain), True))


def register(chain: CertifiedChain, counterparty: Network) -> types.Receipt:
    payload = xchain_registry.compute_register_chain_payload(counterparty.genesis)
    return council_decides(chain, "register_chain", payload)


def client_of(chain: CertifiedChain, counterparty: str) -> light.LightState:
    state = xchain_state.get_light_state(chain.state, counterparty)
    assert state is not None
    return state


def record_of(chain: CertifiedChain, counterparty: str) -> xchain_state.ChainRecord:
    record = xchain_state.get_chain(chain.state, counterparty)
    assert record is not None
    return record


def steps_to(source: CertifiedChain, client: light.LightState, target: int) -> tuple[Any, ...]:
    """Sparse steps from the client's height to `target`: the blocks that changed the source's
    validator set and the one after each (with its change proof), then the target."""
    steps = []
    for height in range(client.height + 1, target + 1):
        change = source.changes.get(height - 1)
        if change is not None or height in source.changes or height == target:
            steps.append(
                (
                    source.header_bytes(height),
                    source.certificate_bytes(height),
                    None if change is None else change.encode(),
                )
            )
    return tuple(steps)


def update(dest: CertifiedChain, source: CertifiedChain, target: int | None = None) -> types.Receipt:
    chain_id = source.net.genesis.chain_id
    steps = steps_to(source, client_of(dest, chain_id), source.height if target is None else target)
    return dest.run_one(dest.entity_tx(RELAYER, "xchain", "update_client", chain_id, steps))


def import_tx(dest: CertifiedChain, source_chain: str, proof: dict[str, Any]) -> types.Transaction:
    args = xchain_state.encode_proof_args(proof)
    return dest.entity_tx(RELAYER, "xchain", "import", source_chain, args)


def locate(chain: CertifiedChain, tx: types.Transaction) -> tuple[int, int]:
    """(height, index) of a committed transaction."""
    for height, block in chain.blocks.items():
        for index, committed in enumerate(block.transactions):
            if committed.hash == tx.hash:
                return height, index
    raise AssertionError("not committed")


def commit(chain: CertifiedChain, tx: types.Transaction) -> tuple[types.Receipt, dict[str, Any]]:
    """Run `tx` in a block of its own; its receipt and its inclusion proof."""
    receipt = chain.run_one(tx)
    return receipt, chain.compute_proof(chain.height, 0)


@pytest.fixture
def pair(net_a: Network, net_b: Network) -> tuple[CertifiedChain, CertifiedChain]:
    """Chain A and chain B, each registered on the other by its council."""
    a, b = CertifiedChain(net_a), CertifiedChain(net_b)
    assert register(a, net_b).ok
    assert register(b, net_a).ok
    return a, b


# ---------------------------------------------------------------- registration


def test_register_chain_by_council_starts_the_light_client_at_genesis(net_a: Network, net_b: Network) -> None:
    b = CertifiedChain(net_b)
    payload = xchain_registry.compute_register_chain_payload(net_a.genesis)
    assert propose(b, "register_chain", payload).ok
    assert xchain_state.get_chain(b.state, "chain-a") is None  # one approval of two: not yet
    receipt = b.run_one(b.council_tx("moe", "vote", last_proposal(b), True))
    assert receipt.ok
    assert ("xchain.chain_registered", ("chain-a", net_a.genesis.compute_hash(), 4)) in receipt.events
    client = client_of(b, "chain-a")
    assert (client.chain_id, client.height, client.header_hash, client.halted) == (
        "chain-a",
        0,
        net_a.genesis.compute_hash(),
        "",
    )
    assert client.validators() == net_a.genesis.validators
    record = record_of(b, "chain-a")
    assert (record.registered_height, record.is_active, record.facts, record.sent) == (b.height, True, 0, 0)
    assert xchain_state.get_chain_ids(b.state) == ("chain-a",)


def test_register_chain_refusals(net_a: Network, net_b: Network) -> None:
    b = CertifiedChain(net_b)
    assert register(b, net_a).ok
    good = xchain_registry.compute_register_chain_payload(net_a.genesis)
    own = xchain_registry.compute_register_chain_payload(net_b.genesis)
    three = quorum.ValidatorSet(net_a.genesis.validators.validators[:3]).encode()
    cases = {
        "own chain id": (own, ErrorCode.BAD_PROPOSAL),
        "already registered": (good, ErrorCode.BAD_PROPOSAL),
        "malformed set": (("chain-x", good[1], b"not a validator set", good[3]), ErrorCode.BAD_PROPOSAL),
        "too small a set": (("chain-x", good[1], three, good[3]), ErrorCode.BAD_PROPOSAL),
        "short hash": (("chain-x", good[1][:31], good[2], good[3]), ErrorCode.BAD_ARGUMENTS),
        "bad chain id": (("a/b", *good[1:]), ErrorCode.BAD_ARGUMENTS),
        "missing field": (good[:3], ErrorCode.BAD_ARGUMENTS),
    }
    receipts = b.run(
        *(b.council_tx("miit", "propose", "register_chain", payload, 99) for payload, _ in cases.values())
    )
    assert dict(zip(cases, codes(receipts), strict=True)) == {name: code for name, (_, code) in cases.items()}
    assert "this chain's own id" in receipts[0].message
    unknown = b.run_one(b.council_tx("miit", "propose", "remove_chain", ("chain-x",), 99))
    assert codes([unknown]) == [ErrorCode.BAD_PROPOSAL]


def test_remove_chain_stops_the_client_and_a_new_registration_keeps_facts_and_sequences(
    pair: tuple[CertifiedChain, CertifiedChain], net_a: Network
) -> None:
    a, b = pair
    assert a.run_one(a.entity_tx("pku", "xchain", "send", "chain-b", b"one")).ok
    _, proof = commit(a, a.put("pku", "before-removal"))
    assert update(b, a).ok
    assert b.run_one(import_tx(b, "chain-a", proof)).ok
    receipt = council_decides(b, "remove_chain", ("chain-a",))
    assert receipt.ok and ("xchain.chain_removed", ("chain-a",)) in receipt.events
    assert not record_of(b, "chain-a").is_active
    # Removed: nothing moves, what was imported stays readable.
    a.run()
    refused = b.run(
        b.entity_tx(
            RELAYER, "xchain", "update_client", "chain-a", steps_to(a, client_of(b, "chain-a"), a.height)
        ),
        import_tx(b, "chain-a", proof),
        b.entity_tx("pku", "xchain", "send", "chain-a", b"x"),
    )
    assert codes(refused) == [ErrorCode.UNKNOWN_CHAIN] * 3
    assert xchain_state.get_fact(b.state, "chain-a", proof_tx_hash(proof)) is not None
    # Registered again: a fresh client, the same facts (a second import is still refused).
    assert register(b, net_a).ok
    assert client_of(b, "chain-a").height == 0
    assert record_of(b, "chain-a").facts == 1
    assert update(b, a).ok
    assert codes(b.run(import_tx(b, "chain-a", proof))) == [ErrorCode.ALREADY_IMPORTED]


def proof_tx_hash(proof: dict[str, Any]) -> bytes:
    return bytes.fromhex(proof["tx_hash"])


# ---------------------------------------------------------------- imports


def test_import_records_the_fact_once(pair: tuple[CertifiedChain, CertifiedChain]) -> None:
    a, b = pair
    put = a.put("pku", "diagnosis-17")
    receipt, proof = commit(a, put)
    assert receipt.ok
    # The client is behind the proof: the relayer must update it first.
    behind = b.run_one(import_tx(b, "chain-a", proof))
    assert codes([behind]) == [ErrorCode.CLIENT_BEHIND]
    updated = update(b, a)
    assert updated.ok
    assert updated.events[0] == (
        "xchain.client_updated",
        ("chain-a", 0, a.height, a.blocks[a.height].hash, 0),
    )
    assert (
        len(
            steps_to(
                a,
                light.start_light_state("chain-a", b"\0" * 32, b"\0" * 32, a.net.genesis.validators),
                a.height,
            )
        )
        == 1
    )
    imported = b.run_one(import_tx(b, "chain-a", proof))
    assert imported.ok, imported.message
    assert imported.events == (("xchain.imported", ("chain-a", a.height, put.hash, "records", "put", "pku")),)
    fact = xchain_state.get_fact(b.state, "chain-a", put.hash)
    assert fact is not None
    assert (fact.source_chain, fact.height, fact.tx_hash, fact.block_hash) == (
        "chain-a",
        a.height,
        put.hash,
        a.blocks[a.height].hash,
    )
    assert (fact.module, fact.action, fact.signer, fact.importer, fact.local_height, fact.index) == (
        "records",
        "put",
        "pku",
        RELAYER,
        b.height,
        1,
    )
    assert fact.args_hash == crypto.sha256(put_args_encoding(put))
    assert fact.events == receipt.events == (("records.put", ("pku", "diagnosis-17", 1)),)
    assert xchain_state.list_facts(b.state, "chain-a") == [fact]
    # Once: the same source transaction again, in a later block or twice in one.
    again = b.run(import_tx(b, "chain-a", proof))
    assert codes(again) == [ErrorCode.ALREADY_IMPORTED]
    _, other = commit(a, a.put("pku", "diagnosis-18"))
    assert update(b, a).ok
    twice = b.run(import_tx(b, "chain-a", other), import_tx(b, "chain-a", other))
    assert codes(twice) == [ErrorCode.OK, ErrorCode.ALREADY_IMPORTED]
    assert record_of(b, "chain-a").facts == 2


def put_args_encoding(tx: types.Transaction) -> bytes:
    from chainnode.core import codec

    return codec.encode(tx.args)


def test_a_failed_source_transaction_is_not_imported(pair: tuple[CertifiedChain, CertifiedChain]) -> None:
    a, b = pair
    failed, proof = commit(a, a.entity_tx("pku", "xchain", "send", "chain-z", b"nowhere"))
    assert codes([failed]) == [ErrorCode.UNKNOWN_CHAIN]
    assert update(b, a).ok
    assert codes(b.run(import_tx(b, "chain-a", proof))) == [ErrorCode.SOURCE_TX_FAILED]


def test_forged_proofs_are_refused_with_the_check_that_failed(
    pair: tuple[CertifiedChain, CertifiedChain], net_c: Network
) -> None:
    a, b = pair
    _, proof = commit(a, a.put("pku", "lab-result"))
    assert update(b, a).ok
    # An altered record: the transaction with another value is not the leaf the header commits to.
    altered_tx = a.entity_tx("pku", "records", "put", "lab-result", b"forged")
    altered = {**proof, "transaction": altered_tx.encoded.hex(), "tx_hash": altered_tx.hash.hex()}
    # A certificate signed by strangers, in the validators' positions.
    block = a.blocks[a.height]
    strangers = [make_key(f"stranger-{index}") for index in range(4)]
    payload = types.compute_vote_payload(types.VoteKind.COMMIT, "chain-a", 0, block.height, block.hash)
    forged_certificate = quorum.CommitCertificate(
        block.height, 0, block.hash, tuple((index, key.sign(payload)) for index, key in enumerate(strangers))
    )
    by_strangers = {**proof, "commit_certificate": forged_certificate.encode().hex()}
    # A genuine proof of a third chain, offered as chain A's.
    c = CertifiedChain(net_c)
    for _ in range(a.height - 1):
        c.run()
    _, third = commit(c, c.put("pku", "lab-result"))
    relabelled = {**third, "chain_id": "chain-a"}
    receipts = b.run(
        import_tx(b, "chain-a", altered),
        import_tx(b, "chain-a", by_strangers),
        import_tx(b, "chain-a", third),
        import_tx(b, "chain-a", relabelled),
    )
    assert codes(receipts) == [ErrorCode.BAD_PROOF] * 4
    assert [receipt.message.split(":")[0] for receipt in receipts] == [
        "tx_inclusion",
        "certificate",
        "chain_id",
        "chain_id",
    ]
    assert b.run_one(import_tx(b, "chain-a", proof)).ok  # the genuine one still goes through


def test_update_client_refusals_have_stable_codes(
    pair: tuple[CertifiedChain, CertifiedChain], net_c: Network
) -> None:
    a, b = pair
    a.run(a.put("pku", "x"))
    a.run(a.put("pku", "y"))
    header, certificate = a.header_bytes(2), a.certificate_bytes(2)
    block = a.blocks[2]
    too_few = a.certify(block, a.net.genesis.validators, signers=2).encode()
    strangers = [make_key(f"stranger-{index}") for index in range(4)]
    payload = types.compute_vote_payload(types.VoteKind.COMMIT, "chain-a", 0, 2, block.hash)
    forged = quorum.CommitCertificate(
        2, 0, block.hash, tuple((index, key.sign(payload)) for index, key in enumerate(strangers))
    ).encode()
    c = CertifiedChain(net_c)
    c.run()
    c.run()
    cases = {
        "below quorum": ((header, too_few, None), ErrorCode.BAD_QUORUM, "quorum"),
        "strangers": ((header, forged, None), ErrorCode.BAD_QUORUM, "quorum"),
        "another block's certificate": (
            (header, a.certificate_bytes(1), None),
            ErrorCode.BAD_QUORUM,
            "certificate_binding",
        ),
        "third chain": ((c.header_bytes(2), c.certificate_bytes(2), None), ErrorCode.BAD_HEADER, "chain_id"),
        "junk": ((b"junk", certificate, None), ErrorCode.BAD_HEADER, "format"),
        "unasked change proof": (
            (header, certificate, b"junk"),
            ErrorCode.BAD_VALIDATOR_CHANGE,
            "change_proof",
        ),
    }
    receipts = b.run(
        *(
            b.entity_tx(RELAYER, "xchain", "update_client", "chain-a", (step,))
            for step, _, _ in cases.values()
        )
    )
    assert dict(zip(cases, codes(receipts), strict=True)) == {
        name: code for name, (_, code, _) in cases.items()
    }
    assert [receipt.message.split(":")[0] for receipt in receipts] == [
        check for _, _, check in cases.values()
    ]
    # A wrong parent: header 2 right after a header 1 of another history.
    assert update(b, a, 1).ok
    other = replace(a.blocks[2].header, parent_hash=b"\x07" * 32)
    other_block = types.Block.create(other, a.blocks[2].transactions)
    step = (other.encode(), a.certify(other_block, a.net.genesis.validators).encode(), None)
    parent = b.run_one(b.entity_tx(RELAYER, "xchain", "update_client", "chain-a", (step,)))
    assert codes([parent]) == [ErrorCode.BAD_HEADER] and parent.message.startswith("parent")
    assert client_of(b, "chain-a").height == 1  # nothing refused was kept
    assert light.LIGHT_CHECKS and set(xchain.LIGHT_CHECK_CODES) == set(light.LIGHT_CHECKS)


def test_the_client_follows_a_validator_set_change_with_its_proof(
    pair: tuple[CertifiedChain, CertifiedChain], net_a: Network
) -> None:
    a, b = pair
    a.run(a.put("pku", "era-4"))
    certificate, key = net_a.issue(
        "beijing", "validator-05", roles=("observer", "validator"), sectors=("government",)
    )
    assert a.run_one(a.zone_tx("beijing", "register", certificate)).ok
    a.add_key("validator-05", key)
    assert council_decides(a, "add_validator", ("validator-05",)).ok
    change_height = a.height
    a.run(a.put("pku", "filler"))
    _, proof = commit(a, a.put("pku", "era-5"))
    assert governance.get_validator_set_at(a.state, a.height).size == 5
    # Skipping the change, or naming the new set without its proof, is refused.
    client = client_of(b, "chain-a")
    skip = (a.header_bytes(a.height), a.certificate_bytes(a.height), None)
    unproven = (a.header_bytes(change_height + 1), a.certificate_bytes(change_height + 1), None)
    bad_proof = a.changes[change_height]
    wrong_root = replace(bad_proof, previous_state_root=b"\x01" * 32).encode()
    refused = b.run(
        b.entity_tx(RELAYER, "xchain", "update_client", "chain-a", (skip,)),
        b.entity_tx(
            RELAYER,
            "xchain",
            "update_client",
            "chain-a",
            ((a.header_bytes(change_height), a.certificate_bytes(change_height), None), unproven),
        ),
        b.entity_tx(
            RELAYER,
            "xchain",
            "update_client",
            "chain-a",
            (
                (a.header_bytes(change_height), a.certificate_bytes(change_height), None),
                (unproven[0], unproven[1], wrong_root),
            ),
        ),
    )
    assert codes(refused) == [ErrorCode.BAD_VALIDATOR_CHANGE] * 3
    assert [r.message.split(":")[0] for r in refused] == ["validator_set", "validator_set", "change_proof"]
    assert client_of(b, "chain-a") == client
    # With the proof, sparse: the change block, the next one with its proof, the head.
    steps = steps_to(a, client, a.height)
    assert len(steps) == 3 and a.height - client.height > 3
    updated = update(b, a)
    assert updated.ok, updated.message
    five = governance.get_validator_set_at(a.state, a.height)
    assert (
        "xchain.client_validators_changed",
        ("chain-a", change_height + 1, five.compute_hash()),
    ) in updated.events
    assert client_of(b, "chain-a").validators() == five
    # A proof from the new era, certified by five validators, and one from the old era, both verify.
    assert b.run_one(import_tx(b, "chain-a", proof)).ok
    assert b.run_one(import_tx(b, "chain-a", a.compute_proof(change_height - 3))).ok


def test_a_fork_halts_the_client_and_keeps_both_headers(pair: tuple[CertifiedChain, CertifiedChain]) -> None:
    a, b = pair
    _, proof = commit(a, a.put("pku", "k"))
    assert update(b, a).ok
    height = a.height
    # The validators certify a second block at the client's height.
    known = a.blocks[height]
    other_header = replace(known.header, timestamp_ms=known.header.timestamp_ms + 1)
    other = types.Block.create(other_header, known.transactions)
    other_certificate = a.certify(other, a.net.genesis.validators).encode()
    same = (a.header_bytes(height), a.certificate_bytes(height), None)
    fork = (other_header.encode(), other_certificate, None)
    receipt = b.run_one(b.entity_tx(RELAYER, "xchain", "update_client", "chain-a", (same, fork)))
    assert receipt.ok, receipt.message
    assert ("xchain.fork_detected", ("chain-a", height, known.hash, other.hash)) in receipt.events
    client = client_of(b, "chain-a")
    assert client.halted.startswith(f"fork at height {height}")
    evidence = xchain_state.get_fork_evidence(b.state, "chain-a")
    assert evidence is not None
    assert (evidence.height, evidence.known_header, evidence.other_header, evidence.local_height) == (
        height,
        a.header_bytes(height),
        other_header.encode(),
        b.height,
    )
    assert evidence.known_certificate == a.certificate_bytes(height)
    # Halted: no update, no import.
    a.run()
    later = b.run(
        b.entity_tx(RELAYER, "xchain", "update_client", "chain-a", steps_to(a, client, a.height)),
        import_tx(b, "chain-a", proof),
    )
    assert codes(later) == [ErrorCode.CLIENT_HALTED] * 2


def test_racing_relayers_do_not_fail_each_other(pair: tuple[CertifiedChain, CertifiedChain]) -> None:
    a, b = pair
    for key in ("r1", "r2", "r3"):
        a.run(a.put("pku", key))
    assert update(b, a, 2).ok
    # Another relayer's steps from 1: the ones below or at the client's height are skipped.
    steps = tuple((a.header_bytes(h), a.certificate_bytes(h), None) for h in (1, 2, 3))
    receipt = b.run_one(b.entity_tx(RELAYER, "xchain", "update_client", "chain-a", steps))
    assert receipt.ok and receipt.events[0] == (
        "xchain.client_updated",
        ("chain-a", 2, 3, a.blocks[3].hash, 2),
    )


# ---------------------------------------------------------------- messages


def test_messages_are_delivered_in_order_exactly_once_and_acknowledged(
    pair: tuple[CertifiedChain, CertifiedChain],
) -> None:
    a, b = pair
    sent_1, proof_1 = commit(a, a.entity_tx("fudan", "xchain", "send", "chain-b", b"claim 1"))
    sent_2, proof_2 = commit(a, a.entity_tx("fudan", "xchain", "send", "chain-b", b"claim 2"))
    hash_1, hash_2 = crypto.sha256(b"claim 1"), crypto.sha256(b"claim 2")
    assert sent_1.events == (("xchain.sent", ("chain-b", 1, "fudan", hash_1)),)
    assert sent_2.events == (("xchain.sent", ("chain-b", 2, "fudan", hash_2)),)
    outbound = xchain_state.list_outbound(a.state, "chain-b")
    assert [(m.seq, m.sender, m.payload_hash, m.acknowledged_height) for m in outbound] == [
        (1, "fudan", hash_1, 0),
        (2, "fudan", hash_2, 0),
    ]
    assert update(b, a).ok
    # Message 2 before message 1: out of order, and nothing is written.
    early = b.run_one(import_tx(b, "chain-a", proof_2))
    assert codes([early]) == [ErrorCode.OUT_OF_ORDER]
    assert xchain_state.get_fact(b.state, "chain-a", bytes.fromhex(proof_2["tx_hash"])) is None
    first = import_tx(b, "chain-a", proof_1)
    delivered = b.run_one(first)
    assert delivered.ok, delivered.message
    assert event_names(delivered) == ["xchain.imported", "xchain.received"]
    assert delivered.events[1] == ("xchain.received", ("chain-a", 1, "fudan", hash_1))
    assert codes(b.run(import_tx(b, "chain-a", proof_1))) == [ErrorCode.ALREADY_IMPORTED]
    second = import_tx(b, "chain-a", proof_2)
    assert b.run_one(second).ok
    inbound = xchain_state.list_inbound(b.state, "chain-a")
    assert [(m.seq, m.sender, m.payload, m.source_tx_hash, m.tx_hash) for m in inbound] == [
        (1, "fudan", b"claim 1", sent_tx_hash(proof_1), first.hash),
        (2, "fudan", b"claim 2", sent_tx_hash(proof_2), second.hash),
    ]
    assert record_of(b, "chain-a").delivered == 2
    # The acknowledgement: A imports B's import that received message 1.
    ack_height, ack_index = locate(b, first)
    assert update(a, b).ok
    acked = a.run_one(import_tx(a, "chain-b", b.compute_proof(ack_height, ack_index)))
    assert acked.ok, acked.message
    assert acked.events[1:] == (("xchain.acknowledged", ("chain-b", 1)),)
    messages = xchain_state.list_outbound(a.state, "chain-b")
    assert [m.acknowledged_height for m in messages] == [a.height, 0]
    assert record_of(a, "chain-b").acknowledged == 1


def sent_tx_hash(proof: dict[str, Any]) -> bytes:
    return bytes.fromhex(proof["tx_hash"])


def test_send_refusals(pair: tuple[CertifiedChain, CertifiedChain]) -> None:
    a, _ = pair
    receipts = a.run(
        a.entity_tx("pku", "xchain", "send", "chain-z", b"x"),
        a.entity_tx("pku", "xchain", "send", "chain-b", b"x" * (xchain_state.PAYLOAD_BYTES_MAX + 1)),
        a.entity_tx("pku", "xchain", "send", "chain-b", "not bytes"),
        a.entity_tx("court-reader", "xchain", "send", "chain-b", b"x"),  # an observer: no submitter role
    )
    assert codes(receipts) == [
        ErrorCode.UNKNOWN_CHAIN,
        ErrorCode.TOO_LARGE,
        ErrorCode.BAD_ARGUMENTS,
        ErrorCode.MISSING_ROLE,
    ]
    assert record_of(a, "chain-b").sent == 0


def test_proof_arguments_round_trip(pair: tuple[CertifiedChain, CertifiedChain]) -> None:
    a, _ = pair
    _, proof = commit(a, a.put("pku", "k"))
    args = xchain_state.encode_proof_args(proof)
    assert xchain_state.decode_proof_args(args) == proof
    assert xchain_state.decode_proof_args(args[:-1]) is None
    assert xchain_state.decode_proof_args((*args[:3], "not bytes", *args[4:])) is None


def test_an_acknowledgement_of_another_message_acknowledges_nothing(
    pair: tuple[CertifiedChain, CertifiedChain], net_b: Network, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """B registered an impostor under A's chain id and received its message 1 (another payload)
    and its message 2 (one A never sent): proven back to A, neither marks A's messages."""
    a, _ = pair
    assert a.run_one(a.entity_tx("fudan", "xchain", "send", "chain-b", b"genuine")).ok
    impostor = CertifiedChain(Network.create(tmp_path_factory.mktemp("impostor"), chain_id="chain-a"))
    assert register(impostor, net_b).ok
    _, proof_1 = commit(impostor, impostor.entity_tx("fudan", "xchain", "send", "chain-b", b"forged"))
    _, proof_2 = commit(impostor, impostor.entity_tx("fudan", "xchain", "send", "chain-b", b"never sent"))
    b = CertifiedChain(net_b)
    assert register(b, impostor.net).ok
    assert update(b, impostor).ok
    receiving = [import_tx(b, "chain-a", proof_1), import_tx(b, "chain-a", proof_2)]
    assert codes(b.run(*receiving)) == [ErrorCode.OK, ErrorCode.OK]
    assert update(a, b).ok
    for tx in receiving:
        receipt = a.run_one(import_tx(a, "chain-b", b.compute_proof(*locate(b, tx))))
        assert receipt.ok and event_names(receipt) == ["xchain.imported"]
    assert [m.acknowledged_height for m in xchain_state.list_outbound(a.state, "chain-b")] == [0]
    assert record_of(a, "chain-b").acknowledged == 0


def test_every_event_is_declared_with_its_arity_and_shape(
    pair: tuple[CertifiedChain, CertifiedChain],
) -> None:
    """The events the module emits (in a run with every kind) are the declared ones, with the
    declared number of attributes, and each has a subscriber shape whose positions exist."""
    from chainnode.app import events

    a, b = pair
    sent, proof = commit(a, a.entity_tx("fudan", "xchain", "send", "chain-b", b"m"))
    assert update(b, a).ok
    delivered = import_tx(b, "chain-a", proof)
    assert b.run_one(delivered).ok
    assert update(a, b).ok
    assert a.run_one(import_tx(a, "chain-b", b.compute_proof(*locate(b, delivered)))).ok
    assert council_decides(b, "remove_chain", ("chain-a",)).ok
    emitted = {
        name: attributes
        for chain in (a, b)
        for receipts in chain.receipts.values()
        for receipt in receipts
        for name, attributes in receipt.events
        if name.startswith("xchain.")
    }
    assert set(emitted) == set(xchain.EVENTS) - {"xchain.client_validators_changed", "xchain.fork_detected"}
    for name, attributes in emitted.items():
        assert len(attributes) == len(xchain.EVENTS[name]), name
    for name, declared in xchain.EVENTS.items():
        shape = events.EVENT_SHAPES[name]
        assert shape.entity is None or shape.entity < len(declared), name
        assert all(index < len(declared) for index in shape.keys), name
    assert events.compute_entity_and_keys("xchain.sent", sent.events[0][1], "fudan") == (
        "fudan",
        ("chain-b", "1"),
    )


def test_the_council_command_takes_a_genesis_for_register_chain_and_a_chain_for_remove_chain(
    net_a: Network, capsys: pytest.CaptureFixture[str]
) -> None:
    from chainnode.cli import governance as cli_governance
    from chainnode.cli.main import parse_arguments

    common = ["council", "propose", "--member-dir", "m", "--node", "http://127.0.0.1:1"]
    genesis_file = str(net_a.directory / "genesis.json")
    args = parse_arguments([*common, "--kind", "register_chain", "--genesis", genesis_file])
    payload = cli_governance._compute_payload(args)
    assert payload == xchain_registry.compute_register_chain_payload(net_a.genesis)
    assert payload[1] == net_a.genesis.compute_hash() and payload[2] == net_a.genesis.validators.encode()
    assert cli_governance._compute_payload(
        parse_arguments([*common, "--kind", "remove_chain", "--chain", "chain-a"])
    ) == ("chain-a",)
    for wrong in (
        ["--kind", "register_chain"],
        ["--kind", "register_chain", "--genesis", genesis_file, "--chain", "chain-a"],
        ["--kind", "remove_chain", "--genesis", genesis_file],
        ["--kind", "add_validator", "--entity", "v", "--chain", "chain-a"],
    ):
        with pytest.raises(SystemExit) as usage:
            parse_arguments([*common, *wrong])
        assert usage.value.code == 2, wrong
    assert "--genesis" in capsys.readouterr().err


def test_the_client_follows_4_to_5_a_key_rotation_and_back_to_4_in_one_sparse_update(
    pair: tuple[CertifiedChain, CertifiedChain], net_a: Network
) -> None:
    a, b = pair
    certificate, key = net_a.issue(
        "beijing", "validator-05", roles=("observer", "validator"), sectors=("government",)
    )
    assert a.run_one(a.zone_tx("beijing", "register", certificate)).ok
    a.add_key("validator-05", key)
    assert council_decides(a, "add_validator", ("validator-05",)).ok
    _, era_5 = commit(a, a.put("pku", "era-5"))
    renewed, new_key = net_a.issue(
        "beijing", "validator-05", roles=("observer", "validator"), sectors=("government",)
    )
    assert a.run_one(a.zone_tx("beijing", "renew", renewed)).ok
    a.add_key("validator-05", new_key)
    _, rotated = commit(a, a.put("pku", "era-rotated"))
    assert council_decides(a, "remove_validator", ("validator-05",)).ok
    _, era_4 = commit(a, a.put("pku", "era-4-again"))
    assert len(a.changes) == 3
    steps = steps_to(a, client_of(b, "chain-a"), a.height)
    # Each change block and the one after it (the last of which is the head): 6 of the chain's blocks.
    assert len(steps) == 6 < a.height
    updated = update(b, a)
    assert updated.ok, updated.message
    assert event_names(updated).count("xchain.client_validators_changed") == 3
    client = client_of(b, "chain-a")
    assert [start for start, _ in client.sets] == [1, *(height + 1 for height in sorted(a.changes))]
    assert client.validators() == governance.get_validator_set(a.state)
    receipts = b.run(*(import_tx(b, "chain-a", proof) for proof in (era_5, rotated, era_4)))
    assert codes(receipts) == [ErrorCode.OK] * 3, [r.message for r in receipts]
