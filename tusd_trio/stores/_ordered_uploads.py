"""The one background uploader of the object stores' writers (S3 parts, GCS pieces,
Azure blocks).

A writer cuts the request body into pieces and hands each to :meth:`OrderedUploads.add`
as a blocking call (upload this piece).  The calls run in worker threads
(:meth:`SDKCalls.start`) while the body goes on, under three rules:

* **bounded**: at most ``in_flight`` calls run at once, and ``add`` returns only once
  fewer than ``held`` pieces are running or queued, so a writer holds at most
  ``held`` pieces (plus the one it is filling) whatever the upload's size: the
  client is slowed down instead (backpressure);
* **ordered**: calls start in the order they were added, and the writer counts only
  the successful prefix (:meth:`OrderedUploads.done_prefix`), never bytes behind a
  hole;
* **a failure is remembered**: :attr:`OrderedUploads.failure` is the first one.  With
  ``stop_on_failure`` (S3 parts, GCS pieces: a piece after a failed one would land
  behind a hole, or on a broken session) no queued call starts after it.  Without
  (Azure blocks, which are named by their index and so can be staged again in
  place), the rest goes on and :meth:`OrderedUploads.fill_holes` later runs each
  failed piece once more if a later one was stored.

The writer owns its uploads: its ``commit``, ``discard`` and ``aclose`` wait for them
(:meth:`OrderedUploads.wait_idle`) before they count what was stored.  That wait can
be cancelled (the handler bounds the settling of a request by
``-request-completion-timeout``); calls still running then finish in their threads
and their outcomes are dropped.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from functools import partial
from typing import Generic, TypeVar

import outcome
import trio

from ..protocol.errors import StoreError, TusError
from ._sdk_calls import BackgroundCall, SDKCalls

R = TypeVar("R")


class _Piece(Generic[R]):
    """One piece: its call (kept until it succeeds, for a retry) and its outcome."""

    __slots__ = ("call", "outcome")

    def __init__(self, call: Callable[[], R]) -> None:
        self.call: Callable[[], R] | None = call
        self.outcome: outcome.Outcome[R] | None = None


class OrderedUploads(Generic[R]):
    """Uploads one writer's pieces in worker threads, bounded and in order."""

    def __init__(
        self,
        calls: SDKCalls,
        what: str,
        *,
        in_flight: int,
        held: int,
        stop_on_failure: bool = True,
        keep_results: bool = True,
    ) -> None:
        if in_flight < 1 or held < 1:
            raise ValueError("in_flight and held must be at least 1")
        self._calls = calls
        self._what = what
        self._in_flight = in_flight
        self._held = held
        self._stop_on_failure = stop_on_failure
        self._keep_results = keep_results
        #: Pieces stored without a hole so far.
        self.stored = 0
        #: Results of the stored prefix, when kept (their pieces are let go: memory
        #: stays bounded by the pieces not yet stored, whatever the body's size) ...
        self._landed: list[R] = []
        #: ... and the pieces from the first one not stored yet on.
        self._pieces: collections.deque[_Piece[R]] = collections.deque()
        self._queue: collections.deque[_Piece[R]] = collections.deque()
        self._changed = trio.lowlevel.ParkingLot()
        #: Calls running now.
        self.running = 0
        #: The first failure (a TusError) not repaired by :meth:`fill_holes`.
        self.failure: TusError | None = None

    @property
    def queued(self) -> int:
        """Pieces waiting for a free slot."""
        return len(self._queue)

    @property
    def _stopped(self) -> bool:
        return self._stop_on_failure and self.failure is not None

    async def add(self, call: Callable[[], R]) -> None:
        """Queue ``call`` (start it when a slot is free); return once fewer than
        ``held`` pieces are running or queued, or a failure stopped the uploads.

        Raises the failure if it stopped the uploads before ``call`` could be queued.
        If the wait is cancelled, ``call`` stays queued (nothing handed over is lost).
        """
        if self._stopped:
            assert self.failure is not None
            raise self.failure
        piece = _Piece(call)
        self._pieces.append(piece)
        self._queue.append(piece)
        self._pump()
        while not self._stopped and self.running + len(self._queue) >= self._held:
            await self._changed.park()

    def drop_queued(self) -> None:
        """Start nothing more (``discard``): queued pieces are dropped."""
        for piece in self._queue:
            piece.call = None
        self._queue.clear()

    async def wait_idle(self) -> None:
        """Until no call runs and none is queued."""
        while self.running or self._queue:
            await self._changed.park()

    def outcomes(self) -> list[outcome.Outcome[R] | None]:
        """The outcome of each piece not stored yet, in the order added, after those
        of the stored prefix (when kept); ``None`` while a piece runs or waits, and
        for pieces dropped after a failure."""
        landed: list[outcome.Outcome[R] | None] = [outcome.Value(v) for v in self._landed]
        return landed + [piece.outcome for piece in self._pieces]

    def done_prefix(self) -> list[R]:
        """The results of the pieces stored so far without a hole, in order
        (with ``keep_results``; else empty: only :attr:`stored` counts them)."""
        return list(self._landed)

    def _land(self) -> None:
        """Move the stored pieces at the front into the stored prefix."""
        pieces = self._pieces
        while pieces:
            head = pieces[0].outcome
            if not isinstance(head, outcome.Value):
                return
            if self._keep_results:
                self._landed.append(head.value)
            self.stored += 1
            pieces.popleft()

    async def fill_holes(self) -> None:
        """Wait for every piece; run each failed piece that has a stored piece after
        it once more (in this task); :attr:`failure` is then the first failure left."""
        await self.wait_idle()
        if self.failure is None:
            return
        pieces = list(self._pieces)
        last_stored = max(
            (i for i, piece in enumerate(pieces) if isinstance(piece.outcome, outcome.Value)),
            default=-1,
        )
        for piece in pieces[: max(last_stored, 0)]:
            if isinstance(piece.outcome, outcome.Error):
                await self._retry(piece)
        self._land()
        self.failure = None
        for piece in self._pieces:
            if isinstance(piece.outcome, outcome.Error):
                self.failure = self._as_store_error(piece.outcome.error)
                break

    async def _retry(self, piece: _Piece[R]) -> None:
        call = piece.call
        assert call is not None  # kept because the piece failed
        try:
            value = await self._calls.run(self._what, call)
        except Exception as exc:
            piece.outcome = outcome.Error(self._calls.as_store_error(exc, self._what))
        else:
            piece.outcome = outcome.Value(value)
            piece.call = None

    def _as_store_error(self, error: BaseException) -> TusError:
        if isinstance(error, TusError):
            return error  # BackgroundCall mapped every Exception
        return StoreError(f"{self._what}: {type(error).__name__}")

    def _pump(self) -> None:
        while self._queue and self.running < self._in_flight and not self._stopped:
            piece = self._queue.popleft()
            call = piece.call
            assert call is not None
            self.running += 1
            self._calls.start(self._what, call, on_done=partial(self._finished, piece))

    def _finished(self, piece: _Piece[R], done: BackgroundCall[R]) -> None:
        self.running -= 1
        result = done.outcome
        assert result is not None
        piece.outcome = result
        if isinstance(result, outcome.Value) or self._stop_on_failure:
            piece.call = None  # stored, or never run again: let the bytes go
        if isinstance(result, outcome.Error) and self.failure is None:
            self.failure = self._as_store_error(result.error)
            if self._stop_on_failure:
                self.drop_queued()  # pieces after a failed one would leave a hole
        self._land()
        self._pump()
        self._changed.unpark_all()
