"""PATCH, and every request body: from the exchange into the store writer, then
settled (checksums verified, bytes committed) before the answer."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

import trio

from .._logging import info_event
from ..hooks.model import HookError
from ..protocol import errors, ietf, interop, writes
from ..protocol.headers import CHECKSUM_ALGORITHMS, MAX_INT64, Checksum
from ..protocol.info import UploadInfo
from ..protocol.messages import Response
from ..protocol.routing import Routed
from ..protocol.writes import WritePlan
from ..quotas.service import BodyGrant
from ..stores.base import ChunkWriter, DurableOnWrite
from ._request import RequestContext
from ._state import Interrupter
from ._uploads import HandlerParts, complete_draft, finish, hook_failure


async def patch(
    parts: HandlerParts, ctx: RequestContext, routed: Routed, upload_id: str
) -> Response:
    request = ctx.request
    interop = routed.interop
    if interop is not None:
        return await _append_draft(parts, ctx, routed, interop, upload_id)
    writes.check_patch_headers(request)
    async with parts.writing(upload_id, ctx) as interrupter:
        info = await parts.store.get(upload_id)
        now = time.time()
        plan = writes.plan_patch(request, info, parts.protocol, now)
        if plan.already_complete:
            return writes.patch_response(info, parts.protocol, routed.common, now)
        if plan.declare_length is not None:
            info = await _declare_length(parts, ctx, info, plan.declare_length)
        info, error = await write_body(parts, ctx, info, plan, interrupter)
        if error is not None:
            raise error
        return writes.patch_response(info, parts.protocol, routed.common, time.time())


async def _append_draft(
    parts: HandlerParts,
    ctx: RequestContext,
    routed: Routed,
    interop: interop.InteropVersion,
    upload_id: str,
) -> Response:
    """An IETF draft append (PATCH): the tus PATCH path with the draft's checks."""
    request = ctx.request
    protocol = parts.protocol
    ietf.check_append_headers(request, interop)
    async with parts.writing(upload_id, ctx) as interrupter:
        info = await parts.store.get(upload_id)
        now = time.time()
        append, plan = ietf.plan_append(request, info, protocol, interop, now)
        if not plan.already_complete:
            if plan.declare_length is not None:
                info = await _declare_length(parts, ctx, info, plan.declare_length)
            info, error = await write_body(parts, ctx, info, plan, interrupter)
            if error is not None:
                raise error
            info = await complete_draft(parts, ctx, info, append.complete)
        return ietf.append_response(interop, protocol, info, routed.common, time.time())


async def _declare_length(
    parts: HandlerParts, ctx: RequestContext, info: UploadInfo, length: int
) -> UploadInfo:
    """A deferred-length upload declares its length: reserved under the quota first,
    given back should the store fail to record it."""
    reserved = await parts.quotas.reserve_declared(ctx.principal, info, length)
    try:
        return await parts.store.declare_length(info, length)
    except BaseException:
        if reserved is not None:
            with trio.CancelScope(shield=True):
                await parts.quotas.refund(reserved)
        raise


async def write_body(
    parts: HandlerParts,
    ctx: RequestContext,
    info: UploadInfo,
    plan: WritePlan,
    interrupter: Interrupter,
) -> tuple[UploadInfo, errors.TusError | None]:
    """Stream the request body into the store.  Returns the new info and the
    error that ended the body early, if any (the bytes before it are kept).

    A deferred-length upload under a quota gets its bytes granted first: the body
    may bring no more (413 ``ERR_QUOTA_EXCEEDED`` past them), and what it did not
    use is given back once its bytes are settled.
    """
    grant = await parts.quotas.grant_body(ctx.principal, info, plan.content_length)
    if grant is None:
        return await _write_body(parts, ctx, info, plan, interrupter, None)
    start = info.offset
    written: int | None = None
    try:
        info, error = await _write_body(parts, ctx, info, plan, interrupter, grant)
        written = info.offset - start
    finally:
        with trio.CancelScope(shield=True):
            # After an unexpected failure the stored count is unknown: count what was
            # received, the safe side (never below what the store may hold).
            await parts.quotas.settle_body(grant, ctx.received if written is None else written)
    return info, error


