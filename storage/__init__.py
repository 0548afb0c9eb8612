"""LevelDB (plyvel) storage of the node: see `storage.ledger`."""

from storage.ledger import Head, Ledger

__all__ = ["Head", "Ledger"]
