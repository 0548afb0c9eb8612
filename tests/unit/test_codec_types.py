"""Canonical encoding, strict decoding and the core types."""

from __future__ import annotations

import dataclasses
import functools

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chainnode.core import codec, crypto, quorum, tags, types
from chainnode.core.errors import DecodeError
from tests import factories

KEY = crypto.SigningKey(b"\x01" * 32)

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda children: st.lists(children, max_size=5).map(tuple),
    max_leaves=30,
)


@settings(max_examples=300)
@given(values)
def test_round_trip_is_identity(value: object) -> None:
    assert codec.decode(codec.encode(value)) == value


@settings(max_examples=300)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    try:
        value = codec.decode(data)
    except DecodeError:
        return
    assert codec.encode(value) == data


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"\xc1", "not a valid msgpack"),
        (codec.encode((1, 2)) + b"\x00", "trailing"),
        (msgpack.packb({"a": 1}), "map"),
        (msgpack.packb(1.5), "float"),
        (b"\xd1\x00\x01", "non-canonical"),  # int16 holding 1
        (b"\xdc\x00\x01\x01", "non-canonical"),  # array16 of length 1
        (msgpack.packb("x", use_bin_type=False)[:1] + b"\xff", "not a valid"),  # bad UTF-8
        (b"\x91" * 40 + b"\x01", "nesting"),
    ],
)
def test_malformed_inputs_get_typed_errors(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as raised:
        codec.decode(data)
    assert raised.value.code == "malformed"
    assert reason in raised.value.message.lower()


def test_oversize_input_is_refused_before_decoding() -> None:
    with pytest.raises(DecodeError, match="exceeds"):
        codec.decode(codec.encode(b"x" * 100), bytes_max=50)


make_tx = functools.partial(
    factories.make_tx,
    KEY,
    chain_id="pilot-net",
    signer="pku-hospital-3",
    nonce=7,
    valid_until=100,
    module="records",
    action="put",
    args=("k", b"v"),
)


def test_transaction_round_trip_and_signature() -> None:
    tx = make_tx()
    decoded = types.decode_transaction(tx.encoded)
    assert decoded == tx
    assert decoded.verify_signature(KEY.public_key)
    assert not decoded.verify_signature(crypto.SigningKey(b"\x02" * 32).public_key)


def test_a_held_transaction_is_found_again_and_a_released_one_is_not_kept() -> None:
    """The mempool holds the transactions a proposal carries: decoding them again must
    return the object already held, not a second decode; released ones are not kept alive."""
    encodings = [bytes(bytearray(make_tx(nonce=1000 + i).encoded)) for i in range(3)]
    held = types.decode_transaction(encodings[0])
    types.decode_transaction(encodings[1])
    for nonce in range(100):
        types.decode_transaction(make_tx(nonce=10_000 + nonce).encoded)
    assert types.decode_transaction(bytes(bytearray(encodings[0]))) is held
    assert encodings[1] not in types._LIVE, "a transaction nobody holds is not kept"
    assert types.decode_transaction(encodings[1]) == make_tx(nonce=1001)
    del held
    assert encodings[0] not in types._LIVE


def test_transaction_id_covers_every_body_field_but_not_the_signature() -> None:
    tx = make_tx()
    for change in [
        {"chain_id": "x"},
        {"signer": "y"},
        {"nonce": 8},
        {"valid_until": 101},
        {"module": "assets"},
        {"action": "get"},
        {"args": ("k", b"w")},
    ]:
        assert make_tx(**change).hash != tx.hash
    resigned = types.Transaction.create(
        crypto.SigningKey(b"\x03" * 32),
        chain_id=tx.chain_id,
        signer=tx.signer,
        nonce=tx.nonce,
        valid_until=tx.valid_until,
        module=tx.module,
        action=tx.action,
        args=tx.args,
    )
    assert resigned.hash == tx.hash and resigned.signature != tx.signature


def test_every_flipped_byte_of_a_transaction_is_caught() -> None:
    tx = make_tx()
    for position in range(len(tx.encoded)):
        data = bytearray(tx.encoded)
        data[position] ^= 0x01
        try:
            decoded = types.decode_transaction(bytes(data))
        except DecodeError:
            continue
        assert not decoded.verify_signature(KEY.public_key), f"byte {position} changed silently"


def test_transaction_decoder_refuses_wrong_shapes() -> None:
    tx = make_tx()
    fields = list(codec.decode(tx.encoded))
    for bad in [
        fields[:-1],
        [*fields, 1],
        [99, *fields[1:]],
        [fields[0], 2, *fields[2:]],
        [*fields[:4], -1, *fields[5:]],
        [*fields[:9], b"short"],
        [*fields[:8], ((1.5,),), fields[9]],
    ]:
        with pytest.raises(DecodeError):
            types.decode_transaction(msgpack.packb(bad, use_bin_type=True))
    with pytest.raises(DecodeError, match="exceeds"):
        types.decode_transaction(b"\x00" * (types.TX_BYTES_MAX + 1))


def test_the_unshared_decoder_gives_the_same_transaction_as_a_new_object() -> None:
    tx = make_tx(nonce=4242)
    shared = types.decode_transaction(tx.encoded)
    unshared = types.decode_transaction_unshared(bytes(bytearray(tx.encoded)))
    assert unshared == shared == tx and unshared is not shared
    assert types._decode_transaction_fast(tx.encoded) == unshared
    for bad in (b"\x00" * (types.TX_BYTES_MAX + 1), tx.encoded[:-1], b"\x9a"):
        with pytest.raises(DecodeError) as shared_error:
            types.decode_transaction(bad)
        with pytest.raises(DecodeError) as unshared_error:
            types.decode_transaction_unshared(bad)
        assert str(unshared_error.value) == str(shared_error.value)


def _decode_general(data: bytes) -> types.Transaction:
    fields = codec.decode_struct(data, tags.TAG_TX, types.VERSION, 10, "transaction")
    return types.transaction_from_fields(fields, data)


tx_field_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.text(max_size=70),
    st.binary(max_size=70),
    st.lists(values, max_size=3).map(tuple),
)


