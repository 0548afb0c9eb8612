"""Tests of the pure p2p handshake: a dialer and a listener wired together in memory.

No socket, no TLS, no clock: what TLS proved arrives as an entity id, the node's verdict as a
table, frames as bytes handed from one object to the other.  Each test asserts the exact action
each end returns.  The same objects run over real sockets in `tests/integration/test_p2p.py`.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chainnode.core import codec
from chainnode.core.errors import InvariantError
from p2p.handshake import (
    CHAIN_ID_LENGTH_MAX,
    CLOSE_CODE_PROTOCOL,
    CLOSE_CODE_REFUSED,
    ENTITY_ID_LENGTH_MAX,
    GENESIS_HASH_BYTES_MAX,
    HELLO_BYTES_MAX,
    PRE_HELLO_BYTES_MAX,
    Accept,
    Action,
    AskAuthorization,
    AwaitFrame,
    Handshake,
    Hello,
    Refuse,
    State,
    decode_hello,
    decode_hello_ack,
    encode_hello,
    encode_hello_ack,
)

CHAIN_ID = "pilot-test"
GENESIS_HASH = bytes(range(32))
HANDSHAKE_PATH = Path(__file__).resolve().parents[2] / "p2p" / "handshake.py"
# What the handshake may import besides `chainnode.core`: no socket, TLS, clock or event loop.
PURE_STDLIB = {"__future__", "dataclasses", "enum", "typing"}


def own(entity_id: str, *, chain_id: str = CHAIN_ID, genesis_hash: bytes = GENESIS_HASH) -> Hello:
    return Hello(chain_id, genesis_hash, entity_id)


def hello_from(entity_id: str, **changes: object) -> bytes:
    return encode_hello(own(entity_id, **changes))  # type: ignore[arg-type]


@dataclass
class End:
    """One end of the wire: its handshake, the node's refusals, what it sent and its last action."""

    handshake: Handshake
    refusals: dict[str, str] = field(default_factory=dict)
    sent: list[bytes] = field(default_factory=list)
    action: Action | None = None

    def settle(self, action: Action) -> None:
        """Answer the node's part (authorization) until the action needs the wire or ends."""
        while isinstance(action, AskAuthorization):
            action = self.handshake.receive_verdict(self.refusals.get(action.entity_id))
        if isinstance(action, AwaitFrame) and action.send is not None:
            self.sent.append(action.send)
        if isinstance(action, Accept) and action.reply is not None:
            self.sent.append(action.reply)
        self.action = action


def connect(
    dialer_hello: Hello,
    listener_hello: Hello,
    *,
    dial_to: str | None = None,
    client_certificate: str | None = None,
    server_certificate: str | None = None,
    dialer_refuses: dict[str, str] | None = None,
    listener_refuses: dict[str, str] | None = None,
) -> tuple[End, End]:
    """Run one handshake in memory; each certificate names its owner's own id unless told."""
    dialer = End(
        Handshake.dialer(dialer_hello, dial_to or listener_hello.entity_id), dict(dialer_refuses or {})
    )
    listener = End(Handshake.listener(listener_hello), dict(listener_refuses or {}))
    dialer.settle(dialer.handshake.receive_certificate(server_certificate or listener_hello.entity_id))
    listener.settle(listener.handshake.receive_certificate(client_certificate or dialer_hello.entity_id))
    # The wire: each frame one end sent goes to the other, while it still awaits one.
    delivered = {"dialer": 0, "listener": 0}
    progress = True
    while progress:
        progress = False
        for sender, receiver, name in ((dialer, listener, "dialer"), (listener, dialer, "listener")):
            if delivered[name] < len(sender.sent) and isinstance(receiver.action, AwaitFrame):
                frame = sender.sent[delivered[name]]
                delivered[name] += 1
                receiver.settle(receiver.handshake.receive_frame(frame))
                progress = True
    return dialer, listener


def listener_awaiting_hello(certificate: str | None = "node-b") -> Handshake:
    listener = Handshake.listener(own("node-a"))
    assert listener.receive_certificate(certificate) == AwaitFrame()
    return listener


def dialer_awaiting_ack() -> Handshake:
    dialer = Handshake.dialer(own("node-b"), "node-a")
    assert dialer.receive_certificate("node-a") == AskAuthorization("node-a")
    assert dialer.receive_verdict(None) == AwaitFrame(send=hello_from("node-b"))
    return dialer


# ---------------------------------------------------------------- the wire format


