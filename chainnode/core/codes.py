"""The stable result codes of transactions: every receipt's `code` and every API rejection's label.

A number is never reused or renumbered: receipts written by old releases keep their meaning.
Each application module has its own range (records 40-49, assets 60-79, xchain 80-89), so a new
code goes at the end of its module's range.  `ErrorCode.label` is the lowercase name the API,
SDK and CLI show (`bad_signature`, `already_imported`).
"""

from __future__ import annotations

import enum


class ErrorCode(enum.IntEnum):
    """Stable result codes of transactions (receipts and API rejections)."""

    OK = 0
    MALFORMED = 1
    WRONG_CHAIN = 2
    BAD_SIGNATURE = 3
    UNKNOWN_SIGNER = 4
    SIGNER_REVOKED = 5
    SIGNER_EXPIRED = 6
    MISSING_ROLE = 7
    EXPIRED = 8
    DUPLICATE = 9
    UNKNOWN_MODULE = 10
    UNKNOWN_ACTION = 11
    BAD_ARGUMENTS = 12
    TOO_LARGE = 13
    MEMPOOL_FULL = 14
    NOT_PERMITTED = 15
    SIGNER_NOT_YET_VALID = 16
    # Identity lifecycle and council governance (issue 4).
    ZONE_NOT_ACTIVE = 17  # the signer's zone (or the signing zone) is suspended or removed
    MISSING_SECTOR = 18  # a sector-scoped action by an entity without that sector
    WRONG_SIGNER_KIND = 19  # e.g. an entity signing a council action
    BAD_CERTIFICATE = 20  # does not chain to the registered zone CA and root, or is expired
    WRONG_ZONE = 21  # a zone authority acting on another zone's entity or certificate
    ALREADY_REGISTERED = 22
    UNKNOWN_ENTITY = 23
    UNKNOWN_PROPOSAL = 24
    PROPOSAL_EXPIRED = 25
    PROPOSAL_CLOSED = 26  # already executed, rejected or failed
    DUPLICATE_VOTE = 27
    BAD_PROPOSAL = 28  # a proposal whose change breaks a rule (unknown zone, too few validators, ...)
    # Records for data sharing (issue 13): numbers 40-49 are kept for the records module.
    NO_GRANT = 40  # a write or read marker in another entity's namespace without a grant covering the key
    GRANT_EXPIRED = 41  # the covering grant's `expires_at_height` has passed
    GRANT_REVOKED = 42  # the covering grant was revoked by the namespace owner
    WRONG_RIGHT = 43  # the covering grant holds another right (a read-marker grant used to write)
    VALUE_TOO_LARGE = 44  # a record value over `records.VALUE_BYTES_MAX`
    BAD_DOCUMENT = 45  # a document anchor with a bad SHA-256, size, media type or URI
    UNKNOWN_RECORD = 46  # a read marker for a key or version that does not exist
    UNKNOWN_GRANT = 47  # revoking a grant that was never made
    BAD_GRANT = 48  # a grant to oneself, to an unknown sector, or already expired when made

    # Digital assets (issue 13): numbers 60-79 are kept for the assets module.
    NOT_ISSUER = 60  # only the collection's issuer may do this
    NOT_OWNER = 61  # the holder named does not hold enough of the asset, or the signer is not it
    NOT_APPROVED = 62  # the signer is neither the holder, its operator, nor approved for the asset
    ASSET_FROZEN = 63  # the holding (or the holding to receive) is frozen
    COLLECTION_PAUSED = 64
    ASSET_BURNED = 65
    UNKNOWN_ASSET = 66
    UNKNOWN_COLLECTION = 67
    DUPLICATE_ID = 68  # a collection or token id that exists (or existed: ids are never reused)
    RECIPIENT_NOT_ACTIVE = 69  # unknown, revoked or expired recipient, or its zone not active
    BAD_METADATA_HASH = 70  # not 32 bytes, or all zero
    URI_ALREADY_SET = 71
    NOT_FROZEN = 72
    NOT_PAUSED = 73
    WRONG_ASSET_KIND = 74  # an action or amount the collection's kind does not allow

    # Cross-chain exchange (issue 14): numbers 80-89 are kept for the xchain module.
    UNKNOWN_CHAIN = 80  # a counterparty chain that is not registered (or was removed)
    CLIENT_HALTED = 81  # the chain's light client halted on a fork (two certified headers at a height)
    BAD_HEADER = 82  # a header the light client refuses: format, chain_id, parent, height or gap
    BAD_QUORUM = 83  # a certificate that is not a quorum of the trusted set's signatures over the header
    BAD_VALIDATOR_CHANGE = 84  # a new validator set without a valid proof of the block that wrote it
    CLIENT_BEHIND = 85  # a proof above the light client's latest height: update the client first
    BAD_PROOF = 86  # an inclusion proof that does not show what it claims (altered, another chain)
    SOURCE_TX_FAILED = 87  # the proven source transaction's receipt is a failure
    ALREADY_IMPORTED = 88  # the source transaction (or message) was imported before
    OUT_OF_ORDER = 89  # a message whose sequence number is not the next one of its channel

    @property
    def label(self) -> str:
        return self.name.lower()
