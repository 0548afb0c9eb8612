"""Cross-chain exchange between two separate networks on one machine (issue 14).

Theory of operation.  Two pilot networks are initialised apart (`init_network` twice: chain ids
`xchain-a` and `xchain-b`, their own keys, council and ports) and run as OS processes: four
validators each, and on A one spare validator node that A's council adds later.  A relayer runs
as a real `chainnode relay` process (`python -m cli relay ...`) from A to B, carrying the record
writes of one entity of A (`--module records --entity E`) and every `xchain.send` to B; it keeps
its place in a state file.  The tests share the two networks and run in file order:

1. B's council registers A (`register_chain` with A's genesis hash, genesis validator set and
   genesis state root): one member proposes, M - 2 approve (still open), the M-th executes it;
   A's council registers B the same way (an entity of A may only send to a registered chain).
2. E writes a record on A and sends a message to B; the relayer carries both: B's state holds the
   imported fact with A's height, block hash and the record write's events, and the message is
   delivered as B's inbound message 1 of channel A.  A second relayer, from B to A, carries B's
   delivery back: A's outbound message 1 is acknowledged.
3. Forgeries submitted straight to B by another entity of B are refused with stable codes: the
   record altered (`bad_proof`, tx_inclusion), the certificate re-signed by non-validators
   (`bad_proof`, certificate), a header of a third chain C, certified by C's own validators,
   inside a proof that claims A (`bad_proof`, chain_id) and as a client update (`bad_header`,
   chain_id), a header of A certified by non-validators (`bad_quorum`), and the genuine proof
   again (`already_imported`).
4. N records are written on A; the relayer (with small batches) is SIGKILLed while it carries
   them, its state file is put back to an earlier save (as after a crash between imports and the
   save that records them) and it is started again: each of the N is imported exactly once (one
   fact each, one `xchain.imported` event each on B, none missing), the re-submitted ones
   reported `already_imported`.
5. The B node the relayer submits to stops while records wait: the relayer retries with backoff
   and carries them when the node is back.
6. A's council adds the spare validator; records written on A after the change (certified by the
   five) are carried too, and B's client of A has taken the new set with its proof.
7. `chainnode relay --bench` carries its records and reports imports per second and delays.

Everything is checked through the nodes' HTTP APIs.  Every wait is a deadline loop.
"""

from __future__ import annotations

import collections
import json
import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from chainnode.app.genesis import load_genesis
from chainnode.app.xchain_registry import compute_register_chain_payload
from chainnode.app.xchain_state import compute_args_hash, encode_proof_args
from chainnode.core import crypto, quorum, types
from chainnode.core.errors import ChainError
from chainnode.sdk.client import AuthoritySigner, Client, Identity, build_transaction
from chainnode.sdk.errors import ClientError
from chainnode.sdk.events import read_events
from chainnode.tools.devnet import LocalNetwork
from chainnode.tools.network import init_network
from tests.cluster.conftest import (
    READY_TIMEOUT_S,
    Cluster,
    find_free_base_port,
    read_log_tails,
    wait_until,
)

pytestmark = pytest.mark.cluster

CHAIN_A = "xchain-a"
CHAIN_B = "xchain-b"
CHAIN_C = "xchain-c"
SPARE = "validator-05"
COMMIT_TIMEOUT_S = 30.0
CARRY_TIMEOUT_S = 30.0
VALID_BLOCKS = 10_000
RECORDS_MID_STREAM = 40
RECORDS_AFTER_CHANGE = 5
KILL_AFTER_IMPORTS = 8
RELAY_BATCH = 4
BENCH_RECORDS = 20
RECORDS_TARGET_DOWN = 3
RELAY_TARGET_NODE = 1  # the relayer submits to B's validator-02; the tests read B through validator-03
REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- two networks


