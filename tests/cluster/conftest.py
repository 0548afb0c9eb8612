"""Fixtures for cluster tests: a real pilot network of validator processes on 127.0.0.1.

Theory of operation: `running_cluster` initialises a pilot network in a temporary
directory with `chainnode.tools.network.init_network`, starts every validator as its own
OS process through `chainnode.tools.devnet.LocalNetwork` (the same code an operator runs),
waits until every API answers, and always stops the processes afterwards, also when
a test or the start itself fails.  When a test of a module fails, the tail of every
node's `node.log` is attached to the failure report.

Ports: the 2N ports of a network (p2p and API per validator) are a random base in
30000-60000 that was probed free by binding 127.0.0.1 on each of them.  The part of
that range which the kernel hands out as ephemeral ports for outgoing connections is
avoided when there is room outside it: Linux gives connect() even port numbers there,
and a client socket left in TIME_WAIT on such a port makes a later bind of that port
fail for a minute (SO_REUSEADDR does not help, because the client socket did not set
it) -- which would make a validator restart on its own port flaky for reasons that
have nothing to do with the node.  Probing is still racy against other processes, so
a start that fails because a port was taken is retried on fresh ports.

Environment: `environments` gives a node's process extra environment variables (a test
preloads libfaketime into one validator this way).  `LocalNetwork.start` copies
`os.environ` into the child, so the variables are set in `os.environ` only around that
one start; a node that a test starts again later gets the plain environment.

Every wait is a deadline loop that polls the public API with small sleeps: these are
black-box tests of real processes, so there is nothing to await.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import random
import socket
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from chainnode.app.genesis import Genesis, load_genesis
from chainnode.core import quorum, types
from chainnode.core.errors import ChainError
from chainnode.sdk.client import Client, Identity, build_transaction
from chainnode.sdk.errors import ClientError
from chainnode.tools.devnet import LocalNetwork, load_submitters
from chainnode.tools.network import init_network

CHAIN_ID = "pilot-cluster"
VALIDATORS = 4
PORT_RANGE_LOW = 30000
PORT_RANGE_HIGH = 60000
PORT_PROBE_ATTEMPTS_MAX = 200
START_ATTEMPTS_MAX = 3
READY_TIMEOUT_S = 30.0
LOG_TAIL_LINES = 40
POLL_S = 0.05
VALID_UNTIL_MARGIN = 100_000

# The network directory of each test module that runs one, for the failure report hook.
_NETWORK_DIRECTORIES: dict[str, Path] = {}


# ---------------------------------------------------------------- ports


def get_ephemeral_port_range() -> tuple[int, int]:
    """The kernel's range of ephemeral ports for outgoing connections (Linux; else a common default)."""
    try:
        low_text, high_text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low_text), int(high_text)
    except (OSError, ValueError):
        return 32768, 60999


def compute_base_port_candidates(count: int) -> list[int]:
    """Bases in 30000-60000 whose `count` ports avoid the ephemeral range when any such base exists."""
    ephemeral_low, ephemeral_high = get_ephemeral_port_range()
    every_base = range(PORT_RANGE_LOW, PORT_RANGE_HIGH - count + 1)
    outside = [base for base in every_base if base + count - 1 < ephemeral_low or base > ephemeral_high]
    # `init_network` gives validator i the ports base+2i and base+2i+1; an even base keeps
    # the p2p ports even and the API ports odd, which changes nothing but reads better in logs.
    return [base for base in (outside or list(every_base)) if base % 2 == 0]


def is_port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def find_free_base_port(count: int, rng: random.Random) -> int:
    """A random base port whose `count` consecutive ports can all be bound on 127.0.0.1."""
    candidates = compute_base_port_candidates(count)
    for _ in range(PORT_PROBE_ATTEMPTS_MAX):
        base = rng.choice(candidates)
        if all(is_port_free(base + offset) for offset in range(count)):
            return base
    raise RuntimeError(f"no {count} free consecutive ports found in {PORT_PROBE_ATTEMPTS_MAX} attempts")


# ---------------------------------------------------------------- the cluster


