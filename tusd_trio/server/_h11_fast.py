"""The HTTP/1.1 fast path: the only code that touches h11's private attributes.

h11 copies every body byte twice (into its receive buffer, then out as a ``Data``
event) and checks every response header with regular expressions.  For the bulk of
a large upload with a Content-Length we read straight from the socket into one
reused buffer (``_direct_body``) and hand the store a view of it, then tell h11 how
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

from typing import Any, Protocol

import h11

from ._direct_body import pump_direct_body
from ._exchange import Sink
from ._framing import RawHeaders
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


class BodyCounter(Protocol):
    """Where the bytes read so far are counted (read meanwhile by progress events)."""

    received: int


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


class _ReaderProgress:
    """:class:`~._direct_body.BodyProgress` over h11's body reader and our counter."""

    __slots__ = ("_counter", "_reader")

    def __init__(self, reader: Any, counter: BodyCounter) -> None:
        self._reader = reader
        self._counter = counter

    @property
    def received(self) -> int:
        return self._counter.received

    @received.setter
    def received(self, value: int) -> None:
        self._counter.received = value

    @property
    def remaining(self) -> int:
        remaining: int = self._reader._remaining
        return remaining

    @remaining.setter
    def remaining(self, value: int) -> None:
        self._reader._remaining = value


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
    """Read the rest of a Content-Length body past h11 (``_direct_body``).

    ``counter.received`` is kept up to date as bytes arrive.  Returns True when
    the body went beyond ``limit``, None once the whole body was read (h11 then
    yields ``EndOfMessage``).
    """
    reader: Any = conn._reader
    progress = _ReaderProgress(reader, counter)
    return await pump_direct_body(
        sock,
        buffer,
        progress,
        state=state,
        read_timeout=read_timeout,
        sink=sink,
        limit=limit,
    )