def test_the_wire_format_is_unchanged() -> None:
    # The bytes of this version's peers; a change here splits the network.
    assert encode_hello(own("node-a")).hex() == (
        "952801aa70696c6f742d74657374c420000102030405060708090a0b0c0d0e0f"
        "101112131415161718191a1b1c1d1e1fa66e6f64652d61"
    )
    assert encode_hello_ack("node-b").hex() == "932901a66e6f64652d62"
    assert decode_hello(encode_hello(own("node-a"))) == own("node-a")
    assert decode_hello_ack(encode_hello_ack("node-b")) == "node-b"


def test_the_largest_hello_fits_the_limits_before_authentication() -> None:
    # Every character as wide as UTF-8 makes it: the largest hello `decode_hello` accepts.
    widest = Hello("\U0001f512" * CHAIN_ID_LENGTH_MAX, b"\xff" * GENESIS_HASH_BYTES_MAX, "\U0001f512" * 256)
    assert len(widest.entity_id) == ENTITY_ID_LENGTH_MAX
    data = encode_hello(widest)
    assert decode_hello(data) == widest
    assert len(data) <= HELLO_BYTES_MAX
    # A frame header is at most 14 bytes, a control frame 131: room for a few of them.
    assert PRE_HELLO_BYTES_MAX >= HELLO_BYTES_MAX + 14 + 4 * 131


# ---------------------------------------------------------------- the happy path


@pytest.mark.parametrize(("dialer_id", "listener_id"), [("node-b", "node-a"), ("node-a", "node-b")])
def test_both_ends_accept_each_other(dialer_id: str, listener_id: str) -> None:
    dialer, listener = connect(own(dialer_id), own(listener_id))
    assert dialer.sent == [hello_from(dialer_id)]
    assert listener.action == Accept(dialer_id, reply=encode_hello_ack(listener_id))
    assert dialer.action == Accept(listener_id)
    assert (dialer.handshake.state, listener.handshake.state) == (State.ACCEPTED, State.ACCEPTED)
    assert (dialer.handshake.peer_id, listener.handshake.peer_id) == (listener_id, dialer_id)


def test_the_dialer_asks_the_node_before_it_says_anything() -> None:
    dialer = Handshake.dialer(own("node-b"), "node-a")
    assert dialer.receive_certificate("node-a") == AskAuthorization("node-a")
    assert dialer.state is State.AWAIT_VERDICT


def test_the_listener_asks_the_node_about_the_certified_entity() -> None:
    listener = listener_awaiting_hello("node-b")
    assert listener.receive_frame(hello_from("node-b")) == AskAuthorization("node-b")
    assert listener.receive_verdict(None) == Accept("node-b", reply=encode_hello_ack("node-a"))


# ---------------------------------------------------------------- refusals by the listener


def test_a_hello_for_another_chain_is_refused() -> None:
    dialer, listener = connect(own("node-b", chain_id="other-chain"), own("node-a"))
    assert listener.action == Refuse(
        CLOSE_CODE_REFUSED, "wrong chain id 'other-chain', expected 'pilot-test'"
    )
    assert dialer.action == AwaitFrame(send=hello_from("node-b", chain_id="other-chain"))  # sees the close


def test_a_hello_with_another_genesis_is_refused() -> None:
    _, listener = connect(own("node-b", genesis_hash=b"\x01" * 32), own("node-a"))
    assert listener.action == Refuse(CLOSE_CODE_REFUSED, "wrong genesis hash " + "01" * 32)
    assert listener.handshake.state is State.REFUSED
    assert listener.handshake.peer_id is None


def test_a_hello_naming_another_entity_than_the_certificate_is_refused() -> None:
    _, listener = connect(own("node-b"), own("node-a"), client_certificate="node-x")
    assert listener.action == Refuse(
        CLOSE_CODE_REFUSED, "the certificate names 'node-x' but the hello names 'node-b'"
    )


def test_a_refusal_by_the_listeners_node_is_its_reason() -> None:
    dialer, listener = connect(own("mallory"), own("node-a"), listener_refuses={"mallory": "holds no role"})
    assert listener.action == Refuse(CLOSE_CODE_REFUSED, "holds no role")
    assert dialer.handshake.state is State.AWAIT_ACK


