"""POST: creating uploads (with a first body, and concatenation), tus and IETF draft."""

from __future__ import annotations

import time

import trio

from ..auth import redact_url
from ..hooks.model import HookError
from ..protocol import creation, errors, ietf, interop, urls, writes
from ..protocol.info import UploadInfo, check_upload_id, new_upload_id
from ..protocol.messages import Response
from ..protocol.routing import Routed
from ._request import RequestContext
from ._uploads import HandlerParts, check_access, complete_draft, concat, finish
from ._write import write_body


async def create(parts: HandlerParts, ctx: RequestContext, routed: Routed) -> Response:
    request = ctx.request
    now = time.time()
    interop = routed.interop
    draft_complete = False
    if interop is not None:
        draft = ietf.plan_creation(request, parts.protocol, interop, now)
        plan, draft_complete = draft.plan, draft.complete
    else:
        plan = creation.plan_creation(request, parts.protocol, now)
    partials: list[UploadInfo] = []
    info = plan.info
    if plan.info.is_final:
        partials = [await parts.store.get(pid) for pid in plan.partial_ids]
        if parts.supervisor.hook_enabled("pre-access") or parts.auth.enabled:
            # Reading a partial through a final upload is an access to it.
            for partial in partials:
                await check_access(parts, ctx, partial)
        info = creation.plan_final(plan, partials, parts.protocol)

    auth = parts.auth
    # Also with access control off: the reserved owner key never comes from a client,
    # or that client would own the upload once access control is turned on.
    metadata = auth.creation_metadata(
        ctx.principal,
        info.metadata,
        None if info.size_is_deferred else info.size,
    )
    answer = None
    if parts.supervisor.hook_enabled("pre-create"):
        info = info.with_changes(metadata=metadata)
        answer = await parts.supervisor.run_blocking_hook(parts.event("pre-create", info, ctx))
    new_id = new_upload_id()
    if answer is not None:
        if answer.reject_upload:
            raise errors.UploadRejectedError(hook_response=answer.http_response)
        ctx.hook_response = answer.http_response
        changes = answer.change_file_info
        if changes is not None:
            if changes.id is not None:
                try:
                    new_id = check_upload_id(changes.id)
                except errors.TusError:
                    raise HookError(
                        f"pre-create chose an invalid upload ID {changes.id!r}"
                    ) from None
            if changes.metadata is not None:
                metadata = dict(changes.metadata)
                if auth.enabled:  # a hook cannot move an upload to another owner
                    metadata = auth.creation_metadata(
                        ctx.principal,
                        metadata,
                        None if info.size_is_deferred else info.size,
                    )
            if changes.storage is not None:
                info = info.with_changes(storage=dict(changes.storage))
    # The ID and the metadata in one copy: without a pre-create hook, the only one.
    info = info.with_changes(id=new_id, metadata=metadata)
    # Before any byte moves: the quota (if any) must hold the new upload.
    reservation = await parts.quotas.reserve_creation(ctx.principal, info)
    try:
        with parts.timed("create"):
            info = await parts.store.create(info)
    except BaseException:
        if reservation is not None:
            with trio.CancelScope(shield=True):
                await parts.quotas.refund(reservation)
        raise
    ctx.upload_created = True
    parts.metrics.uploads_created += 1
    location = urls.upload_url(request, parts.protocol, info.id)
    ctx.log.set_upload_id(info.id)
    ctx.log.info("UploadCreated", size=info.size, url=redact_url(location))
    await parts.notify("post-create", info, ctx)
    grant = auth.location_query(ctx.principal, info.id, time.time())
    if grant:
        location += "?" + grant
    if interop is not None:
        response = await _create_draft(
            parts, ctx, routed, interop, info, location, complete=draft_complete
        )
        if reservation is not None:
            response.headers.append(reservation.header)
        return response

    wrote_body = False
    if info.is_final:
        if creation.partials_finished(partials):
            info = await concat(parts, info, partials, ctx)
    elif plan.has_body:
        wrote_body = True
        try:
            write_plan = writes.plan_body_write(request, info, parts.protocol)
        except errors.TusError as exc:
            raise exc.with_location(location) from exc  # the upload exists: it may be resumed
        async with parts.writing(info.id, ctx, access="new") as interrupter:
            info, body_error = await write_body(parts, ctx, info, write_plan, interrupter)
        if body_error is not None:
            if not isinstance(body_error, errors.UploadStoppedError):
                body_error = body_error.with_location(location)  # not for a terminated upload
            raise body_error
    elif info.is_complete:
        await finish(parts, info, ctx)

    response = creation.creation_response(
        request, parts.protocol, info, routed.common, wrote_body=wrote_body, now=time.time()
    )
    if grant:
        response.headers = [(k, location if k == "Location" else v) for k, v in response.headers]
    if reservation is not None:
        response.headers.append(reservation.header)
    return response


async def _create_draft(
    parts: HandlerParts,
    ctx: RequestContext,
    routed: Routed,
    interop: interop.InteropVersion,
    info: UploadInfo,
    location: str,
    *,
    complete: bool,
) -> Response:
    """The rest of an IETF draft creation: the 104 (before the body is read), the
    body through the ordinary write path, completion, then the 201."""
    request = ctx.request
    protocol = parts.protocol
    await ctx.exchange.send_informational(
        104, ietf.interim_headers(interop, protocol, info, location, time.time())
    )
    body_error: errors.TusError | None = None
    try:
        async with parts.writing(info.id, ctx, access="new") as interrupter:
            if ctx.exchange.has_body:
                write_plan = writes.plan_body_write(request, info, protocol)
                info, body_error = await write_body(parts, ctx, info, write_plan, interrupter)
            elif info.is_complete:
                await finish(parts, info, ctx)
            if body_error is None:
                info = await complete_draft(parts, ctx, info, complete)
    except errors.TusError as exc:
        raise exc.with_location(location) from exc  # the upload exists: it may be resumed
    if body_error is not None:
        if not isinstance(body_error, errors.UploadStoppedError):
            body_error = body_error.with_location(location)  # not for a terminated upload
        raise body_error
    return ietf.creation_response(interop, protocol, info, location, routed.common, time.time())
