"""A local multi-validator network on 127.0.0.1, as separate OS processes.

`LocalNetwork` starts, stops and kills the validator processes of a network
directory written by `network init`; the devnet command, the benchmark and
the cluster tests all use it, so they exercise the same code an operator runs
(`chainnode node run --config ...`).

`run_devnet` is the one-command main job: initialise (unless the directory
already holds a network), start every validator, optionally submit N signed
`records.put` transactions from the pilot entities through the public API,
wait until every validator has committed all of them with identical head
hashes and state roots, stop cleanly and return a summary (`DevnetSummary`)
for the command to print.  Progress lines go to a sink the caller gives
(stderr by default), so the command's stdout holds its one answer.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chainnode.core import identity as pki
from chainnode.core import types
from chainnode.core.errors import ChainError, ConfigError
from chainnode.core.statuses import TxStatus
from chainnode.sdk.client import Client, Identity, build_transaction
from chainnode.sdk.errors import ClientError

# Where a long-running job reports what it is doing (a line of text; never the command's answer).
ProgressSink = Callable[[str], None]
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
SUBMIT_BATCH_TXS = 250
RETRY_PAUSE_S = 0.5


class DevnetError(ChainError):
    """A local network that does not come up or does not agree."""

    code = "devnet"


@dataclass(frozen=True, slots=True)
class NodeInfo:
    node_id: str
    config_path: Path
    api_url: str


class LocalNetwork:
    """The validator processes of one network directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        try:
            layout = json.loads((directory / "network.json").read_text())
            self.chain_id: str = layout["chain_id"]
            self.nodes = [
                NodeInfo(
                    item["id"],
                    directory / item["config"]
                    if not Path(item["config"]).is_absolute()
                    else Path(item["config"]),
                    item["api_url"],
                )
                for item in layout["nodes"]
            ]
            self.entity_ids: list[str] = list(layout.get("entities", []))
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ConfigError(f"{directory} does not hold a network (network.json): {error}") from error
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def get_node(self, node_id: str) -> NodeInfo:
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise ConfigError(f"no node {node_id} in {self.directory}")

    def client(self, node_id: str, *, timeout_s: float = 10.0) -> Client:
        return Client(self.get_node(node_id).api_url, timeout_s=timeout_s)

    def start(self, node_id: str) -> None:
        node = self.get_node(node_id)
        assert node_id not in self.processes or self.processes[node_id].poll() is not None
        log_path = node.config_path.parent / "node.log"
        with log_path.open("ab") as log_file:
            self.processes[node_id] = subprocess.Popen(
                [sys.executable, "-m", "cli", "node", "run", "--config", str(node.config_path)],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    def start_all(self) -> None:
        for node in self.nodes:
            self.start(node.node_id)

    def is_running(self, node_id: str) -> bool:
        process = self.processes.get(node_id)
        return process is not None and process.poll() is None

    def wait_ready(self, node_ids: Sequence[str] | None = None, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Wait until each node's API answers; ChainError if one exits or the time runs out."""
        deadline = time.monotonic() + timeout_s
        for node_id in node_ids or [node.node_id for node in self.nodes]:
            client = self.client(node_id, timeout_s=2.0)
            while True:
                process = self.processes.get(node_id)
                if process is not None and process.poll() is not None:
                    raise DevnetError(
                        f"node {node_id} exited with code {process.returncode}; see its node.log"
                    )
                try:
                    client.get_health()
                    break
                except ClientError:
                    if time.monotonic() > deadline:
                        raise DevnetError(
                            f"node {node_id} did not become ready in {timeout_s:.0f} s"
                        ) from None
                    time.sleep(0.1)

    def kill(self, node_id: str) -> None:
        """SIGKILL, as a crash: nothing is flushed, nothing is closed."""
        process = self.processes.pop(node_id, None)
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_S)

    def stop(self, node_id: str) -> int | None:
        """SIGTERM and wait; SIGKILL if the node does not stop in time. Returns the exit code."""
        process = self.processes.pop(node_id, None)
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT_S)
        return process.returncode

    def stop_all(self) -> None:
        for node_id in list(self.processes):
            self.stop(node_id)

    def get_statuses(self, node_ids: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
        statuses = {}
        for node_id in node_ids or [node.node_id for node in self.nodes]:
            try:
                statuses[node_id] = self.client(node_id, timeout_s=2.0).get_status()
            except ClientError:
                continue
        return statuses


# ---------------------------------------------------------------- workload


def load_submitters(directory: Path, entity_ids: Sequence[str]) -> list[Identity]:
    """Identities of the pilot entities that hold the submitter role."""
    identities = []
    for entity_id in entity_ids:
        identity = Identity.load(directory / "entities" / entity_id)
        if "submitter" in pki.read_claims(identity.certificate).roles:
            identities.append(identity)
    if not identities:
        raise ConfigError(f"no submitter entities in {directory / 'entities'}")
    return identities


def build_record_workload(
    identities: Sequence[Identity], *, chain_id: str, count: int, valid_until: int, label: str
) -> list[types.Transaction]:
    """`count` signed records.put transactions, round-robin over the entities."""
    transactions = []
    for sequence in range(count):
        identity = identities[sequence % len(identities)]
        value = json.dumps({"run": label, "sequence": sequence, "kind": "meter-reading"}).encode()
        transactions.append(
            build_transaction(
                identity,
                chain_id=chain_id,
                module="records",
                action="put",
                args=(f"reading-{label}-{sequence:07d}", value),
                valid_until=valid_until,
            )
        )
    return transactions


def submit_all(
    network: LocalNetwork, transactions: Sequence[types.Transaction], *, retry_s_max: float = 300.0
) -> int:
    """Submit in batches, round-robin over the nodes; returns how many were accepted.

    A node whose mempool is full answers `mempool_full` (for a whole batch with 503,
    or per item); those transactions are offered again after a pause, like any client
    honouring Retry-After, for at most `retry_s_max` seconds in all.
    """
    accepted = 0
    clients = [network.client(node.node_id, timeout_s=30.0) for node in network.nodes]
    by_hash = {tx.hash.hex(): tx for tx in transactions}
    waiting = list(transactions)
    deadline = time.monotonic() + retry_s_max
    position = 0
    while waiting:
        retry: list[types.Transaction] = []
        for start in range(0, len(waiting), SUBMIT_BATCH_TXS):
            batch = waiting[start : start + SUBMIT_BATCH_TXS]
            client = clients[position % len(clients)]
            position += 1
            try:
                result = client.submit_batch(batch)
            except ClientError as error:
                if error.code != "mempool_full":
                    raise
                retry.extend(batch)
                continue
            accepted += int(result["accepted"])
            for item in result["results"]:
                error_code = (item.get("error") or {}).get("code")
                if item["status"] == TxStatus.PENDING:
                    continue
                if error_code == "mempool_full" and item.get("hash") in by_hash:
                    retry.append(by_hash[item["hash"]])
                else:
                    print(f"  rejected {item.get('hash')}: {item.get('error')}", file=sys.stderr)
        if retry and time.monotonic() > deadline:
            print(f"  gave up on {len(retry)} transactions refused with mempool_full", file=sys.stderr)
            break
        if retry:
            time.sleep(RETRY_PAUSE_S)
        waiting = retry
    return accepted


def wait_for_agreement(
    network: LocalNetwork,
    *,
    committed_target: dict[str, int],
    timeout_s: float,
    progress: ProgressSink | None = None,
) -> dict[str, dict[str, Any]]:
    """Wait until every node committed its target and all heads (hash and state root) agree;
    each second the heights so far go to `progress`, when given."""
    deadline = time.monotonic() + timeout_s
    last_print = 0.0
    while True:
        statuses = network.get_statuses()
        done = len(statuses) == len(network.nodes) and all(
            statuses[node_id]["committed_txs_since_start"] >= target
            for node_id, target in committed_target.items()
        )
        heads = {(s["height"], s["head_hash"], s["state_root"]) for s in statuses.values()}
        if done and len(heads) == 1:
            return statuses
        now = time.monotonic()
        if progress is not None and now - last_print >= 1.0:
            last_print = now
            summary = "  ".join(f"{node_id}: h={s['height']}" for node_id, s in sorted(statuses.items()))
            progress(f"  waiting for commits ... {summary}")
        if now > deadline:
            raise DevnetError(f"validators did not agree within {timeout_s:.0f} s: {statuses}")
        time.sleep(0.05)


def verify_committed_everywhere(network: LocalNetwork, tx_hashes: Sequence[str]) -> list[str]:
    """Hashes that some node does not report as committed (empty when all are)."""

    def check(item: tuple[str, str]) -> str | None:
        node_id, tx_hash = item
        status = network.client(node_id).get_transaction(tx_hash)
        return None if status.get("status") == TxStatus.COMMITTED else f"{tx_hash} on {node_id}: {status}"

    work = [(node.node_id, tx_hash) for node in network.nodes for tx_hash in tx_hashes]
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        return [problem for problem in pool.map(check, work) if problem is not None]


# ---------------------------------------------------------------- the devnet command


@dataclass(frozen=True, slots=True)
class DevnetSummary:
    """What a devnet run ended with: with `--txs N`, once every validator committed the workload
    (and agrees on the head below); without, when it was stopped (the first validator's head)."""

    directory: Path
    validators: int
    height: int
    head_hash: str  # hex
    state_root: str  # hex
    committed_txs: int  # --txs: each verified committed on every validator; else since the start
    elapsed_s: float  # --txs: from the first submit until every validator committed the last
    api_urls: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """The devnet command's document (stable field names)."""
        return {
            "directory": str(self.directory),
            "validators": self.validators,
            "height": self.height,
            "head_hash": self.head_hash,
            "state_root": self.state_root,
            "committed_txs": self.committed_txs,
            "elapsed_s": round(self.elapsed_s, 3),
            "tx_per_s": round(self.committed_txs / self.elapsed_s, 1) if self.elapsed_s > 0 else None,
            "api_urls": list(self.api_urls),
        }


def print_progress(text: str) -> None:
    """The default progress sink: a line on stderr, so stdout keeps only the command's answer."""
    print(text, file=sys.stderr, flush=True)


def _ensure_network(directory: Path, validators: int, base_port: int, progress: ProgressSink) -> None:
    if (directory / "genesis.json").exists():
        progress(f"using the network in {directory}")
        return
    from chainnode.tools.network import init_network

    progress(f"initialising a {validators}-validator pilot network in {directory}")
    init_network(directory, validators=validators, base_port=base_port)


@dataclass
class _Interrupted:
    flag: bool = False


def run_devnet(
    *,
    validators: int = 4,
    directory: Path | None = None,
    txs: int | None = None,
    base_port: int = 26600,
    progress: ProgressSink = print_progress,
) -> DevnetSummary:
    """Start the network in `directory` (written first if new); with `txs`, run that workload and
    return its summary, else run until SIGINT or SIGTERM and return what the network holds then.
    Progress goes to `progress`; a failure raises `DevnetError` (or another `ChainError`) after
    the validators are stopped."""
    # SIGTERM while the network starts stops it like Ctrl-C does (the validators are stopped below);
    # once it runs, `_run_until_interrupted` turns either signal into a clean stop with a summary.
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    directory = (directory or Path("devnet")).resolve()
    _ensure_network(directory, validators, base_port, progress)
    network = LocalNetwork(directory)
    progress(f"starting {len(network.nodes)} validators ({', '.join(n.node_id for n in network.nodes)})")
    network.start_all()
    try:
        network.wait_ready()
        progress("all validators are up; APIs: " + ", ".join(node.api_url for node in network.nodes))
        if txs is None:
            return _run_until_interrupted(network, progress)
        return _run_workload(network, txs, progress)
    finally:
        network.stop_all()
        progress("validators stopped")


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _run_until_interrupted(network: LocalNetwork, progress: ProgressSink) -> DevnetSummary:
    """Report the heights every 2 s until SIGINT or SIGTERM; then what the first validator that
    answered last holds (its head, and the transactions it committed while the devnet ran)."""
    interrupted = _Interrupted()

    def on_signal(signum: int, frame: Any) -> None:
        interrupted.flag = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    progress("running; press Ctrl-C to stop")
    started = time.monotonic()
    last: dict[str, Any] | None = None
    while not interrupted.flag:
        statuses = network.get_statuses()
        summary = "  ".join(
            f"{node_id}: h={s['height']} peers={len(s['peers'])}" for node_id, s in sorted(statuses.items())
        )
        progress(f"  {summary}")
        if statuses:
            last = statuses[min(statuses)]
        for node in network.nodes:
            if not network.is_running(node.node_id):
                raise DevnetError(f"validator {node.node_id} exited; see its node.log")
        for _ in range(20):
            if interrupted.flag:
                break
            time.sleep(0.1)
    if last is None:
        raise DevnetError("stopped before any validator answered")
    return _summarise(network, last, committed_txs=int(last["committed_txs_since_start"]), started=started)


def _summarise(
    network: LocalNetwork, head: dict[str, Any], *, committed_txs: int, started: float
) -> DevnetSummary:
    return DevnetSummary(
        directory=network.directory,
        validators=len(network.nodes),
        height=int(head["height"]),
        head_hash=str(head["head_hash"]),
        state_root=str(head["state_root"]),
        committed_txs=committed_txs,
        elapsed_s=time.monotonic() - started,
        api_urls=tuple(node.api_url for node in network.nodes),
    )


def _run_workload(network: LocalNetwork, count: int, progress: ProgressSink) -> DevnetSummary:
    identities = load_submitters(network.directory, network.entity_ids)
    statuses = network.get_statuses()
    baseline = {node_id: s["committed_txs_since_start"] for node_id, s in statuses.items()}
    height = max(s["height"] for s in statuses.values())
    label = f"{int(time.time())}"
    progress(f"signing {count} records.put transactions from {len(identities)} pilot entities")
    transactions = build_record_workload(
        identities, chain_id=network.chain_id, count=count, valid_until=height + 100_000, label=label
    )
    started = time.monotonic()
    accepted = submit_all(network, transactions)
    submitted = time.monotonic()
    progress(f"submitted {accepted}/{count} in {submitted - started:.2f} s; waiting for every validator")
    if accepted != count:
        raise DevnetError(f"{count - accepted} of {count} transactions were rejected")
    target = {node_id: baseline[node_id] + count for node_id in baseline}
    statuses = wait_for_agreement(
        network, committed_target=target, timeout_s=120 + count / 50, progress=progress
    )
    summary = _summarise(network, next(iter(statuses.values())), committed_txs=count, started=started)
    problems = verify_committed_everywhere(network, [tx.hash.hex() for tx in transactions])
    if problems:
        raise DevnetError(f"{len(problems)} transactions are not committed everywhere, e.g. {problems[0]}")
    return summary
