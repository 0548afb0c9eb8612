"""Typed errors.

Every error that is expected in normal operation derives from `ChainError` and
carries a stable, machine-readable `code`.  The split by blame follows h11:
`RemoteError` is the fault of whoever sent us the input (a peer, a client, a
file), `LocalError` is ours (configuration, a corrupt data directory).  The
API and CLI turn these into clear messages and codes; they never show a
traceback for a `ChainError`.
"""

from __future__ import annotations


class ChainError(Exception):
    """Base of all expected errors; `code` is stable across releases."""

    code: str = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class RemoteError(ChainError):
    """Input that arrived from outside was bad; the sender is to blame."""

    code = "bad_input"


class LocalError(ChainError):
    """Our own configuration or data is wrong; the operator must act."""

    code = "local_error"


class DecodeError(RemoteError):
    """Bytes that are not a canonical encoding of the expected structure."""

    code = "malformed"


class ValidationError(RemoteError):
    """A well-formed object that breaks a rule (signature, role, replay, ...)."""

    code = "invalid"


class IdentityError(RemoteError):
    """A certificate that does not satisfy the pilot's PKI rules."""

    code = "bad_certificate"


class ConfigError(LocalError):
    """A configuration or genesis file that cannot be used."""

    code = "bad_config"


class StorageError(LocalError):
    """The data directory is missing, locked or inconsistent."""

    code = "storage_error"


class StorageLockedError(StorageError):
    """Another process holds the database's lock."""

    code = "storage_locked"


class DiskFullError(StorageError):
    """The filesystem under the data directory has no space left."""

    code = "disk_full"


class StorageCorruptError(StorageError):
    """A database file fails its checksums or the ledger's own consistency checks."""

    code = "storage_corrupt"


class StoragePermissionError(StorageError):
    """The data directory cannot be read or written by this process."""

    code = "storage_permission"


class InvariantError(AssertionError):
    """One of the program's own invariants broke: a bug, never bad input.

    Raised by always-on checks (`if not ...: raise InvariantError(...)`) where an `assert` would
    vanish under `python -O`; the engine and storage check their invariants this way.
    """
