"""Per-upload locks inside one process, handed over in arrival order.

A request that finds an upload locked asks the holder to let go (the holder's
``on_release_requested`` callback, as tusd does) and queues.  When the holder
releases, the lock passes straight to the oldest waiter: no polling, no fixed
sleeps, no starvation.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import trio

from ..protocol.errors import LockTimeoutError
from .base import LockContext, ReleaseCallback


class _Waiter:
    """A holder of the lock, or a request queued for it (with ``event`` to wake it)."""

    __slots__ = ("event", "granted", "on_release_requested")

    def __init__(
        self, on_release_requested: ReleaseCallback | None, event: trio.Event | None
    ) -> None:
        self.on_release_requested = on_release_requested
        #: Only a queued request has one: the uncontended path makes no event.
        self.event = event
        self.granted = False


class _Entry:
    __slots__ = ("holder", "waiters")

    def __init__(self, holder: _Waiter) -> None:
        self.holder = holder
        #: Made by the first request that queues: most locks are never contended.
        self.waiters: deque[_Waiter] | None = None


@dataclass(frozen=True)
class LockStatistics:
    held: int
    waiting: int
    max_wait: float


class MemoryLocker(LockContext):
    name = "memorylocker"

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._max_wait = 0.0

    def statistics(self) -> LockStatistics:
        return LockStatistics(
            held=len(self._entries),
            waiting=sum(len(e.waiters or ()) for e in self._entries.values()),
            max_wait=self._max_wait,
        )

    async def acquire(
        self,
        upload_id: str,
        *,
        max_wait: float,
        on_release_requested: ReleaseCallback | None = None,
        access: str = "write",
        on_lost: ReleaseCallback | None = None,
    ) -> None:
        entry = self._entries.get(upload_id)
        if entry is None:
            # A cancellation point that does not yield: taking a free lock is a dict
            # insert, and a scheduler round trip would cost far more.  The handler
            # yields once per request; a loop taking many locks (the janitor) yields
            # per upload itself.  Checked before taking the lock, so
            # a cancelled caller leaves nothing behind.
            await trio.lowlevel.checkpoint_if_cancelled()
            self._entries[upload_id] = _Entry(_Waiter(on_release_requested, None))
            return
        event = trio.Event()
        me = _Waiter(on_release_requested, event)
        waiters = entry.waiters
        if waiters is None:
            waiters = entry.waiters = deque()
        waiters.append(me)
        holder_callback = entry.holder.on_release_requested
        if holder_callback is not None:
            try:
                holder_callback()
            except BaseException:
                # Never leave a waiter in the queue that nobody waits on: the
                # lock would be handed to it on release and never come back.
                if me.granted:
                    self.release(upload_id)
                else:
                    waiters.remove(me)
                raise
        started = trio.current_time()
        try:
            with trio.move_on_after(max_wait):
                await event.wait()
        except BaseException:
            # Cancelled from outside while queued: give the lock on if it had
            # just been handed to us, else leave the queue.
            if me.granted:
                self.release(upload_id)
            else:
                waiters.remove(me)
            raise
        self._max_wait = max(self._max_wait, trio.current_time() - started)
        if me.granted:
            return
        waiters.remove(me)
        raise LockTimeoutError()

    def release(self, upload_id: str) -> None:
        entry = self._entries.get(upload_id)
        if entry is None:
            return
        waiters = entry.waiters
        if waiters:
            nxt = waiters.popleft()
            nxt.granted = True
            entry.holder = nxt
            assert nxt.event is not None  # every queued request has one
            nxt.event.set()
            # The new holder's predecessor queue may still contain waiters that
            # want this lock: ask the new holder to be quick too, if it writes.
            if waiters and nxt.on_release_requested is not None:
                nxt.on_release_requested()
        else:
            del self._entries[upload_id]

    def is_locked(self, upload_id: str) -> bool:
        return upload_id in self._entries

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()
