"""The p2p application handshake: a pure state machine for either end of one connection.

Theory of operation
-------------------
Mutual TLS (`p2p.tls`) proves that each end holds a certificate chaining to the network
root.  This handshake proves the rest in one round trip on the websocket:

    dialer                                              listener
      --- hello (TAG_HELLO, 1, chain id, genesis hash, entity id) --->
      <-- ack (TAG_HELLO_ACK, 1, entity id), or a close with a code and a reason ---

The dialer checks, before it says anything, that the server's certificate names the peer it
meant to dial and that the node authorizes that peer; then it sends its hello and accepts on
an ack that names the same peer.  The listener judges everything once the hello is in (a
connection that ends before it is not a refusal, and its certificate may be unreadable by
then): that the hello is at most `HELLO_BYTES_MAX` bytes and strictly decodes, that the
client certificate names an entity and the hello that same one, that chain id and genesis
hash are its own, and that the node authorizes the entity; it then accepts and acks, or
refuses with a close code: `CLOSE_CODE_PROTOCOL` (4400) when the peer broke the protocol
(malformed, oversize, text, out of turn, too late), `CLOSE_CODE_REFUSED` (4403) when it is
not who, or not on the chain, it must be.

One `Handshake` serves one connection in one role and owns no I/O: it imports no socket,
clock or event loop.  The transport feeds it what arrived (`receive_certificate`,
`receive_frame`, `receive_verdict`, `receive_timeout`) and carries out the one action each
call returns: `AwaitFrame` (send the bytes it holds, if any, then wait for the peer's next
frame), `AskAuthorization` (ask the node, answer with `receive_verdict`), `Accept` or
`Refuse`.  The last two end the handshake.

Errors are split by blame, as in h11.  Whatever the peer sends, in whatever order or size,
ends in a `Refuse`, never in an exception: decoding raises only the typed `DecodeError`,
which becomes a 4400.  A call out of order on our side (a frame fed before the certificate,
a verdict nobody asked for, anything after the end) is a bug of the caller and raises
`InvariantError`.  After an accept the listener's frames belong to the node, not to this
object, so one hello is evaluated per connection: a later one goes to `on_message` like any
frame (and the node's decoder knows no frame with its tag).

Fault model: the peer is past TLS but otherwise untrusted.  Before the accept the transport
reads at most `PRE_HELLO_BYTES_MAX` bytes from it (`p2p.http_guard`), so an oversize frame is
normally never read; one that gets through is refused here before it is decoded.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from chainnode.core import codec
from chainnode.core.codec import expect_bytes, expect_str
from chainnode.core.errors import DecodeError, InvariantError
from chainnode.core.tags import TAG_HELLO, TAG_HELLO_ACK

HELLO_VERSION = 1

CLOSE_CODE_PROTOCOL = 4400
CLOSE_CODE_REFUSED = 4403

ENTITY_ID_LENGTH_MAX = 256
CHAIN_ID_LENGTH_MAX = 256
GENESIS_HASH_BYTES_MAX = 64
HELLO_BYTES_MAX = 4096
"""The largest hello or hello ack, encoded."""
PRE_HELLO_BYTES_MAX = HELLO_BYTES_MAX + 1024
"""What an inbound connection may send before its hello is accepted: the hello frame at its
largest (a websocket header of at most 14 bytes) and a few control frames (131 bytes each)."""


@dataclass(frozen=True, slots=True)
class Hello:
    """The dialer's first frame; a node's own hello is also what the listener compares against."""

    chain_id: str
    genesis_hash: bytes
    entity_id: str
    """The sender's entity id, which its TLS certificate must name in its CN."""


def encode_hello(hello: Hello) -> bytes:
    return codec.encode((TAG_HELLO, HELLO_VERSION, hello.chain_id, hello.genesis_hash, hello.entity_id))


def decode_hello(data: bytes) -> Hello:
    """Strictly decode a hello frame; raises `DecodeError`."""
    fields = codec.expect_struct(
        codec.decode(data, bytes_max=HELLO_BYTES_MAX), TAG_HELLO, HELLO_VERSION, 5, "hello"
    )
    return Hello(
        chain_id=expect_str(fields[2], "hello chain id", CHAIN_ID_LENGTH_MAX),
        genesis_hash=expect_bytes(fields[3], "hello genesis hash", length_max=GENESIS_HASH_BYTES_MAX),
        entity_id=expect_str(fields[4], "hello entity id", ENTITY_ID_LENGTH_MAX),
    )


def encode_hello_ack(entity_id: str) -> bytes:
    return codec.encode((TAG_HELLO_ACK, HELLO_VERSION, entity_id))


def decode_hello_ack(data: bytes) -> str:
    """Strictly decode a hello ack; returns the listener's entity id.  Raises `DecodeError`."""
    fields = codec.expect_struct(
        codec.decode(data, bytes_max=HELLO_BYTES_MAX), TAG_HELLO_ACK, HELLO_VERSION, 3, "hello ack"
    )
    return expect_str(fields[2], "hello ack entity id", ENTITY_ID_LENGTH_MAX)