async def _write_body(
    parts: HandlerParts,
    ctx: RequestContext,
    info: UploadInfo,
    plan: WritePlan,
    interrupter: Interrupter,
    grant: BodyGrant | None,
) -> tuple[UploadInfo, errors.TusError | None]:
    exchange = ctx.exchange
    staged = plan.verify_checksum
    hashers: dict[str, hashlib._Hash] = {}
    if plan.checksum is not None:
        hashers[plan.checksum.algorithm] = hashlib.new(
            CHECKSUM_ALGORITHMS[plan.checksum.algorithm][0]
        )
    elif plan.checksum_in_trailer:
        for name in parts.protocol.checksum_algorithms:
            hashers[name] = hashlib.new(CHECKSUM_ALGORITHMS[name][0])
    error: errors.TusError | None = None
    writer: ChunkWriter = await parts.store.open_writer(info, staged=staged)
    ctx.reported_offset = info.offset
    limit = plan.limit
    quota_bound = False
    if grant is not None and grant.limit is not None and (limit is None or grant.limit < limit):
        limit, quota_bound = grant.limit, True
    ctx.log.info("ChunkWriteStart", maxSize=_max_size(plan), offset=info.offset)
    try:
        with parts.state.track_body(interrupter, exchange), trio.CancelScope() as scope:
            interrupter.scope = scope
            if interrupter.reason is not None:
                scope.cancel()
            sink, sink_is_async = _make_sink(writer, list(hashers.values()))
            if parts.supervisor.hook_enabled("post-receive"):
                # The request's nursery: the body pump, and beside it the periodic
                # post-receive hook (whose answer may stop the upload).
                failure: Exception | None = None
                over = False
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_report_progress, parts, ctx, info, interrupter)
                    try:
                        over = await exchange.pump_body(sink, limit, sink_is_async=sink_is_async)
                    except Exception as exc:  # re-raised below, outside the nursery
                        failure = exc
                    nursery.cancel_scope.cancel()
                if failure is not None:
                    raise failure
            else:
                over = await exchange.pump_body(sink, limit, sink_is_async=sink_is_async)
            if over:
                error = grant.error if quota_bound and grant is not None else plan.limit_error()
                exchange.close_after = True
        if scope.cancelled_caught:
            error = interrupter.reason or errors.ServerShutdownError()
            exchange.close_after = True
    except errors.BodyInterruptedError as exc:
        error = exc
        exchange.close_after = True
    except errors.StoreError as exc:
        error = exc
        exchange.close_after = True
    except errors.ProtocolError as exc:
        error = exc
        exchange.close_after = True
    finally:
        interrupter.scope = None
    if error is not None and not isinstance(error, errors.StoreError):
        ctx.log.error("BodyReadError", error=f"{error.code}: {error.message}")

    # Whatever happened, settle the bytes before answering.  As tusd's delayed
    # context: while the client waits for the answer the store takes the time it
    # needs (an S3 completion can take long); once the request is over (client
    # gone, lease lost) or the server shuts down, it gets request-completion-timeout.
    with parts.state.settling(bounded=isinstance(error, errors.BodyInterruptedError)) as settle:
        info, error = await _settle(parts, ctx, info, plan, writer, hashers, error)
    if settle.cancelled_caught:
        return info, errors.StoreError("the store did not finish in time")
    return info, error


async def _report_progress(
    parts: HandlerParts, ctx: RequestContext, info: UploadInfo, interrupter: Interrupter
) -> None:
    """Send post-receive every -progress-hooks-interval while the offset moves."""
    interval = parts.progress_interval
    start = info.offset
    reported = start
    while True:
        await trio.sleep(interval)
        offset = start + ctx.received
        if offset == reported:
            continue
        reported = offset
        ctx.reported_offset = offset
        event = parts.event("post-receive", info.with_offset(offset), ctx)
        try:
            answer = await parts.supervisor.run_hook_in_order(event)
        except HookError:
            continue
        if answer is not None and answer.stop_upload:
            info_event("HookStopUpload", id=info.id, offset=offset)
            stop = errors.UploadStoppedError(hook_response=answer.http_response)
            interrupter.interrupt(stop)
            return


async def _terminate_stopped(parts: HandlerParts, ctx: RequestContext, info: UploadInfo) -> None:
    if not parts.protocol.capabilities.terminate:
        return
    try:
        with parts.timed("terminate"):
            await parts.store.terminate(info)
    except errors.TusError as exc:
        ctx.log.error("UploadStopTerminateError", error=f"{exc.code}: {exc.message}")
        return
    await parts.quotas.removed(info)
    parts.metrics.uploads_terminated += 1
    ctx.log.info("UploadTerminated", reason="stopped by hook")
    await parts.notify("post-terminate", info, ctx)


