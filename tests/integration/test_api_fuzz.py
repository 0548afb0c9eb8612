"""The API contract, checked from outside: schemathesis reads a live node's `/openapi.json` and
sends every operation requests generated from it (valid ones, and invalid ones the document's
bounds refuse), and every answer must be no 5xx, a documented status, and a body the document's
schema for that status accepts.

The node is the API harness's (a real LevelDB ledger over a real network's genesis, blocks
executed by the real executor, the API on a real socket), holding a little of everything first:
records with a document anchor, a grant and a read marker, unique and editioned assets (minted,
transferred, burned), council proposals, proofs of equivocation and a stable checkpoint, so that
the fuzzer meets answers with content as well as 404s.  The websocket is left out (it is not
request/response; `test_events_ws_fuzz.py` fuzzes it), and the long-polls' `wait_ms` (events and
blocks) are bounded to 50 ms in the copy of the document the fuzzer reads, so that the test stays
short.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chainnode.core import crypto, identity, quorum, types
from chainnode.sdk.assets import Assets
from chainnode.sdk.client import AuthoritySigner, Client, Identity, build_transaction
from chainnode.sdk.records import FileDigest, Records
from consensus.messages import Evidence, Vote
from tests.governance_harness import Network
from tests.integration.api_harness import CHAIN_ID, ServerThread
from tests.integration.test_governance_api import NetworkService

EXAMPLES_PER_OPERATION = 50
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


def _propose(net: Network, client: Client, kind: str, payload: tuple[object, ...]) -> None:
    council = AuthoritySigner.load_council(net.directory / "council" / "miit")
    height = int(client.get_status()["height"])
    tx = build_transaction(
        council,
        chain_id=CHAIN_ID,
        module="governance",
        action="propose",
        args=(kind, payload, height + 50),
        valid_until=height + 100,
    )
    answer = client.wait_for_commit(client.submit(tx), timeout_s=10)
    assert answer["receipt"]["code"] == 0, answer


def _add_content(net: Network, client: Client, directory: Path) -> None:
    """Records (text, bytes, an anchored document), a grant and a read marker; unique and
    editioned assets (one with a URI, one burned); two proposals; all committed."""
    issuer = Assets(client, _register_issuer(net, client, directory / "issuer"))
    owner = Assets(client, Identity.load(net.directory / "entities" / "pku"))
    issuer.create_collection("diplomas", "University Diplomas", "DIP", wait=True)
    issuer.create_collection("tickets", "Tickets", "TIX", kind="editioned", wait=True)
    for token in ("2026-0001", "2026-0002"):
        issuer.mint("diplomas", token, owner="pku", metadata_hash=crypto.sha256(token.encode()), wait=True)
    issuer.set_uri("diplomas", "2026-0001", "https://example.org/diplomas/2026-0001", wait=True)
    issuer.mint("tickets", "row-a", owner="pku", amount=5, metadata_hash=crypto.sha256(b"row-a"), wait=True)
    owner.transfer("diplomas", "2026-0001", "fudan", wait=True)
    owner.burn("diplomas", "2026-0002", wait=True)
    hospital = Records(client, Identity.load(net.directory / "entities" / "pku"))
    hospital.put("report-2026-01", b"first", wait=True)
    hospital.put("report-2026-01", b"\xff\x00 not utf-8", wait=True)
    digest = FileDigest(crypto.sha256(b"scan"), 4, "application/pdf")
    hospital.anchor("scan-2026-01", digest, uri="https://example.org/scan", wait=True)
    hospital.grant("fudan", "report-", "write", int(client.get_status()["height"]) + 1000, wait=True)
    fudan = Records(client, Identity.load(net.directory / "entities" / "fudan"))
    fudan.mark_read("pku", "report-2026-01", 1, wait=True)
    _propose(net, client, "set_params", ((("block_txs_max", 500),),))
    _propose(net, client, "set_params", ((("view_timeout_ms", 1500),),))


def _add_evidence_and_checkpoint(node: ServerThread) -> None:
    """What consensus would add beside the blocks: two proofs of equivocation and a stable
    checkpoint, so that their endpoints answer with content."""
    service = node.service
    keys = service.validator_keys
    head = service.ledger.get_head()
    prepare = types.VoteKind.PREPARE
    for validator in (1, 2):
        votes = []
        for block_hash in (crypto.sha256(b"a"), crypto.sha256(b"b")):
            signed = types.compute_vote_payload(prepare, CHAIN_ID, 0, head.height, block_hash)
            votes.append(Vote(prepare, 0, head.height, block_hash, validator, keys[validator].sign(signed)))
        evidence = Evidence(validator, prepare, 0, head.height, votes[0], votes[1]).encode()
        node.call(service.ledger.put_evidence, head.height, validator, int(prepare), 0, evidence)
    signed = types.compute_vote_payload(types.VoteKind.CHECKPOINT, CHAIN_ID, 0, head.height, head.block_hash)
    signatures = tuple((index, key.sign(signed)) for index, key in enumerate(keys))
    certificate = quorum.CheckpointCertificate(head.height, head.block_hash, signatures)
    node.call(service.ledger.put_checkpoint, head.height, certificate.encode())


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    net = Network.create(tmp_path_factory.mktemp("api-fuzz-net"), chain_id=CHAIN_ID)
    directory = tmp_path_factory.mktemp("api-fuzz-node")
    service = NetworkService(net, directory)
    try:
        with ServerThread(service, commit_interval_ms=20) as running:
            _add_content(net, Client(running.url), tmp_path_factory.mktemp("api-fuzz-ids"))
            _add_evidence_and_checkpoint(running)
            yield running
    finally:
        service.close()


def _load_document(url: str) -> dict[str, Any]:
    """The node's document, as the fuzzer is to read it (see the module docstring)."""
    with urllib.request.urlopen(f"{url}/openapi.json", timeout=10) as answer:
        document: dict[str, Any] = json.load(answer)
    for path in SKIPPED_PATHS:
        del document["paths"][path]
    for path in ("/v1/events", "/v1/blocks/{height}"):
        for parameter in document["paths"][path]["get"]["parameters"]:
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


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as answer:
        document: dict[str, Any] = json.load(answer)
    return document


