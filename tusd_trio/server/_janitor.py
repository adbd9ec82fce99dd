"""The expiry janitor: removes unfinished uploads whose expiration has passed."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

import trio

from ..hooks.model import HookEvent
from ..lockers.base import Locker
from ..protocol import config, errors, expiration
from ..quotas.service import Quotas
from ..stores.base import Store
from ._metrics import Metrics

log = logging.getLogger("tusd_trio")


class Janitor:
    def __init__(
        self,
        *,
        store: Store,
        locker: Locker,
        protocol: config.ProtocolConfig,
        metrics: Metrics,
        notify: Callable[[HookEvent], Awaitable[None]],
        interval: float,
        quotas: Quotas,
    ) -> None:
        self._store = store
        self._locker = locker
        self._protocol = protocol
        self._metrics = metrics
        self._notify = notify
        self.interval = interval
        self._quotas = quotas

    async def run(self) -> None:
        interval = self.interval
        while True:
            try:
                removed = await self.sweep()
                if removed:
                    log.info("UploadsExpired", extra={"tus": {"count": removed}})
            except Exception:
                log.exception("the expiry sweep failed; trying again later")
            await trio.sleep(interval)

    async def sweep(self, now: float | None = None) -> int:
        """Remove every expired upload once; return how many were removed.

        An upload that is locked (a request is working on it) is left alone.
        """
        protocol = self._protocol
        store = self._store
        if protocol.expiration <= 0:
            await trio.lowlevel.checkpoint()
            return 0
        removed = 0
        for upload_id in await store.list_ids():
            # One yield per upload: the store's get and the locker take no turn of
            # the scheduler, and a sweep of many uploads must not hold up requests.
            await trio.lowlevel.checkpoint()
            try:
                info = await store.get(upload_id)
            except errors.TusError:
                continue
            if not expiration.is_expired(info, protocol, time.time() if now is None else now):
                continue
            try:
                async with self._locker.lock(upload_id, max_wait=0.05):
                    info = await store.get(upload_id)
                    if not expiration.is_expired(
                        info, protocol, time.time() if now is None else now
                    ):
                        continue
                    await store.terminate(info)
                    await self._quotas.removed(info)
            except (
                errors.LockTimeoutError,
                errors.LockerUnavailableError,
                errors.UploadNotFoundError,
            ):
                continue
            removed += 1
            self._metrics.uploads_expired += 1
            await self._notify(HookEvent("post-terminate", info, None))
            log.info("UploadExpired", extra={"tus": {"id": upload_id}})
        return removed
