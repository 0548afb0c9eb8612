"""RFC 6962 Merkle tree hashes and inclusion proofs."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chainnode.core import merkle

# The test vectors of RFC 6962's reference implementation (Certificate Transparency).
LEAVES = [
    bytes.fromhex(h)
    for h in [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
]
ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def reference_root(leaves: list[bytes]) -> bytes:
    """The recursive definition of RFC 6962 section 2.1, written independently."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + reference_root(leaves[:k]) + reference_root(leaves[k:])).digest()


def test_empty_tree_is_the_hash_of_nothing() -> None:
    assert merkle.compute_root([]).hex() == hashlib.sha256(b"").hexdigest()


@pytest.mark.parametrize("size", range(1, 9))
def test_rfc6962_vectors(size: int) -> None:
    assert merkle.compute_root(LEAVES[:size]).hex() == ROOTS[size - 1]


@settings(max_examples=200)
@given(st.lists(st.binary(max_size=8), max_size=70))
def test_root_matches_the_recursive_definition(leaves: list[bytes]) -> None:
    assert merkle.compute_root(leaves) == reference_root(leaves)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 33])
def test_every_leaf_has_a_verifying_proof(size: int) -> None:
    leaves = [i.to_bytes(4, "big") for i in range(size)]
    root = merkle.compute_root(leaves)
    for index in range(size):
        proof = merkle.compute_inclusion_proof(leaves, index)
        assert merkle.verify_inclusion(leaves[index], index, size, proof, root)


@settings(max_examples=150)
@given(st.integers(min_value=1, max_value=40), st.data())
def test_any_altered_proof_fails(size: int, data: st.DataObject) -> None:
    leaves = [i.to_bytes(4, "big") for i in range(size)]
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    root = merkle.compute_root(leaves)
    proof = merkle.compute_inclusion_proof(leaves, index)
    assert not merkle.verify_inclusion(b"other", index, size, proof, root)
    assert not merkle.verify_inclusion(leaves[index], index, size, proof, hashlib.sha256(root).digest())
    if size > 1:
        assert not merkle.verify_inclusion(leaves[index], (index + 1) % size, size, proof, root)
        assert not merkle.verify_inclusion(leaves[index], index, size, proof[:-1], root)
        position = data.draw(st.integers(min_value=0, max_value=len(proof) - 1))
        tampered = list(proof)
        tampered[position] = bytes([tampered[position][0] ^ 1]) + tampered[position][1:]
        assert not merkle.verify_inclusion(leaves[index], index, size, tampered, root)
    assert not merkle.verify_inclusion(leaves[index], index, size, [*proof, b"\x00" * 32], root)
    assert not merkle.verify_inclusion(leaves[index], size, size, proof, root)


def test_leaf_and_node_hashes_are_domain_separated() -> None:
    left, right = hashlib.sha256(b"a").digest(), hashlib.sha256(b"b").digest()
    # A two-leaf tree's root must not equal the hash of one leaf holding left||right.
    assert merkle.hash_node(left, right) != merkle.hash_leaf(left + right)