def start_network(parent: Path, chain_id: str, spare_nodes: int) -> Cluster:
    """A network of `chain_id` on free ports under `parent`, every node started and ready."""
    rng = random.Random()
    for attempt in range(1, 4):
        base_port = find_free_base_port(2 * (4 + spare_nodes), rng)
        directory = parent / f"{chain_id}-{attempt}"
        init_network(directory, validators=4, chain_id=chain_id, base_port=base_port, spare_nodes=spare_nodes)
        network = LocalNetwork(directory)
        try:
            network.start_all()
            network.wait_ready(timeout_s=READY_TIMEOUT_S)
        except ChainError:
            network.stop_all()
            if attempt < 3 and "cannot listen on" in read_log_tails(directory, 200):
                continue
            raise
        return Cluster(network, directory, load_genesis(directory / "genesis.json"), base_port)
    raise AssertionError("unreachable: the last attempt returns or raises")


class RelayProcess:
    """`chainnode relay` from A to B as its own OS process, with its log beside its state file."""

    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        exchange = self.exchange
        self.starts += 1
        with (exchange.work / "relay.log").open("ab") as log_file:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "cli",
                    "relay",
                    "--from",
                    exchange.a.network.nodes[0].api_url,
                    "--to",
                    exchange.b.network.nodes[RELAY_TARGET_NODE].api_url,
                    "--identity",
                    str(exchange.relayer_directory),
                    "--module",
                    "records",
                    "--entity",
                    exchange.writer.entity_id,
                    "--state",
                    str(exchange.state_path),
                    "--batch",
                    str(RELAY_BATCH),
                    "--wait-ms",
                    "200",
                    "--json",
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=REPO,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> int | None:
        """SIGTERM and wait: the relayer saves and exits 0."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            return None

    def assert_running(self) -> None:
        assert self.process is not None and self.process.poll() is None, self.read_log()

    def read_log(self, since: int = 0) -> str:
        """The log from byte `since` on (its last 6000 characters)."""
        path = self.exchange.work / "relay.log"
        if not path.exists():
            return "(no relay log)"
        with path.open("rb") as log_file:
            log_file.seek(since)
            return log_file.read().decode(errors="replace")[-6000:]

    def get_log_size(self) -> int:
        path = self.exchange.work / "relay.log"
        return path.stat().st_size if path.exists() else 0


@dataclass
class Exchange:
    """The two running networks, the entities the tests act as, and the relayer."""

    a: Cluster
    b: Cluster
    work: Path
    writer: Identity  # an entity of A whose record writes are carried
    back_relayer_id: str  # an entity of A that signs the acknowledgements carried back from B
    relayer_directory: Path  # an entity of B that signs the relayer's transactions
    forger: Identity  # another entity of B, submitting forgeries by hand
    state_path: Path
    relay: RelayProcess | None = None
    record_tx: str = ""  # the first record carried (test 2), reused by the forgeries (test 3)
    carried_before_restart: int = 0  # imports the restarted relayer must find done (test 4)

    @property
    def client_a(self) -> Client:
        return self.a.client("validator-01", timeout_s=COMMIT_TIMEOUT_S)

    @property
    def client_b(self) -> Client:
        return self.b.client("validator-03", timeout_s=COMMIT_TIMEOUT_S)  # not the relayer's node


@pytest.fixture(scope="module")
def exchange(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exchange]:
    work = tmp_path_factory.mktemp("xchain")
    a = start_network(work, CHAIN_A, spare_nodes=1)
    try:
        b = start_network(work, CHAIN_B, spare_nodes=0)
    except BaseException:
        a.network.stop_all()
        raise
    submitters_a = [Identity.load(a.directory / "entities" / entity_id) for entity_id in submitter_ids(a)]
    relayer_id, forger_id = submitter_ids(b)[:2]
    started = Exchange(
        a=a,
        b=b,
        work=work,
        writer=submitters_a[0],
        back_relayer_id=submitters_a[1].entity_id,
        relayer_directory=b.directory / "entities" / relayer_id,
        forger=Identity.load(b.directory / "entities" / forger_id),
        state_path=work / "relay-state.json",
    )
    started.relay = RelayProcess(started)
    try:
        yield started
    finally:
        started.relay.stop()
        a.network.stop_all()
        b.network.stop_all()


def submitter_ids(cluster: Cluster) -> list[str]:
    from chainnode.tools.devnet import load_submitters

    return [identity.entity_id for identity in load_submitters(cluster.directory, cluster.network.entity_ids)]


# ---------------------------------------------------------------- transactions and councils


def commit(client: Client, transactions: Sequence[types.Transaction]) -> list[dict[str, Any]]:
    """Submit in one batch and wait for every commit; the receipts, in order."""
    answer = client.submit_batch(transactions)
    assert answer["accepted"] == len(transactions), answer
    return [
        client.wait_for_commit(tx.hash.hex(), timeout_s=COMMIT_TIMEOUT_S)["receipt"] for tx in transactions
    ]


def build(
    signer: Identity | AuthoritySigner, cluster: Cluster, module: str, action: str, args: Any
) -> types.Transaction:
    height = int(cluster.client("validator-01").get_status()["height"])
    return build_transaction(
        signer,
        chain_id=cluster.chain_id,
        module=module,
        action=action,
        args=args,
        valid_until=height + VALID_BLOCKS,
    )


def run_council_proposal(cluster: Cluster, kind: str, payload: tuple[Any, ...]) -> int:
    """The first M members of the council pass `kind(payload)`: one proposes, M - 2 approve and the
    proposal must stay open, the M-th approval executes it.  The height it executed at."""
    members = cluster.genesis.council[: cluster.genesis.council_threshold]
    council = [
        AuthoritySigner.load_council(cluster.directory / "council" / member.member_id, member.member_id)
        for member in members
    ]
    client = cluster.client("validator-01", timeout_s=COMMIT_TIMEOUT_S)
    expires_at = int(client.get_status()["height"]) + VALID_BLOCKS
    (proposed,) = commit(
        client, [build(council[0], cluster, "governance", "propose", (kind, payload, expires_at))]
    )
    assert proposed["code"] == 0, proposed
    proposal_id = next(e["attributes"][0] for e in proposed["events"] if e["name"] == "governance.proposed")
    votes = [build(member, cluster, "governance", "vote", (proposal_id, True)) for member in council[1:-1]]
    assert all(receipt["code"] == 0 for receipt in commit(client, votes))
    proposal = client.get_proposal(proposal_id)
    assert proposal is not None and proposal["status"] == "open", proposal
    (last,) = commit(client, [build(council[-1], cluster, "governance", "vote", (proposal_id, True))])
    assert last["code"] == 0, last
    proposal = client.get_proposal(proposal_id)
    assert proposal is not None and proposal["status"] == "executed", proposal
    return int(proposal["closed_height"])


def write_records(exchange: Exchange, label: str, count: int) -> list[str]:
    """`count` record writes by the writer on A, committed; their hashes in commit order."""
    transactions = [
        build(
            exchange.writer,
            exchange.a,
            "records",
            "put",
            (f"{label}-{index:03d}", f"{label} {index}".encode()),
        )
        for index in range(count)
    ]
    receipts = commit(exchange.client_a, transactions)
    assert all(receipt["code"] == 0 for receipt in receipts), receipts
    return [tx.hash.hex() for tx in transactions]


def read_relay_report(log: str) -> dict[str, Any]:
    """The document the relayer printed when it stopped (the last JSON object in its log)."""
    start = log.rindex("\n{\n") + 1
    return json.loads(log[start : log.index("\n}", start) + 2])  # type: ignore[no-any-return]


# ---------------------------------------------------------------- B's view of A


def get_imported_events(exchange: Exchange) -> collections.Counter[str]:
    """How many `xchain.imported` events of chain A name each source transaction, on B."""
    counts: collections.Counter[str] = collections.Counter()
    for event in read_events(exchange.client_b, module="xchain"):
        if event["name"] == "xchain.imported" and event["attributes"][0] == CHAIN_A:
            counts[str(event["attributes"][2]["hex"])] += 1
    return counts


def get_fact(exchange: Exchange, tx_hash: str) -> dict[str, Any] | None:
    """B's imported fact of A's transaction `tx_hash`, or None."""
    try:
        return exchange.client_b.send("GET", f"/v1/xchain/chains/{CHAIN_A}/facts/{tx_hash}").value  # type: ignore[no-any-return]
    except ClientError as error:
        if error.status == 404:
            return None
        raise


def wait_for_facts(exchange: Exchange, tx_hashes: Sequence[str], what: str) -> None:
    def are_all_imported() -> bool:
        exchange.relay.assert_running() if exchange.relay else None
        counts = get_imported_events(exchange)
        return all(counts[tx_hash] >= 1 for tx_hash in tx_hashes)

    wait_until(are_all_imported, what, CARRY_TIMEOUT_S)


# ---------------------------------------------------------------- forgeries


def sign_header(header: types.BlockHeader, keys: Sequence[crypto.SigningKey]) -> quorum.CommitCertificate:
    """A commit certificate for `header` (view 0) signed by `keys` as validators 0, 1, ..."""
    block_hash = header.compute_hash()
    payload = types.compute_vote_payload(
        types.VoteKind.COMMIT, header.chain_id, header.view, header.height, block_hash
    )
    return quorum.CommitCertificate(
        header.height,
        header.view,
        block_hash,
        tuple((index, key.sign(payload)) for index, key in enumerate(keys)),
    )


def submit_forgery(exchange: Exchange, action: str, args: tuple[Any, ...]) -> tuple[str, str]:
    """(code name, message) of a forged `xchain.<action>` sent to B by the forger: its receipt's,
    or the admission's refusal."""
    tx = build(exchange.forger, exchange.b, "xchain", action, args)
    client = exchange.client_b
    try:
        client.submit(tx)
    except ClientError as error:
        return error.code, error.message
    receipt = client.wait_for_commit(tx.hash.hex(), timeout_s=COMMIT_TIMEOUT_S)["receipt"]
    return str(receipt["code_name"]), str(receipt["message"])