# ---------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class AwaitFrame:
    """Send `send` to the peer when it is not None, then pass the peer's next frame to
    `receive_frame`, or call `receive_timeout` when none arrives within the handshake timeout."""

    send: bytes | None = None


@dataclass(frozen=True, slots=True)
class AskAuthorization:
    """Ask the node whether `entity_id`, as its TLS certificate proves it, may connect; pass the
    answer to `receive_verdict`."""

    entity_id: str


@dataclass(frozen=True, slots=True)
class Accept:
    """The handshake succeeded: the connection belongs to `peer_id`.

    The transport lifts its pre-hello limits, then sends `reply` when it is not None (the
    listener's ack), in that order: the peer may send a full frame as soon as it has the ack.
    """

    peer_id: str
    reply: bytes | None = None


@dataclass(frozen=True, slots=True)
class Refuse:
    """The handshake failed on our side's judgement: close with `close_code` and `reason`."""

    close_code: int
    reason: str


Action = AwaitFrame | AskAuthorization | Accept | Refuse


class Role(enum.Enum):
    DIALER = "dialer"
    LISTENER = "listener"


class State(enum.Enum):
    AWAIT_CERTIFICATE = "await_certificate"
    """TLS is done; what it proved about the peer comes first."""
    AWAIT_HELLO = "await_hello"
    """The listener waits for the dialer's hello."""
    AWAIT_VERDICT = "await_verdict"
    """The node is asked whether the peer may connect."""
    AWAIT_ACK = "await_ack"
    """The dialer sent its hello and waits for the ack."""
    ACCEPTED = "accepted"
    REFUSED = "refused"


# What each role expects in each state: (the input a call may bring, the state it leads to).
# A frame that comes while the other side has no turn is the peer's fault and refused; any
# other input out of this table is the caller's and raises.
_TRANSITIONS: dict[tuple[Role, State], tuple[str, State]] = {
    (Role.DIALER, State.AWAIT_CERTIFICATE): ("certificate", State.AWAIT_VERDICT),
    (Role.DIALER, State.AWAIT_VERDICT): ("verdict", State.AWAIT_ACK),
    (Role.DIALER, State.AWAIT_ACK): ("frame", State.ACCEPTED),
    (Role.LISTENER, State.AWAIT_CERTIFICATE): ("certificate", State.AWAIT_HELLO),
    (Role.LISTENER, State.AWAIT_HELLO): ("frame", State.AWAIT_VERDICT),
    (Role.LISTENER, State.AWAIT_VERDICT): ("verdict", State.ACCEPTED),
}
_FINAL_STATES = frozenset({State.ACCEPTED, State.REFUSED})


