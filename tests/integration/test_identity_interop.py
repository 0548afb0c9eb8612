"""The X.509 files against the outside world: the openssl binary reads and verifies what the
hierarchy issues and what `network init` writes, and two entities complete a real mutual TLS
handshake over a socket on 127.0.0.1 with their certificates."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest
from cryptography import x509

from chainnode.core import identity
from chainnode.tools import network
from tests.factories import Pki, create_pki, make_claims

OPENSSL = shutil.which("openssl")


@pytest.fixture(scope="module")
def pki() -> Pki:
    return create_pki("Test Network", (("beijing", "Beijing"), ("shanghai", "Shanghai")))


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> network.NetworkLayout:
    return network.init_network(tmp_path_factory.mktemp("net"), validators=4, base_port=27600)


def _write_pki_files(pki: Pki, certificate: x509.Certificate, directory: Path) -> tuple[Path, Path, Path]:
    root_path = directory / "root.pem"
    zone_path = directory / "zone.pem"
    entity_path = directory / "entity.pem"
    root_path.write_bytes(identity.certificate_to_pem(pki.root))
    zone_path.write_bytes(identity.certificate_to_pem(pki.zones["beijing"]))
    entity_path.write_bytes(identity.certificate_to_pem(certificate))
    return root_path, zone_path, entity_path


@pytest.mark.skipif(OPENSSL is None, reason="the openssl binary is required")
def test_openssl_reads_and_verifies(pki: Pki, tmp_path: Path) -> None:
    assert OPENSSL is not None
    certificate, _ = pki.issue(make_claims())
    root_path, zone_path, entity_path = _write_pki_files(pki, certificate, tmp_path)
    text = subprocess.run(
        [OPENSSL, "x509", "-in", str(entity_path), "-noout", "-text"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    assert "zone=beijing;roles=issuer,submitter;sectors=education,health" in text
    assert "URI:chainnode:entity:pku-hospital-3" in text
    assert "CA:FALSE" in text
    for purpose in ([], ["-purpose", "sslserver"], ["-purpose", "sslclient"]):
        result = subprocess.run(
            [
                OPENSSL,
                "verify",
                *purpose,
                "-CAfile",
                str(root_path),
                "-untrusted",
                str(zone_path),
                str(entity_path),
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "entity.pem: OK" in result.stdout
    # Without the zone CA the chain is incomplete: openssl must refuse, so the check can fail.
    result = subprocess.run(
        [OPENSSL, "verify", "-CAfile", str(root_path), str(entity_path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0


def _tls_context(pki: Pki, directory: Path, name: str, *, server: bool) -> ssl.SSLContext:
    certificate, key = pki.issue(make_claims(entity_id=name))
    (directory / f"{name}.chain.pem").write_bytes(
        identity.certificate_to_pem(certificate) + identity.certificate_to_pem(pki.zones["beijing"])
    )
    (directory / f"{name}.key.pem").write_bytes(key.to_pem())
    (directory / "root.pem").write_bytes(identity.certificate_to_pem(pki.root))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(directory / f"{name}.chain.pem", directory / f"{name}.key.pem")
    context.load_verify_locations(directory / "root.pem")
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def test_mutual_tls_handshake_with_entity_certificates(pki: Pki, tmp_path: Path) -> None:
    server_context = _tls_context(pki, tmp_path, "validator-01", server=True)
    client_context = _tls_context(pki, tmp_path, "validator-02", server=False)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    port = listener.getsockname()[1]
    seen: dict[str, bytes] = {}

    def serve() -> None:
        connection, _ = listener.accept()
        connection.settimeout(10)
        with server_context.wrap_socket(connection, server_side=True) as tls:
            peer = tls.getpeercert(binary_form=True)
            seen["client"] = peer or b""
            tls.sendall(b"ok")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        client_context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        server_der = tls.getpeercert(binary_form=True) or b""
        assert tls.recv(2) == b"ok"
    thread.join(timeout=10)
    listener.close()
    assert identity.read_claims(identity.certificate_from_der(server_der)).entity_id == "validator-01"
    assert identity.read_claims(identity.certificate_from_der(seen["client"])).entity_id == "validator-02"


@pytest.mark.skipif(OPENSSL is None, reason="the openssl binary is required")
def test_openssl_verifies_generated_files(layout: network.NetworkLayout) -> None:
    assert OPENSSL is not None
    out = layout.out_dir
    for entity_id, zone in (("icbc-beijing", "beijing"), ("west-china-hospital", "sichuan")):
        result = subprocess.run(
            [
                OPENSSL,
                "verify",
                "-CAfile",
                str(out / "root" / "ca.pem"),
                "-untrusted",
                str(out / "zones" / zone / "ca.pem"),
                str(out / "entities" / entity_id / "cert.pem"),
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
