"""What every part of the tus handler works with, and the steps several share.

:class:`HandlerParts` is the handler's whole world: the effective protocol
settings, the store, the locker, the supervisor (hooks), access control, the
server state and the counters.  The method groups (``_create``, ``_write``,
``_read``) are functions over it and a :class:`~._request.RequestContext`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from .._logging import info_event
from ..auth import Authenticator
from ..hooks.model import HookError, HookEvent, HookResponse, HTTPResponse, merge_http_response
from ..lockers.base import Locker
from ..protocol import creation, errors, ietf
from ..protocol.config import ProtocolConfig
from ..protocol.info import UploadInfo
from ..protocol.messages import Response
from ..quotas.service import Quotas
from ..stores.base import Store
from ._histograms import histograms
from ._metrics import Metrics
from ._operator import OperatorEndpoints
from ._request import RequestContext
from ._state import Interrupter, ServerState
from ._supervisor import Supervisor


@dataclass(frozen=True)
class HandlerParts:
    protocol: ProtocolConfig
    store: Store
    locker: Locker
    supervisor: Supervisor
    auth: Authenticator
    quotas: Quotas
    state: ServerState
    metrics: Metrics
    operator: OperatorEndpoints
    #: -acquire-lock-timeout
    lock_timeout: float
    #: -progress-hooks-interval
    progress_interval: float
    #: -enable-experimental-protocol (the IETF draft)
    experimental_protocol: bool

    def event(self, kind: str, info: UploadInfo, ctx: RequestContext | None) -> HookEvent:
        if ctx is None:
            return HookEvent(kind, info, None)
        return HookEvent(kind, info, ctx.request, ctx.remote_addr)

    async def blocking_hook(
        self, kind: str, info: UploadInfo, ctx: RequestContext | None
    ) -> HookResponse | None:
        """A blocking hook's answer (None when nothing wants the event: no event is
        made then, which is most requests' case and an object less per hook type)."""
        supervisor = self.supervisor
        if not supervisor.hook_enabled(kind):
            return None
        return await supervisor.run_blocking_hook(self.event(kind, info, ctx))

    async def notify(self, kind: str, info: UploadInfo, ctx: RequestContext | None) -> None:
        """A non-blocking hook's event, made only when something wants it."""
        supervisor = self.supervisor
        if supervisor.hook_enabled(kind):
            await supervisor.notify(self.event(kind, info, ctx))

    def timed(self, operation: str) -> _StoreTimer:
        """Feed tusd_trio_store_operation_seconds (a block; two or three per request)."""
        return _StoreTimer(self.store.name, operation)

    def writing(self, upload_id: str, ctx: RequestContext, *, access: str = "write") -> _Writing:
        """The upload's lock, held to write its body: another request asking for the
        lock, or the lease being lost, interrupts the body read (the interrupter)."""
        return _Writing(self.locker, upload_id, self.lock_timeout, access, Interrupter(ctx.log))


async def check_access(parts: HandlerParts, ctx: RequestContext, info: UploadInfo) -> None:
    """The owner check of access control, then our ``pre-access`` hook."""
    parts.auth.check_owner(ctx.principal, info.metadata)
    if not parts.supervisor.hook_enabled("pre-access"):
        return
    answer = await parts.supervisor.run_blocking_hook(parts.event("pre-access", info, ctx))
    if answer is not None and answer.reject_access:
        raise errors.AccessDeniedError(hook_response=answer.http_response)


async def finish(
    parts: HandlerParts, info: UploadInfo, ctx: RequestContext | None, *, call_store: bool = True
) -> None:
    """A complete upload: the store's finish, pre-finish, then post-finish."""
    if call_store:
        with parts.timed("finish"):
            await parts.store.finish(info)
    await parts.quotas.finished(info)
    answer = await parts.blocking_hook("pre-finish", info, ctx)
    if answer is not None and answer.http_response is not None and ctx is not None:
        ctx.hook_response = _merge_hook_http(ctx.hook_response, answer)
    parts.metrics.uploads_finished += 1
    if ctx is not None:
        ctx.log.info("UploadFinished", size=info.size)
    else:
        info_event("UploadFinished", id=info.id, size=info.size)
    await parts.notify("post-finish", info, ctx)


