"""Four validators and an observer on five separate network stacks (Linux network namespaces).

Theory of operation.  Each node runs in its own network namespace, as it would on its own
machine, started from a `network init --hosts` network in which three validators are placed
by IPv4 address (listening on 0.0.0.0), the fourth by IPv6 address (listening on ::) and the
observer by DNS name (each namespace's own /etc/hosts, which `ip netns exec` mounts from
/etc/netns/<namespace>/), all of them on the same ports (26600, 26601), which only separate
network stacks allow.  Each namespace has two links:

- data (`eth` side of a veth pair): validators 1 and 2 and the observer on bridge A,
  validators 3 and 4 on bridge B, the bridges joined by a trunk veth pair; the bridges carry
  no address, so the data network is reached only from the namespaces;
- management: a veth pair on a bridge that holds the root namespace's address, through which
  this test calls each node's API (the API listens on 0.0.0.0).  The namespaces have no
  default route, so no p2p message can cross the management network.

Faults are links taken down: one validator's data link (it stalls alone, the others commit;
up again, it catches up) and the trunk (a 2 | 2 partition: no side has a quorum, nothing
commits, nothing forks; up again, everything commits).  Everything is created by the test
under names and a private /24 no interface here uses, and removed in `finally`.  The test
skips, saying why, where namespaces cannot be made (not root, no iproute2, no permission).
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from chainnode.app.genesis import Genesis, load_genesis
from chainnode.app.proof import verify_proof
from chainnode.core import quorum, types
from chainnode.sdk.client import Client, Identity, build_transaction
from chainnode.sdk.errors import ClientError
from chainnode.tools import hosts
from chainnode.tools.devnet import load_submitters
from chainnode.tools.network import init_network
from tests.cluster.conftest import read_log_tails, wait_until

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
VALIDATORS = ("validator-01", "validator-02", "validator-03", "validator-04")
OBSERVER = "observer-01"
NODES = (*VALIDATORS, OBSERVER)
SIDE_A = ("validator-01", "validator-02", OBSERVER)  # bridge A; the rest on bridge B
CUT_OFF = "validator-04"  # not the primary of view 0
IPV6_NODE = "validator-04"  # advertised and bound on IPv6 only
DNS_NAME = "observer-01.pilot.test"  # the observer is advertised by name
NETNS_ETC = Path("/etc/netns")  # `ip netns exec` mounts /etc/netns/<namespace>/* over /etc
P2P_PORT = 26600
API_PORT = 26601
HOST_NUMBERS = {"validator-01": 11, "validator-02": 12, "validator-03": 13, "validator-04": 14, OBSERVER: 21}
IP_TIMEOUT_S = 10.0
READY_TIMEOUT_S = 30.0
COMMIT_TIMEOUT_S = 30.0
HEAL_TIMEOUT_S = 45.0
STALL_S = 4.0  # how long a stalled side must show no commit
STOP_TIMEOUT_S = 10.0
CLIENT_TIMEOUT_S = 2.0
VALID_UNTIL_MARGIN = 100_000


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT_S, check=False)


def _ip_checked(*args: str) -> None:
    result = _ip(*args)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


def find_namespace_problem() -> str | None:
    """Why this machine cannot host the test's namespaces, or None."""
    if sys.platform != "linux":
        return "network namespaces are a Linux feature"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    if os.geteuid() != 0:
        return "creating network namespaces, veth pairs and bridges needs root"
    probe = f"cnprobe{os.getpid() % 100000}"
    result = _ip("netns", "add", probe)
    if result.returncode != 0:
        return f"'ip netns add' is not permitted here: {result.stderr.strip()}"
    _ip("netns", "del", probe)
    return None


def choose_subnet_number() -> int:
    """n such that 10.213.n.0/24 and 10.213.n+1.0/24 (data and management, with the IPv6
    prefixes fd00:213:n::/64 and fd00:213:n+1::/64 beside them) are used by no interface here."""
    used = _ip("-o", "addr").stdout
    for number in range(7, 250, 2):
        prefixes = (
            f"10.213.{number}.",
            f"10.213.{number + 1}.",
            f"fd00:213:{number}:",
            f"fd00:213:{number + 1}:",
        )
        if not any(prefix in used for prefix in prefixes):
            return number
    raise RuntimeError("no free 10.213.x.0/24 pair for the test")