@settings(max_examples=400)
@given(st.integers(min_value=0, max_value=9), tx_field_values, st.booleans())
def test_the_fast_transaction_decoder_agrees_with_the_general_one(
    position: int, replacement: object, replace: bool
) -> None:
    """The one-pass decoder accepts only what the general decoder accepts, with the same result,
    and leaves everything else (None) to it."""
    fields = list(codec.decode(make_tx(args=("k", b"v", 7, None, ("nested", True))).encoded))
    if replace:
        fields[position] = replacement
    data = msgpack.packb(fields, use_bin_type=True)
    fast = types._decode_transaction_fast(data)
    try:
        general = _decode_general(data)
    except DecodeError:
        assert fast is None
        return
    assert fast is None or fast == general


def test_the_fast_transaction_decoder_takes_the_usual_shapes_and_leaves_the_rest() -> None:
    flat = make_tx(args=("k", b"v", 7, None))
    assert types._decode_transaction_fast(flat.encoded) == _decode_general(flat.encoded)
    for unusual in [make_tx(args=("k", (b"nested",))), make_tx(args=("k", True))]:
        assert types._decode_transaction_fast(unusual.encoded) is None
        assert types.decode_transaction(bytes(bytearray(unusual.encoded))) == unusual
    # A non-canonical encoding (the nonce as uint64 where a positive fixint will do).
    fields = list(codec.decode(flat.encoded))
    body = bytearray(flat.encoded)
    nonce_at = len(msgpack.packb(fields[:4], use_bin_type=True))  # fixarray header byte included
    assert body[nonce_at] == fields[4]  # a positive fixint
    widened = bytes(body[:nonce_at]) + b"\xcf" + fields[4].to_bytes(8, "big") + bytes(body[nonce_at + 1 :])
    assert types._decode_transaction_fast(widened) is None
    with pytest.raises(DecodeError, match="non-canonical"):
        types.decode_transaction(widened)