def make_third_chain(exchange: Exchange) -> tuple[quorum.ValidatorSet, list[crypto.SigningKey]]:
    """Chain C: a network that is initialised (its own genesis and validator keys) but never run."""
    directory = exchange.work / CHAIN_C
    init_network(directory, validators=4, chain_id=CHAIN_C, base_port=20000)
    genesis = load_genesis(directory / "genesis.json")
    keys = [
        crypto.SigningKey.load(directory / "nodes" / v.entity_id / "key.pem")
        for v in genesis.validators.validators
    ]
    assert [key.public_key for key in keys] == [v.public_key for v in genesis.validators.validators]
    return genesis.validators, keys


# ---------------------------------------------------------------- the tests


def compute_register_payload(cluster: Cluster) -> tuple[Any, ...]:
    """`register_chain`'s payload for `cluster` from its genesis file (as `council propose
    --genesis` builds it), whose hash must be the one the running chain reports."""
    payload = compute_register_chain_payload(load_genesis(cluster.directory / "genesis.json"))
    assert cluster.client("validator-01").get_block(0)["hash"] == payload[1].hex()
    return payload


def test_each_council_registers_the_other_chain(exchange: Exchange) -> None:
    """B registers A (so B can import from A); A registers B (so A's entities may send to B)."""
    for registrar, counterparty in ((exchange.b, exchange.a), (exchange.a, exchange.b)):
        height = run_council_proposal(registrar, "register_chain", compute_register_payload(counterparty))
        client = registrar.client("validator-01")
        events = [e for e in read_events(client, module="xchain") if e["name"] == "xchain.chain_registered"]
        assert [(e["height"], e["attributes"][0]) for e in events] == [(height, counterparty.chain_id)], (
            events
        )


