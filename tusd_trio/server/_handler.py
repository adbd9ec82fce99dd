"""Carries out what the protocol core decides, against the store and the locker."""

from __future__ import annotations

import hashlib
import secrets
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import trio

from .._logging import RequestLog, info_event
from ..auth import AuthError, redact_url
from ..hooks import HookError, HookResponse, HTTPResponse, merge_http_response
from ..protocol import core, errors, ietf
from ..protocol.core import Action, Response, Routed, WritePlan
from ..protocol.headers import CHECKSUM_ALGORITHMS, MAX_INT64, Checksum, parse_uint
from ..protocol.info import UploadInfo, check_upload_id, new_upload_id
from ..stores.base import ChunkWriter, DurableOnWrite, InlineWriter
from ._http import ConnectionClosedError, Exchange
from ._metrics import histograms
from ._supervisor import HookEvent

if TYPE_CHECKING:
    from ._app import Server


class Interrupter:
    """Lets another task stop a running body read with a given reason."""

    __slots__ = ("log", "reason", "scope")

    def __init__(self, log: RequestLog | None = None) -> None:
        self.scope: trio.CancelScope | None = None
        self.reason: errors.BodyInterruptedError | None = None
        self.log = log

    def interrupt(self, reason: errors.BodyInterruptedError) -> None:
        if self.reason is None:
            self.reason = reason
        if self.scope is not None:
            self.scope.cancel()

    def release_requested(self) -> None:
        """Another request wants the upload's lock: stop, keeping what arrived."""
        if self.log is not None:
            self.log.info("UploadInterrupted")
        self.interrupt(errors.UploadInterruptedError())

    def lock_lost(self) -> None:
        self.interrupt(errors.LockLostError())


