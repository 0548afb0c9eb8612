"""The commit point's check for writes that change who may connect (chainnode.node.effects)."""

from __future__ import annotations

import random

from chainnode.node.effects import _touches_prefixes
from chainnode.node.peers import PEER_AFFECTING_PREFIXES


def _write_set(keys: list[bytes]) -> dict[bytes, bytes | None]:
    return {key: b"v" for key in sorted(keys)}


def test_a_block_of_records_does_not_touch_the_peer_keys() -> None:
    keys = [b"rec/l/e%d\x00k" % i for i in range(500)] + [b"asset/a/%d" % i for i in range(50)]
    assert not _touches_prefixes(_write_set(keys), PEER_AFFECTING_PREFIXES)
    assert not _touches_prefixes({}, PEER_AFFECTING_PREFIXES)


def test_one_identity_write_anywhere_in_the_block_is_found() -> None:
    rng = random.Random(3)
    records = [b"rec/l/e%d\x00k" % i for i in range(500)] + [b"a/%d" % i for i in range(50)]
    for touched in (b"id/e/hospital-7", b"id/z/shanghai", PEER_AFFECTING_PREFIXES[2]):
        keys = [*records, touched]
        assert _touches_prefixes(_write_set(keys), PEER_AFFECTING_PREFIXES), touched
        rng.shuffle(keys)  # also when the mapping is not in key order
        assert _touches_prefixes({key: None for key in keys}, PEER_AFFECTING_PREFIXES), touched


def test_a_key_that_only_shares_the_start_of_a_prefix_is_not_a_match() -> None:
    assert not _touches_prefixes(_write_set([b"id/", b"id/f/x", b"id/d/", b"id/ez"]), (b"id/e/",))