@dataclass
class Lab:
    """The namespaces, bridges and links of one run; `close` removes what was made, in reverse."""

    tag: str
    subnet: int  # see `choose_subnet_number`
    namespaces: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)  # root-namespace devices, deleted at close
    created_netns_etc: bool = False  # /etc/netns did not exist before: removed at close

    def namespace(self, node_id: str) -> str:
        return f"cn{self.tag}-{node_id}"

    def data_link(self, node_id: str) -> str:
        return f"cn{self.tag}d{HOST_NUMBERS[node_id]}"

    @property
    def trunk(self) -> str:
        return f"cn{self.tag}ta"

    def data_address(self, node_id: str) -> str:
        return f"10.213.{self.subnet}.{HOST_NUMBERS[node_id]}"

    def data_address6(self, node_id: str) -> str:
        return f"fd00:213:{self.subnet}::{HOST_NUMBERS[node_id]}"

    def management_address(self, node_id: str) -> str:
        return f"10.213.{self.subnet + 1}.{HOST_NUMBERS[node_id]}"

    def management_address6(self, node_id: str) -> str:
        return f"fd00:213:{self.subnet + 1}::{HOST_NUMBERS[node_id]}"

    def hosts_directory(self, node_id: str) -> Path:
        """Files here replace /etc's inside the namespace under `ip netns exec` (the DNS name)."""
        return NETNS_ETC / self.namespace(node_id)

    def write_host_names(self, names: dict[str, str]) -> None:
        """Every namespace resolves `names` (name -> address) through its own /etc/hosts."""
        lines = "127.0.0.1 localhost\n" + "".join(f"{address} {name}\n" for name, address in names.items())
        self.created_netns_etc = not NETNS_ETC.exists()
        for node_id in NODES:
            directory = self.hosts_directory(node_id)
            directory.mkdir(parents=True, exist_ok=True)
            (directory / "hosts").write_text(lines)

    def _add_link(self, name: str, *args: str) -> None:
        _ip_checked("link", "add", name, *args)
        self.links.append(name)

    def build(self) -> None:
        bridge_a, bridge_b, bridge_m = (f"cn{self.tag}{kind}" for kind in ("a", "b", "m"))
        for bridge in (bridge_a, bridge_b, bridge_m):
            self._add_link(bridge, "type", "bridge")
            _ip_checked("link", "set", bridge, "up")
        _ip_checked("addr", "add", f"10.213.{self.subnet + 1}.1/24", "dev", bridge_m)
        _ip_checked("addr", "add", f"fd00:213:{self.subnet + 1}::1/64", "dev", bridge_m, "nodad")
        self._add_link(self.trunk, "type", "veth", "peer", "name", f"cn{self.tag}tb")
        _ip_checked("link", "set", self.trunk, "master", bridge_a, "up")
        _ip_checked("link", "set", f"cn{self.tag}tb", "master", bridge_b, "up")
        for node_id in NODES:
            namespace = self.namespace(node_id)
            _ip_checked("netns", "add", namespace)
            self.namespaces.append(namespace)
            _ip_checked("-n", namespace, "link", "set", "lo", "up")
            data_bridge = bridge_a if node_id in SIDE_A else bridge_b
            for link, bridge, inner, address, address6 in [
                (
                    self.data_link(node_id),
                    data_bridge,
                    "eth0",
                    self.data_address(node_id),
                    self.data_address6(node_id),
                ),
                (
                    f"cn{self.tag}m{HOST_NUMBERS[node_id]}",
                    bridge_m,
                    "mgmt0",
                    self.management_address(node_id),
                    self.management_address6(node_id),
                ),
            ]:
                self._add_link(link, "type", "veth", "peer", "name", inner, "netns", namespace)
                _ip_checked("link", "set", link, "master", bridge, "up")
                _ip_checked("-n", namespace, "addr", "add", f"{address}/24", "dev", inner)
                # No duplicate address detection: the address is usable at once, not seconds later.
                _ip_checked("-n", namespace, "addr", "add", f"{address6}/64", "dev", inner, "nodad")
                _ip_checked("-n", namespace, "link", "set", inner, "up")

    def find_forwarding_problem(self) -> str | None:
        """None when one namespace reaches another across the trunk (a refused connection is an
        answer); otherwise why not: a host whose bridges filter traffic cannot run this test."""
        probe = (
            "import socket, sys\n"
            "try:\n"
            f"    socket.create_connection(({self.data_address('validator-03')!r}, 9), timeout=3).close()\n"
            "except ConnectionRefusedError:\n"
            "    pass\n"
            "except OSError as error:\n"
            "    sys.exit(str(error))\n"
        )
        result = subprocess.run(
            ["ip", "netns", "exec", self.namespace("validator-01"), sys.executable, "-c", probe],
            capture_output=True,
            text=True,
            timeout=IP_TIMEOUT_S,
            check=False,
        )
        if result.returncode == 0:
            return None
        return (
            "traffic between namespaces does not cross the test's bridges here "
            f"(br_netfilter with a dropping FORWARD chain?): {result.stderr.strip()}"
        )

    def set_link(self, link: str, *, up: bool) -> None:
        _ip_checked("link", "set", link, "up" if up else "down")

    def close(self) -> list[str]:
        """Remove everything; what could not be removed, for the report."""
        leftovers = []
        for node_id in NODES:
            shutil.rmtree(self.hosts_directory(node_id), ignore_errors=True)
            if self.hosts_directory(node_id).exists():
                leftovers.append(str(self.hosts_directory(node_id)))
        if self.created_netns_etc:
            with contextlib.suppress(OSError):
                NETNS_ETC.rmdir()
        for namespace in reversed(self.namespaces):
            if _ip("netns", "del", namespace).returncode != 0:
                leftovers.append(namespace)
        for link in reversed(self.links):
            # A veth pair goes with its namespace end (asynchronously); a bridge and the trunk
            # stay until deleted.  Gone either way is what counts.
            if _ip("link", "del", link).returncode != 0 and _ip("link", "show", link).returncode == 0:
                leftovers.append(link)
        return leftovers


