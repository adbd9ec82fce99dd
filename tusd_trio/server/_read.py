"""HEAD, GET and DELETE: reading an upload's state and bytes, and terminating it."""

from __future__ import annotations

import time

from ..protocol import download, errors, ietf, responses
from ..protocol.messages import Response
from ..protocol.routing import Routed
from ._exchange import send_response, send_stream
from ._request import RequestContext
from ._uploads import HandlerParts, maybe_complete_final


async def head(
    parts: HandlerParts, ctx: RequestContext, routed: Routed, upload_id: str
) -> Response:
    interop = routed.interop
    if interop is not None:
        ietf.check_state_fields(ctx.request, interop)
    async with parts.locker.lock(upload_id, max_wait=parts.lock_timeout, access="read"):
        info = await parts.store.get(upload_id)
        info = await maybe_complete_final(parts, info, ctx)
        if interop is not None:
            return ietf.head_response(interop, parts.protocol, info, routed.common, time.time())
        return responses.head_response(
            ctx.request, info, parts.protocol, routed.common, time.time()
        )


async def get(parts: HandlerParts, ctx: RequestContext, routed: Routed, upload_id: str) -> None:
    """A download, streamed from the store (the handler's answer is sent here)."""
    info = await parts.store.get(upload_id)
    if not info.is_complete or info.is_final:
        # An unfinished upload: read a consistent offset under the lock, then
        # stream the bytes before it (they never change) without holding it.
        async with parts.locker.lock(upload_id, max_wait=parts.lock_timeout, access="read"):
            info = await parts.store.get(upload_id)
            info = await maybe_complete_final(parts, info, ctx)
    now = time.time()
    plan = download.plan_download(ctx.request, info, parts.protocol, routed.common, now)
    if routed.interop is not None and routed.interop.get_reports_state:
        plan.headers.extend(ietf.state_headers(routed.interop, parts.protocol, info, now))
    is_head = ctx.request.method == "HEAD"
    ctx.sent_status = plan.status
    if plan.length == 0 or is_head:
        await send_response(ctx.exchange, Response(plan.status, plan.headers), head=is_head)
        return
    await send_stream(
        ctx.exchange, plan.status, plan.headers, parts.store.read(info, plan.start, plan.end)
    )


async def delete(
    parts: HandlerParts, ctx: RequestContext, routed: Routed, upload_id: str
) -> Response:
    if routed.interop is not None:
        ietf.check_state_fields(ctx.request, routed.interop)
    async with parts.locker.lock(upload_id, max_wait=parts.lock_timeout):
        info = await parts.store.get(upload_id)
        answer = await parts.blocking_hook("pre-terminate", info, ctx)
        if answer is not None:
            if answer.reject_termination:
                raise errors.TerminationRejectedError(hook_response=answer.http_response)
            ctx.hook_response = answer.http_response
        with parts.timed("terminate"):
            await parts.store.terminate(info)
        await parts.quotas.removed(info)
    parts.metrics.uploads_terminated += 1
    ctx.log.info("UploadTerminated")
    await parts.notify("post-terminate", info, ctx)
    return responses.delete_response(routed.common)
