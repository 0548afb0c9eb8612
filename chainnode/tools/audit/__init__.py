"""Auditor replay: verify a whole chain from the genesis file, trusting no node.

Theory of operation
-------------------
`Auditor.run` reads blocks with their commit certificates from a
`chainnode.tools.export.BlockSource` (a snapshot of a node's data directory, or a
node's API) and replays them on its own in-memory state, which starts from the
auditor's genesis file (or from a trusted checkpoint).  Per height, in order:

    block_decode, height, chain_id, parent_hash, timestamp, timestamp_future,
    tx_count, tx_root,
    validator_set, proposer, certificate_binding, certificate_signers,
    certificate_quorum, certificate_signature (per signature),
    re-execution: tx_chain_id, tx_replay, tx_signer, tx_signature and
    signer_authorization (per transaction: the signer's certificate registered,
    not revoked, valid at the block's timestamp, with the action's role; a
    failure there is a failed receipt, which the receipts root must show),
    receipts_root, state_root,
    and with a data directory also: stored_receipt and tx_index (per
    transaction), block_index.

At the end, when the audit reached the source's head: `head` (the head the
source reports is the replayed one) and, with a data directory,
`stored_state` (the node's stored state equals the replayed state, key by
key).  The first failure stops the audit; it names the height, the
transaction index when there is one, the check and the reason.

Time: a block's timestamp must pass its parent's (the first block's, the
genesis time), and may not lie ahead of the auditor's own clock, read when the
audit starts, by more than the chain's `timestamp_drift_ms_max` in force at
that height (`timestamp_future`): the validators refuse a fresh block further
than that from their clocks, so a chain dated in the future was certified by
validators that skipped the check.  How far a block lags behind the real time
of its commit cannot be told from block data alone; the validators' lower
bound is checked live, by each of them, for each fresh block.

Validator sets: a validator-set change committed at height h applies from
h + 1, so the set that certifies height h is the `val/set` entry of the
auditor's own replayed state after h - 1 (the genesis set until a change is
replayed).  The auditor derives it itself and never asks the source.

Parallel signature checks.  PyNaCl holds the GIL while it verifies, so the
signatures of a window of blocks ahead of re-execution (transactions and
commit certificates) are verified by a `multiprocessing` pool (spawn start
method, so it is safe with threads and on every platform) in batches of fixed
128-byte items (public key 32, message 32, signature 64); the next window is
verified while the current one is re-executed.  A transaction's key is the
signer's key in the replayed state when its window is prepared; a verified
(tx hash, key, signature) primes the executor's `SignatureCache`, so
re-execution does not verify it again.  If the key changed in between, the
cache misses and the executor verifies itself: the result never depends on
the guess.  Certificate signatures are checked in the pool against the set in
the replayed state when the window is prepared; if a replayed change makes the
set of a height differ from that, its certificate is verified again, here.

Checkpoints.  `compute_checkpoint` captures (height, block hash, state root,
timestamp, the full replayed state, the set of committed transaction ids).
Resuming from one TRUSTS it: the auditor accepts that the blocks up to that
height were verified (by this tool, by someone the auditor trusts) and that
the state in the file is what they produce.  The resumed audit only checks
that the source's block at that height has the checkpoint's hash and state
root, so it continues the same chain; it cannot re-derive the state from the
state root (the chained commitment is not a state tree).
"""

from chainnode.core.crypto import verify_signature_batch
from chainnode.tools.audit.auditor import Auditor, audit_chain
from chainnode.tools.audit.checkpoint import Checkpoint, decode_checkpoint, load_checkpoint, save_checkpoint
from chainnode.tools.audit.replay import ReplayState, StateValidatorSets
from chainnode.tools.audit.report import AuditError, AuditReport, Failure
from chainnode.tools.audit.verify import SignatureVerifier

__all__ = [
    "AuditError",
    "AuditReport",
    "Auditor",
    "Checkpoint",
    "Failure",
    "ReplayState",
    "SignatureVerifier",
    "StateValidatorSets",
    "audit_chain",
    "decode_checkpoint",
    "load_checkpoint",
    "save_checkpoint",
    "verify_signature_batch",
]