@dataclass(frozen=True, slots=True)
class Cluster:
    """A running network of validator processes and what tests need to talk to it."""

    network: LocalNetwork
    directory: Path
    genesis: Genesis
    base_port: int

    @property
    def chain_id(self) -> str:
        return self.genesis.chain_id

    @property
    def node_ids(self) -> list[str]:
        return [node.node_id for node in self.network.nodes]

    def client(self, node_id: str, *, timeout_s: float = 10.0) -> Client:
        return self.network.client(node_id, timeout_s=timeout_s)

    def get_p2p_port(self, node_id: str) -> int:
        return self.base_port + 2 * self.node_ids.index(node_id)

    def load_submitters(self, count: int) -> list[Identity]:
        """`count` distinct pilot entities holding the submitter role."""
        identities = load_submitters(self.directory, self.network.entity_ids)
        assert len(identities) >= count, f"the pilot has only {len(identities)} submitters"
        return identities[:count]


def read_log_tails(directory: Path, lines: int = LOG_TAIL_LINES) -> str:
    parts = []
    for log_path in sorted((directory / "nodes").glob("*/node.log")):
        try:
            text = log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError as error:
            text = [f"(cannot read: {error})"]
        parts.append(f"===== {log_path.parent.name}: last {lines} lines of node.log =====")
        parts.extend(text)
    return "\n".join(parts)


def _is_port_conflict(directory: Path) -> bool:
    return any(
        "cannot listen on" in log_path.read_text(errors="replace")
        for log_path in (directory / "nodes").glob("*/node.log")
    )


@contextlib.contextmanager
def added_environment(extra: Mapping[str, str]) -> Iterator[None]:
    """`os.environ` with `extra` added, restored on exit (for a child process started inside)."""
    saved = {name: os.environ.get(name) for name in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def start_cluster(
    parent: Path,
    rng: random.Random,
    *,
    validators: int = VALIDATORS,
    spare_nodes: int = 0,
    observers: int = 0,
    environments: Mapping[str, Mapping[str, str]] | None = None,
) -> Cluster:
    """Init a network under `parent` on probed ports and start it; retried on a port conflict.

    `spare_nodes` more nodes (`init_network`'s spare validators, not in the genesis set) are
    started too; their peers refuse them until the council adds them.  `observers` observer
    nodes (observer-01, ...) follow the chain without voting.  `environments` maps a node id to
    extra environment variables for that node's process.
    """
    for attempt in range(1, START_ATTEMPTS_MAX + 1):
        base_port = find_free_base_port(2 * (validators + spare_nodes + observers), rng)
        directory = parent / f"network-{attempt}"
        init_network(
            directory,
            validators=validators,
            chain_id=CHAIN_ID,
            base_port=base_port,
            spare_nodes=spare_nodes,
            observers=observers,
        )
        network = LocalNetwork(directory)
        try:
            for node in network.nodes:
                with added_environment((environments or {}).get(node.node_id, {})):
                    network.start(node.node_id)
            network.wait_ready(timeout_s=READY_TIMEOUT_S)
        except ChainError:
            network.stop_all()
            if attempt < START_ATTEMPTS_MAX and _is_port_conflict(directory):
                continue
            raise ChainError(f"the cluster did not start:\n{read_log_tails(directory)}") from None
        return Cluster(network, directory, load_genesis(directory / "genesis.json"), base_port)
    raise AssertionError("unreachable: the last attempt either returns or raises")


@contextlib.contextmanager
def running_cluster(
    parent: Path,
    module_id: str,
    *,
    spare_nodes: int = 0,
    observers: int = 0,
    environments: Mapping[str, Mapping[str, str]] | None = None,
) -> Iterator[Cluster]:
    """A started cluster, stopped on exit whatever happened; its logs go into failure reports."""
    cluster = start_cluster(
        parent, random.Random(), spare_nodes=spare_nodes, observers=observers, environments=environments
    )
    _NETWORK_DIRECTORIES[module_id] = cluster.directory
    try:
        yield cluster
    finally:
        cluster.network.stop_all()
        _NETWORK_DIRECTORIES.pop(module_id, None)


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Four validators shared by the tests of one module."""
    with running_cluster(tmp_path_factory.mktemp("cluster"), request.node.nodeid) as started:
        yield started


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    module = item.getparent(pytest.Module)
    directory = _NETWORK_DIRECTORIES.get(module.nodeid) if module is not None else None
    if directory is not None:
        report.sections.append(("node logs", read_log_tails(directory)))


# ---------------------------------------------------------------- waiting on the API


def wait_until(predicate: Callable[[], bool], what: str, timeout_s: float) -> None:
    """Poll `predicate` until it holds; AssertionError naming `what` past the deadline."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting until {what}")
        time.sleep(POLL_S)


