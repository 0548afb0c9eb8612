"""Mutual TLS contexts for the p2p transport.

Theory of operation: every node holds `chain.pem` (its entity certificate
followed by the certificate of the zone authority that issued it), the
Ed25519 private key of that certificate, and the network root CA certificate.
Both ends of a p2p connection present their chain and verify the other's
against the root alone (`CERT_REQUIRED` in both directions, TLS 1.3 only), so
a zone authority's certificate never needs to be configured on a node: it
arrives with the peer's chain.

The client does not check host names: peers are identified by entity id,
not by DNS.  Instead the caller reads the entity id from the certificate's
subject CN (`get_entity_id`) and compares it with the peer it meant to dial.

TLS failures (no client certificate, a certificate from another root, a
plain-text client) are detected inside OpenSSL before any application code
runs, and asyncio drops them silently.  So that operators see them, the
server context can be given `on_handshake_error`, which is called with the
`ssl.SSLError` of every failed server-side handshake; it must not raise.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from chainnode.core.errors import ConfigError, IdentityError

HandshakeErrorHandler = Callable[[ssl.SSLError], None]


def create_server_context(
    chain_path: Path,
    key_path: Path,
    root_ca_path: Path,
    *,
    on_handshake_error: HandshakeErrorHandler | None = None,
) -> ssl.SSLContext:
    """A TLS 1.3 server context that requires a client certificate chaining to the root."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _configure(context, chain_path, key_path, root_ca_path)
    if on_handshake_error is not None:
        context.sslobject_class = _create_observed_sslobject_class(on_handshake_error)
    return context


def create_client_context(chain_path: Path, key_path: Path, root_ca_path: Path) -> ssl.SSLContext:
    """A TLS 1.3 client context that presents our chain and verifies the server's against the root.

    Host names are not checked; the caller checks the server's entity id instead.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # The order matters: verify_mode cannot be relaxed while check_hostname is on,
    # and it stays CERT_REQUIRED here anyway.
    context.check_hostname = False
    _configure(context, chain_path, key_path, root_ca_path)
    return context


def get_entity_id(certificate_der: bytes) -> str:
    """The entity id named by the subject CN of a DER certificate.

    Raises `IdentityError` when the certificate cannot be parsed or does not carry
    exactly one non-empty CN.
    """
    try:
        certificate = x509.load_der_x509_certificate(certificate_der)
        attributes = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except ValueError as error:
        raise IdentityError(f"unreadable peer certificate: {error}") from error
    if len(attributes) != 1:
        raise IdentityError(f"peer certificate has {len(attributes)} common names, expected 1")
    value = attributes[0].value
    entity_id = value if isinstance(value, str) else value.decode("utf-8", "replace")
    if not entity_id:
        raise IdentityError("peer certificate has an empty common name")
    return entity_id


def get_peer_certificate_der(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> bytes | None:
    """The DER of the peer's leaf certificate on an established TLS connection, if any."""
    if ssl_object is None:
        return None
    return ssl_object.getpeercert(binary_form=True)


def _configure(context: ssl.SSLContext, chain_path: Path, key_path: Path, root_ca_path: Path) -> None:
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.verify_mode = ssl.CERT_REQUIRED
    try:
        context.load_cert_chain(certfile=str(chain_path), keyfile=str(key_path))
    except (OSError, ssl.SSLError) as error:
        raise ConfigError(f"cannot load TLS chain {chain_path} with key {key_path}: {error}") from error
    try:
        context.load_verify_locations(cafile=str(root_ca_path))
    except (OSError, ssl.SSLError) as error:
        raise ConfigError(f"cannot load root CA {root_ca_path}: {error}") from error


def _create_observed_sslobject_class(handler: HandshakeErrorHandler) -> type[ssl.SSLObject]:
    """A subclass of `ssl.SSLObject` that reports failed handshakes to `handler`.

    `SSLContext.sslobject_class` is the documented hook for this; asyncio's TLS
    layer creates its SSL objects through `wrap_bio`, which uses it.
    """

    class ObservedSSLObject(ssl.SSLObject):
        def do_handshake(self) -> None:
            try:
                super().do_handshake()
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                raise
            except ssl.SSLError as error:
                handler(error)
                raise

    return ObservedSSLObject