async def _settle(
    parts: HandlerParts,
    ctx: RequestContext,
    info: UploadInfo,
    plan: WritePlan,
    writer: ChunkWriter,
    hashers: dict[str, hashlib._Hash],
    error: errors.TusError | None,
) -> tuple[UploadInfo, errors.TusError | None]:
    try:
        if isinstance(error, errors.LockLostError):
            # Another instance may own the upload now: store nothing more.  Bytes an
            # append-only store already holds stay; buffered ones are dropped.
            durable = isinstance(writer, DurableOnWrite) and writer.durable_on_write
            if plan.verify_checksum or not durable:
                await writer.discard()
            await writer.aclose()
            written = max(writer.written, 0)
            parts.metrics.bytes_received += written
            return info.with_offset(info.offset + written), error
        if plan.verify_checksum:
            checksum: Checksum | None = plan.checksum
            if error is None and checksum is None:
                try:
                    checksum = writes.checksum_from_trailers(ctx.exchange.trailers, parts.protocol)
                except errors.TusError as exc:
                    error = exc
                else:
                    if checksum is None:
                        error = errors.InvalidChecksumError(
                            "the Upload-Checksum trailer announced by the request is missing"
                        )
            if error is None and checksum is not None:
                digest = hashers[checksum.algorithm].digest()
                if digest != checksum.digest:
                    error = errors.ChecksumMismatchError()
            if error is not None:
                # An unverified chunk is never kept (tus checksum extension).
                await writer.discard()
                return info, error
            with parts.timed("commit"):
                await writer.commit()
        else:
            trailers = ctx.exchange.trailers
            # Most bodies have no trailers: no generator is started for them.
            if (
                error is None
                and trailers
                and any(name.lower() == "upload-checksum" for name, _ in trailers)
            ):
                await writer.discard()
                return info, errors.InvalidChecksumError(
                    "an Upload-Checksum trailer must be announced with a Trailer header"
                )
            with parts.timed("commit"):
                await writer.commit()
    except errors.StoreError as exc:
        await writer.aclose()
        error = exc
    written = writer.written
    if written:
        parts.metrics.bytes_received += max(written, 0)
        info = info.with_changes(offset=info.offset + written, modified=time.time())
    stopped = isinstance(error, errors.UploadStoppedError)
    if stopped:
        # A hook stopped the upload: it is terminated, as in tusd.
        await _terminate_stopped(parts, ctx, info)
    ctx.log.info("ChunkWriteComplete", bytesWritten=max(written, 0))
    if info.is_complete and not stopped and not isinstance(error, errors.StoreError):
        try:
            await finish(parts, info, ctx)
        except errors.TusError as exc:
            error = error or exc
        except HookError as exc:
            error = error or hook_failure(ctx, exc)
    if parts.supervisor.hook_enabled("post-receive") and info.offset != ctx.reported_offset:
        # The last progress event of this request (if the offset moved since the
        # previous one) comes after the request's other events, post-finish
        # included, as tusd sends it (when the request ends).
        ctx.reported_offset = info.offset
        await parts.supervisor.notify(parts.event("post-receive", info, ctx))
    return info, error


def _make_sink(
    writer: ChunkWriter, hashers: list[hashlib._Hash]
) -> tuple[Callable[[Any], object], bool]:
    """The function each body chunk goes to: the store's writer, plus hashing."""
    # The InlineWriter capability, found by its method: isinstance() against a
    # runtime_checkable Protocol collects the protocol's members on every call,
    # 30 us (timeit) per body, more than the rest of _write_body.
    write_nowait: Callable[[Any], None] | None = getattr(writer, "write_nowait", None)
    if write_nowait is not None:
        if not hashers:
            return write_nowait, False

        def hash_and_write(data: Any) -> None:
            write_nowait(data)
            for hasher in hashers:
                hasher.update(data)

        return hash_and_write, False

    async def hash_and_write_async(data: bytes) -> None:
        await writer.write(data)
        for hasher in hashers:
            hasher.update(data)

    return hash_and_write_async, True


def _max_size(plan: WritePlan) -> int:
    """tusd's ``maxSize`` of ChunkWriteStart: the bytes this request may write
    (its Content-Length when it has one; unlimited is int64's maximum)."""
    content_length = plan.content_length
    if content_length:
        return content_length
    return plan.limit if plan.limit is not None else MAX_INT64
