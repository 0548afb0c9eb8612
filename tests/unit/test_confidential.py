"""Confidential record values: sealed to recipients' on-chain Ed25519 keys, opened only by them."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chainnode.app import records
from chainnode.core import codec
from chainnode.core.tags import TAG_SEALED_VALUE
from chainnode.sdk import confidential
from chainnode.sdk.confidential import ConfidentialError
from tests.factories import make_key

HOSPITAL, UNIVERSITY, CLINIC = make_key("hospital"), make_key("university"), make_key("clinic")
RECIPIENTS = {"hospital": HOSPITAL.public_key, "university": UNIVERSITY.public_key}
VALUE = b"patient 42: HbA1c 6.1%"


def test_each_recipient_opens_and_the_chain_holds_no_plaintext() -> None:
    sealed = confidential.seal(VALUE, RECIPIENTS)
    assert VALUE not in sealed
    assert confidential.is_sealed(sealed) and not confidential.is_sealed(VALUE)
    assert confidential.read_recipients(sealed) == ["hospital", "university"]
    assert confidential.open_sealed(sealed, "hospital", HOSPITAL) == VALUE
    assert confidential.open_sealed(sealed, "university", UNIVERSITY) == VALUE
    # Sealed twice, never the same bytes (a fresh content key and nonces each time).
    assert confidential.seal(VALUE, RECIPIENTS) != sealed


def test_a_small_value_for_a_few_recipients_fits_in_a_record() -> None:
    many = {f"entity-{n}": make_key(f"e{n}").public_key for n in range(10)}
    assert len(confidential.seal(b"x" * 2048, many)) <= records.VALUE_BYTES_MAX


def _tampered_ciphertext(sealed: bytes) -> bytes:
    tag, version, boxed, keys = codec.decode(sealed)
    return codec.encode((tag, version, boxed[:-1] + bytes([boxed[-1] ^ 1]), keys))


def _swapped_keys(sealed: bytes) -> bytes:
    tag, version, boxed, ((first, first_key), (second, second_key)) = codec.decode(sealed)
    return codec.encode((tag, version, boxed, ((first, second_key), (second, first_key))))


REFUSALS = {
    "not a recipient": (lambda sealed: sealed, "clinic", CLINIC, "not_a_recipient"),
    "another entity's key": (lambda sealed: sealed, "university", CLINIC, "bad_envelope"),
    "ciphertext altered": (_tampered_ciphertext, "hospital", HOSPITAL, "bad_envelope"),
    "sealed keys swapped": (_swapped_keys, "hospital", HOSPITAL, "bad_envelope"),
    "plain value": (lambda _: VALUE, "hospital", HOSPITAL, "not_sealed"),
    "other structure": (
        lambda _: codec.encode((TAG_SEALED_VALUE + 1, 1, b"", ())),
        "hospital",
        HOSPITAL,
        "not_sealed",
    ),
    "sealed key cut short": (
        lambda sealed: codec.encode((TAG_SEALED_VALUE, 1, b"box", (("hospital", b"k" * 79),))),
        "hospital",
        HOSPITAL,
        "bad_envelope",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refusals_have_stable_codes(case: str) -> None:
    change, entity_id, key, code = REFUSALS[case]
    with pytest.raises(ConfidentialError) as caught:
        confidential.open_sealed(change(confidential.seal(VALUE, RECIPIENTS)), entity_id, key)
    assert caught.value.code == code


def test_seal_needs_one_to_thirty_two_recipients() -> None:
    for recipients in ({}, {f"e{n}": HOSPITAL.public_key for n in range(33)}):
        with pytest.raises(ConfidentialError) as caught:
            confidential.seal(VALUE, recipients)
        assert caught.value.code == "too_many_recipients"
    with pytest.raises(ConfidentialError) as bad:
        confidential.seal(VALUE, {"x": b"\x01" * 31})
    assert bad.value.code == "bad_recipient"


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=512))
def test_any_value_round_trips(value: bytes) -> None:
    assert confidential.open_sealed(confidential.seal(value, RECIPIENTS), "university", UNIVERSITY) == value