def test_block_round_trip_checks_the_body_against_the_header() -> None:
    txs = [make_tx(nonce=i) for i in range(3)]
    header = types.BlockHeader(
        "pilot-net",
        1,
        0,
        0,
        1000,
        types.ZERO_HASH,
        types.compute_tx_root(txs),
        types.ZERO_HASH,
        types.ZERO_HASH,
        types.ZERO_HASH,
        3,
    )
    block = types.Block.create(header, txs)
    assert types.decode_block(block.encoded) == block
    unshared = types.decode_block(block.encoded, share_transactions=False)
    assert unshared == block
    shared = types.decode_block(block.encoded)
    assert all(a is not b for a, b in zip(unshared.transactions, shared.transactions, strict=True))
    dropped = types.Block.create(header, txs[:2])
    with pytest.raises(DecodeError, match="counts 3"):
        types.decode_block(dropped.encoded)
    swapped = types.Block.create(header, [txs[1], txs[0], txs[2]])
    with pytest.raises(DecodeError, match="tx root"):
        types.decode_block(swapped.encoded)


def test_commit_certificate_rules() -> None:
    keys = [crypto.SigningKey(bytes([i + 10]) * 32) for i in range(4)]
    validators = quorum.ValidatorSet(
        tuple(quorum.Validator(f"v{i}", k.public_key) for i, k in enumerate(keys))
    )
    block_hash = crypto.sha256(b"block")
    payload = types.compute_vote_payload(types.VoteKind.COMMIT, "c", 0, 5, block_hash)
    signatures = tuple((i, keys[i].sign(payload)) for i in range(3))
    certificate = quorum.CommitCertificate(5, 0, block_hash, signatures)
    assert quorum.decode_commit_certificate(certificate.encode()) == certificate
    assert certificate.find_problem("c", validators) is None
    assert "quorum" in (
        dataclasses.replace(certificate, signatures=signatures[:2]).find_problem("c", validators) or ""
    )
    repeated = (signatures[0], signatures[0], signatures[1])
    assert "distinct" in (
        dataclasses.replace(certificate, signatures=repeated).find_problem("c", validators) or ""
    )
    assert certificate.find_problem("other-chain", validators) is not None
    assert dataclasses.replace(certificate, height=6).find_problem("c", validators) is not None
    forged = ((0, signatures[0][1]), (1, signatures[1][1]), (2, b"\x00" * 64))
    assert "invalid signature" in (
        dataclasses.replace(certificate, signatures=forged).find_problem("c", validators) or ""
    )
    prepare = types.compute_vote_payload(types.VoteKind.PREPARE, "c", 0, 5, block_hash)
    as_prepares = tuple((i, keys[i].sign(prepare)) for i in range(3))
    assert dataclasses.replace(certificate, signatures=as_prepares).find_problem("c", validators) is not None


def test_hash_domains_are_separated_and_closed() -> None:
    assert crypto.hash_tagged("tx", b"x") != crypto.hash_tagged("block", b"x")
    with pytest.raises(ValueError, match="unknown hash domain"):
        crypto.hash_tagged("nonsense", b"x")


def test_signing_key_pem_round_trip() -> None:
    assert crypto.SigningKey.from_pem(KEY.to_pem()).public_key == KEY.public_key
    assert crypto.public_key_from_pem(crypto.public_key_to_pem(KEY.public_key)) == KEY.public_key
    assert not crypto.verify(b"short", b"m", b"\x00" * 64)


def test_the_shared_packer_starts_clean_after_a_value_it_refused() -> None:
    """`codec.encode` reuses one packer: a refusal half-way through a value must leave nothing
    in its buffer for the next encoding."""
    assert codec.encode((1, "a")) == msgpack.packb((1, "a"), use_bin_type=True)
    with pytest.raises(TypeError):
        codec.encode((b"x" * 100, "half-way", object()))
    for value in ((), (1, b"x", "y", None, True, (2, (3,))), "z" * 40):
        assert codec.encode(value) == msgpack.packb(value, use_bin_type=True)