def test_relayer_carries_a_record_and_a_message_from_a_to_b(exchange: Exchange) -> None:
    assert exchange.relay is not None
    exchange.relay.start()
    (record_tx,) = write_records(exchange, "first", 1)
    (sent,) = commit(
        exchange.client_a, [build(exchange.writer, exchange.a, "xchain", "send", (CHAIN_B, b"hello B"))]
    )
    assert sent["code"] == 0, sent
    send_tx = next(e for e in read_events(exchange.client_a, module="xchain") if e["name"] == "xchain.sent")[
        "tx_hash"
    ]
    wait_for_facts(exchange, [record_tx, send_tx], "the record and the message are imported on B")
    exchange.record_tx = record_tx

    committed = exchange.client_a.get_transaction(record_tx)
    block = exchange.client_a.get_block(int(committed["height"]), hashes_only=True)
    fact = get_fact(exchange, record_tx)
    assert fact is not None
    assert (fact["height"], fact["block_hash"], fact["tx_hash"]) == (
        committed["height"],
        block["hash"],
        record_tx,
    ), fact
    assert (fact["module"], fact["action"], fact["signer"]) == (
        "records",
        "put",
        exchange.writer.entity_id,
    ), fact
    # What the record write carried: its arguments (key and value) by hash, and its events.
    source_tx = types.decode_transaction(bytes.fromhex(exchange.client_a.get_proof(record_tx)["transaction"]))
    assert fact["args_hash"] == compute_args_hash(source_tx.args).hex(), fact
    assert fact["receipt"]["events"] == committed["receipt"]["events"], fact
    received = [e for e in read_events(exchange.client_b, module="xchain") if e["name"] == "xchain.received"]
    assert [(e["attributes"][0], e["attributes"][1], e["attributes"][2]) for e in received] == [
        (CHAIN_A, 1, exchange.writer.entity_id)
    ], received


