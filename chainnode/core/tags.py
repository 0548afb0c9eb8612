"""Every type tag of the house's canonical encodings, each number assigned once.

Theory of operation
-------------------
Every encoded structure, whether stored in the ledger or state, sent between nodes or written
by a tool, is a msgpack array `[tag, version, ...]` (see `chainnode.core.codec`).  The tag
alone says what the bytes are: a node dispatches frames on it, and a decoder that is handed
the wrong structure refuses it on the tag before reading a field.  That only works while no two
structures share a number, so every number is assigned here and nowhere else, and the modules
that encode import theirs from this one.  `tests/unit/test_tags.py` checks that no number is
used twice and that no module of the house defines a `TAG_` of its own with another number.

A number is never reused, even after its structure is retired: old ledgers, vote logs and audit
checkpoints still carry it.  New numbers go at the end of their range.
"""

from __future__ import annotations

# Records: transactions, blocks and what state holds (chainnode.core.types, chainnode.app).
TAG_TX = 1
TAG_BLOCK_HEADER = 2
TAG_BLOCK = 3
TAG_RECEIPT = 4
TAG_COMMIT_CERTIFICATE = 5
TAG_VALIDATOR_SET = 6
TAG_ENTITY_RECORD = 7
TAG_ZONE_RECORD = 8
TAG_CHECKPOINT_CERTIFICATE = 9
TAG_COUNCIL_RECORD = 10
TAG_PROPOSAL = 11  # chainnode.app.governance
TAG_CHAIN_PARAMS = 12  # chainnode.app.genesis

# Files: a chain's genesis (chainnode.app.genesis) and an auditor's checkpoint (chainnode.tools.audit).
TAG_GENESIS = 20
TAG_CHECKPOINT = 21

# Frames between nodes: consensus messages (consensus.messages) and the node's own
# (chainnode.node.wire), interleaved in the order they were introduced.
TAG_PRE_PREPARE = 30
TAG_VOTE = 31
TAG_STATUS = 32
TAG_BLOCK_REQUEST = 33
TAG_BLOCK_RESPONSE = 34
TAG_TX_BATCH = 35
TAG_VIEW_CHANGE = 36
TAG_NEW_VIEW = 37
TAG_PREPARED = 38
TAG_EVIDENCE = 39

# The p2p handshake (p2p.transport).
TAG_HELLO = 40
TAG_HELLO_ACK = 41
# Frames between nodes, continued (chainnode.node.wire): gossip whose sender waits to hear which
# peers pooled it, and the answer.
TAG_TX_BATCH_ACKED = 42
TAG_TX_ACK = 43
# A proposal that names its transactions by id, a request for the bodies a replica lacks, and
# the answer (chainnode.node.proposals).
TAG_COMPACT_PRE_PREPARE = 44
TAG_TX_FETCH = 45
TAG_TX_BODIES = 46

# Digital assets: what the `assets` module stores in state (chainnode.app.asset_state).
TAG_ASSET_COLLECTION = 50
TAG_ASSET = 51
TAG_ASSET_FREEZE = 52
TAG_ASSET_PROVENANCE = 53

# Records: a confidential value as the chain holds it, ciphertext and sealed keys
# (chainnode.sdk.confidential; a record's value is otherwise opaque bytes).
TAG_SEALED_VALUE = 60
# Light clients (chainnode.light): what a light client trusts of a chain, and the proof that a
# block wrote a new validator set.
TAG_LIGHT_STATE = 70
TAG_VALIDATOR_CHANGE_PROOF = 71


def get_tags() -> dict[str, int]:
    """Every tag of this module by name."""
    return {name: value for name, value in globals().items() if name.startswith("TAG_")}