class Handshake:
    """The handshake of one connection, seen from one end."""

    def __init__(self, role: Role, own: Hello, *, peer_id_expected: str | None = None) -> None:
        if (role is Role.DIALER) != (peer_id_expected is not None):
            raise InvariantError("a dialer, and only a dialer, knows which peer it expects")
        self.role = role
        self.state = State.AWAIT_CERTIFICATE
        self._own = own
        self._peer_id_expected = peer_id_expected
        self._certificate_id: str | None = None
        self._certificate_problem = ""  # why TLS named no entity, when it named none
        # The id the handshake settles on: the dialed peer's, or the hello's once checked.
        self.peer_id: str | None = None

    @classmethod
    def dialer(cls, own: Hello, peer_id: str) -> Handshake:
        """The dialing end, which meant to reach `peer_id` and sends `own` as its hello."""
        return cls(Role.DIALER, own, peer_id_expected=peer_id)

    @classmethod
    def listener(cls, own: Hello) -> Handshake:
        """The listening end, which accepts a hello on `own`'s chain and genesis."""
        return cls(Role.LISTENER, own)

    # ------------------------------------------------------------ inputs

    def receive_certificate(self, entity_id: str | None, *, problem: str | None = None) -> Action:
        """What TLS proved: the CN of the peer's verified certificate, or None and the `problem`
        that kept it from naming one (None: no certificate at all)."""
        self._expect("certificate")
        self._certificate_id = entity_id
        if entity_id is None:
            default = self._choose("the server presented no certificate", "no client certificate")
            self._certificate_problem = default if problem is None else problem
        if self.role is Role.LISTENER:
            # Judged with the hello, the dialer's first word: a connection that ends before it
            # (its TLS transport gone, so no certificate could be read) ends unrefused.
            return self._advance(AwaitFrame())
        if entity_id is None:
            return self._refuse(CLOSE_CODE_REFUSED, self._certificate_problem)
        if entity_id != self._peer_id_expected:
            return self._refuse(
                CLOSE_CODE_REFUSED,
                f"the server's certificate names {entity_id!r}, expected {self._peer_id_expected!r}",
            )
        self.peer_id = entity_id
        return self._advance(AskAuthorization(entity_id))

    def receive_frame(self, data: bytes | str) -> Action:
        """A websocket frame from the peer: bytes for a binary frame, str for a text frame."""
        self._check_running("a frame")
        if self.state is State.AWAIT_CERTIFICATE:
            raise InvariantError("a frame was fed before the certificate")
        if self.state is State.AWAIT_VERDICT:
            return self._refuse(
                CLOSE_CODE_PROTOCOL,
                self._choose(
                    "the listener spoke before the hello", "a second hello before the first was answered"
                ),
            )
        what = self._choose("hello ack", "hello")
        if isinstance(data, str):
            return self._refuse(CLOSE_CODE_PROTOCOL, f"the {what} must be a binary frame")
        if len(data) > HELLO_BYTES_MAX:
            return self._refuse(
                CLOSE_CODE_PROTOCOL, f"oversize {what}: {len(data)} bytes, at most {HELLO_BYTES_MAX}"
            )
        try:
            if self.role is Role.DIALER:
                return self._on_hello_ack(decode_hello_ack(data))
            return self._on_hello(decode_hello(data))
        except DecodeError as error:
            return self._refuse(CLOSE_CODE_PROTOCOL, f"malformed {what}: {error.message}")

    def receive_verdict(self, refusal: str | None) -> Action:
        """The node's answer to `AskAuthorization`: None to authorize, else why not."""
        self._expect("verdict")
        if self.peer_id is None:
            raise InvariantError("a verdict is awaited only once the peer's id is known")
        if refusal is not None:
            return self._refuse(CLOSE_CODE_REFUSED, self._choose(f"not authorized: {refusal}", refusal))
        if self.role is Role.DIALER:
            return self._advance(AwaitFrame(send=encode_hello(self._own)))
        return self._advance(Accept(self.peer_id, reply=encode_hello_ack(self._own.entity_id)))

    def receive_timeout(self) -> Action:
        """The handshake timeout passed while `AwaitFrame` waited."""
        self._check_running("a timeout")
        if self.state not in (State.AWAIT_HELLO, State.AWAIT_ACK):
            raise InvariantError(f"a timeout was fed in state {self.state.value}, which awaits no frame")
        what = self._choose("hello ack", "hello")
        return self._refuse(CLOSE_CODE_PROTOCOL, f"no {what} before the handshake timeout")

    # ------------------------------------------------------------ handlers

    def _on_hello(self, hello: Hello) -> Action:
        """The listener's checks, in the order their refusals are reported."""
        own = self._own
        if self._certificate_id is None:
            return self._refuse(CLOSE_CODE_REFUSED, self._certificate_problem)
        if hello.entity_id != self._certificate_id:
            return self._refuse(
                CLOSE_CODE_REFUSED,
                f"the certificate names {self._certificate_id!r} but the hello names {hello.entity_id!r}",
            )
        if hello.chain_id != own.chain_id:
            return self._refuse(
                CLOSE_CODE_REFUSED, f"wrong chain id {hello.chain_id!r}, expected {own.chain_id!r}"
            )
        if hello.genesis_hash != own.genesis_hash:
            return self._refuse(CLOSE_CODE_REFUSED, f"wrong genesis hash {hello.genesis_hash.hex()}")
        self.peer_id = hello.entity_id
        return self._advance(AskAuthorization(hello.entity_id))

    def _on_hello_ack(self, listener_id: str) -> Action:
        if listener_id != self._peer_id_expected:
            return self._refuse(CLOSE_CODE_REFUSED, f"the hello ack names {listener_id!r}")
        return self._advance(Accept(listener_id))

    # ------------------------------------------------------------ state

    def _expect(self, kind: str) -> None:
        """Raise unless `kind` is the input this role awaits now."""
        self._check_running(f"a {kind}")
        expected, _ = _TRANSITIONS[(self.role, self.state)]
        if kind != expected:
            raise InvariantError(f"a {kind} was fed to the {self.role.value} in state {self.state.value}")

    def _check_running(self, what: str) -> None:
        if self.state in _FINAL_STATES:
            raise InvariantError(f"{what} was fed after the handshake ended ({self.state.value})")

    def _advance(self, action: Action) -> Action:
        _, self.state = _TRANSITIONS[(self.role, self.state)]
        if (self.state is State.ACCEPTED) != isinstance(action, Accept):
            raise InvariantError(f"{type(action).__name__} does not lead to {self.state.value}")
        return action

    def _refuse(self, close_code: int, reason: str) -> Refuse:
        self.state = State.REFUSED
        return Refuse(close_code, reason)

    def _choose(self, for_dialer: str, for_listener: str) -> str:
        return for_dialer if self.role is Role.DIALER else for_listener