@pytest.mark.parametrize(
    ("problem", "reason"),
    [(None, "no client certificate"), ("peer certificate has 2 common names, expected 1",) * 2],
)
def test_a_client_without_a_certified_entity_is_refused_on_its_hello(
    problem: str | None, reason: str
) -> None:
    listener = listener_awaiting_hello(None) if problem is None else Handshake.listener(own("node-a"))
    if problem is not None:
        assert listener.receive_certificate(None, problem=problem) == AwaitFrame()
    assert listener.receive_frame(hello_from("node-b")) == Refuse(CLOSE_CODE_REFUSED, reason)


# ---------------------------------------------------------------- refusals by the dialer


def test_the_dialer_refuses_a_server_certified_as_another_peer_and_sends_nothing() -> None:
    dialer, listener = connect(own("node-b"), own("node-a"), server_certificate="node-c")
    assert dialer.action == Refuse(
        CLOSE_CODE_REFUSED, "the server's certificate names 'node-c', expected 'node-a'"
    )
    assert dialer.sent == []
    assert listener.action == AwaitFrame()


def test_the_dialer_refuses_a_server_its_node_refuses_and_sends_nothing() -> None:
    dialer, _ = connect(own("node-b"), own("node-a"), dialer_refuses={"node-a": "role revoked"})
    assert dialer.action == Refuse(CLOSE_CODE_REFUSED, "not authorized: role revoked")
    assert dialer.sent == []


def test_the_dialer_refuses_a_server_without_a_certificate() -> None:
    dialer = Handshake.dialer(own("node-b"), "node-a")
    assert dialer.receive_certificate(None) == Refuse(
        CLOSE_CODE_REFUSED, "the server presented no certificate"
    )


def test_the_dialer_refuses_an_ack_naming_another_peer() -> None:
    dialer = dialer_awaiting_ack()
    assert dialer.receive_frame(encode_hello_ack("node-c")) == Refuse(
        CLOSE_CODE_REFUSED, "the hello ack names 'node-c'"
    )


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (codec.encode((41, 1, "node-a", "x")), "malformed hello ack: hello ack: expected 3 fields, got 4"),
        (hello_from("node-a"), "malformed hello ack: hello ack: expected 3 fields, got 5"),
        ("ack", "the hello ack must be a binary frame"),
        (b"\x00" * (HELLO_BYTES_MAX + 1), f"oversize hello ack: {HELLO_BYTES_MAX + 1} bytes, at most 4096"),
    ],
)
def test_the_dialer_refuses_a_bad_ack_as_a_protocol_breach(frame: bytes | str, reason: str) -> None:
    assert dialer_awaiting_ack().receive_frame(frame) == Refuse(CLOSE_CODE_PROTOCOL, reason)


# ---------------------------------------------------------------- what breaks the protocol


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"", "malformed hello: empty input"),
        (hello_from("node-b").replace(b"\x28", b"\xcc\x28", 1), "malformed hello: non-canonical encoding"),
        (codec.encode((40, 1)), "malformed hello: hello: expected 5 fields, got 2"),
        (encode_hello_ack("node-b"), "malformed hello: hello: expected 5 fields, got 3"),
        (
            codec.encode((40, 2, CHAIN_ID, GENESIS_HASH, "node-b")),
            "malformed hello: hello: unsupported version 2",
        ),
        (
            codec.encode((40, 1, CHAIN_ID, "not bytes", "node-b")),
            "malformed hello: hello genesis hash: expected bytes",
        ),
        (b"\x00" * 4000, "malformed hello: trailing bytes after the encoded value"),
        ("hello", "the hello must be a binary frame"),
    ],
)
def test_garbage_for_a_hello_is_refused_as_a_protocol_breach(frame: bytes | str, reason: str) -> None:
    listener = listener_awaiting_hello()
    assert listener.receive_frame(frame) == Refuse(CLOSE_CODE_PROTOCOL, reason)
    assert listener.state is State.REFUSED


def test_a_frame_over_the_hello_limit_is_refused_before_it_is_decoded() -> None:
    # A well-formed hello, too large only because of its chain id: the size alone decides.
    oversize = hello_from("node-b", chain_id="c" * HELLO_BYTES_MAX)
    assert listener_awaiting_hello().receive_frame(oversize) == Refuse(
        CLOSE_CODE_PROTOCOL, f"oversize hello: {len(oversize)} bytes, at most {HELLO_BYTES_MAX}"
    )
    at_the_limit = b"\x00" * HELLO_BYTES_MAX
    assert listener_awaiting_hello().receive_frame(at_the_limit) == Refuse(
        CLOSE_CODE_PROTOCOL, "malformed hello: trailing bytes after the encoded value"
    )


