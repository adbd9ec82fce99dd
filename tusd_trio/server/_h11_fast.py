"""The HTTP/1.1 fast path: the only code that touches h11's private attributes.

h11 copies every body byte twice (into its receive buffer, then out as a ``Data``
event) and checks every response header with regular expressions.  For the bulk of
a large upload with a Content-Length we read straight from the socket into one
reused buffer (``recv_into``) and hand the store a view of it, then tell h11 how
much of the body is left; and our response headers, which ``_framing`` already made
safe, skip h11's per-header checks.

What this relies on (h11 0.16, pinned in pyproject.toml; ``tests/server/
test_h11_fast.py`` fails if any of it changes):

- ``h11._readers.ContentLengthReader`` and its ``_remaining`` byte count;
- ``Connection._reader`` (the current body reader) and ``Connection._receive_buffer``
  (bytes h11 holds that it has not parsed yet);
- ``h11._headers.normalize_and_validate(headers, _parsed=True)``.

Without any of them (a future h11) every byte goes through h11's public API.
"""

from __future__ import annotations

from typing import Any

import h11
import trio

from ..protocol import errors
from ._exchange import Sink
from ._framing import RawHeaders
from ._splice import BodyCounter, splice_body, splice_target
from ._state import ServerState
from ._streams import RECEIVE_SIZE, DirectReader

_ContentLengthReader: Any
_normalize: Any
try:
    from h11._readers import ContentLengthReader as _ContentLengthReader
except ImportError:  # pragma: no cover - a future h11 without it
    _ContentLengthReader = None
try:
    from h11._headers import normalize_and_validate as _normalize
except ImportError:  # pragma: no cover - a future h11 without it
    _normalize = None


#: The buffer a fast upload grows to (its budget is ServerState.take_big_buffer).
BIG_RECEIVE_SIZE = 256 * 1024


def prepared_headers(headers: RawHeaders) -> Any:
    """Response headers for ``h11.Response`` without h11's per-header checks."""
    if _normalize is None:  # pragma: no cover
        return headers
    return _normalize(headers, _parsed=True)


def unread_body_length(conn: h11.Connection) -> int | None:
    """How much of the current Content-Length request body h11 has not yet read
    (None when unknown: chunked coding, or an h11 without the attribute)."""
    reader: Any = getattr(conn, "_reader", None)
    remaining = getattr(reader, "_remaining", None)
    return remaining if isinstance(remaining, int) else None


def direct_body_possible(conn: h11.Connection) -> bool:
    """Whether the rest of the body can be read past h11: a Content-Length body of
    more than one read, no bytes of it buffered in h11, no 100-continue pending."""
    internal: Any = conn
    return (
        _ContentLengthReader is not None
        and type(getattr(internal, "_reader", None)) is _ContentLengthReader
        and len(internal._receive_buffer) == 0
        and not conn.they_are_waiting_for_100_continue
        and internal._reader._remaining > RECEIVE_SIZE
    )


async def pump_direct(
    conn: h11.Connection,
    sock: DirectReader,
    buffer: bytearray,
    *,
    state: ServerState,
    read_timeout: float,
    sink: Sink,
    limit: int | None,
    counter: BodyCounter,
) -> bool | None:
    """Read the rest of a Content-Length body with ``recv_into`` and feed ``sink``
    (or, when only a file needs the bytes, have the kernel move them: ``_splice``).

    ``counter.received`` is kept up to date as bytes arrive.  Returns True when
    the body went beyond ``limit``, None once the whole body was read (h11 then
    yields ``EndOfMessage``).
    """
    reader: Any = conn._reader
    view = memoryview(buffer)
    size = len(view)
    full_reads = 0
    big = False
    remaining: int = reader._remaining
    total = counter.received
    try:
        with trio.CancelScope() as deadline_scope:
            target = splice_target(sock, sink)
            # Up to the limit: a byte past it is read by the loop below, as ever.
            count = remaining if limit is None else min(remaining, limit - total)
            if target is not None and count > 0:
                try:
                    await splice_body(
                        *target,
                        count,
                        counter=counter,
                        deadline_scope=deadline_scope,
                        read_timeout=read_timeout,
                    )
                finally:
                    moved = counter.received - total
                    total += moved
                    remaining -= moved
            while remaining > 0:
                deadline_scope.deadline = trio.current_time() + read_timeout
                try:
                    n = await sock.recv_into(view, min(size, remaining))
                except (trio.BrokenResourceError, OSError):
                    raise errors.ConnectionResetError_() from None
                if n == 0:
                    raise errors.UnexpectedEOFError()
                remaining -= n
                if limit is not None and total + n > limit:
                    keep = limit - total
                    if keep > 0:
                        total += keep
                        sink(view[:keep])
                    return True
                total += n
                sink(view[:n])
                counter.received = total
                if n == size and not big:
                    # A sender that keeps the buffer full gets a larger one:
                    # fewer trips through the event loop per byte.
                    full_reads += 1
                    if full_reads >= 4 and state.take_big_buffer():
                        big = True
                        view.release()
                        view = memoryview(bytearray(BIG_RECEIVE_SIZE))
                        size = BIG_RECEIVE_SIZE
            reader._remaining = 0
            return None
    finally:
        reader._remaining = remaining
        counter.received = total
        view.release()
        if big:
            state.return_big_buffer()
    raise errors.ReadTimeoutError()
