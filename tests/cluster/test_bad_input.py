"""Bad input against a running validator: each gets a clear refusal, and the node keeps working.

HTTP: every malformed or invalid submission is answered with a 4xx status and a stable
error code, the node stays healthy, and a valid transaction submitted afterwards commits.
P2P: clients without a certificate or with one from another root are refused inside TLS
(counted in the node's `tls_refused` metric); a certificate that chains to the root but
breaks the zone rule, or belongs to an entity without the validator or observer role, is
refused at the application handshake with close code 4403.
"""

from __future__ import annotations

import http.client
import json
import select
import socket
import ssl
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509

from chainnode.core import codec, crypto, identity, types
from chainnode.core.crypto import SigningKey
from chainnode.sdk.client import Identity
from p2p.tls import create_client_context
from p2p.transport import CLOSE_CODE_REFUSED, Hello, encode_hello
from tests.cluster.conftest import Cluster, find_uncommitted, get_valid_until, wait_for_same_head, wait_until
from tests.factories import build_put, create_pki, make_tx
from tests.helpers import NodeFiles, is_refused_at_tls, raw_hello

pytestmark = pytest.mark.cluster

TARGET = "validator-02"  # the node under attack; not the primary of view 0
IMPERSONATED = "validator-03"  # whose key the forged certificates carry
COMMIT_TIMEOUT_S = 30.0
HTTP_TIMEOUT_S = 10.0
OVERSIZE_BODY_BYTES = 40 * 1024 * 1024  # the API refuses bodies over 32 MiB
SEND_CHUNK_BYTES = 256 * 1024


# ---------------------------------------------------------------- HTTP helpers


def get_api_address(cluster: Cluster, node_id: str) -> tuple[str, int]:
    host_port = cluster.network.get_node(node_id).api_url.removeprefix("http://")
    host, port = host_port.rsplit(":", 1)
    return host, int(port)


def post_raw(cluster: Cluster, body: bytes, *, path: str = "/v1/transactions") -> tuple[int, Any]:
    """POST `body` as JSON to TARGET; the status and the decoded JSON answer."""
    host, port = get_api_address(cluster, TARGET)
    connection = http.client.HTTPConnection(host, port, timeout=HTTP_TIMEOUT_S)
    try:
        connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def post_tx(cluster: Cluster, tx_bytes: bytes) -> tuple[int, Any]:
    return post_raw(cluster, json.dumps({"tx": tx_bytes.hex()}).encode())


def get_error_code(answer: Any) -> str:
    return str(answer["error"]["code"])


def assert_node_healthy(cluster: Cluster) -> None:
    assert cluster.network.is_running(TARGET)
    assert cluster.client(TARGET).get_health() == {"status": "ok"}


def make_put(
    cluster: Cluster, signer: Identity, key: str, *, chain_id: str | None = None
) -> types.Transaction:
    return build_put(
        signer,
        key,
        b"bad input test",
        chain_id=cluster.chain_id if chain_id is None else chain_id,
        valid_until=get_valid_until(cluster, TARGET),
    )


def commit_one_valid_transaction(cluster: Cluster, key: str) -> str:
    """A valid transaction through TARGET commits with an OK receipt on every node."""
    (signer,) = cluster.load_submitters(1)
    tx = make_put(cluster, signer, key)
    return confirm_commit(cluster, tx)


def confirm_commit(cluster: Cluster, tx: types.Transaction) -> str:
    tx_hash = cluster.client(TARGET).submit(tx)
    answer = cluster.client(TARGET).wait_for_commit(tx_hash, timeout_s=COMMIT_TIMEOUT_S)
    assert answer["receipt"]["code"] == types.ErrorCode.OK
    wait_for_same_head(cluster, cluster.node_ids, COMMIT_TIMEOUT_S)
    assert find_uncommitted(cluster, [tx_hash], cluster.node_ids, require_ok=True) == []
    return tx_hash


