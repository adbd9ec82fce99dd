"""Byte streams under the HTTP transports: closing them well, replaying bytes read
ahead, and the error every transport raises when the peer is gone."""

from __future__ import annotations

import socket
from collections.abc import Awaitable
from typing import Protocol

import trio

from ._lowat import LowWaterSocket
from ._tls_stream import BatchingTLSStream

#: The size of one read from a connection.
RECEIVE_SIZE = 64 * 1024
#: A request body left unread up to this size is drained to keep the connection.
DRAIN_LIMIT = 64 * 1024


class ConnectionClosedError(Exception):
    """The peer went away (EOF or reset) while we waited for it or wrote to it."""

    def __init__(self, reset: bool) -> None:
        super().__init__("connection reset" if reset else "connection closed")
        self.reset = reset


async def close_gracefully(stream: trio.abc.Stream, *, linger: bool) -> None:
    """Close a connection; with ``linger``, half-close and read what is left first.

    Reads at most 64 KiB for at most one second, so a peer cannot hold it open.
    """
    with trio.move_on_after(1):
        if linger and isinstance(stream, trio.abc.HalfCloseableStream):
            try:
                await stream.send_eof()
                drained = 0
                while drained <= DRAIN_LIMIT:
                    chunk = await stream.receive_some(RECEIVE_SIZE)
                    if not chunk:
                        break
                    drained += len(chunk)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass
    with trio.move_on_after(1):
        try:
            await stream.aclose()
        except (trio.BrokenResourceError, OSError):
            pass


class ReplayStream(trio.abc.HalfCloseableStream):
    """A stream that first returns bytes already read from it, then reads on.

    Lets the HTTP/1.1 loop serve a connection whose first bytes were read while
    looking for the HTTP/2 preface, and the WebSocket handshake read a request
    head h11 already parsed.
    """

    def __init__(self, stream: trio.abc.Stream, initial: bytes) -> None:
        self.transport_stream = stream
        self._initial = initial

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._initial:
            if max_bytes is None or max_bytes >= len(self._initial):
                data, self._initial = self._initial, b""
            else:
                data, self._initial = self._initial[:max_bytes], self._initial[max_bytes:]
            await trio.lowlevel.checkpoint()
            return data
        return bytes(await self.transport_stream.receive_some(max_bytes))

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.transport_stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.transport_stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        transport = self.transport_stream
        if isinstance(transport, trio.abc.HalfCloseableStream):
            await transport.send_eof()
        else:  # pragma: no cover - the native server wraps socket streams only
            raise trio.ClosedResourceError("the wrapped stream cannot half-close")

    async def aclose(self) -> None:
        await self.transport_stream.aclose()


class DirectReader(Protocol):
    """What the HTTP/1.1 body pump reads a large body from, past h11: a plain
    connection's socket, or a TLS connection's :class:`~._tls_stream.BatchingTLSStream`."""

    def recv_into(self, buffer: memoryview, nbytes: int, /) -> Awaitable[int]: ...


def direct_reader(stream: trio.abc.Stream, read_timeout: float) -> DirectReader | None:
    """What to read request bodies from directly: the socket under a plain (or
    replaying) socket stream (with ``SO_RCVLOWAT``), the batching TLS stream itself,
    else None.  Direct reads start after the request head, i.e. after any replayed
    bytes.  A short read waits at most a quarter of ``read_timeout`` (up to 0.5 s)
    for a full buffer."""
    if isinstance(stream, ReplayStream):
        stream = stream.transport_stream
    if isinstance(stream, BatchingTLSStream):
        return stream
    if isinstance(stream, trio.SocketStream):
        return LowWaterSocket(stream.socket, patience=min(0.5, read_timeout / 4))
    return None


def plain_socket(stream: trio.abc.Stream) -> socket.socket | None:
    """The standard-library socket under a plain socket stream (None under TLS and
    for a replaying stream), for calls tried before trio is asked to wait: trio
    opens a checkpoint around every call, even one the kernel answers at once.
    The socket is non-blocking (trio made it so)."""
    if type(stream) is not trio.SocketStream:
        return None
    sock = getattr(stream.socket, "_sock", None)
    return sock if isinstance(sock, socket.socket) else None