# Every list of the API with content on the node, and the field that holds its items.
LISTS = (
    ("/v1/evidence", "evidence"),
    ("/v1/zones", "zones"),
    ("/v1/proposals", "proposals"),
    ("/v1/certificates/expiring?within_days=36500", "certificates"),
    ("/v1/collections/diplomas/assets", "assets"),
    ("/v1/collections/diplomas/assets/2026-0001/provenance", "entries"),
    ("/v1/entities/pku/assets", "assets"),
    ("/v1/records/pku", "items"),
    ("/v1/records/pku/report-2026-01/history", "items"),
    (f"/v1/records/pku/scan-2026-01/anchors?sha256={crypto.sha256(b'scan').hex()}", "anchors"),
    ("/v1/records/pku/report-2026-01/reads", "reads"),
    ("/v1/grants/pku", "grants"),
    ("/v1/events", "events"),
)


@pytest.mark.parametrize(("path", "field"), LISTS)
def test_pages_of_one_join_up_to_the_whole_list(node: ServerThread, path: str, field: str) -> None:
    """Walking a list one item per page, from each answer's cursor, gives the whole list once."""
    separator = "&" if "?" in path else "?"
    whole = _get(f"{node.url}{path}{separator}limit=1000")[field]
    assert whole, f"{path} holds nothing to page through"
    cursor_name, next_name = ("from", "next") if path == "/v1/events" else ("cursor", "next_cursor")
    walked: list[Any] = []
    cursor = ""
    for _ in range(len(whole) + 2):
        page = _get(f"{node.url}{path}{separator}limit=1&{cursor_name}={urllib.parse.quote(cursor)}")
        walked.extend(page[field])
        cursor = page[next_name]
        if cursor is None or (path == "/v1/events" and page["caught_up"] and not page[field]):
            break
    # An expiring certificate's expires_in_ms counts down with the node's clock between requests.
    assert _drop_clock(walked) == _drop_clock(whole)


def _drop_clock(items: list[Any]) -> list[Any]:
    return [{name: value for name, value in item.items() if name != "expires_in_ms"} for item in items]
