"""A TLS connection that hands the HTTP layer every record already received, at once.

``trio.SSLStream.receive_some`` returns one TLS record (at most 16 KiB of plaintext)
per call and passes through the scheduler each time, so a streamed upload over TLS
costs one trip through the event loop, one h11 or h2 parse and one file write per
16 KiB.  :class:`BatchingTLSStream` does one ``SSLStream.receive_some`` (which
waits for the socket when nothing is there) and then, without awaiting, decrypts
every further complete record: those trio already moved into the TLS object's
incoming buffer and those waiting in the kernel (read with a non-blocking
``os.read`` on the socket, as trio's own read would).  So one trip returns up to
``max_bytes`` of plaintext.

What this relies on (trio 0.2x; ``tests/server/test_tls_stream.py`` fails if it
changes): ``SSLStream._ssl_object`` (the ``ssl.SSLObject``) and
``SSLStream._incoming`` (its incoming ``ssl.MemoryBIO``).  Without them (a future
trio) every read goes through ``SSLStream.receive_some`` unchanged.

Only the connection's one reading task reads, and the synchronous part cannot be
interleaved with another task's TLS operation (nothing awaits in between), so the
TLS object sees the same sequence of calls as under trio's own loop.  Anything but
"need more bytes" (an alert, the peer's close_notify, a broken record) stops the
batch; the next ``SSLStream.receive_some`` meets it again and reports it the usual
way.
"""

from __future__ import annotations

import os
import ssl
from typing import Any

import trio

#: Ciphertext read from the kernel per non-blocking read while batching.
_RAW_READ = 256 * 1024


class BatchingTLSStream(trio.abc.Stream):
    """A server-side :class:`trio.SSLStream` (handshake done) whose reads batch records."""

    def __init__(self, tls: trio.SSLStream[Any]) -> None:
        self.tls = tls
        internal: Any = tls
        self._object: ssl.SSLObject | None = getattr(internal, "_ssl_object", None)
        self._incoming: ssl.MemoryBIO | None = getattr(internal, "_incoming", None)
        transport = tls.transport_stream
        self._fd = transport.socket.fileno() if isinstance(transport, trio.SocketStream) else -1
        if not isinstance(self._object, ssl.SSLObject) or not isinstance(
            self._incoming, ssl.MemoryBIO
        ):
            self._object = None
        #: A socket error met while batching, raised by the next read (as trio would).
        self._error: OSError | None = None

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._error is not None:
            error, self._error = self._error, None
            await trio.lowlevel.checkpoint()
            raise trio.BrokenResourceError from error
        first = await self.tls.receive_some(max_bytes)
        if not first or max_bytes is None or self._object is None:
            return bytes(first)
        return self._more(bytes(first), max_bytes)

    def _more(self, first: bytes, max_bytes: int) -> bytes:
        """``first`` plus every complete record already here, up to ``max_bytes``."""
        obj = self._object
        incoming = self._incoming
        assert obj is not None and incoming is not None
        parts = [first]
        total = len(first)
        fd = self._fd
        while total < max_bytes:
            try:
                data = obj.read(max_bytes - total)
            except ssl.SSLWantReadError:
                if fd < 0:
                    break
                try:
                    raw = os.read(fd, _RAW_READ)
                except BlockingIOError:
                    break
                except OSError as exc:
                    self._error = exc
                    break
                if not raw:
                    # EOF: trio's next read sees it too (the kernel repeats it).
                    break
                incoming.write(raw)
                continue
            except ssl.SSLError:
                break
            if not data:
                break
            parts.append(data)
            total += len(data)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.tls.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.tls.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self.tls.aclose()
