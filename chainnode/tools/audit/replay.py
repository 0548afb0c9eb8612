"""The auditor's own in-memory state, replayed from the genesis file (or a checkpoint).

The validator set that certifies a height is read from it (`get_validators`), never from the
source (see "Validator sets" in the package docstring).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from chainnode.app import governance
from chainnode.app.proof import ProofError
from chainnode.app.state import StateReader
from chainnode.core import identity_records, quorum
from chainnode.core.errors import ChainError, DecodeError
from chainnode.tools.audit.report import fail

# ---------------------------------------------------------------- replay state


class ReplayState:
    """The auditor's own state: a dict from genesis (or a checkpoint) plus applied write sets."""

    def __init__(self, items: Mapping[bytes, bytes]) -> None:
        self._values = dict(items)
        self._validator_sets: dict[bytes, quorum.ValidatorSet] = {}  # decoded, by their encoding
        # Sorted once for both readers at the end (the stored-state check and the checkpoint).
        self._sorted_items: list[tuple[bytes, bytes]] | None = None

    def get_state(self, key: bytes) -> bytes | None:
        return self._values.get(key)

    def apply_write_set(self, write_set: Mapping[bytes, bytes | None]) -> None:
        self._sorted_items = None
        for key, value in write_set.items():
            if value is None:
                self._values.pop(key, None)
            else:
                self._values[key] = value

    def get_sorted_items(self) -> Sequence[tuple[bytes, bytes]]:
        if self._sorted_items is None:
            self._sorted_items = sorted(self._values.items())
        return self._sorted_items

    def get_validators(self, height: int) -> tuple[bytes, quorum.ValidatorSet]:
        """The validator set of `height`: `val/set` in the replayed state (see the module doc)."""
        encoded = self.get_state(identity_records.VALIDATOR_SET_KEY) or b""
        validators = self._validator_sets.get(encoded)
        if validators is None:
            try:
                validators = quorum.decode_validator_set(encoded)
            except DecodeError as error:
                raise fail(
                    height, "validator_set", f"the replayed state holds no validator set: {error}"
                ) from None
            self._validator_sets[encoded] = validators
        return encoded, validators


# ---------------------------------------------------------------- validator sets for proofs


class StateValidatorSets:
    """Validator sets from the history in a replayed state (an audit checkpoint's), exact up to
    `height_max`: the `ValidatorSets` lookup of `chainnode.app.proof` for proofs of later heights
    than the genesis set certifies (see "Validator sets" in that module's docstring)."""

    def __init__(self, state: StateReader, height_max: int) -> None:
        self.state = state
        self.height_max = height_max

    def get_validator_set(self, height: int) -> quorum.ValidatorSet:
        if height > self.height_max:
            raise ProofError(
                "validator_set",
                f"height {height} is past what the replayed state knows ({self.height_max}); audit further",
            )
        try:
            return governance.get_validator_set_at(self.state, height)
        except ChainError as error:
            raise ProofError(
                "validator_set", f"no validator set for height {height}: {error.message}"
            ) from error