# ---------------------------------------------------------------- HTTP tests


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"this is not json", 400, "malformed_json"),
        (b"\xff\xfe\x00 binary", 400, "malformed_json"),
        (b'["tx", "00"]', 400, "bad_request"),
        (b'{"transaction": "00"}', 400, "bad_request"),
        (b'{"tx": "00", "txs": ["00"]}', 400, "bad_request"),
        (b'{"tx": 12345}', 400, "bad_hex"),
        (b'{"tx": "xyz0"}', 400, "bad_hex"),
        (b'{"tx": "abc"}', 400, "bad_hex"),
        (b'{"tx": "deadbeef"}', 400, "malformed"),
        (b'{"tx": "' + b"00" * 300 + b'"}', 400, "malformed"),
        (b'{"txs": []}', 400, "bad_request"),
        (b'{"txs": "deadbeef"}', 400, "bad_request"),
    ],
    ids=[
        "not-json",
        "not-utf8",
        "json-array",
        "unknown-key",
        "both-keys",
        "tx-not-a-string",
        "bad-hex-digits",
        "odd-hex-length",
        "hex-of-garbage",
        "hex-of-zeros",
        "empty-batch",
        "batch-not-a-list",
    ],
)
def test_malformed_body_is_refused_with_a_4xx_code(
    cluster: Cluster, body: bytes, status: int, code: str
) -> None:
    answer_status, answer = post_raw(cluster, body)
    assert (answer_status, get_error_code(answer)) == (status, code), answer
    assert answer["error"]["message"]
    assert_node_healthy(cluster)


def test_garbage_items_in_a_batch_are_refused_one_by_one(cluster: Cluster) -> None:
    (signer,) = cluster.load_submitters(1)
    valid = make_put(cluster, signer, "batch-neighbour")
    body = json.dumps({"txs": ["zz", "deadbeef", valid.encoded.hex()]}).encode()
    status, answer = post_raw(cluster, body)
    assert status == 200, answer
    assert answer["accepted"] == 1
    codes = [item.get("error", {}).get("code") for item in answer["results"]]
    assert codes == ["bad_hex", "malformed", None]
    assert answer["results"][2] == {"hash": valid.hash.hex(), "status": "pending"}
    cluster.client(TARGET).wait_for_commit(valid.hash.hex(), timeout_s=COMMIT_TIMEOUT_S)


def test_flipped_signature_is_refused_and_the_genuine_transaction_still_commits(cluster: Cluster) -> None:
    (signer,) = cluster.load_submitters(1)
    genuine = make_put(cluster, signer, "signature-check")
    forged = bytearray(genuine.encoded)
    forged[-1] ^= 0x01  # the signature is the last field of the encoding
    status, answer = post_tx(cluster, bytes(forged))
    assert (status, get_error_code(answer)) == (422, "bad_signature"), answer
    assert answer["hash"] == genuine.hash.hex()  # the id covers the body, not the signature
    assert_node_healthy(cluster)
    confirm_commit(cluster, genuine)


def test_unknown_signer_is_refused(cluster: Cluster) -> None:
    tx = make_tx(
        SigningKey.generate(),
        chain_id=cluster.chain_id,
        signer="not-a-registered-entity",
        nonce=1,
        valid_until=get_valid_until(cluster, TARGET),
        args=("key", b"value"),
    )
    status, answer = post_tx(cluster, tx.encoded)
    assert (status, get_error_code(answer)) == (422, "unknown_signer"), answer
    assert_node_healthy(cluster)


def test_registered_name_with_another_key_is_refused(cluster: Cluster) -> None:
    (victim,) = cluster.load_submitters(1)
    impostor = Identity(victim.entity_id, SigningKey.generate(), victim.certificate)
    status, answer = post_tx(cluster, make_put(cluster, impostor, "impostor").encoded)
    assert (status, get_error_code(answer)) == (422, "bad_signature"), answer
    assert_node_healthy(cluster)


def test_replayed_committed_transaction_is_refused_as_duplicate(cluster: Cluster) -> None:
    (signer,) = cluster.load_submitters(1)
    tx = make_put(cluster, signer, "replay-check")
    confirm_commit(cluster, tx)
    for node_id in cluster.node_ids:
        host, port = get_api_address(cluster, node_id)
        connection = http.client.HTTPConnection(host, port, timeout=HTTP_TIMEOUT_S)
        try:
            connection.request("POST", "/v1/transactions", body=json.dumps({"tx": tx.encoded.hex()}))
            response = connection.getresponse()
            status, answer = response.status, json.loads(response.read())
        finally:
            connection.close()
        assert (status, get_error_code(answer)) == (422, "duplicate"), (node_id, answer)
        assert answer["hash"] == tx.hash.hex()
    # The replay did not make the committed transaction look rejected.
    assert cluster.client(TARGET).get_transaction(tx.hash.hex())["status"] == "committed"
    assert_node_healthy(cluster)


