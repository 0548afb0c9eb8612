"""The client library for entities: identities, build/sign/submit, wait, proofs.

Imports app and core only.
"""
