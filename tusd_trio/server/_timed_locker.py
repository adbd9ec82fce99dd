"""A locker wrapper that measures how long requests wait for a lock
(``tusd_trio_lock_wait_seconds``).  Everything else is the wrapped locker's."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from ..lockers.base import Locker, ReleaseCallback
from ..protocol import errors
from ._metrics import histograms


class TimedLocker:
    def __init__(self, inner: Locker) -> None:
        self.inner = inner
        self.name = inner.name

    def __getattr__(self, name: str) -> Any:
        # run(), check(), watch_stop_requests(), ... of the wrapped locker.
        return getattr(self.inner, name)

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

    @asynccontextmanager
    async def lock(
        self,
        upload_id: str,
        *,
        max_wait: float,
        on_release_requested: ReleaseCallback | None = None,
        access: str = "write",
        on_lost: ReleaseCallback | None = None,
    ) -> AsyncIterator[None]:
        started = time.monotonic()
        outcome = "error"
        try:
            manager = self.inner.lock(
                upload_id,
                max_wait=max_wait,
                on_release_requested=on_release_requested,
                access=access,
                on_lost=on_lost,
            )
            await manager.__aenter__()
            outcome = "acquired"
        except errors.LockTimeoutError:
            outcome = "timeout"
            raise
        finally:
            histograms.observe_lock_wait(self.name, outcome, time.monotonic() - started)
        try:
            yield
        except BaseException as exc:
            if not await manager.__aexit__(type(exc), exc, exc.__traceback__):
                raise
        else:
            await manager.__aexit__(None, None, None)

    async def aclose(self) -> None:
        await self.inner.aclose()
