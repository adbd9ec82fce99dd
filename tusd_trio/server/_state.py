"""What the requests of one server share while they run, behind a few methods.

The handler registers a body it reads (:meth:`ServerState.track_body`) and the
shielded scope it saves bytes in (:meth:`ServerState.settling`); the server (or the
ASGI app) starts a shutdown (:meth:`ServerState.begin_shutdown`), which interrupts
every body read and bounds every settling scope.  The HTTP/1.1 fast path borrows a
big receive buffer from a fixed budget.  Nothing outside edits these sets.
"""

from __future__ import annotations

from types import TracebackType
from typing import Protocol

import trio

from .._logging import RequestLog
from ..protocol import errors

#: How many connections may read a body into a big receive buffer at once.
MAX_BIG_BUFFERS = 64


class Interrupter:
    """Lets another task stop a running body read with a given reason."""

    __slots__ = ("log", "reason", "scope")

    def __init__(self, log: RequestLog | None = None) -> None:
        self.scope: trio.CancelScope | None = None
        self.reason: errors.BodyInterruptedError | None = None
        self.log = log

    def interrupt(self, reason: errors.BodyInterruptedError) -> None:
        if self.reason is None:
            self.reason = reason
        if self.scope is not None:
            self.scope.cancel()

    def release_requested(self) -> None:
        """Another request wants the upload's lock: stop, keeping what arrived."""
        if self.log is not None:
            self.log.info("UploadInterrupted")
        self.interrupt(errors.UploadInterruptedError())

    def lock_lost(self) -> None:
        self.interrupt(errors.LockLostError())


class BodyProgress(Protocol):
    """A body being read: how many bytes arrived so far."""

    @property
    def received(self) -> int: ...


class ServerState:
    def __init__(self, *, request_completion_timeout: float) -> None:
        #: How long saving a request's bytes may take once the request is over.
        self.request_completion_timeout = request_completion_timeout
        self._shutting_down = False
        self._interrupters: set[Interrupter] = set()
        self._bodies: set[BodyProgress] = set()
        self._settling: set[trio.CancelScope] = set()
        self._big_buffers = 0

    # --- shutdown ---------------------------------------------------------------------

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def begin_shutdown(self) -> None:
        """Refuse new uploads; end running body reads; bound running settles."""
        self._shutting_down = True
        self.interrupt_all(errors.ServerShutdownError)
        self.bound_settling()

    def accept_requests(self) -> None:
        """Serve again (an ASGI app whose lifespan starts anew)."""
        self._shutting_down = False

    # --- body reads -------------------------------------------------------------------

    def track_body(self, interrupter: Interrupter, body: BodyProgress) -> _TrackedBody:
        """Register a body read for the duration of the block (the active-uploads and
        bytes-in-flight gauges, and the shutdown's interruption)."""
        return _TrackedBody(self, interrupter, body)

    def interrupt_all(self, reason: type[errors.BodyInterruptedError]) -> None:
        for interrupter in list(self._interrupters):
            interrupter.interrupt(reason())

    @property
    def active_uploads(self) -> int:
        return len(self._interrupters)

    @property
    def bytes_in_flight(self) -> int:
        return sum(body.received for body in self._bodies)

    # --- settling ---------------------------------------------------------------------

    def settling(self, *, bounded: bool) -> _Settling:
        """A shielded scope to save a request's bytes in.  While the client waits,
        the store takes the time it needs; once the request is over (``bounded``) or
        the server shuts down, it gets -request-completion-timeout."""
        return _Settling(self, bounded)

    def bound_settling(self) -> None:
        latest = trio.current_time() + self.request_completion_timeout
        for scope in list(self._settling):
            scope.deadline = min(scope.deadline, latest)

    # --- the big-buffer budget of the HTTP/1.1 fast path ----------------------------------

    def take_big_buffer(self) -> bool:
        if self._big_buffers >= MAX_BIG_BUFFERS:
            return False
        self._big_buffers += 1
        return True

    def return_big_buffer(self) -> None:
        self._big_buffers -= 1


# The blocks above as plain classes: each body read enters both, and a generator-based
# context manager costs a generator and two more frames per use.


class _TrackedBody:
    __slots__ = ("_body", "_interrupter", "_state")

    def __init__(self, state: ServerState, interrupter: Interrupter, body: BodyProgress) -> None:
        self._state = state
        self._interrupter = interrupter
        self._body = body

    def __enter__(self) -> None:
        state = self._state
        state._interrupters.add(self._interrupter)
        state._bodies.add(self._body)
        if state._shutting_down:
            self._interrupter.interrupt(errors.ServerShutdownError())

    def __exit__(self, *exc_info: object) -> None:
        self._state._interrupters.discard(self._interrupter)
        self._state._bodies.discard(self._body)


class _Settling:
    __slots__ = ("_bounded", "_scope", "_state")

    def __init__(self, state: ServerState, bounded: bool) -> None:
        self._state = state
        self._bounded = bounded
        self._scope = trio.CancelScope(shield=True)

    def __enter__(self) -> trio.CancelScope:
        state = self._state
        scope = self._scope.__enter__()
        if self._bounded or state._shutting_down:
            scope.deadline = trio.current_time() + state.request_completion_timeout
        state._settling.add(scope)
        return scope

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        self._state._settling.discard(self._scope)
        return self._scope.__exit__(exc_type, exc, traceback)
