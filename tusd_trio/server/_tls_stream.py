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
import threading
from typing import Any

import trio

#: Where ciphertext waiting in the kernel is read to while batching: one per thread
#: (per event loop; it is filled and emptied without an await), made on first use so
#: that a server without TLS does not hold it.
_RAW_SIZE = 256 * 1024
#: The largest batch ``receive_some`` returns (the HTTP/2 reader asks for this much).
_PLAIN_SIZE = 256 * 1024
_per_thread = threading.local()


def _raw_view() -> memoryview:
    view: memoryview | None = getattr(_per_thread, "view", None)
    if view is None:
        view = _per_thread.view = memoryview(bytearray(_RAW_SIZE))
    return view


def _plain_view(size: int) -> memoryview:
    """Where ``receive_some`` decrypts a batch: one per thread like :func:`_raw_view`
    (filled and copied out without an await), as large as the largest batch yet."""
    view: memoryview | None = getattr(_per_thread, "plain", None)
    if view is None or len(view) < size:
        view = _per_thread.plain = memoryview(bytearray(size))
    return view


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
            await self._raise_pending_error()
        first = await self.tls.receive_some(max_bytes)
        got = len(first)
        if not got or max_bytes is None or self._object is None or got >= max_bytes:
            return bytes(first)
        # The further records are decrypted behind where the first one goes, which is
        # copied there only when there were any (mostly there are none).
        limit = min(max_bytes, _PLAIN_SIZE)
        plain = _plain_view(limit)
        total = self._decrypt_ready(plain, got, limit)
        if total == got:
            return bytes(first)
        plain[:got] = first
        return bytes(plain[:total])

    async def recv_into(self, view: memoryview, nbytes: int, /) -> int:
        """Like a socket's ``recv_into``: decrypted bytes into ``view[:nbytes]``, as
        many as are here once at least one record is (0 at the end of the stream).
        The HTTP/1.1 body pump reads a large body this way, past h11."""
        if self._error is not None:
            await self._raise_pending_error()
        first = await self.tls.receive_some(nbytes)
        got = len(first)
        view[:got] = first
        if not got or self._object is None:
            return got
        return self._decrypt_ready(view, got, nbytes)

    def _decrypt_ready(self, view: memoryview, got: int, limit: int) -> int:
        """Decrypt into ``view[got:limit]`` every complete record already here (in the
        TLS object or waiting in the kernel), without waiting; the new end of the data."""
        # SSLObject.read(len, buffer) decrypts into any writable buffer and returns a
        # count (typeshed knows only bytearray and bytes).
        obj: Any = self._object
        while got < limit:
            try:
                n: int = obj.read(limit - got, view[got:limit])
            except ssl.SSLWantReadError:
                if self._pull():
                    continue
                break
            except ssl.SSLError:
                break
            if not n:
                break
            got += n
        return got

    def _pull(self) -> bool:
        """Move ciphertext waiting in the kernel into the TLS object; False if none."""
        if self._fd < 0 or self._incoming is None:
            return False
        try:
            raw = _raw_view()
            n = os.readv(self._fd, [raw])
        except BlockingIOError:
            return False
        except OSError as exc:
            self._error = exc
            return False
        if not n:
            # EOF: trio's next read sees it too (the kernel repeats it).
            return False
        self._incoming.write(raw[:n])
        return True

    async def _raise_pending_error(self) -> None:
        error, self._error = self._error, None
        await trio.lowlevel.checkpoint()
        raise trio.BrokenResourceError from error

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.tls.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.tls.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self.tls.aclose()
