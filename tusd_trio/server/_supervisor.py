"""The supervisor: long-lived tasks beside the request handlers.

It owns what outlives one request: the counters behind metrics, the dispatch
of hook notifications (non-blocking hooks run here so a slow hook never delays
an upload), the file locker's stop-request watcher and the expiry janitor.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from .._logging import flush_logs
from ..protocol.core import Request
from ..protocol.info import UploadInfo

if TYPE_CHECKING:
    from ._app import Server

log = logging.getLogger("tusd_trio")

HOOK_TYPES = (
    "pre-create",
    "post-create",
    "post-receive",
    "pre-finish",
    "post-finish",
    "pre-terminate",
    "post-terminate",
)


@dataclass
class Metrics:
    """tusd's counters, kept in plain integers (exported by the metrics layer)."""

    requests_total: Counter[str] = field(default_factory=Counter)
    errors_total: Counter[tuple[str, str]] = field(default_factory=Counter)
    bytes_received: int = 0
    uploads_created: int = 0
    uploads_finished: int = 0
    uploads_terminated: int = 0
    uploads_expired: int = 0
    connections_open: int = 0
    hook_invocations_total: Counter[str] = field(default_factory=Counter)
    hook_errors_total: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class HookEvent:
    """What a hook is told: the upload and the request that caused the event."""

    type: str
    upload: UploadInfo
    request: Request | None
    remote_addr: str = ""


@dataclass
class HookDecision:
    """What a blocking hook may answer (filled in by the hooks layer)."""

    reject: bool = False
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None


HookBackend = Callable[[HookEvent], Awaitable[HookDecision | None]]


class Supervisor:
    def __init__(self, server: Server) -> None:
        self.server = server
        self.metrics = Metrics()
        #: Enabled hook types; empty until a hook backend is configured.
        self.enabled_hooks: frozenset[str] = frozenset()
        self.hook_backend: HookBackend | None = None
        self._nursery: trio.Nursery | None = None

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            locker = self.server.locker
            watch = getattr(locker, "watch_stop_requests", None)
            if watch is not None:
                nursery.start_soon(watch)
            if self.server.config.janitor_interval > 0:
                nursery.start_soon(self.server.janitor.run)
            nursery.start_soon(self._flush_logs_periodically)
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

    async def run_blocking_hook(self, event: HookEvent) -> HookDecision | None:
        if self.hook_backend is None or event.type not in self.enabled_hooks:
            await trio.lowlevel.checkpoint()
            return None
        self.metrics.hook_invocations_total[event.type] += 1
        try:
            return await self.hook_backend(event)
        except Exception:
            self.metrics.hook_errors_total[event.type] += 1
            raise

    def notify(self, event: HookEvent) -> None:
        """Fire a non-blocking hook; its outcome never affects the request."""
        if self.hook_backend is None or event.type not in self.enabled_hooks:
            return
        if self._nursery is None:  # pragma: no cover - only before start-up completes
            return
        self._nursery.start_soon(self._run_notification, event)

    async def _run_notification(self, event: HookEvent) -> None:
        assert self.hook_backend is not None
        self.metrics.hook_invocations_total[event.type] += 1
        try:
            await self.hook_backend(event)
        except Exception as exc:
            self.metrics.hook_errors_total[event.type] += 1
            log.warning("hook %s failed: %s", event.type, exc)
