"""chainnode: a permissioned blockchain node for a multi-party pilot network.

The package holds the domain: the canonical codec, hashing and signatures, the
X.509 identity hierarchy, transactions and blocks, the application state
machine and its modules, the mempool, the node wiring, the HTTP API and the
client SDK.  Leaf modules (errors, codec, crypto, merkle, types) import nothing
from the rest of the project, so `consensus`, `storage` and `p2p` may use them.
"""

__version__ = "0.1.0"