@dataclass
class Nodes:
    """The node processes, each started inside its namespace."""

    lab: Lab
    directory: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, node_id: str) -> None:
        config = self.directory / "nodes" / node_id / "node.toml"
        with (config.parent / "node.log").open("ab") as log_file:
            self.processes[node_id] = subprocess.Popen(
                [
                    *("ip", "netns", "exec", self.lab.namespace(node_id)),
                    *(sys.executable, "-m", "cli", "node", "run", "--config", str(config)),
                ],
                cwd=REPO,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    def client(self, node_id: str) -> Client:
        # The IPv6 node listens on :: only (asyncio's IPv6 sockets are IPv6-only): reach it so.
        host = (
            f"[{self.lab.management_address6(node_id)}]"
            if node_id == IPV6_NODE
            else self.lab.management_address(node_id)
        )
        return Client(f"http://{host}:{API_PORT}", timeout_s=CLIENT_TIMEOUT_S)

    def get_heights(self, node_ids: Sequence[str]) -> dict[str, int]:
        heights = {}
        for node_id in node_ids:
            with contextlib.suppress(ClientError, OSError):
                heights[node_id] = int(self.client(node_id).get_status()["height"])
        return heights

    def get_heads(self, node_ids: Sequence[str]) -> dict[str, tuple[int, str]]:
        heads = {}
        for node_id in node_ids:
            with contextlib.suppress(ClientError, OSError):
                status = self.client(node_id).get_status()
                heads[node_id] = (int(status["height"]), str(status["head_hash"]))
        return heads

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT_S)