async def concat(
    parts: HandlerParts, info: UploadInfo, partials: list[UploadInfo], ctx: RequestContext | None
) -> UploadInfo:
    info = await parts.store.concat(info, partials)
    await finish(parts, info, ctx, call_store=False)
    return info


async def maybe_complete_final(
    parts: HandlerParts, info: UploadInfo, ctx: RequestContext
) -> UploadInfo:
    """concatenation-unfinished: concatenate once every partial is done."""
    if not info.is_final or info.is_complete:
        return info
    partials: list[UploadInfo] = []
    for pid in info.partial_uploads or ():
        try:
            partials.append(await parts.store.get(pid))
        except errors.UploadNotFoundError:
            return info
    if not creation.partials_finished(partials):
        return info
    # Partials whose lengths were deferred may have grown past the limits together.
    total = sum(p.size for p in partials)
    creation.check_final_length(total, parts.protocol)
    if info.size_is_deferred:
        await parts.quotas.add_final(replace(info, size=total, size_is_deferred=False))
    return await concat(parts, info, partials, ctx)


async def complete_draft(
    parts: HandlerParts, ctx: RequestContext, info: UploadInfo, complete: bool
) -> UploadInfo:
    """A draft request that completes the upload: a deferred length becomes the
    offset, and the upload is finished (a known length finished on its own)."""
    length = ietf.length_to_declare(info, complete)
    if length is not None:
        info = await parts.store.declare_length(info, length)
        await finish(parts, info, ctx)
    return info


def hook_failure(ctx: RequestContext, exc: HookError) -> errors.TusError:
    """The client's answer to a failed hook: no hook output, addresses or other internals.

    They go to the request's InternalServerError line (as tusd logs a hook failure),
    which carries the request ID the client got.
    """
    error = errors.TusError(f"hook failed (request ID {ctx.request_id})")
    ctx.log.error("InternalServerError", message=error.message, error=str(exc))
    ctx.internal_error_logged = True
    return error


def apply_hook_response(response: Response, hook: HTTPResponse) -> Response:
    # Framing is ours to decide: a hook cannot set these, and 204/304 carry no body.
    hook = HTTPResponse(
        status_code=hook.status_code,
        body=hook.body,
        headers={
            k: v
            for k, v in hook.headers.items()
            if k.lower() not in ("content-length", "transfer-encoding", "connection", "date")
        },
    )
    status, headers, body = merge_http_response(
        response.status, response.headers, hook, base_body=response.body
    )
    if status in (204, 304):
        body = b""
    if body != response.body:
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
    return Response(status, headers, body)


def _merge_hook_http(current: HTTPResponse | None, answer: HookResponse) -> HTTPResponse | None:
    new = answer.http_response
    if current is None or new is None:
        return new or current
    return HTTPResponse(
        status_code=new.status_code or current.status_code,
        body=new.body or current.body,
        headers={**current.headers, **new.headers},
    )


class _Writing:
    """:meth:`HandlerParts.writing`'s block: ``acquire`` on entry, ``release`` on exit
    whatever happens, as ``locker.lock()`` (a class: a generator-based context manager
    costs a generator and two more frames on every body)."""

    __slots__ = ("_access", "_interrupter", "_locker", "_max_wait", "_upload_id")

    def __init__(
        self, locker: Locker, upload_id: str, max_wait: float, access: str, interrupter: Interrupter
    ) -> None:
        self._locker = locker
        self._upload_id = upload_id
        self._max_wait = max_wait
        self._access = access
        self._interrupter = interrupter

    async def __aenter__(self) -> Interrupter:
        interrupter = self._interrupter
        await self._locker.acquire(
            self._upload_id,
            max_wait=self._max_wait,
            on_release_requested=interrupter.release_requested,
            access=self._access,
            on_lost=interrupter.lock_lost,
        )
        return interrupter

    async def __aexit__(self, *exc_info: object) -> None:
        self._locker.release(self._upload_id)


class _StoreTimer:
    """Times a store operation into its histogram (a class: cheaper than a
    generator-based context manager on every request)."""

    __slots__ = ("_operation", "_started", "_store")

    def __init__(self, store: str, operation: str) -> None:
        self._store = store
        self._operation = operation
        self._started = 0.0

    def __enter__(self) -> None:
        self._started = time.monotonic()

    def __exit__(self, *exc_info: object) -> None:
        histograms.observe_store(self._store, self._operation, time.monotonic() - self._started)