def test_bytes_that_are_no_msgpack_are_refused_as_a_protocol_breach() -> None:
    action = listener_awaiting_hello().receive_frame(b"\xc1\xc1 not msgpack")
    assert isinstance(action, Refuse)
    # The rest of the reason is msgpack's own words, which differ between its versions.
    assert action.close_code == CLOSE_CODE_PROTOCOL
    assert action.reason.startswith("malformed hello: not a valid msgpack value (")


@given(st.binary(max_size=HELLO_BYTES_MAX + 64))
def test_any_first_frame_ends_in_an_action_never_an_exception(frame: bytes) -> None:
    action = listener_awaiting_hello().receive_frame(frame)
    assert isinstance(action, (Refuse, AskAuthorization))
    if isinstance(action, Refuse):
        assert action.close_code in (CLOSE_CODE_PROTOCOL, CLOSE_CODE_REFUSED)


def test_no_hello_before_the_timeout_is_refused() -> None:
    assert listener_awaiting_hello().receive_timeout() == Refuse(
        CLOSE_CODE_PROTOCOL, "no hello before the handshake timeout"
    )
    assert dialer_awaiting_ack().receive_timeout() == Refuse(
        CLOSE_CODE_PROTOCOL, "no hello ack before the handshake timeout"
    )


# ---------------------------------------------------------------- one hello per connection


def test_a_second_hello_before_the_first_is_answered_is_refused() -> None:
    listener = listener_awaiting_hello()
    assert listener.receive_frame(hello_from("node-b")) == AskAuthorization("node-b")
    assert listener.receive_frame(hello_from("node-b")) == Refuse(
        CLOSE_CODE_PROTOCOL, "a second hello before the first was answered"
    )
    with pytest.raises(InvariantError, match="after the handshake ended"):
        listener.receive_verdict(None)  # the refusal stands: the node's verdict comes too late


def test_a_listener_speaking_before_the_dialers_hello_is_refused() -> None:
    dialer = Handshake.dialer(own("node-b"), "node-a")
    dialer.receive_certificate("node-a")
    assert dialer.receive_frame(encode_hello_ack("node-a")) == Refuse(
        CLOSE_CODE_PROTOCOL, "the listener spoke before the hello"
    )


@pytest.mark.parametrize("end", ["dialer", "listener"])
def test_nothing_is_taken_after_the_accept(end: str) -> None:
    dialer, listener = connect(own("node-b"), own("node-a"))
    handshake = dialer.handshake if end == "dialer" else listener.handshake
    # After the accept the listener's frames go to the node, and the listener never sends.
    with pytest.raises(InvariantError, match="after the handshake ended"):
        handshake.receive_frame(hello_from("node-b"))
    assert handshake.state is State.ACCEPTED


# ---------------------------------------------------------------- our own mistakes raise


def test_calls_out_of_order_are_the_callers_bug() -> None:
    listener = Handshake.listener(own("node-a"))
    with pytest.raises(InvariantError, match="before the certificate"):
        listener.receive_frame(hello_from("node-b"))
    with pytest.raises(InvariantError, match="a verdict was fed to the listener in state await_certificate"):
        listener.receive_verdict(None)
    with pytest.raises(InvariantError, match="awaits no frame"):
        listener.receive_timeout()
    listener.receive_certificate("node-b")
    with pytest.raises(InvariantError, match="a certificate was fed to the listener in state await_hello"):
        listener.receive_certificate("node-b")
    with pytest.raises(InvariantError, match="only a dialer"):
        Handshake(Handshake.listener(own("node-a")).role, own("node-a"), peer_id_expected="node-b")


# ---------------------------------------------------------------- the handshake stays pure


def find_impure_imports(source: str) -> list[str]:
    """The modules `source` imports (inside functions too) that may do I/O or read a clock."""
    impure = []
    for node in ast.walk(ast.parse(source)):
        names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom):
            names = [node.module or "."] if node.level == 0 else ["."]
        for name in names:
            if not (name.split(".")[0] in PURE_STDLIB or name.startswith("chainnode.core")):
                impure.append(name)
    return impure


def test_the_handshake_imports_only_the_core_and_pure_modules() -> None:
    assert find_impure_imports(HANDSHAKE_PATH.read_text()) == []
    # The check sees what a careless change would bring in, at any depth.
    planted = "def later() -> None:\n    import asyncio\n    from p2p import tls\n    from . import x\n"
    assert find_impure_imports(planted) == ["asyncio", "p2p", "."]
