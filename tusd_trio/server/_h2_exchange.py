"""One HTTP/2 stream as an :class:`~._exchange.Exchange`.

The connection's reader task feeds the stream's DATA frames in (:meth:`H2Exchange.feed`);
the handler takes them out, and only then is their flow-control window given back,
so a connection buffers at most its receive window of request bodies.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

import h2.connection
import h2.exceptions
import trio

from ..protocol import errors
from ..protocol.messages import Request
from ._exchange import Sink, pump_chunks
from ._framing import RawHeaders, encode_headers, http_date, without_hop_by_hop
from ._streams import ConnectionClosedError


class StreamOwner(Protocol):
    """What a stream needs of its HTTP/2 connection (``_h2.H2Connection``)."""

    conn: h2.connection.H2Connection
    closed: bool
    remote_addr: str

    @property
    def network_timeout(self) -> float: ...

    def ack(self, stream_id: int, length: int) -> None: ...

    async def flush(self) -> None: ...

    async def flush_quietly(self) -> None: ...

    async def send_data(self, stream_id: int, data: bytes | memoryview, end: bool) -> None: ...


class H2Exchange:
    """One HTTP/2 stream: the request the reader task parsed, its body as the
    client sends it, and the response as HEADERS and DATA frames."""

    def __init__(
        self, connection: StreamOwner, stream_id: int, request: Request, has_body: bool
    ) -> None:
        self._h2 = connection
        self.stream_id = stream_id
        self.request = request
        self.has_body = has_body
        self.body_done = not has_body
        self.received = 0
        self.trailers: list[tuple[str, str]] = []
        self.response_started = False
        self.close_after = False
        self._chunks: deque[tuple[bytes, int]] = deque()
        self._ended = False
        self.reset = False
        self._arrived = trio.Event()
        self.pending_trailers: list[tuple[str, str]] = []
        self.response_complete = False

    @property
    def remote_addr(self) -> str:
        return self._h2.remote_addr

    # --- fed by the connection's reader --------------------------------------------

    def feed(self, data: bytes, flow_length: int) -> None:
        if self._ended or self.reset:
            self._h2.ack(self.stream_id, flow_length)
            return
        self._chunks.append((data, flow_length))
        self._arrived.set()

    def end(self) -> None:
        self._ended = True
        self._arrived.set()

    def abort(self) -> None:
        self.reset = True
        self._arrived.set()

    def discard(self) -> int:
        """Drop queued, unread body bytes; the flow-control length they held."""
        total = sum(length for _, length in self._chunks)
        self._chunks.clear()
        return total

    # --- read by the handler ---------------------------------------------------------

    async def receive_body_chunk(self) -> bytes | None:
        """The next DATA frame's bytes, ``None`` at the end of the stream (a reset
        stream or connection mid-body is ``UnexpectedEOFError``)."""
        while True:
            if self.body_done:
                return None
            if self._chunks:
                data, length = self._take_queued()
                self._h2.ack(self.stream_id, length)
                if data:
                    self.received += len(data)
                    # The window update goes out with the next read or write.
                    return data
                continue
            if self._ended:
                self.body_done = True
                self.trailers = self.pending_trailers
                return None
            if self.reset or self._h2.closed:
                self.body_done = True
                raise errors.UnexpectedEOFError()
            # A fresh event before the flush (a checkpoint): data fed meanwhile sets it.
            self._arrived = trio.Event()
            await self._h2.flush_quietly()
            with trio.move_on_after(self._h2.network_timeout) as scope:
                await self._arrived.wait()
            if scope.cancelled_caught:
                raise errors.ReadTimeoutError()

    def _take_queued(self) -> tuple[bytes, int]:
        """Every DATA frame queued so far as one chunk, and their flow-control length.

        One read of the connection brings many frames (16 KiB each from most
        clients): handing them over together means one acknowledgement and one
        write to the store per read instead of one per frame.
        """
        chunks = self._chunks
        if len(chunks) == 1:
            return chunks.popleft()
        parts = [data for data, _ in chunks]
        return b"".join(parts), self.discard()

    async def pump_body(
        self, sink: Sink, limit: int | None, *, sink_is_async: bool = False
    ) -> bool:
        return await pump_chunks(self, sink, limit, sink_is_async=sink_is_async)

    # --- the answer ---------------------------------------------------------------------

    async def send_informational(self, status: int, headers: list[tuple[str, str]]) -> None:
        self._send_headers(status, encode_headers(headers), end=False)
        await self._h2.flush()

    async def start_response(
        self, status: int, headers: RawHeaders, body: bytes = b"", *, end: bool
    ) -> None:
        self.response_started = True
        self._send_headers(status, headers, end=end and not body)
        if body:
            await self._h2.send_data(self.stream_id, body, end)
        else:
            await self._h2.flush()
        if end:
            self.response_complete = True

    async def send_body(self, data: bytes) -> None:
        await self._h2.send_data(self.stream_id, data, False)

    async def end_response(self) -> None:
        await self._h2.send_data(self.stream_id, b"", True)
        self.response_complete = True

    def _send_headers(self, status: int, headers: RawHeaders, *, end: bool) -> None:
        if self.reset or self._h2.closed:
            raise ConnectionClosedError(reset=True)
        out = [(b":status", str(status).encode("ascii"))]
        out += without_hop_by_hop(headers)
        out.append((b"date", http_date()))
        try:
            self._h2.conn.send_headers(self.stream_id, out, end_stream=end)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            raise ConnectionClosedError(reset=True) from None