def test_transaction_for_another_chain_is_refused(cluster: Cluster) -> None:
    (signer,) = cluster.load_submitters(1)
    tx = make_put(cluster, signer, "other-chain", chain_id="some-other-chain")
    status, answer = post_tx(cluster, tx.encoded)
    assert (status, get_error_code(answer)) == (422, "wrong_chain"), answer
    assert_node_healthy(cluster)


def test_oversize_transaction_is_refused(cluster: Cluster) -> None:
    (signer,) = cluster.load_submitters(1)
    body_fields = types.Transaction.body(
        cluster.chain_id,
        signer.entity_id,
        1,
        get_valid_until(cluster, TARGET),
        "records",
        "put",
        ("big", b"x" * (types.TX_BYTES_MAX + 1)),
    )
    signature = signer.key.sign(crypto.hash_tagged("tx", codec.encode(body_fields)))
    encoded = codec.encode((*body_fields, signature))
    assert len(encoded) > types.TX_BYTES_MAX
    status, answer = post_tx(cluster, encoded)
    assert status == 400, answer
    # Both codes are documented for "not a transaction at all"; the node says `malformed`
    # for every decode failure, including this one.
    assert get_error_code(answer) in {"malformed", "too_large"}, answer
    assert "exceeds" in answer["error"]["message"], answer
    assert_node_healthy(cluster)


def send_oversize_body(host: str, port: int, body_bytes: int) -> bytes:
    """POST a body of `body_bytes` zero bytes; return whatever the server answered.

    The server may answer (and close) before the whole body is sent, so sending stops as
    soon as an answer is readable instead of waiting for a write to fail.
    """
    deadline = time.monotonic() + HTTP_TIMEOUT_S
    chunk = b"0" * SEND_CHUNK_BYTES
    with socket.create_connection((host, port), timeout=HTTP_TIMEOUT_S) as connection:
        connection.sendall(
            f"POST /v1/transactions HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {body_bytes}\r\n\r\n".encode()
        )
        sent = 0
        while sent < body_bytes and time.monotonic() < deadline:
            readable, _, _ = select.select([connection], [], [], 0)
            if readable:
                break
            try:
                connection.sendall(chunk[: body_bytes - sent])
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += min(len(chunk), body_bytes - sent)
        answer = b""
        while time.monotonic() < deadline and not is_complete_response(answer):
            try:
                data = connection.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            answer += data
    return answer


def is_complete_response(answer: bytes) -> bool:
    """True once `answer` holds a whole HTTP response head and its Content-Length body."""
    head, separator, body = answer.partition(b"\r\n\r\n")
    if not separator:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip())
    return False


def test_oversize_body_is_refused_with_413(cluster: Cluster) -> None:
    host, port = get_api_address(cluster, TARGET)
    answer = send_oversize_body(host, port, OVERSIZE_BODY_BYTES)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 "), answer[:300]
    assert get_error_code(json.loads(body)) == "too_large"
    assert_node_healthy(cluster)


def test_node_still_commits_after_bad_http_input(cluster: Cluster) -> None:
    commit_one_valid_transaction(cluster, "after-bad-http-input")


# ---------------------------------------------------------------- P2P tests


def get_tls_refused(cluster: Cluster) -> int:
    return int(cluster.client(TARGET).get_status()["p2p"]["tls_refused"])


def get_hello(cluster: Cluster, entity_id: str) -> bytes:
    return encode_hello(Hello(cluster.chain_id, cluster.genesis.compute_hash(), entity_id))


def write_chain(
    directory: Path,
    certificate: x509.Certificate,
    issuer: x509.Certificate,
    key: SigningKey,
    root_ca_path: Path,
) -> NodeFiles:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "chain.pem").write_bytes(
        identity.certificate_to_pem(certificate) + identity.certificate_to_pem(issuer)
    )
    (directory / "key.pem").write_bytes(key.to_pem())
    return NodeFiles(directory / "chain.pem", directory / "key.pem", root_ca_path)


