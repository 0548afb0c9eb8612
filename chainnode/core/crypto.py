"""Hashing and Ed25519 signatures.

Every hash that is signed or committed carries a domain tag (`tx`, `block`,
`vote`, ...), so bytes signed for one purpose can never be replayed as another.
Signatures use PyNaCl (libsodium) on every hot path; keys are stored as PEM
(PKCS#8 / SubjectPublicKeyInfo) through `cryptography`, and the raw 32-byte
public key taken from an X.509 certificate is what PyNaCl verifies against.
Merkle hashing follows RFC 6962 and lives in `chainnode.core.merkle` without tags.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import nacl.bindings
import nacl.exceptions
import nacl.signing
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from chainnode.core.errors import ConfigError

HASH_BYTES = 32
PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64

# The domain tags in use; `hash_tagged` refuses any other so a typo cannot
# silently create a new domain.
DOMAIN_TAGS = frozenset(
    {"tx", "block", "vote", "receipt", "state", "genesis", "checkpoint", "validators", "hello"}
)


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


_DOMAIN_PREFIXES = {tag: b"chainnode/" + tag.encode() + b"\x00" for tag in DOMAIN_TAGS}


def hash_tagged(tag: str, data: bytes) -> bytes:
    """SHA-256 of `chainnode/<tag>` NUL `data`."""
    prefix = _DOMAIN_PREFIXES.get(tag)
    if prefix is None:
        raise ValueError(f"unknown hash domain {tag!r}")
    return hashlib.sha256(prefix + data).digest()


class SigningKey:
    """An Ed25519 private key; signs with libsodium."""

    __slots__ = ("_key", "public_key")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise ValueError("an Ed25519 seed is 32 bytes")
        self._key = nacl.signing.SigningKey(seed)
        self.public_key: bytes = bytes(self._key.verify_key)

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(bytes(nacl.signing.SigningKey.generate()))

    @classmethod
    def from_pem(cls, pem: bytes) -> SigningKey:
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as error:
            raise ConfigError(f"not a PEM private key: {error}") from error
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise ConfigError("the private key is not an Ed25519 key")
        return cls(key.private_bytes_raw())

    @classmethod
    def load(cls, path: Path) -> SigningKey:
        try:
            return cls.from_pem(path.read_bytes())
        except OSError as error:
            raise ConfigError(f"cannot read key {path}: {error}") from error

    def to_pem(self) -> bytes:
        return self.to_cryptography().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def to_cryptography(self) -> ed25519.Ed25519PrivateKey:
        return ed25519.Ed25519PrivateKey.from_private_bytes(bytes(self._key))

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message).signature


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when `signature` is a valid Ed25519 signature; never raises on bad input."""
    if len(public_key) != PUBLIC_KEY_BYTES or len(signature) != SIGNATURE_BYTES:
        return False
    try:
        # libsodium's crypto_sign_open, as `nacl.signing.VerifyKey.verify` calls it, without
        # building a VerifyKey per call (every transaction comes through here once per node).
        nacl.bindings.crypto_sign_open(bytes(signature) + bytes(message), bytes(public_key))
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.CryptoError, ValueError, TypeError):
        return False
    return True


def public_key_to_pem(public_key: bytes) -> bytes:
    return ed25519.Ed25519PublicKey.from_public_bytes(public_key).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def public_key_from_pem(pem: bytes) -> bytes:
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as error:
        raise ConfigError(f"not a PEM public key: {error}") from error
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise ConfigError("the public key is not an Ed25519 key")
    return key.public_bytes_raw()


# Signature checks in bulk, for process pools (PyNaCl holds the GIL): the auditor's
# (`chainnode.tools.audit.verify`) and a catching-up node's (`chainnode.node.catch_up_verify`).
SIGNATURE_ITEM_BYTES = 128  # public key 32, message 32, signature 64


def verify_signature_batch(batch: bytes) -> bytes:
    """One byte per 128-byte item of `batch` (public key, message, signature): 1 when the
    signature verifies."""
    flags = bytearray(len(batch) // SIGNATURE_ITEM_BYTES)
    for position in range(len(flags)):
        start = position * SIGNATURE_ITEM_BYTES
        public_key, message = batch[start : start + 32], batch[start + 32 : start + 64]
        flags[position] = verify(public_key, message, batch[start + 64 : start + 128])
    return bytes(flags)
