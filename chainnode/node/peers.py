"""Peer policy: who may hold a p2p connection to this node, judged on committed state.

A peer must be a registered entity whose certificate is not revoked for the next height, is
the registered one, and verifies against its own zone's authority (which must be admitted and
active) and the network root; and it must be in the current validator set or hold the
`observer` role.  The transport asks at each handshake; after every block that touches
identities, zones or the validator set the node asks again for every connected peer and drops
those that no longer qualify.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from cryptography import x509

from chainnode.core import identity, identity_records, quorum
from chainnode.core.errors import ChainError, StorageError
from chainnode.node.clock import get_time_ms
from p2p.transport import Transport
from storage.ledger import Ledger

log = logging.getLogger("chainnode.node.peers")

# State keys whose change can take a peer's right to connect away.
PEER_AFFECTING_PREFIXES = (b"id/e/", b"id/z/", identity_records.VALIDATOR_SET_KEY)


class PeerPolicy:
    def __init__(
        self,
        *,
        ledger: Ledger,
        root_certificate: x509.Certificate,
        get_validator_set: Callable[[int], quorum.ValidatorSet],
        on_storage_failure: Callable[[Exception], None],
    ) -> None:
        self._ledger = ledger
        self._root_certificate = root_certificate
        self._get_validator_set = get_validator_set
        self._on_storage_failure = on_storage_failure

    def authorize(self, entity_id: str, certificate_der: bytes) -> str | None:
        """None when `entity_id` may connect with this certificate; otherwise why not."""
        try:
            certificate = identity.certificate_from_der(certificate_der)
            problem = self.find_problem(entity_id)
            if problem is not None:
                return problem
            record = identity_records.decode_entity_record(
                self._ledger.get_state(identity_records.entity_key(entity_id)) or b""
            )
            if identity.public_key_of(certificate) != record.public_key:
                return f"the certificate is not the one registered for {entity_id}"
            zone = identity_records.decode_zone_record(
                self._ledger.get_state(identity_records.zone_key(record.zone)) or b""
            )
            zone_certificate = identity.certificate_from_der(zone.certificate)
            identity.verify_entity_certificate(
                certificate, zone_certificate, self._root_certificate, at_ms=get_time_ms()
            )
        except StorageError as error:
            # Our disk failed, not the peer: stop rather than refuse peers one by one.
            self._on_storage_failure(error)
            return "the node is stopping"
        except ChainError as error:
            return error.message
        return None

    def find_problem(self, entity_id: str) -> str | None:
        """What in committed state keeps `entity_id` out (the certificate aside), or None."""
        record_bytes = self._ledger.get_state(identity_records.entity_key(entity_id))
        if record_bytes is None:
            return f"{entity_id} is not a registered entity"
        record = identity_records.decode_entity_record(record_bytes)
        next_height = self._ledger.get_head().height + 1
        if record.is_revoked_at(next_height):
            return f"the certificate of {entity_id} is revoked"
        if self._get_validator_set(next_height).index_of(entity_id) is None and not record.has_role(
            "observer"
        ):
            return f"{entity_id} is not a current validator and lacks the observer role"
        zone_bytes = self._ledger.get_state(identity_records.zone_key(record.zone))
        if zone_bytes is None:
            return f"zone {record.zone} is not admitted"
        zone = identity_records.decode_zone_record(zone_bytes)
        if not zone.active:
            return f"zone {record.zone} is suspended or removed"
        return None

    def disconnect_unauthorized(self, transport: Transport) -> None:
        """Drop every connected peer that no longer qualifies."""
        for peer_id in sorted(set(transport.connected_peers()) | set(transport.inbound_peers())):
            problem = self.find_problem(peer_id)
            if problem is not None:
                log.warning("disconnecting %s: %s", peer_id, problem)
                transport.disconnect(peer_id)