@pytest.fixture
def lab() -> Iterator[Lab]:
    problem = find_namespace_problem()
    if problem is not None:
        pytest.skip(f"namespace test skipped: {problem}")
    built = Lab(f"{random.randrange(16**4):04x}", choose_subnet_number())
    try:
        try:
            built.build()
        except RuntimeError as error:
            pytest.skip(f"namespace test skipped: the test network cannot be built here: {error}")
        problem = built.find_forwarding_problem()
        if problem is not None:
            pytest.skip(f"namespace test skipped: {problem}")
        yield built
    finally:
        leftovers = built.close()
        assert not leftovers, f"could not remove {leftovers}"


@pytest.fixture
def nodes(lab: Lab, tmp_path: Path) -> Iterator[Nodes]:
    # An IPv4 address for three validators, an IPv6 address for the fourth, a DNS name (each
    # namespace's /etc/hosts) for the observer; every node on the same two ports.
    lab.write_host_names({DNS_NAME: lab.data_address(OBSERVER)})
    lines = []
    for node_id in NODES:
        if node_id == IPV6_NODE:
            lines.append(f"{node_id}=[{lab.data_address6(node_id)}]:{P2P_PORT}:{API_PORT} listen=::")
        elif node_id == OBSERVER:
            lines.append(f"{node_id}={DNS_NAME}:{P2P_PORT}:{API_PORT}")  # binds 0.0.0.0: a name
        else:
            lines.append(f"{node_id}={lab.data_address(node_id)}:{P2P_PORT}:{API_PORT} listen=0.0.0.0")
    hosts_path = tmp_path / "hosts"
    hosts_path.write_text("\n".join(lines) + "\n")
    directory = tmp_path / "network"
    init_network(
        directory, validators=len(VALIDATORS), observers=1, host_entries=hosts.load_hosts_file(hosts_path)
    )
    started = Nodes(lab, directory)
    try:
        for node_id in NODES:
            started.start(node_id)
        yield started
    finally:
        started.stop_all()


def _build_puts(
    genesis: Genesis, identities: Sequence[Identity], count: int, label: str
) -> list[types.Transaction]:
    return [
        build_transaction(
            identities[sequence % len(identities)],
            chain_id=genesis.chain_id,
            module="records",
            action="put",
            args=(f"{label}-{sequence:04d}", f"{label} {sequence}".encode()),
            valid_until=VALID_UNTIL_MARGIN,
        )
        for sequence in range(count)
    ]


def _submit(nodes: Nodes, node_id: str, transactions: Sequence[types.Transaction]) -> list[str]:
    answer = nodes.client(node_id).submit_batch(transactions)
    assert answer["accepted"] == len(transactions), answer["results"][:3]
    return [tx.hash.hex() for tx in transactions]


def _is_committed(nodes: Nodes, tx_hashes: Sequence[str], node_ids: Sequence[str]) -> bool:
    for node_id in node_ids:
        client = nodes.client(node_id)
        for tx_hash in tx_hashes:
            try:
                if client.get_transaction(tx_hash).get("status") != "committed":
                    return False
            except (ClientError, OSError):
                return False
    return True


def _wait_for_same_head(nodes: Nodes, node_ids: Sequence[str], timeout_s: float) -> int:
    heads: dict[str, tuple[int, str]] = {}

    def is_agreed() -> bool:
        nonlocal heads
        heads = nodes.get_heads(node_ids)
        return len(heads) == len(node_ids) and len(set(heads.values())) == 1

    try:
        wait_until(is_agreed, f"{list(node_ids)} agree on the head", timeout_s)
    except AssertionError as error:
        raise AssertionError(f"{error}; last heads: {heads}") from None
    return next(iter(heads.values()))[0]


def _check_one_certified_chain(nodes: Nodes, genesis: Genesis, height: int) -> None:
    """Every node holds the same block at every height, each with a certificate of the genesis
    validators (the observer's included: it never signs, so it can be in none)."""
    for block_height in range(1, height + 1):
        answers = {node_id: nodes.client(node_id).get_block(block_height) for node_id in NODES}
        hashes = {node_id: answer["hash"] for node_id, answer in answers.items()}
        assert len(set(hashes.values())) == 1, f"the chains fork at height {block_height}: {hashes}"
        for node_id, answer in answers.items():
            certificate = quorum.decode_commit_certificate(bytes.fromhex(answer["certificate_encoded"]))
            problem = certificate.find_problem(genesis.chain_id, genesis.validators)
            assert problem is None, f"block {block_height} on {node_id}: {problem}"


