"""State keyspaces whose keys are written once: the histories.

A record's versions (`chainnode.app.records`) and an asset's provenance entries
(`chainnode.app.asset_state`) are appended under keys that name their record or asset and a
number that only grows; no key there is ever written again or deleted.  The application builds
those keys from the prefixes here, and the ledger (`storage.ledger`, "History values") keeps the
values of these keyspaces apart from the rest of the state, in height order, because it may rely
on that promise.  A new keyspace joins `APPEND_ONLY_PREFIXES` only if it keeps the promise too.
"""

from __future__ import annotations

RECORD_HISTORY_PREFIX = b"rec/h/"
ASSET_HISTORY_PREFIX = b"ast/h/"
APPEND_ONLY_PREFIXES = (RECORD_HISTORY_PREFIX, ASSET_HISTORY_PREFIX)