async def test_client_without_certificate_is_refused_at_tls(cluster: Cluster) -> None:
    refused_before = get_tls_refused(cluster)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.load_verify_locations(cafile=str(cluster.directory / "root" / "ca.pem"))
    assert await is_refused_at_tls(cluster.get_p2p_port(TARGET), context)
    wait_until(lambda: get_tls_refused(cluster) > refused_before, "the refusal is counted", 10.0)
    assert_node_healthy(cluster)


async def test_client_from_another_root_is_refused_at_tls(cluster: Cluster, tmp_path: Path) -> None:
    foreign = create_pki("Another Network")
    claims = identity.EntityClaims(IMPERSONATED, "beijing", ("validator",), ("government",), "Foreign")
    certificate, node_key = foreign.issue(claims)
    zone = foreign.zones["beijing"]
    files = write_chain(tmp_path, certificate, zone, node_key, cluster.directory / "root" / "ca.pem")
    # The client trusts the network's root (so it accepts the server) but presents a foreign chain.
    context = create_client_context(files.chain_path, files.key_path, files.root_ca_path)
    refused_before = get_tls_refused(cluster)
    assert await is_refused_at_tls(cluster.get_p2p_port(TARGET), context)
    wait_until(lambda: get_tls_refused(cluster) > refused_before, "the refusal is counted", 10.0)
    assert_node_healthy(cluster)


def get_zone_of(cluster: Cluster, entity_id: str) -> str:
    for record in cluster.genesis.entities:
        if record.entity_id == entity_id:
            return record.zone
    raise AssertionError(f"{entity_id} is not in the genesis")


@pytest.mark.parametrize("claimed", ["issuing-zone", "registered-zone"])
async def test_certificate_from_the_wrong_zone_authority_is_refused_with_4403(
    cluster: Cluster, tmp_path: Path, claimed: str
) -> None:
    registered_zone = get_zone_of(cluster, IMPERSONATED)
    issuing_zone = "beijing" if registered_zone != "beijing" else "shanghai"
    zone_directory = cluster.directory / "zones" / issuing_zone
    zone_certificate = identity.load_certificate(zone_directory / "ca.pem")
    zone_key = SigningKey.load(zone_directory / "ca.key.pem")
    real_key = SigningKey.load(cluster.directory / "nodes" / IMPERSONATED / "key.pem")
    claims = identity.EntityClaims(
        IMPERSONATED,
        issuing_zone if claimed == "issuing-zone" else registered_zone,
        ("observer", "validator"),
        ("government",),
        "Forged validator certificate",
    )
    # `_build_entity_certificate` skips the zone rule that `issue_entity_certificate` enforces.
    certificate = identity._build_entity_certificate(zone_certificate, zone_key, claims, real_key.public_key)
    files = write_chain(
        tmp_path, certificate, zone_certificate, real_key, cluster.directory / "root" / "ca.pem"
    )
    answer = await raw_hello(cluster.get_p2p_port(TARGET), files, get_hello(cluster, IMPERSONATED))
    assert answer.type is aiohttp.WSMsgType.CLOSE, answer
    assert answer.data == CLOSE_CODE_REFUSED, answer
    assert answer.extra, "the refusal carries a reason"
    assert_node_healthy(cluster)


async def test_pilot_entity_without_validator_or_observer_role_is_refused_with_4403(
    cluster: Cluster,
) -> None:
    (submitter,) = cluster.load_submitters(1)
    claims = identity.read_claims(submitter.certificate)
    assert not {"validator", "observer"} & set(claims.roles)
    entity_directory = cluster.directory / "entities" / submitter.entity_id
    files = NodeFiles(
        entity_directory / "chain.pem", entity_directory / "key.pem", cluster.directory / "root" / "ca.pem"
    )
    answer = await raw_hello(cluster.get_p2p_port(TARGET), files, get_hello(cluster, submitter.entity_id))
    assert answer.type is aiohttp.WSMsgType.CLOSE, answer
    assert answer.data == CLOSE_CODE_REFUSED, answer
    assert "role" in str(answer.extra), answer
    assert_node_healthy(cluster)


def test_node_still_commits_with_all_peers_after_bad_p2p_input(cluster: Cluster) -> None:
    others = sorted(node_id for node_id in cluster.node_ids if node_id != TARGET)
    assert cluster.client(TARGET).get_status()["peers"] == others
    commit_one_valid_transaction(cluster, "after-bad-p2p-input")
