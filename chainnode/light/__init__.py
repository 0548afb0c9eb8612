"""Light clients: follow a chain by certified headers alone, from its genesis.

`verify` holds the rules (pure); `store` keeps an offline client's state and headers in a
directory; `sync` drives it against a node's API.  The layer sits on the core and under the
application: the on-chain light clients of `chainnode.app.xchain` use the same rules.
"""

from chainnode.light.verify import (
    LIGHT_CHECKS,
    LightError,
    LightState,
    ValidatorChangeProof,
    advance,
    check_conflict,
    compute_validator_change_proof,
    decode_light_state,
    decode_validator_change_proof,
    start_light_state,
    validator_change_proof_from_json,
    verify_certified_header,
    verify_validator_change,
)

__all__ = [
    "LIGHT_CHECKS",
    "LightError",
    "LightState",
    "ValidatorChangeProof",
    "advance",
    "check_conflict",
    "compute_validator_change_proof",
    "decode_light_state",
    "decode_validator_change_proof",
    "start_light_state",
    "validator_change_proof_from_json",
    "verify_certified_header",
    "verify_validator_change",
]
