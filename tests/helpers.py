"""Test helpers shared by the p2p integration tests and the cluster tests.

They dial a p2p listener as a raw peer: open the websocket over mutual TLS
with whatever certificate chain the test chooses, send a hand-made hello and
return the listener's first answer (a hello ack, or a close frame with its
code and reason).  Every network wait is bounded by `wait_s`.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from p2p.tls import create_client_context

RAW_WAIT_S = 10.0


@dataclass(frozen=True, slots=True)
class NodeFiles:
    """The TLS files a peer presents: its chain (entity certificate + zone CA), key and root CA."""

    chain_path: Path
    key_path: Path
    root_ca_path: Path


async def open_raw(
    port: int,
    ssl_context: ssl.SSLContext,
    session: aiohttp.ClientSession,
    *,
    host: str = "127.0.0.1",
    wait_s: float = RAW_WAIT_S,
) -> aiohttp.ClientWebSocketResponse:
    """Open the p2p websocket of the listener at `host:port`, presenting `ssl_context`'s chain."""
    return await asyncio.wait_for(session.ws_connect(f"wss://{host}:{port}/p2p", ssl=ssl_context), wait_s)


async def raw_hello(
    port: int, files: NodeFiles, hello_bytes: bytes, *, wait_s: float = RAW_WAIT_S
) -> aiohttp.WSMessage:
    """Dial with `files`' certificate, send `hello_bytes`, return the listener's answer."""
    context = create_client_context(files.chain_path, files.key_path, files.root_ca_path)
    async with aiohttp.ClientSession() as session:
        ws = await open_raw(port, context, session, wait_s=wait_s)
        try:
            await ws.send_bytes(hello_bytes)
            return await asyncio.wait_for(ws.receive(), wait_s)
        finally:
            await ws.close()


async def is_refused_at_tls(port: int, ssl_context: ssl.SSLContext, *, wait_s: float = RAW_WAIT_S) -> bool:
    """True when the listener refuses `ssl_context` during (or right after) the TLS handshake.

    With TLS 1.3 the server verifies the client's certificate after the client considers the
    handshake done, so the refusal may only surface on the first read.  Returns False when the
    listener instead answers on the websocket (it accepted the TLS connection).
    """
    async with aiohttp.ClientSession() as session:
        try:
            ws = await open_raw(port, ssl_context, session, wait_s=wait_s)
            message = await asyncio.wait_for(ws.receive(), wait_s)
            await ws.close()
        except (aiohttp.ClientError, ssl.SSLError, ConnectionError):
            return True
    # A close or error frame can still be the TLS alert seen through aiohttp's reader.
    return message.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSED) and isinstance(
        message.data, (ssl.SSLError, ConnectionError, aiohttp.ClientError)
    )
