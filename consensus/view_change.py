"""Pure checks of the view-change protocol: VIEW-CHANGE and NEW-VIEW validity.

Safety rests on one rule.  If a block B was committed at height h in view v,
then a quorum of validators sent COMMIT, each holding a prepared certificate
for B at v.  Any quorum of VIEW-CHANGE messages for a later view shares at
least f + 1 validators with that quorum (`quorum.compute_quorum`), so at least
one honest holder of B's certificate, and no prepared certificate for another
block at h can exist in a view >= v (its PREPARE quorum would share an honest
validator with B's, who never prepares two blocks for one height and view).
So the new primary must re-propose the prepared block of the highest view
among the quorum it shows;
`select_prepared` picks it and `find_new_view_problem` makes every replica
check that the primary did exactly that.
"""

from __future__ import annotations

from chainnode.core import crypto, quorum
from consensus.messages import NewView, PreparedCertificate, ViewChange


def find_view_change_problem(
    message: ViewChange, *, chain_id: str, validators: quorum.ValidatorSet, head_hash: bytes
) -> str | None:
    """None when `message` is a correctly signed VIEW-CHANGE whose prepared block extends `head_hash`."""
    if message.validator >= validators.size:
        return f"view change from unknown validator index {message.validator}"
    public_key = validators.validators[message.validator].public_key
    if not crypto.verify(public_key, message.compute_payload(chain_id), message.signature):
        return f"invalid view change signature from validator {message.validator}"
    prepared = message.prepared
    if prepared is None:
        return None
    if prepared.height != message.height:
        return "prepared certificate is for another height"
    if prepared.view >= message.new_view:
        return "prepared certificate is not from an earlier view"
    if prepared.block.header.parent_hash != head_hash:
        return "prepared block does not extend the head"
    return prepared.find_problem(chain_id, validators)


def select_prepared(view_changes: tuple[ViewChange, ...]) -> PreparedCertificate | None:
    """The prepared certificate of the highest view (ties broken by block hash, deterministically)."""
    best: PreparedCertificate | None = None
    for message in view_changes:
        prepared = message.prepared
        if prepared is None:
            continue
        if best is None or (prepared.view, prepared.block.hash) > (best.view, best.block.hash):
            best = prepared
    return best


def find_new_view_problem(
    message: NewView, *, chain_id: str, validators: quorum.ValidatorSet, head_hash: bytes
) -> str | None:
    """None when `message` proves a quorum of VIEW-CHANGEs and re-proposes what they require."""
    senders = set()
    for view_change in message.view_changes:
        if (view_change.new_view, view_change.height) != (message.new_view, message.height):
            return "new view carries a view change for another view or height"
        if view_change.validator in senders:
            return f"new view counts validator {view_change.validator} twice"
        problem = find_view_change_problem(
            view_change, chain_id=chain_id, validators=validators, head_hash=head_hash
        )
        if problem is not None:
            return f"new view proof: {problem}"
        senders.add(view_change.validator)
    if len(senders) < validators.quorum:
        return f"new view proves {len(senders)} view changes, quorum is {validators.quorum}"
    primary = validators.primary(message.new_view)
    proposal = message.pre_prepare
    chosen = select_prepared(message.view_changes)
    if proposal is None:
        return "new view drops a prepared block" if chosen is not None else None
    if (proposal.view, proposal.height, proposal.proposer) != (message.new_view, message.height, primary):
        return "new view proposal is not the new primary's for this view and height"
    if not proposal.is_signed_by(chain_id, validators.validators[primary].public_key):
        return "new view proposal signature is invalid"
    if chosen is not None and proposal.block.hash != chosen.block.hash:
        return "new view replaces a prepared block"
    if chosen is None and proposal.block.header.view != message.new_view:
        return "new view proposes an old block that no view change reported as prepared"
    return None
