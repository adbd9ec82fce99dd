"""A locker wrapper that measures how long requests wait for a lock
(``tusd_trio_lock_wait_seconds``).  It is a plain :class:`Locker`: the optional
capabilities (``run``, ``check``, ...) are asked of the wrapped locker, ``inner``."""

from __future__ import annotations

import time

from ..lockers.base import LockContext, Locker, ReleaseCallback
from ..protocol import errors
from ._histograms import histograms


class TimedLocker(LockContext):
    def __init__(self, inner: Locker) -> None:
        #: The wrapped locker, with its optional capabilities (lockers/base.py).
        self.inner = inner
        self.name = inner.name

    async def acquire(
        self,
        upload_id: str,
        *,
        max_wait: float,
        on_release_requested: ReleaseCallback | None = None,
        access: str = "write",
        on_lost: ReleaseCallback | None = None,
    ) -> None:
        started = time.monotonic()
        outcome = "error"
        try:
            await self.inner.acquire(
                upload_id,
                max_wait=max_wait,
                on_release_requested=on_release_requested,
                access=access,
                on_lost=on_lost,
            )
            outcome = "acquired"
        except errors.LockTimeoutError:
            outcome = "timeout"
            raise
        finally:
            histograms.observe_lock_wait(self.name, outcome, time.monotonic() - started)

    def release(self, upload_id: str) -> None:
        self.inner.release(upload_id)

    async def aclose(self) -> None:
        await self.inner.aclose()