class TusHandler:
    def __init__(self, server: Server) -> None:
        self.server = server
        self.config = server.config
        self.protocol = server.config.protocol
        self.store = server.store
        self.locker = server.locker
        self.supervisor = server.supervisor
        self.metrics = server.supervisor.metrics

    # --- entry point -------------------------------------------------------------------

    async def __call__(self, exchange: Exchange) -> None:
        request = exchange.request
        routed = ietf.route(
            request, self.protocol, enabled=self.config.enable_experimental_protocol
        )
        method = routed.method
        # Every answer carries a request ID: the client's X-Request-ID, else a new one.
        client_id = _rid(request)
        generated_id = "" if client_id else secrets.token_hex(8)
        exchange.request_id = client_id or generated_id
        routed.common.append(("X-Request-ID", exchange.request_id))
        if method in ("GET", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS"):
            self.metrics.requests_total[method] += 1
        started = time.monotonic()
        # As tusd: requests the tus handler serves are logged, with the method as
        # received; the greeting, metrics and health paths are not.
        reqlog = RequestLog(request.method, routed.log_path or "", client_id, generated_id)
        exchange.log = reqlog
        logged = routed.log_path is not None
        if logged:
            reqlog.info("RequestIncoming")
        status = 500
        body: bytes | None = b""
        try:
            response = await self._dispatch(exchange, routed)
            if response is not None:
                if exchange.hook_response is not None:
                    response = _apply_hook_response(response, exchange.hook_response)
                status = response.status
                head = method == "HEAD"
                if head and request.method != "HEAD":
                    # HEAD through X-HTTP-Method-Override on a POST: the connection
                    # still carries a POST, whose answer has a real (empty) body.
                    head = False
                    response.headers = [
                        (k, v) for k, v in response.headers if k.lower() != "content-length"
                    ]
                    response.body = b""
                body = b"" if head else response.body
                await exchange.send_response(response, head=head)
            else:
                # A download streamed by _get: tusd logs no body for it.
                status = exchange.sent_status or exchange_status(exchange)
                body = None
        except ConnectionClosedError:
            raise
        except errors.TusError as exc:
            status = exc.status
            body = await self._send_error(exchange, routed, exc)
            if isinstance(exc, errors.MethodNotAllowedError):
                logged = False  # tusd's router answers 405 without a ResponseOutgoing line
        except HookError as exc:
            status = 500
            body = await self._send_error(exchange, routed, hook_failure(exchange, exc))
        except Exception as exc:
            status = 500
            error = errors.TusError("the server failed to handle the request")
            reqlog.error(
                "InternalServerError",
                message=error.message,
                error=f"{type(exc).__name__}: {exc}",
                traceback="".join(traceback.format_exception(exc)),
            )
            exchange.internal_error_logged = True
            body = await self._send_error(exchange, routed, error)
        if method in ("GET", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS"):
            histograms.observe_request(method, status, time.monotonic() - started)
        if logged:
            duration_ms = round((time.monotonic() - started) * 1000, 3)
            if body is None:
                reqlog.info("ResponseOutgoing", status=status, duration_ms=duration_ms)
            else:
                reqlog.info(
                    "ResponseOutgoing",
                    status=status,
                    body=body.decode("utf-8", "replace"),
                    duration_ms=duration_ms,
                )

    async def _send_error(
        self, exchange: Exchange, routed: Routed, exc: errors.TusError
    ) -> bytes | None:
        """Answer with ``exc``; returns the body sent (``None`` when the response had
        already started, so the connection is closed instead)."""
        if exchange.response_started:
            exchange.close_after = True
            return None
        self.metrics.errors_total[(str(exc.status), exc.code)] += 1
        if exc.code == "ERR_INTERNAL_SERVER_ERROR" and not exchange.internal_error_logged:
            exchange.log.error("InternalServerError", message=exc.message)
        if routed.interop is not None:
            response = ietf.error_response(
                exc, routed.interop, method=routed.method, common=routed.common
            )
        else:
            response = core.error_response(exc, method=routed.method, common=routed.common)
        if exc.location is not None:
            response.headers.append(("Location", exc.location))
        if isinstance(exc, AuthError):
            response.headers += list(exc.headers.items())
        if isinstance(exc.hook_response, HTTPResponse):
            response = _apply_hook_response(response, exc.hook_response)
        head = exchange.request.method == "HEAD"
        await exchange.send_response(response, head=head)
        return b"" if head else response.body

    async def _dispatch(self, exchange: Exchange, routed: Routed) -> Response | None:
        if routed.error is not None:
            raise routed.error
        if routed.upload_id is not None:
            exchange.log.set_upload_id(routed.upload_id)
        action = routed.action
        if action is Action.OPTIONS:
            if routed.interop is not None:
                return ietf.options_response(routed.interop, self.protocol, routed.common)
            return core.options_response(self.protocol, routed.common)
        if action is Action.GREETING:
            return core.greeting_response()
        if action is Action.HEALTH or action is Action.READY:
            # Probes carry no credentials: the status is open, the details are not.
            operator = self.server.operator
            details = operator.access.allows(exchange.request)
            return await operator.health(ready=action is Action.READY, details=details)
        if action is Action.METRICS:
            self.server.operator.access.check(exchange.request)
            return self.server.operator.metrics_response()
        if self.server.shutting_down and action in (Action.CREATE, Action.PATCH):
            raise errors.ServerShuttingDownError()
        auth = self.server.auth
        if auth.enabled:
            request = exchange.request
            exchange.principal = auth.authenticate(
                routed.method, request.target, request.headers, time.time()
            )
        if action is Action.CREATE:
            try:
                return await self._create(exchange, routed)
            except BaseException:
                if not exchange.upload_created:
                    auth.release(exchange.principal)
                raise
        upload_id = routed.upload_id
        assert upload_id is not None
        if self.supervisor.hook_enabled("pre-access") or auth.enabled:
            await self._pre_access(exchange, upload_id)
        if action is Action.HEAD:
            return await self._head(exchange, routed, upload_id)
        if action is Action.PATCH:
            return await self._patch(exchange, routed, upload_id)
        if action is Action.GET:
            await self._get(exchange, routed, upload_id)
            return None
        assert action is Action.DELETE
        return await self._delete(exchange, routed, upload_id)

    async def _pre_access(self, exchange: Exchange, upload_id: str) -> None:
        """Our ``pre-access`` hook: may refuse HEAD, PATCH, GET and DELETE."""
        await self._check_access(exchange, await self.store.get(upload_id))

    async def _check_access(self, exchange: Exchange, info: UploadInfo) -> None:
        self.server.auth.check_owner(exchange.principal, info.metadata)
        if not self.supervisor.hook_enabled("pre-access"):
            return
        answer = await self.supervisor.run_blocking_hook(
            HookEvent("pre-access", info, exchange.request, exchange.remote_addr)
        )
        if answer is not None and answer.reject_access:
            raise errors.AccessDeniedError(hook_response=answer.http_response)

    @contextmanager
    def _timed(self, operation: str) -> Iterator[None]:
        """Feed tusd_trio_store_operation_seconds."""
        started = time.monotonic()
        try:
            yield
        finally:
            histograms.observe_store(self.store.name, operation, time.monotonic() - started)

    # --- POST --------------------------------------------------------------------------------

    async def _create(self, exchange: Exchange, routed: Routed) -> Response:
        request = exchange.request
        now = time.time()
        interop = routed.interop
        draft_complete = False
        if interop is not None:
            draft = ietf.plan_creation(request, self.protocol, interop, now)
            plan, draft_complete = draft.plan, draft.complete
        else:
            plan = core.plan_creation(request, self.protocol, now)
        partials: list[UploadInfo] = []
        info = plan.info
        if plan.info.is_final:
            partials = [await self.store.get(pid) for pid in plan.partial_ids]
            if self.supervisor.hook_enabled("pre-access") or self.server.auth.enabled:
                # Reading a partial through a final upload is an access to it.
                for partial in partials:
                    await self._check_access(exchange, partial)
            info = core.plan_final(plan, partials, self.protocol)

        auth = self.server.auth
        # Also with access control off: the reserved owner key never comes from a client,
        # or that client would own the upload once access control is turned on.
        info = replace(
            info,
            metadata=auth.creation_metadata(
                exchange.principal,
                info.metadata,
                None if info.size_is_deferred else info.size,
            ),
        )
        answer = await self.supervisor.run_blocking_hook(
            HookEvent("pre-create", info, request, exchange.remote_addr)
        )
        new_id = new_upload_id()
        if answer is not None:
            if answer.reject_upload:
                raise errors.UploadRejectedError(hook_response=answer.http_response)
            exchange.hook_response = answer.http_response
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
                            exchange.principal,
                            metadata,
                            None if info.size_is_deferred else info.size,
                        )
                    info = replace(info, metadata=metadata)
                if changes.storage is not None:
                    info = replace(info, storage=dict(changes.storage))
        info = replace(info, id=new_id)
        with self._timed("create"):
            info = await self.store.create(info)
        exchange.upload_created = True
        self.metrics.uploads_created += 1
        location = core.upload_url(request, self.protocol, info.id)
        exchange.log.set_upload_id(info.id)
        exchange.log.info("UploadCreated", size=info.size, url=redact_url(location))
        self.supervisor.notify(HookEvent("post-create", info, request, exchange.remote_addr))
        grant = auth.location_query(exchange.principal, info.id, time.time())
        if grant:
            location += "?" + grant
        if interop is not None:
            return await self._create_draft(
                exchange, routed, interop, info, location, complete=draft_complete
            )

        wrote_body = False
        if info.is_final:
            if core.partials_finished(partials):
                info = await self._concat(info, partials, exchange)
        elif plan.has_body:
            wrote_body = True
            try:
                write_plan = core.plan_body_write(request, info, self.protocol)
            except errors.TusError as exc:
                raise exc.with_location(location) from exc  # the upload exists: it may be resumed
            interrupter = Interrupter(exchange.log)
            async with self.locker.lock(
                info.id,
                max_wait=self.config.acquire_lock_timeout,
                on_release_requested=interrupter.release_requested,
                on_lost=interrupter.lock_lost,
                access="new",
            ):
                info, body_error = await self._write_body(exchange, info, write_plan, interrupter)
            if body_error is not None:
                if not isinstance(body_error, errors.UploadStoppedError):
                    body_error = body_error.with_location(location)  # not for a terminated upload
                raise body_error
        elif info.is_complete:
            await self._finish(info, exchange)

        response = core.creation_response(
            request, self.protocol, info, routed.common, wrote_body=wrote_body, now=time.time()
        )
        if grant:
            response.headers = [
                (k, location if k == "Location" else v) for k, v in response.headers
            ]
        return response

    async def _create_draft(
        self,
        exchange: Exchange,
        routed: Routed,
        interop: ietf.InteropVersion,
        info: UploadInfo,
        location: str,
        *,
        complete: bool,
    ) -> Response:
        """The rest of an IETF draft creation: the 104 (before the body is read), the
        body through the ordinary write path, completion, then the 201."""
        request = exchange.request
        protocol = self.protocol
        await exchange.send_informational(
            104, ietf.interim_headers(interop, protocol, info, location, time.time())
        )
        interrupter = Interrupter(exchange.log)
        body_error: errors.TusError | None = None
        try:
            async with self.locker.lock(
                info.id,
                max_wait=self.config.acquire_lock_timeout,
                on_release_requested=interrupter.release_requested,
                on_lost=interrupter.lock_lost,
                access="new",
            ):
                if exchange.has_body:
                    write_plan = core.plan_body_write(request, info, protocol)
                    info, body_error = await self._write_body(
                        exchange, info, write_plan, interrupter
                    )
                elif info.is_complete:
                    await self._finish(info, exchange)
                if body_error is None:
                    info = await self._complete_draft(exchange, info, complete)
        except errors.TusError as exc:
            raise exc.with_location(location) from exc  # the upload exists: it may be resumed
        if body_error is not None:
            if not isinstance(body_error, errors.UploadStoppedError):
                body_error = body_error.with_location(location)  # not for a terminated upload
            raise body_error
        return ietf.creation_response(interop, protocol, info, location, routed.common, time.time())

    async def _complete_draft(
        self, exchange: Exchange, info: UploadInfo, complete: bool
    ) -> UploadInfo:
        """A draft request that completes the upload: a deferred length becomes the
        offset, and the upload is finished (a known length finished on its own)."""
        length = ietf.length_to_declare(info, complete)
        if length is not None:
            info = await self.store.declare_length(info, length)
            await self._finish(info, exchange)
        return info

    async def _concat(
        self, info: UploadInfo, partials: list[UploadInfo], exchange: Exchange | None
    ) -> UploadInfo:
        info = await self.store.concat(info, partials)
        await self._finish(info, exchange, call_store=False)
        return info

    # --- PATCH -------------------------------------------------------------------------------

    async def _patch(self, exchange: Exchange, routed: Routed, upload_id: str) -> Response:
        request = exchange.request
        interop = routed.interop
        if interop is not None:
            return await self._append_draft(exchange, routed, interop, upload_id)
        core.check_patch_headers(request)
        interrupter = Interrupter(exchange.log)
        async with self.locker.lock(
            upload_id,
            max_wait=self.config.acquire_lock_timeout,
            on_release_requested=interrupter.release_requested,
            on_lost=interrupter.lock_lost,
        ):
            info = await self.store.get(upload_id)
            now = time.time()
            plan = core.plan_patch(request, info, self.protocol, now)
            if plan.already_complete:
                return core.patch_response(info, self.protocol, routed.common, now)
            if plan.declare_length is not None:
                info = await self.store.declare_length(info, plan.declare_length)
            info, error = await self._write_body(exchange, info, plan, interrupter)
            if error is not None:
                raise error
            return core.patch_response(info, self.protocol, routed.common, time.time())

    async def _append_draft(
        self, exchange: Exchange, routed: Routed, interop: ietf.InteropVersion, upload_id: str
    ) -> Response:
        """An IETF draft append (PATCH): the tus PATCH path with the draft's checks."""
        request = exchange.request
        protocol = self.protocol
        ietf.check_append_headers(request, interop)
        interrupter = Interrupter(exchange.log)
        async with self.locker.lock(
            upload_id,
            max_wait=self.config.acquire_lock_timeout,
            on_release_requested=interrupter.release_requested,
            on_lost=interrupter.lock_lost,
        ):
            info = await self.store.get(upload_id)
            now = time.time()
            append, plan = ietf.plan_append(request, info, protocol, interop, now)
            if not plan.already_complete:
                if plan.declare_length is not None:
                    info = await self.store.declare_length(info, plan.declare_length)
                info, error = await self._write_body(exchange, info, plan, interrupter)
                if error is not None:
                    raise error
                info = await self._complete_draft(exchange, info, append.complete)
            return ietf.append_response(interop, protocol, info, routed.common, time.time())

    async def _write_body(
        self,
        exchange: Exchange,
        info: UploadInfo,
        plan: WritePlan,
        interrupter: Interrupter | None = None,
    ) -> tuple[UploadInfo, errors.TusError | None]:
        """Stream the request body into the store.  Returns the new info and the
        error that ended the body early, if any (the bytes before it are kept)."""
        if interrupter is None:
            interrupter = Interrupter(exchange.log)
        server = self.server
        staged = plan.verify_checksum
        hashers: dict[str, hashlib._Hash] = {}
        if plan.checksum is not None:
            hashers[plan.checksum.algorithm] = hashlib.new(
                CHECKSUM_ALGORITHMS[plan.checksum.algorithm][0]
            )
        elif plan.checksum_in_trailer:
            for name in self.protocol.checksum_algorithms:
                hashers[name] = hashlib.new(CHECKSUM_ALGORITHMS[name][0])
        error: errors.TusError | None = None
        writer: ChunkWriter = await self.store.open_writer(info, staged=staged)
        exchange.reported_offset = info.offset
        limit = plan.limit
        server.active_interrupters.add(interrupter)
        server.receiving.add(exchange)
        exchange.log.info("ChunkWriteStart", maxSize=_max_size(exchange, plan), offset=info.offset)
        if server.shutting_down:
            interrupter.interrupt(errors.ServerShutdownError())
        try:
            with trio.CancelScope() as scope:
                interrupter.scope = scope
                if interrupter.reason is not None:
                    scope.cancel()
                sink, sink_is_async = _make_sink(writer, list(hashers.values()))
                if self.supervisor.hook_enabled("post-receive"):
                    # The request's nursery: the body pump, and beside it the periodic
                    # post-receive hook (whose answer may stop the upload).
                    failure: Exception | None = None
                    over = False
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._report_progress, exchange, info, interrupter)
                        try:
                            over = await exchange.pump_body(
                                sink, limit, sink_is_async=sink_is_async
                            )
                        except Exception as exc:  # re-raised below, outside the nursery
                            failure = exc
                        nursery.cancel_scope.cancel()
                    if failure is not None:
                        raise failure
                else:
                    over = await exchange.pump_body(sink, limit, sink_is_async=sink_is_async)
                if over:
                    error = plan.limit_error()
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
            server.active_interrupters.discard(interrupter)
            server.receiving.discard(exchange)
        if error is not None and not isinstance(error, errors.StoreError):
            exchange.log.error("BodyReadError", error=f"{error.code}: {error.message}")

        # Whatever happened, settle the bytes before answering.  As tusd's delayed
        # context: while the client waits for the answer the store takes the time it
        # needs (an S3 completion can take long); once the request is over (client
        # gone, lease lost) or the server shuts down, it gets request-completion-timeout.
        with trio.CancelScope(shield=True) as settle:
            if isinstance(error, errors.BodyInterruptedError) or server.shutting_down:
                settle.deadline = trio.current_time() + self.config.request_completion_timeout
            server.settling.add(settle)
            try:
                info, error = await self._settle(exchange, info, plan, writer, hashers, error)
            finally:
                server.settling.discard(settle)
        if settle.cancelled_caught:
            return info, errors.StoreError("the store did not finish in time")
        return info, error

    async def _report_progress(
        self, exchange: Exchange, info: UploadInfo, interrupter: Interrupter
    ) -> None:
        """Send post-receive every -progress-hooks-interval while the offset moves."""
        interval = self.config.progress_hooks_interval
        start = info.offset
        reported = start
        while True:
            await trio.sleep(interval)
            offset = start + exchange.received
            if offset == reported:
                continue
            reported = offset
            exchange.reported_offset = offset
            event = HookEvent(
                "post-receive", info.with_offset(offset), exchange.request, exchange.remote_addr
            )
            try:
                answer = await self.supervisor.run_hook_in_order(event)
            except HookError:
                continue
            if answer is not None and answer.stop_upload:
                info_event("HookStopUpload", id=info.id, offset=offset)
                stop = errors.UploadStoppedError(hook_response=answer.http_response)
                interrupter.interrupt(stop)
                return

    async def _terminate_stopped(self, exchange: Exchange, info: UploadInfo) -> None:
        if not self.protocol.capabilities.terminate:
            return
        try:
            with self._timed("terminate"):
                await self.store.terminate(info)
        except errors.TusError as exc:
            exchange.log.error("UploadStopTerminateError", error=f"{exc.code}: {exc.message}")
            return
        self.metrics.uploads_terminated += 1
        exchange.log.info("UploadTerminated", reason="stopped by hook")
        self.supervisor.notify(
            HookEvent("post-terminate", info, exchange.request, exchange.remote_addr)
        )

    async def _settle(
        self,
        exchange: Exchange,
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
                self.metrics.bytes_received += written
                return info.with_offset(info.offset + written), error
            if plan.verify_checksum:
                checksum: Checksum | None = plan.checksum
                if error is None and checksum is None:
                    try:
                        checksum = core.checksum_from_trailers(exchange.trailers, self.protocol)
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
                with self._timed("commit"):
                    await writer.commit()
            else:
                if error is None and any(
                    name.lower() == "upload-checksum" for name, _ in exchange.trailers
                ):
                    await writer.discard()
                    return info, errors.InvalidChecksumError(
                        "an Upload-Checksum trailer must be announced with a Trailer header"
                    )
                with self._timed("commit"):
                    await writer.commit()
        except errors.StoreError as exc:
            await writer.aclose()
            error = exc
        written = writer.written
        if written:
            self.metrics.bytes_received += max(written, 0)
        info = info.with_offset(info.offset + written)
        if written:
            info = replace(info, modified=time.time())
        stopped = isinstance(error, errors.UploadStoppedError)
        if stopped:
            # A hook stopped the upload: it is terminated, as in tusd.
            await self._terminate_stopped(exchange, info)
        exchange.log.info("ChunkWriteComplete", bytesWritten=max(written, 0))
        if info.is_complete and not stopped and not isinstance(error, errors.StoreError):
            try:
                await self._finish(info, exchange)
            except errors.TusError as exc:
                error = error or exc
            except HookError as exc:
                error = error or hook_failure(exchange, exc)
        if self.supervisor.hook_enabled("post-receive") and info.offset != exchange.reported_offset:
            # The last progress event of this request (if the offset moved since the
            # previous one) comes after the request's other events, post-finish
            # included, as tusd sends it (when the request ends).
            exchange.reported_offset = info.offset
            self.supervisor.notify(
                HookEvent("post-receive", info, exchange.request, exchange.remote_addr)
            )
        return info, error

    async def _finish(
        self, info: UploadInfo, exchange: Exchange | None, *, call_store: bool = True
    ) -> None:
        if call_store:
            with self._timed("finish"):
                await self.store.finish(info)
        request = exchange.request if exchange is not None else None
        remote = exchange.remote_addr if exchange is not None else ""
        answer = await self.supervisor.run_blocking_hook(
            HookEvent("pre-finish", info, request, remote)
        )
        if answer is not None and answer.http_response is not None and exchange is not None:
            exchange.hook_response = _merge_hook_http(exchange.hook_response, answer)
        self.metrics.uploads_finished += 1
        if exchange is not None:
            exchange.log.info("UploadFinished", size=info.size)
        else:
            info_event("UploadFinished", id=info.id, size=info.size)
        self.supervisor.notify(HookEvent("post-finish", info, request, remote))

    # --- HEAD ----------------------------------------------------------------------------------

    async def _head(self, exchange: Exchange, routed: Routed, upload_id: str) -> Response:
        interop = routed.interop
        if interop is not None:
            ietf.check_state_fields(exchange.request, interop)
        async with self.locker.lock(
            upload_id, max_wait=self.config.acquire_lock_timeout, access="read"
        ):
            info = await self.store.get(upload_id)
            info = await self._maybe_complete_final(info, exchange)
            if interop is not None:
                return ietf.head_response(interop, self.protocol, info, routed.common, time.time())
            return core.head_response(
                exchange.request, info, self.protocol, routed.common, time.time()
            )

    async def _maybe_complete_final(self, info: UploadInfo, exchange: Exchange) -> UploadInfo:
        """concatenation-unfinished: concatenate once every partial is done."""
        if not info.is_final or info.is_complete:
            return info
        partials: list[UploadInfo] = []
        for pid in info.partial_uploads or ():
            try:
                partials.append(await self.store.get(pid))
            except errors.UploadNotFoundError:
                return info
        if not core.partials_finished(partials):
            return info
        # Partials whose lengths were deferred may have grown past the limits together.
        core.check_final_length(sum(p.size for p in partials), self.protocol)
        return await self._concat(info, partials, exchange)

    # --- GET -------------------------------------------------------------------------------------

    async def _get(self, exchange: Exchange, routed: Routed, upload_id: str) -> None:
        info = await self.store.get(upload_id)
        if not info.is_complete or info.is_final:
            # An unfinished upload: read a consistent offset under the lock, then
            # stream the bytes before it (they never change) without holding it.
            async with self.locker.lock(
                upload_id, max_wait=self.config.acquire_lock_timeout, access="read"
            ):
                info = await self.store.get(upload_id)
                info = await self._maybe_complete_final(info, exchange)
        now = time.time()
        plan = core.plan_download(exchange.request, info, self.protocol, routed.common, now)
        if routed.interop is not None and routed.interop.get_reports_state:
            plan.headers.extend(ietf.state_headers(routed.interop, self.protocol, info, now))
        head = exchange.request.method == "HEAD"
        exchange.sent_status = plan.status
        if plan.length == 0 or head:
            await exchange.send_response(Response(plan.status, plan.headers), head=head)
            return
        await exchange.send_stream(
            plan.status, plan.headers, self.store.read(info, plan.start, plan.end)
        )

    # --- DELETE ----------------------------------------------------------------------------------

    async def _delete(self, exchange: Exchange, routed: Routed, upload_id: str) -> Response:
        request = exchange.request
        if routed.interop is not None:
            ietf.check_state_fields(request, routed.interop)
        async with self.locker.lock(upload_id, max_wait=self.config.acquire_lock_timeout):
            info = await self.store.get(upload_id)
            answer = await self.supervisor.run_blocking_hook(
                HookEvent("pre-terminate", info, request, exchange.remote_addr)
            )
            if answer is not None:
                if answer.reject_termination:
                    raise errors.TerminationRejectedError(hook_response=answer.http_response)
                exchange.hook_response = answer.http_response
            with self._timed("terminate"):
                await self.store.terminate(info)
        self.metrics.uploads_terminated += 1
        exchange.log.info("UploadTerminated")
        self.supervisor.notify(HookEvent("post-terminate", info, request, exchange.remote_addr))
        return core.delete_response(routed.common)


def _apply_hook_response(response: Response, hook: HTTPResponse) -> Response:
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


def _make_sink(
    writer: ChunkWriter, hashers: list[hashlib._Hash]
) -> tuple[Callable[[Any], object], bool]:
    """The function each body chunk goes to: the store's writer, plus hashing."""
    if isinstance(writer, InlineWriter):
        write_nowait = writer.write_nowait
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


def _max_size(exchange: Exchange, plan: WritePlan) -> int:
    """tusd's ``maxSize`` of ChunkWriteStart: the bytes this request may write
    (its Content-Length when it has one; unlimited is int64's maximum)."""
    content_length = parse_uint(exchange.request.headers.get("content-length"))
    if content_length:
        return content_length
    return plan.limit if plan.limit is not None else MAX_INT64


def hook_failure(exchange: Exchange, exc: HookError) -> errors.TusError:
    """The client's answer to a failed hook: no hook output, addresses or other internals.

    They go to the request's InternalServerError line (as tusd logs a hook failure),
    which carries the request ID the client got.
    """
    error = errors.TusError(f"hook failed (request ID {exchange.request_id})")
    exchange.log.error("InternalServerError", message=error.message, error=str(exc))
    exchange.internal_error_logged = True
    return error


def exchange_status(exchange: Exchange) -> int:
    return 200 if exchange.response_started else 500


def _rid(request: core.Request) -> str:
    value = request.headers.get("x-request-id") or ""
    return value[:36]
