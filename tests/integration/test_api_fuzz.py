"""The API contract, checked from outside: schemathesis reads a live node's `/openapi.json` and
sends every operation requests generated from it (valid ones, and invalid ones the document's
bounds refuse), and every answer must be no 5xx, a documented status, and a body the document's
schema for that status accepts.

The node is the API harness's (a real LevelDB ledger over a real network's genesis, blocks
executed by the real executor, the API on a real socket), holding a little of everything first:
records with a document anchor, a grant and a read marker, an asset collection with a minted and
transferred certificate, a council proposal, so that the fuzzer meets answers with content as
well as 404s.  The websocket is left out (it is not request/response), and the long-poll's
`wait_ms` is bounded to 50 ms in the copy of the document the fuzzer reads, so that the test
stays short.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chainnode.core import crypto, identity
from chainnode.sdk.assets import Assets
from chainnode.sdk.client import AuthoritySigner, Client, Identity, build_transaction
from chainnode.sdk.records import Records
from tests.governance_harness import Network
from tests.integration.api_harness import CHAIN_ID, ServerThread
from tests.integration.test_governance_api import NetworkService

EXAMPLES_PER_OPERATION = 100
WAIT_MS_FUZZ_MAX = 50
SKIPPED_PATHS = {"/v1/events/ws"}  # a websocket: not request/response
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "response_schema_conformance",
    "content_type_conformance",
)
ISSUER = "cert-office"


def _register_issuer(net: Network, client: Client, directory: Path) -> Identity:
    certificate_der, key = net.issue("beijing", ISSUER, roles=("submitter", "issuer"))
    directory.mkdir(parents=True)
    pem = identity.certificate_to_pem(identity.certificate_from_der(certificate_der))
    (directory / "cert.pem").write_bytes(pem)
    (directory / "key.pem").write_bytes(key.to_pem())
    zone = AuthoritySigner.load_zone(net.zone_dir("beijing"))
    tx = build_transaction(
        zone,
        chain_id=CHAIN_ID,
        module="authority",
        action="register",
        args=(certificate_der,),
        valid_until=int(client.get_status()["height"]) + 100,
    )
    answer = client.wait_for_commit(client.submit(tx), timeout_s=10)
    assert answer["receipt"]["code"] == 0, answer
    return Identity.load(directory)


def _add_content(net: Network, client: Client, directory: Path) -> None:
    """Records, a grant, an anchor, a read marker, assets and a proposal, all committed."""
    issuer = Assets(client, _register_issuer(net, client, directory / "issuer"))
    owner = Assets(client, Identity.load(net.directory / "entities" / "pku"))
    issuer.create_collection("diplomas", "University Diplomas", "DIP", wait=True)
    issuer.mint("diplomas", "2026-0001", owner="pku", metadata_hash=crypto.sha256(b"meta"), wait=True)
    owner.transfer("diplomas", "2026-0001", "fudan", wait=True)
    hospital = Records(client, Identity.load(net.directory / "entities" / "pku"))
    hospital.put("report-2026-01", b"first", wait=True)
    hospital.put("report-2026-01", b"\xff\x00 not utf-8", wait=True)
    hospital.grant("fudan", "report-", "write", int(client.get_status()["height"]) + 1000, wait=True)
    fudan = Records(client, Identity.load(net.directory / "entities" / "fudan"))
    fudan.mark_read("pku", "report-2026-01", 1, wait=True)
    council = AuthoritySigner.load_council(net.directory / "council" / "miit")
    tx = build_transaction(
        council,
        chain_id=CHAIN_ID,
        module="governance",
        action="propose",
        args=("set_params", ((("block_txs_max", 500),),), int(client.get_status()["height"]) + 50),
        valid_until=int(client.get_status()["height"]) + 100,
    )
    answer = client.wait_for_commit(client.submit(tx), timeout_s=10)
    assert answer["receipt"]["code"] == 0, answer


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    net = Network.create(tmp_path_factory.mktemp("api-fuzz-net"), chain_id=CHAIN_ID)
    directory = tmp_path_factory.mktemp("api-fuzz-node")
    service = NetworkService(net, directory)
    try:
        with ServerThread(service, commit_interval_ms=20) as running:
            _add_content(net, Client(running.url), tmp_path_factory.mktemp("api-fuzz-ids"))
            yield running
    finally:
        service.close()


def _load_document(url: str) -> dict[str, Any]:
    """The node's document, as the fuzzer is to read it (see the module docstring)."""
    with urllib.request.urlopen(f"{url}/openapi.json", timeout=10) as answer:
        document: dict[str, Any] = json.load(answer)
    for path in SKIPPED_PATHS:
        del document["paths"][path]
    for parameter in document["paths"]["/v1/events"]["get"]["parameters"]:
        if parameter["name"] == "wait_ms":
            parameter["schema"]["maximum"] = WAIT_MS_FUZZ_MAX
    return document


def test_the_node_answers_every_generated_request_as_its_document_says(
    node: ServerThread, tmp_path: Path
) -> None:
    document = _load_document(node.url)
    operations = sum(len(methods) for methods in document["paths"].values())
    assert operations >= 30
    path = tmp_path / "openapi.json"
    path.write_text(json.dumps(document))
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        str(path),
        "--url",
        node.url,
        "--checks",
        ",".join(CHECKS),
        "--phases",
        "examples,coverage,fuzzing",  # coverage: boundary values of every bound the document states
        "--max-examples",
        str(EXAMPLES_PER_OPERATION),
        "--generation-deterministic",  # the same requests every run: a failure reproduces
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--no-color",
    ]
    # From the temporary directory: the fuzzer keeps its example database in its working directory.
    run = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path)
    report = run.stdout + run.stderr
    assert run.returncode == 0, report[-20_000:]
    assert f"Tested: {operations}" in report, report[-5_000:]