def get_heads(cluster: Cluster, node_ids: Sequence[str]) -> dict[str, tuple[int, str, str]]:
    """(height, head hash, state root) of every node in `node_ids` that answers."""
    statuses = cluster.network.get_statuses(node_ids)
    return {
        node_id: (int(status["height"]), str(status["head_hash"]), str(status["state_root"]))
        for node_id, status in statuses.items()
    }


def wait_for_same_head(cluster: Cluster, node_ids: Sequence[str], timeout_s: float) -> tuple[int, str, str]:
    """Wait until every node in `node_ids` answers with the same height, head hash and state root."""
    heads: dict[str, tuple[int, str, str]] = {}

    def is_agreed() -> bool:
        nonlocal heads
        heads = get_heads(cluster, node_ids)
        return len(heads) == len(node_ids) and len(set(heads.values())) == 1

    try:
        wait_until(is_agreed, f"{list(node_ids)} agree on the head", timeout_s)
    except AssertionError as error:
        raise AssertionError(f"{error}; last heads: {heads}") from None
    return next(iter(heads.values()))


def build_puts(
    cluster: Cluster, identities: Sequence[Identity], count: int, *, label: str, valid_until: int
) -> list[types.Transaction]:
    """`count` records.put transactions round-robin over `identities`, keys unique per `label`."""
    return [
        build_transaction(
            identities[sequence % len(identities)],
            chain_id=cluster.chain_id,
            module="records",
            action="put",
            args=(f"{label}-{sequence:05d}", f"{label} value {sequence}".encode()),
            valid_until=valid_until,
        )
        for sequence in range(count)
    ]


def get_valid_until(cluster: Cluster, node_id: str) -> int:
    return int(cluster.client(node_id).get_status()["height"]) + VALID_UNTIL_MARGIN


def submit_batches(
    cluster: Cluster, transactions: Sequence[types.Transaction], node_ids: Sequence[str], batch_txs: int
) -> None:
    """Submit in batches of `batch_txs`, round-robin over `node_ids`; every item must be accepted."""
    for position, start in enumerate(range(0, len(transactions), batch_txs)):
        batch = transactions[start : start + batch_txs]
        answer = cluster.client(node_ids[position % len(node_ids)], timeout_s=30.0).submit_batch(batch)
        refused = [item for item in answer["results"] if item["status"] != "pending"]
        assert answer["accepted"] == len(batch), f"refused: {refused[:3]}"
        assert [item["hash"] for item in answer["results"]] == [tx.hash.hex() for tx in batch]


def find_uncommitted(
    cluster: Cluster, tx_hashes: Sequence[str], node_ids: Sequence[str], *, require_ok: bool
) -> list[str]:
    """Problems: each (node, tx) that is not committed (with an OK receipt if `require_ok`)."""
    problems = []
    for node_id in node_ids:
        client = cluster.client(node_id)
        for tx_hash in tx_hashes:
            try:
                answer = client.get_transaction(tx_hash)
            except ClientError as error:
                problems.append(f"{tx_hash} on {node_id}: {error}")
                continue
            if answer.get("status") != "committed":
                problems.append(f"{tx_hash} on {node_id}: {answer}")
            elif require_ok and answer["receipt"]["code"] != types.ErrorCode.OK:
                problems.append(f"{tx_hash} on {node_id}: receipt {answer['receipt']}")
    return problems


# ---------------------------------------------------------------- consensus roles and chains