def test_five_network_stacks_commit_stall_partition_and_heal(lab: Lab, nodes: Nodes) -> None:
    try:
        _run_scenario(lab, nodes)
    except AssertionError as error:
        raise AssertionError(f"{error}\n{read_log_tails(nodes.directory)}") from None


def _run_scenario(lab: Lab, nodes: Nodes) -> None:
    genesis = load_genesis(nodes.directory / "genesis.json")
    wait_until(lambda: len(nodes.get_heights(NODES)) == len(NODES), "every API answers", READY_TIMEOUT_S)
    wait_until(
        lambda: set(VALIDATORS) <= set(nodes.client(OBSERVER).get_status()["peers"]),
        "the observer is connected to every validator",
        READY_TIMEOUT_S,
    )
    identities = load_submitters(nodes.directory, _entities(nodes.directory)[:40])[:8]
    assert len(identities) == 8

    # 1. Submitted to the observer, forwarded, committed everywhere, proved by the observer.
    first = _submit(nodes, OBSERVER, _build_puts(genesis, identities, 20, "first"))
    wait_until(
        lambda: _is_committed(nodes, first, NODES), "the first batch commits everywhere", COMMIT_TIMEOUT_S
    )
    for tx_hash in (first[0], first[-1]):
        assert (
            verify_proof(nodes.client(OBSERVER).get_proof(tx_hash), genesis).transaction.hash.hex() == tx_hash
        )

    # 2. One validator cut off stalls alone; the other three (and the observer) go on.
    stalled_at = _wait_for_same_head(nodes, NODES, COMMIT_TIMEOUT_S)
    lab.set_link(lab.data_link(CUT_OFF), up=False)
    others = [node_id for node_id in NODES if node_id != CUT_OFF]
    second = _submit(nodes, "validator-01", _build_puts(genesis, identities, 20, "second"))
    wait_until(
        lambda: _is_committed(nodes, second, others),
        "three validators commit without the fourth",
        COMMIT_TIMEOUT_S,
    )
    assert nodes.get_heights([CUT_OFF]) == {CUT_OFF: stalled_at}

    # 3. Its link back, it catches up.
    lab.set_link(lab.data_link(CUT_OFF), up=True)
    wait_until(
        lambda: _is_committed(nodes, second, [CUT_OFF]), "the cut-off validator catches up", HEAL_TIMEOUT_S
    )
    partitioned_at = _wait_for_same_head(nodes, NODES, COMMIT_TIMEOUT_S)

    # 4. A 2 | 2 partition (the observer with validators 1 and 2): no side has a quorum.
    lab.set_link(lab.trunk, up=False)
    third = _submit(nodes, OBSERVER, _build_puts(genesis, identities, 10, "third-a"))
    third += _submit(nodes, "validator-03", _build_puts(genesis, identities[4:], 10, "third-b"))
    deadline = time.monotonic() + STALL_S
    while time.monotonic() < deadline:
        heights = nodes.get_heights(NODES)
        assert heights == dict.fromkeys(NODES, partitioned_at), (
            f"a side committed while partitioned: {heights}"
        )
        time.sleep(0.2)

    # 5. Healed: everything commits, on one chain.
    lab.set_link(lab.trunk, up=True)
    wait_until(lambda: _is_committed(nodes, third, NODES), "the partition heals and commits", HEAL_TIMEOUT_S)
    height = _wait_for_same_head(nodes, NODES, COMMIT_TIMEOUT_S)
    _check_one_certified_chain(nodes, genesis, height)


def _entities(directory: Path) -> list[str]:
    return sorted(path.name for path in (directory / "entities").iterdir())
