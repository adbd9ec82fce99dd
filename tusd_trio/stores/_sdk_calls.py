"""How the object stores call their blocking SDKs from Trio: one helper for all three.

An :class:`SDKCalls` belongs to one store and carries that store's error-mapping hook
(an SDK exception and the name of the operation in, a one-line :class:`TusError` out:
no traceback text reaches a client).  It offers three ways to make a call:

* :meth:`SDKCalls.run`: the call in a worker thread, awaited now;
* :meth:`SDKCalls.start`: the call in a worker thread while the caller goes on (a
  :class:`BackgroundCall`, awaited later; used for read-ahead and by
  :mod:`._ordered_uploads`);
* :meth:`SDKCalls.gather`: several calls at once, their results in order, the first
  failure raised as itself rather than as an ``ExceptionGroup``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import outcome
import trio

from ..protocol.errors import TusError

T = TypeVar("T")

#: A store's error-mapping hook: ``(exception, what was being done) -> TusError``.
ErrorMapper = Callable[[Exception, str], TusError]


class BackgroundCall(Generic[T]):
    """A blocking call running in its own worker thread while the caller goes on.

    It runs in a thread, not in a task: nothing here needs a nursery, and a store's
    writer, which starts these calls, lives across several method calls of the
    handler, where no nursery could span them.  Whoever starts a call awaits it
    (:meth:`wait`); a call whose waiter was cancelled finishes in its thread and its
    outcome is dropped, as :func:`trio.to_thread.run_sync` does with
    ``abandon_on_cancel=True``.
    """

    def __init__(
        self,
        fn: Callable[[], T],
        map_error: Callable[[Exception], TusError],
        *,
        name: str,
        on_done: Callable[[BackgroundCall[T]], None] | None = None,
    ) -> None:
        self._map_error = map_error
        self._done = trio.Event()
        self._on_done = on_done
        #: The call's outcome once it is done: its value, or its error as a TusError.
        self.outcome: outcome.Outcome[T] | None = None
        token = trio.lowlevel.current_trio_token()

        def deliver(result: outcome.Outcome[T]) -> None:
            try:
                token.run_sync_soon(self._settle, result)
            except trio.RunFinishedError:
                pass  # Trio has ended: nobody waits for this call any more

        trio.lowlevel.start_thread_soon(fn, deliver, name=name)

    def _settle(self, result: outcome.Outcome[T]) -> None:
        if isinstance(result, outcome.Error) and isinstance(result.error, Exception):
            result = outcome.Error(self._map_error(result.error))
        self.outcome = result
        self._done.set()
        if self._on_done is not None:
            self._on_done(self)

    @property
    def done(self) -> bool:
        return self.outcome is not None

    async def wait(self) -> outcome.Outcome[T]:
        """The outcome, once the call is done (never raises the call's error)."""
        await self._done.wait()
        assert self.outcome is not None
        return self.outcome

    async def result(self) -> T:
        """The call's value; its error, mapped to a TusError, is raised."""
        return (await self.wait()).unwrap()


class SDKCalls:
    """Runs one store's blocking SDK calls in worker threads and maps their errors.

    ``map_error`` turns an SDK exception into a one-line TusError; ``sdk_errors`` are
    the exception types :meth:`run` and :meth:`gather` map (any other exception is a
    bug and propagates as it is).  A TusError raised by the call itself (e.g.
    ``UploadNotFoundError`` from a helper that checked) always passes unchanged.
    Calls started in the background map every exception, since nobody would see a
    raw one there.
    """

    def __init__(
        self,
        map_error: ErrorMapper,
        *,
        sdk_errors: tuple[type[Exception], ...] = (Exception,),
        thread_name: str = "tusd-trio store",
    ) -> None:
        self._map_error = map_error
        self._sdk_errors = sdk_errors
        self._thread_name = thread_name

    def as_store_error(self, exc: Exception, what: str) -> TusError:
        """``exc`` as the TusError a client is shown (itself if it is one)."""
        if isinstance(exc, TusError):
            return exc
        return self._map_error(exc, what)

    async def run(
        self,
        what: str,
        fn: Callable[..., T],
        *args: Any,
        limiter: trio.CapacityLimiter | None = None,
    ) -> T:
        """``fn(*args)`` in a worker thread; an SDK error becomes a TusError."""
        try:
            return await trio.to_thread.run_sync(fn, *args, limiter=limiter)
        except TusError:
            raise
        except self._sdk_errors as exc:
            raise self._map_error(exc, what) from None

    def start(
        self,
        what: str,
        fn: Callable[[], T],
        *,
        on_done: Callable[[BackgroundCall[T]], None] | None = None,
    ) -> BackgroundCall[T]:
        """``fn()`` in its own worker thread, started now and awaited later."""
        return BackgroundCall(
            fn,
            lambda exc: self.as_store_error(exc, what),
            name=f"{self._thread_name}: {what}",
            on_done=on_done,
        )

    async def gather(
        self, what: str, calls: Sequence[Callable[[], T]], *, limit: int | None = None
    ) -> list[T]:
        """Run ``calls`` at once (at most ``limit`` at a time); their results, in order.

        The first failure stops the calls not started yet and is raised itself (of
        several, the one of the earliest call), not wrapped in an ExceptionGroup.
        """
        results: list[outcome.Outcome[T] | None] = [None] * len(calls)
        limiter = trio.CapacityLimiter(limit) if limit else None

        async def one(index: int, call: Callable[[], T], stop: trio.CancelScope) -> None:
            try:
                value = await self.run(what, call, limiter=limiter)
            except Exception as exc:
                results[index] = outcome.Error(exc)
                stop.cancel()
            else:
                results[index] = outcome.Value(value)

        async with trio.open_nursery() as nursery:
            for index, call in enumerate(calls):
                nursery.start_soon(one, index, call, nursery.cancel_scope)
        values: list[T] = []
        for result in results:
            if result is None:  # not started: an earlier failure stopped it
                continue
            values.append(result.unwrap())
        return values