def test_a_relayer_back_from_b_acknowledges_the_message_on_a(exchange: Exchange) -> None:
    """B's import that delivered message 1 of A, carried back to A by a relayer from B to A that
    runs until caught up, marks the message acknowledged on A."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli",
            "relay",
            "--from",
            exchange.b.network.nodes[0].api_url,
            "--to",
            exchange.a.network.nodes[1].api_url,
            "--identity",
            str(exchange.a.directory / "entities" / exchange.back_relayer_id),
            "--state",
            str(exchange.work / "relay-back-state.json"),
            "--until-caught-up",
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert (report["imported"], report["stopped"]) == (1, "caught_up"), report
    outbound = exchange.client_a.send("GET", f"/v1/xchain/chains/{CHAIN_B}/outbound").value
    assert [(m["seq"], m["acknowledged"]) for m in outbound["messages"]] == [(1, True)], outbound


def test_forged_imports_and_headers_are_refused(exchange: Exchange) -> None:
    assert exchange.record_tx, "test 2 carried a record"
    genuine = exchange.client_a.get_proof(exchange.record_tx)
    header = types.decode_block_header(bytes.fromhex(genuine["block_header"]))
    outsiders = [crypto.SigningKey.generate() for _ in range(4)]
    outcomes: dict[str, tuple[str, str]] = {}

    # The record altered: another value under the same signer, key and nonce.
    source_tx = types.decode_transaction(bytes.fromhex(genuine["transaction"]))
    altered = types.Transaction.create(
        outsiders[0],
        chain_id=source_tx.chain_id,
        signer=source_tx.signer,
        nonce=source_tx.nonce,
        valid_until=source_tx.valid_until,
        module=source_tx.module,
        action=source_tx.action,
        args=(source_tx.args[0], b"a value never written"),
    )
    forged = {**genuine, "transaction": altered.encoded.hex(), "tx_hash": altered.hash.hex()}
    outcomes["altered record"] = submit_forgery(exchange, "import", (CHAIN_A, encode_proof_args(forged)))

    # The genuine header with a certificate signed by four keys that are not A's validators.
    forged = {**genuine, "commit_certificate": sign_header(header, outsiders).encode().hex()}
    outcomes["non-validator certificate"] = submit_forgery(
        exchange, "import", (CHAIN_A, encode_proof_args(forged))
    )

    # A header of chain C, certified by C's own validators, in a proof that claims chain A.
    c_validators, c_keys = make_third_chain(exchange)
    c_header = replace(header, chain_id=CHAIN_C, validator_set_hash=c_validators.compute_hash())
    forged = {
        **genuine,
        "block_header": c_header.encode().hex(),
        "block_hash": c_header.compute_hash().hex(),
        "commit_certificate": sign_header(c_header, c_keys).encode().hex(),
    }
    outcomes["third-chain proof"] = submit_forgery(exchange, "import", (CHAIN_A, encode_proof_args(forged)))

    # Client updates: C's certified header offered as A's; a header of A far ahead signed by outsiders.
    ahead = replace(header, height=header.height + 1000)
    c_ahead = replace(c_header, height=header.height + 1000)
    outcomes["third-chain header"] = submit_forgery(
        exchange,
        "update_client",
        (CHAIN_A, ((c_ahead.encode(), sign_header(c_ahead, c_keys).encode(), None),)),
    )
    outcomes["non-validator header"] = submit_forgery(
        exchange,
        "update_client",
        (CHAIN_A, ((ahead.encode(), sign_header(ahead, outsiders).encode(), None),)),
    )
    # The genuine proof, once more.
    outcomes["replay"] = submit_forgery(exchange, "import", (CHAIN_A, encode_proof_args(genuine)))

    codes = {what: (code, message.split(":")[0]) for what, (code, message) in outcomes.items()}
    assert codes == {
        "altered record": ("bad_proof", "tx_inclusion"),
        "non-validator certificate": ("bad_proof", "certificate"),
        "third-chain proof": ("bad_proof", "chain_id"),
        "third-chain header": ("bad_header", "chain_id"),
        "non-validator header": ("bad_quorum", "quorum"),
        "replay": ("already_imported", outcomes["replay"][1].split(":")[0]),
    }, outcomes
    assert get_imported_events(exchange)[exchange.record_tx] == 1


def test_relayer_killed_mid_stream_loses_and_duplicates_nothing(exchange: Exchange) -> None:
    """SIGKILL while carrying; the state file is also put back to an earlier save, as if the crash
    had come between imports and the save that records them: those come back `already_imported`."""
    relay = exchange.relay
    assert relay is not None
    before = get_imported_events(exchange)
    tx_hashes = write_records(exchange, "stream", RECORDS_MID_STREAM)

    def count_carried() -> int:
        counts = get_imported_events(exchange)
        return sum(1 for tx_hash in tx_hashes if counts[tx_hash])

    wait_until(lambda: count_carried() >= 1, "the relayer carries the stream", CARRY_TIMEOUT_S)
    earlier_state = exchange.state_path.read_bytes()  # replaced atomically: always whole
    carried_at_save = count_carried()
    wait_until(
        lambda: count_carried() >= carried_at_save + KILL_AFTER_IMPORTS,
        "the relayer is mid-stream",
        CARRY_TIMEOUT_S,
    )
    relay.kill()
    carried_at_kill = count_carried()
    assert carried_at_kill < RECORDS_MID_STREAM, "the relayer finished before it was killed: not mid-stream"
    exchange.state_path.write_bytes(earlier_state)
    relay.start()
    wait_for_facts(exchange, tx_hashes, f"all {RECORDS_MID_STREAM} records are imported after the restart")

    counts = get_imported_events(exchange)
    assert [counts[tx_hash] for tx_hash in tx_hashes] == [1] * RECORDS_MID_STREAM, counts
    assert {tx_hash: count for tx_hash, count in counts.items() if tx_hash not in tx_hashes} == dict(before)
    missing = [tx_hash for tx_hash in tx_hashes if get_fact(exchange, tx_hash) is None]
    assert missing == []
    exchange.carried_before_restart = carried_at_kill - carried_at_save
    print(
        f"killed after {carried_at_kill} of {RECORDS_MID_STREAM} imports, state put back to {carried_at_save}"
    )


def test_relayer_rides_out_its_destination_node_going_down(exchange: Exchange) -> None:
    """The node the relayer submits to (B's validator-02) stops while records wait: the relayer
    keeps retrying with backoff (it does not exit) and carries them once the node is back."""
    relay = exchange.relay
    assert relay is not None
    target = exchange.b.network.nodes[RELAY_TARGET_NODE].node_id
    log_size = relay.get_log_size()
    exchange.b.network.stop(target)
    tx_hashes = write_records(exchange, "target-down", RECORDS_TARGET_DOWN)

    def is_retrying() -> bool:
        relay.assert_running()
        return "relay round failed" in relay.read_log(log_size)

    wait_until(is_retrying, "the relayer retries", CARRY_TIMEOUT_S)
    assert [tx_hash for tx_hash in tx_hashes if get_imported_events(exchange)[tx_hash]] == []
    exchange.b.network.start(target)
    exchange.b.network.wait_ready([target], timeout_s=READY_TIMEOUT_S)
    wait_for_facts(exchange, tx_hashes, "the records are carried once the node is back")
    assert [get_imported_events(exchange)[tx_hash] for tx_hash in tx_hashes] == [1] * RECORDS_TARGET_DOWN


def test_exchange_continues_after_a_changes_its_validator_set(exchange: Exchange) -> None:
    client_a = exchange.client_a
    assert client_a.get_validators()["size"] == 4
    changed_at = run_council_proposal(exchange.a, "add_validator", (SPARE,))
    assert client_a.get_validators(changed_at + 1)["size"] == 5
    new_set_hash = client_a.get_validators(changed_at + 1)["hash"]
    tx_hashes = write_records(exchange, "after-change", RECORDS_AFTER_CHANGE)
    heights = [int(client_a.get_transaction(tx_hash)["height"]) for tx_hash in tx_hashes]
    assert min(heights) > changed_at
    wait_for_facts(exchange, tx_hashes, "records certified by A's new set are imported on B")

    changes = [
        e["attributes"]
        for e in read_events(exchange.client_b, module="xchain")
        if e["name"] == "xchain.client_validators_changed"
    ]
    assert [(c[0], c[1], c[2]["hex"]) for c in changes] == [(CHAIN_A, changed_at + 1, new_set_hash)], changes
    chain = exchange.client_b.send("GET", f"/v1/xchain/chains/{CHAIN_A}").value
    assert chain["client"]["validator_changes"] == [changed_at + 1], chain
    assert chain["client"]["validator_set_hash"] == new_set_hash, chain
    assert chain["client"]["height"] >= max(heights), chain
    assert exchange.relay is not None
    assert exchange.relay.stop() == 0, exchange.relay.read_log()
    report = read_relay_report(exchange.relay.read_log())
    assert report["stopped"] == "signal", report
    # The restarted relayer re-submitted what its state did not record and found it imported.
    assert report["already_imported"] >= exchange.carried_before_restart >= KILL_AFTER_IMPORTS, report


def test_relay_bench_reports_its_figures(exchange: Exchange) -> None:
    """`chainnode relay --bench` on the two networks: every record carried, and the figures."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli",
            "relay",
            "--bench",
            str(BENCH_RECORDS),
            "--writer",
            str(exchange.a.directory / "entities" / exchange.writer.entity_id),
            "--from",
            exchange.a.network.nodes[2].api_url,
            "--to",
            exchange.b.network.nodes[3].api_url,
            "--identity",
            str(exchange.relayer_directory),
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["records"] == BENCH_RECORDS, report
    assert report["imports_per_s"] > 0, report
    assert report["delay_records"] == BENCH_RECORDS, report
    assert 0 < report["delay_p50_ms"] <= report["delay_p99_ms"] <= report["delay_max_ms"], report
