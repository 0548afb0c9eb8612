"""RFC 6962 / RFC 9162 Merkle tree hashing and inclusion proofs.

leaf = SHA-256(0x00 || data), node = SHA-256(0x01 || left || right), and a
tree of n > 1 leaves splits at the largest power of two below n.  The empty
tree hashes to SHA-256 of nothing.  Proofs are the audit paths of RFC 9162
section 2.1.3, verified with the algorithm of section 2.1.3.2, so any
RFC-conformant verifier accepts what this module produces.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

_EMPTY = hashlib.sha256(b"").digest()


def hash_leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def hash_node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def compute_root(leaves: Sequence[bytes]) -> bytes:
    """The tree hash of `leaves` (raw leaf data, not yet hashed)."""
    if not leaves:
        return _EMPTY
    sha256 = hashlib.sha256  # inlined hash_leaf: a block hashes thousands of leaves
    return _subtree_root([sha256(b"\x00" + leaf).digest() for leaf in leaves])


def _largest_power_of_two_below(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def compute_inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """The audit path for leaf `index`, ordered from the leaf upward."""
    if not 0 <= index < len(leaves):
        raise IndexError(f"leaf index {index} outside a tree of {len(leaves)}")
    hashes = [hash_leaf(leaf) for leaf in leaves]
    return _path(hashes, index)


def _path(hashes: list[bytes], index: int) -> list[bytes]:
    n = len(hashes)
    if n == 1:
        return []
    k = _largest_power_of_two_below(n)
    if index < k:
        return [*_path(hashes[:k], index), _subtree_root(hashes[k:])]
    return [*_path(hashes[k:], index - k), _subtree_root(hashes[:k])]


def _subtree_root(hashes: list[bytes]) -> bytes:
    # Pairing bottom-up and carrying an unpaired last node upward builds the
    # same left-balanced tree as the recursive definition.
    sha256 = hashlib.sha256  # inlined hash_node
    level = hashes
    while len(level) > 1:
        paired = [sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def compute_root_from_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes | None:
    """RFC 9162 2.1.3.2: the root that `proof` implies for `leaf` at `index` in a tree of `size`;
    None when the path cannot belong to a tree of that size."""
    if not 0 <= index < size:
        return None
    if any(len(item) != 32 for item in proof):
        return None
    fn, sn = index, size - 1
    result = hash_leaf(leaf)
    for item in proof:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            result = hash_node(item, result)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            result = hash_node(result, item)
        fn >>= 1
        sn >>= 1
    return result if sn == 0 else None


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 2.1.3.2: does `proof` show `leaf` at `index` in a tree of `size` with `root`?"""
    return compute_root_from_inclusion(leaf, index, size, proof) == root
