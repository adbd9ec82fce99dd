"""Request bodies read straight from the socket into one reused buffer.

The bulk of a large upload with a Content-Length is read with ``recv_into`` and
the store is handed a view of the buffer: no parser copies the bytes.  Whichever
parser read the request head (h11 through ``_h11_fast``, or ``_httptools``) says
how much of the body is left; the pump counts it down in ``progress``.
"""

from __future__ import annotations

from typing import Protocol

import trio

from ..protocol import errors
from ._exchange import Sink
from ._lowat import LowWaterSocket
from ._splice import splice_body, splice_target
from ._state import ServerState
from ._streams import DirectReader

#: The buffer a fast upload grows to (its budget is ServerState.take_big_buffer).
BIG_RECEIVE_SIZE = 256 * 1024


class BodyProgress(Protocol):
    """A body being read: bytes received so far (read meanwhile by progress events)
    and bytes the Content-Length still owes."""

    received: int
    remaining: int


async def pump_direct_body(
    sock: DirectReader,
    buffer: bytearray,
    progress: BodyProgress,
    *,
    state: ServerState,
    read_timeout: float,
    sink: Sink,
    limit: int | None,
) -> bool | None:
    """Read the rest of a Content-Length body with ``recv_into`` and feed ``sink``
    (or, when only the upload's file needs the bytes, have the kernel move them:
    ``_splice``).

    ``progress.received`` is kept up to date as bytes arrive, ``progress.remaining``
    when the pump stops (whatever stops it).  Returns True when the body went
    beyond ``limit``, None once the whole body was read.
    """
    view = memoryview(buffer)
    size = len(view)
    full_reads = 0
    big = False
    remaining = progress.remaining
    total = progress.received
    try:
        with trio.CancelScope() as deadline_scope:
            target = splice_target(sock, sink)
            # Up to the limit: a byte past it is read by the copying loop, as ever.
            count = remaining if limit is None else min(remaining, limit - total)
            if target is not None and count > 0:
                try:
                    await splice_body(
                        *target,
                        count,
                        counter=progress,
                        deadline_scope=deadline_scope,
                        read_timeout=read_timeout,
                    )
                finally:
                    moved = progress.received - total
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
                progress.received = total
                if n == size and not big:
                    # A sender that keeps the buffer full gets a larger one:
                    # fewer trips through the event loop per byte.
                    full_reads += 1
                    if full_reads >= 4 and state.take_big_buffer():
                        big = True
                        view.release()
                        view = memoryview(bytearray(BIG_RECEIVE_SIZE))
                        size = BIG_RECEIVE_SIZE
            return None
    except trio.Cancelled:
        # Stopped from outside: another request took the upload over, a hook stopped
        # it, or the server shuts down.  What the client sent before that and the
        # kernel already holds (a read may have been waiting for a fuller buffer,
        # ``_lowat``) is stored too, so the next request resumes after every byte
        # that reached us.  Only what is queued now: no waiting under cancellation.
        if isinstance(sock, LowWaterSocket):
            total, remaining = _store_queued(sock, view, sink, total, remaining, limit)
        raise
    finally:
        progress.remaining = remaining
        progress.received = total
        view.release()
        if big:
            state.return_big_buffer()
    raise errors.ReadTimeoutError()


def _store_queued(
    sock: LowWaterSocket,
    view: memoryview,
    sink: Sink,
    total: int,
    remaining: int,
    limit: int | None,
) -> tuple[int, int]:
    """Feed ``sink`` the body bytes queued on ``sock`` (within ``limit``); the new
    ``(total, remaining)``.  A store that fails here keeps what it wrote before: the
    request is ending anyway, with the reason it was stopped for."""
    while remaining > 0:
        want = min(len(view), remaining)
        if limit is not None:
            want = min(want, limit - total)
        if want <= 0:
            break
        n = sock.recv_queued(view, want)
        if n == 0:
            break
        try:
            sink(view[:n])
        except (OSError, errors.TusError):
            break
        total += n
        remaining -= n
    return total, remaining
