"""The expiry janitor: removes unfinished uploads whose expiration has passed."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import trio

from ..protocol import errors, expiration
from ._supervisor import HookEvent

if TYPE_CHECKING:
    from ._app import Server

log = logging.getLogger("tusd_trio")


class Janitor:
    def __init__(self, server: Server) -> None:
        self.server = server

    async def run(self) -> None:
        interval = self.server.config.janitor_interval
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
        server = self.server
        protocol = server.config.protocol
        if protocol.expiration <= 0:
            await trio.lowlevel.checkpoint()
            return 0
        removed = 0
        for upload_id in await server.store.list_ids():
            try:
                info = await server.store.get(upload_id)
            except errors.TusError:
                continue
            if not expiration.is_expired(info, protocol, time.time() if now is None else now):
                continue
            try:
                async with server.locker.lock(upload_id, max_wait=0.05):
                    info = await server.store.get(upload_id)
                    if not expiration.is_expired(
                        info, protocol, time.time() if now is None else now
                    ):
                        continue
                    await server.store.terminate(info)
            except (
                errors.LockTimeoutError,
                errors.LockerUnavailableError,
                errors.UploadNotFoundError,
            ):
                continue
            removed += 1
            server.supervisor.metrics.uploads_expired += 1
            server.supervisor.notify(HookEvent("post-terminate", info, None))
            log.info("UploadExpired", extra={"tus": {"id": upload_id}})
        return removed
