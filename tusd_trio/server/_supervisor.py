"""The supervisor: long-lived tasks beside the request handlers.

It owns what outlives one request: the dispatch of hook notifications
(non-blocking hooks run here so a slow hook never delays an upload, and one
upload's events reach the hooks in order; with the outbox, its sender), the
locker's background tasks (the file locker's stop-request watcher, the Redis
locker's lease renewals), the hook backends' own tasks (the Redis stream's
connection) and the periodic log flush.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import trio

from .._logging import debug_event, error_event, flush_logs
from ..hooks.dispatcher import HookDispatcher
from ..hooks.model import HookError, HookEvent, HookResponse
from ..hooks.outbox import DURABLE_TYPES, HookOutbox
from ..lockers.base import BackgroundLocker, Locker, StopRequestWatcher
from ._events import EventStream
from ._histograms import histograms
from ._metrics import Metrics


@dataclass(frozen=True)
class _Turn:
    """A notification's place in its upload's queue."""

    upload_id: str
    previous: trio.Event | None
    done: trio.Event


class Supervisor:
    def __init__(
        self,
        *,
        hooks: HookDispatcher | None,
        events: EventStream,
        metrics: Metrics,
        locker: Locker,
        hooks_blocking_timeout: float,
        outbox: HookOutbox | None = None,
    ) -> None:
        #: The hook dispatcher, when any hook backend is configured.
        self.hooks = hooks
        self.events = events
        self.metrics = metrics
        #: The locker (not its timing wrapper): its background tasks run here.
        self._locker = locker
        self._blocking_timeout = hooks_blocking_timeout
        #: The durable outbox of post-create/finish/terminate events, when on.
        self.outbox = outbox
        self._nursery: trio.Nursery | None = None
        #: Per upload, the notification sent last (set once it was answered).
        self._last_notification: dict[str, trio.Event] = {}

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            locker = self._locker
            if isinstance(locker, StopRequestWatcher):
                nursery.start_soon(locker.watch_stop_requests)
            if isinstance(locker, BackgroundLocker):
                # Lease renewals and cross-instance release requests (Redis locker).
                await nursery.start(locker.run)
            if self.hooks is not None:
                # Backends with a task of their own (the Redis stream's connection).
                await nursery.start(self.hooks.run)
            nursery.start_soon(self._flush_logs_periodically)
            if self.outbox is not None:
                await nursery.start(self.outbox.run)
            task_status.started()
            await trio.sleep_forever()

    async def _flush_logs_periodically(self) -> None:
        try:
            while True:
                await trio.sleep(0.25)
                flush_logs()
        finally:
            flush_logs()

    # --- hooks --------------------------------------------------------------------

    def hook_enabled(self, hook_type: str) -> bool:
        """Whether events of this type are wanted (by a hook or a live subscriber)."""
        if self.events.active:
            return True
        return self.hooks is not None and self.hooks.is_enabled(hook_type)

    async def run_blocking_hook(
        self, event: HookEvent, *, publish: bool = True
    ) -> HookResponse | None:
        """Call a hook and wait for its answer; ``None`` when it is not enabled.

        Raises :class:`HookError` when the hook fails or times out.
        """
        if publish:
            self.events.publish(event)
        hooks = self.hooks
        if hooks is None or not hooks.is_enabled(event.type):
            # No checkpoint on this path: a request asks two or three times and
            # yields at its socket anyway; a trip through trio for nothing costs.
            return None
        self.metrics.hook_invocations_total[event.type] += 1
        started = time.monotonic()
        upload_id = event.upload.id
        debug_event("HookInvocationStart", type=event.type, id=upload_id)
        error: str | None = None
        try:
            answer = await hooks.invoke(event)
            debug_event("HookInvocationFinish", type=event.type, id=upload_id)
            return answer
        except HookError as exc:
            error = str(exc)
            raise
        finally:
            self._hook_ended(event.type, upload_id, time.monotonic() - started, error)

    async def notify(self, event: HookEvent) -> None:
        """Fire a non-blocking hook; its outcome never affects the request.

        With the outbox, a post-create/finish/terminate event is stored before this
        returns (so before the caller answers its request) and sent by the outbox's
        sender; should the store fail, the event is sent from memory as without it.
        """
        if self.hooks is None or not self.hooks.is_enabled(event.type) or self._nursery is None:
            # No checkpoint, as in run_blocking_hook: the request yields at its socket.
            self.events.publish(event)
            return
        outbox = self.outbox
        if outbox is not None and event.type in DURABLE_TYPES:
            self.events.publish(event)
            entry = outbox.entry_for(event)
            # In the upload's line like every notification: sent after the previous one
            # (from memory) was answered, and the next one waits until this is delivered.
            turn = self._queue(event)
            try:
                await outbox.enqueue(
                    entry, after=turn.previous, on_settled=lambda: self._end_turn(turn)
                )
                return
            except Exception as exc:
                outbox.write_errors += 1
                error_event(
                    "HookOutboxWriteError",
                    type=event.type,
                    id=event.upload.id,
                    store=outbox.store.name,
                    error=repr(exc),
                )
            self._nursery.start_soon(self._run_notification, event, turn, False)
            return
        # Queued here, not in the task: tasks started together run in any order.
        turn = self._queue(event)
        self._nursery.start_soon(self._run_notification, event, turn, True)

    async def _run_notification(self, event: HookEvent, turn: _Turn, publish: bool) -> None:
        try:
            await self._run_in_turn(event, turn, publish=publish)
        except HookError:
            pass  # counted and logged by run_blocking_hook

    def observe_outbox_attempt(
        self, hook_type: str, upload_id: str, seconds: float, error: str | None
    ) -> None:
        """Count and log one delivery attempt of the outbox, as a hook call is."""
        self.metrics.hook_invocations_total[hook_type] += 1
        self._hook_ended(hook_type, upload_id, seconds, error)

    def _hook_ended(
        self, hook_type: str, upload_id: str, seconds: float, error: str | None
    ) -> None:
        """Account for a hook call (counted when it started) that took ``seconds``."""
        histograms.observe_hook(hook_type, seconds)
        if error is not None:
            self.metrics.hook_errors_total[hook_type] += 1
            error_event("HookInvocationError", type=hook_type, id=upload_id, error=error)

    async def run_hook_in_order(self, event: HookEvent) -> HookResponse | None:
        """Run a hook after the upload's notifications sent before it were answered."""
        return await self._run_in_turn(event, self._queue(event))

    def _queue(self, event: HookEvent) -> _Turn:
        """Line the event up behind the upload's previous notification.

        The notifications of one upload (and its post-receive progress events) thus
        reach the hook endpoints one at a time, in the order they happened.
        """
        upload_id = event.upload.id
        turn = _Turn(upload_id, self._last_notification.get(upload_id), trio.Event())
        self._last_notification[upload_id] = turn.done
        return turn

    async def _run_in_turn(
        self, event: HookEvent, turn: _Turn, *, publish: bool = True
    ) -> HookResponse | None:
        try:
            if turn.previous is not None:
                # One still running after -hooks-blocking-timeout is not waited for
                # any longer: a stuck hook cannot hold back the upload's later events.
                with trio.move_on_after(self._blocking_timeout):
                    await turn.previous.wait()
            return await self.run_blocking_hook(event, publish=publish)
        finally:
            self._end_turn(turn)

    def _end_turn(self, turn: _Turn) -> None:
        turn.done.set()
        if self._last_notification.get(turn.upload_id) is turn.done:
            del self._last_notification[turn.upload_id]

    async def aclose(self) -> None:
        if self.outbox is not None:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await self.outbox.aclose()
        if self.hooks is not None:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await self.hooks.aclose()
        else:
            await trio.lowlevel.checkpoint()
