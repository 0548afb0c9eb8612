"""The core: canonical codec, tagged hashing and Ed25519, RFC 6962 Merkle trees, transactions, blocks
and certificates, X.509 identities, typed errors, metric rendering.

Pure: no I/O, imported by every other layer and importing none of them.
"""