def get_primary_id(cluster: Cluster, view: int) -> str:
    """The validator that is primary of `view`: index view mod n of the genesis validator set."""
    validators = cluster.genesis.validators
    return validators.validators[validators.primary(view)].entity_id


def get_view(cluster: Cluster, node_ids: Sequence[str]) -> int:
    """The highest view that any node in `node_ids` reports (they agree when none is changing view)."""
    statuses = cluster.network.get_statuses(node_ids)
    assert statuses, f"none of {list(node_ids)} answers"
    return max(int(status["view"]) for status in statuses.values())


def get_blocks(cluster: Cluster, node_id: str, height_low: int, height_high: int) -> list[dict[str, Any]]:
    """The API answers of `node_id` for every block in [height_low, height_high]."""
    client = cluster.client(node_id, timeout_s=30.0)
    return [client.get_block(height) for height in range(height_low, height_high + 1)]


class CertifiedChain:
    """The chain that every validator was shown to hold, checked height by height and extended
    after each fault: one block hash per height on every node, each block well formed, chained
    to its parent and carrying (on every node) a commit certificate that verifies against the
    validator set of its height: the genesis set, unless `get_validators` (block -> the set
    that certifies it) says otherwise for a network whose set changes."""

    def __init__(
        self, cluster: Cluster, get_validators: Callable[[types.Block], quorum.ValidatorSet] | None = None
    ) -> None:
        self.cluster = cluster
        self.get_validators = get_validators
        self.block_hashes: list[str] = []  # the hash of the block at height h is at index h - 1
        self.tx_heights: dict[str, int] = {}  # every committed transaction's hash -> its height
        self.genesis_hash = ""

    @property
    def height(self) -> int:
        return len(self.block_hashes)

    def extend(self, node_ids: Sequence[str], height: int) -> None:
        """Check heights above `self.height` up to `height` on every node of `node_ids`."""
        if not self.genesis_hash:
            genesis_hashes = {self.cluster.client(node_id).get_block(0)["hash"] for node_id in node_ids}
            assert len(genesis_hashes) == 1, f"genesis differs: {genesis_hashes}"
            self.genesis_hash = genesis_hashes.pop()
        low = self.height + 1
        with concurrent.futures.ThreadPoolExecutor(len(node_ids)) as pool:
            futures = {
                node_id: pool.submit(get_blocks, self.cluster, node_id, low, height) for node_id in node_ids
            }
            fetched = {node_id: future.result() for node_id, future in futures.items()}
        for offset, block_height in enumerate(range(low, height + 1)):
            answers = {node_id: fetched[node_id][offset] for node_id in node_ids}
            hashes = {node_id: str(answer["hash"]) for node_id, answer in answers.items()}
            assert len(set(hashes.values())) == 1, f"the chains fork at height {block_height}: {hashes}"
            parent_hash = self.block_hashes[-1] if self.block_hashes else self.genesis_hash
            blocks = [
                self._check_block(node_id, answer, block_height, parent_hash)
                for node_id, answer in answers.items()
            ]
            self.block_hashes.append(blocks[0].hash.hex())
            for tx in blocks[0].transactions:
                self.tx_heights[tx.hash.hex()] = block_height

    def _check_block(
        self, node_id: str, answer: dict[str, Any], height: int, parent_hash: str
    ) -> types.Block:
        where = f"block {height} on {node_id}"
        block = types.decode_block(bytes.fromhex(answer["block_encoded"]))
        certificate = quorum.decode_commit_certificate(bytes.fromhex(answer["certificate_encoded"]))
        assert block.hash.hex() == answer["hash"], where
        assert block.height == height, where
        assert block.header.chain_id == self.cluster.chain_id, where
        assert block.header.parent_hash.hex() == parent_hash, where
        assert (certificate.height, certificate.block_hash) == (height, block.hash), where
        validators = (
            self.cluster.genesis.validators if self.get_validators is None else self.get_validators(block)
        )
        problem = certificate.find_problem(self.cluster.chain_id, validators)
        assert problem is None, f"{where}: {problem}"
        return block
