"""Confidential record values: encrypted on the client to named entities, opened by them alone.

Theory of operation
-------------------
The chain stores a record's value as opaque bytes and every node (and every API reader) sees
them, so a value that only some entities may read is encrypted before it is signed.  `seal`
draws a fresh 32-byte content key, encrypts the value with it (XSalsa20-Poly1305, PyNaCl's
`SecretBox`, which authenticates: a changed byte fails to open), and seals the content key to
each recipient with a sealed box (X25519, PyNaCl's `SealedBox`: anonymous sender, only the
holder of the recipient's private key opens it).  The chain holds only that envelope:

    encode((TAG_SEALED_VALUE, 1, nonce + ciphertext, ((recipient id, sealed content key), ...)))

sorted by recipient id.  No hash of the plaintext is stored: for a short or guessable value
(a diagnosis code, an amount) such a hash would give the value away.  The writer's own
transaction hash and the record's version say which envelope was written when.

Recipients' keys: every registered entity already has an Ed25519 key on chain (its certificate's
key, in its entity record), and an Ed25519 key pair converts to an X25519 pair (libsodium's
`crypto_sign_ed25519_*_to_curve25519`, as age and ssh-to-age do), so anyone can seal to any
registered entity with no key registry beside the identities the chain already agrees on, and
each recipient opens with the `key.pem` it signs with.  The price is one key for two purposes;
a renewed certificate with a new key cannot open what was sealed to the old one (seal again).
Access is decided by whom the writer seals to, not by grants: a grant says who may write into a
namespace, a recipient list who can read a value.  A sector is not a recipient: name entities.

Errors are `ConfidentialError` with a stable code: `not_sealed` (the value is no envelope),
`bad_envelope` (malformed, or it does not open: altered or not for this key), `not_a_recipient`,
`too_many_recipients` (none, or more than `RECIPIENTS_MAX`), `bad_recipient` (not an Ed25519 key).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping

import nacl.exceptions
import nacl.public
import nacl.secret
import nacl.signing

from chainnode.core import codec, crypto
from chainnode.core.codec import expect_bytes, expect_str, expect_tuple
from chainnode.core.errors import DecodeError, RemoteError
from chainnode.core.tags import TAG_SEALED_VALUE

ENVELOPE_VERSION = 1
RECIPIENTS_MAX = 32
RECIPIENT_CHARS_MAX = 128
# A sealed box adds an ephemeral X25519 public key and a MAC to what it seals.
SEALED_KEY_BYTES = (
    nacl.secret.SecretBox.KEY_SIZE + nacl.public.PublicKey.SIZE + nacl.secret.SecretBox.MACBYTES
)


class ConfidentialError(RemoteError):
    """A value that cannot be sealed or opened; `code` says why."""

    code = "bad_envelope"


def _to_x25519_public(ed25519_public_key: bytes) -> nacl.public.PublicKey:
    try:
        return nacl.signing.VerifyKey(ed25519_public_key).to_curve25519_public_key()
    except (nacl.exceptions.CryptoError, ValueError, TypeError) as error:
        raise ConfidentialError(f"not an Ed25519 public key: {error}", code="bad_recipient") from error


def _to_x25519_private(key: crypto.SigningKey) -> nacl.public.PrivateKey:
    seed = key.to_cryptography().private_bytes_raw()
    return nacl.signing.SigningKey(seed).to_curve25519_private_key()


def seal(value: bytes, recipients: Mapping[str, bytes]) -> bytes:
    """The envelope of `value` for `recipients` (entity id -> its Ed25519 public key)."""
    if not recipients:
        raise ConfidentialError(
            "a confidential value needs at least one recipient", code="too_many_recipients"
        )
    if len(recipients) > RECIPIENTS_MAX:
        raise ConfidentialError(
            f"at most {RECIPIENTS_MAX} recipients, got {len(recipients)}", code="too_many_recipients"
        )
    content_key = secrets.token_bytes(nacl.secret.SecretBox.KEY_SIZE)
    boxed = bytes(nacl.secret.SecretBox(content_key).encrypt(value))
    sealed = tuple(
        (entity_id, bytes(nacl.public.SealedBox(_to_x25519_public(public_key)).encrypt(content_key)))
        for entity_id, public_key in sorted(recipients.items())
    )
    return codec.encode((TAG_SEALED_VALUE, ENVELOPE_VERSION, boxed, sealed))


def is_sealed(value: bytes) -> bool:
    """Whether `value` decodes as an envelope (without opening it)."""
    try:
        read_recipients(value)
    except ConfidentialError:
        return False
    return True


def _decode(value: bytes) -> tuple[bytes, dict[str, bytes]]:
    try:
        fields = codec.decode_struct(value, TAG_SEALED_VALUE, ENVELOPE_VERSION, 4, "sealed value")
    except DecodeError as error:
        raise ConfidentialError(
            f"the value is not a sealed value: {error.message}", code="not_sealed"
        ) from error
    try:
        boxed = expect_bytes(fields[2], "sealed ciphertext")
        recipients: dict[str, bytes] = {}
        for item in expect_tuple(fields[3], "sealed keys", RECIPIENTS_MAX):
            pair = expect_tuple(item, "sealed key", 2)
            if len(pair) != 2:
                raise DecodeError("sealed key: expected (recipient, key)")
            entity_id = expect_str(pair[0], "recipient", RECIPIENT_CHARS_MAX)
            recipients[entity_id] = expect_bytes(pair[1], "sealed key", SEALED_KEY_BYTES)
    except DecodeError as error:
        raise ConfidentialError(f"malformed sealed value: {error.message}") from error
    return boxed, recipients


def read_recipients(value: bytes) -> list[str]:
    """The entities a sealed value was sealed to, by id."""
    return sorted(_decode(value)[1])


def open_sealed(value: bytes, entity_id: str, key: crypto.SigningKey) -> bytes:
    """The plaintext of an envelope sealed to `entity_id`, opened with its signing key."""
    boxed, recipients = _decode(value)
    sealed_key = recipients.get(entity_id)
    if sealed_key is None:
        raise ConfidentialError(
            f"{entity_id!r} is not a recipient (recipients: {sorted(recipients)})", code="not_a_recipient"
        )
    try:
        content_key = nacl.public.SealedBox(_to_x25519_private(key)).decrypt(sealed_key)
        return bytes(nacl.secret.SecretBox(content_key).decrypt(boxed))
    except nacl.exceptions.CryptoError as error:
        raise ConfidentialError(
            f"the sealed value does not open with {entity_id!r}'s key (altered, or sealed to another key)"
        ) from error
