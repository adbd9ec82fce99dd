"""The tus handler: routes a request, runs the method's steps, answers, logs.

:class:`TusHandler` is built from :class:`~._uploads.HandlerParts` (never from a
server) and serves any :class:`~._exchange.Exchange`; the method groups are in
``_create`` (POST), ``_write`` (PATCH and bodies) and ``_read`` (HEAD, GET, DELETE).
"""

from __future__ import annotations

import time
import traceback
from dataclasses import replace

import trio

from .._logging import RequestLog
from ..auth import Authenticator, AuthError
from ..hooks.model import HookError, HTTPResponse
from ..protocol import errors, ietf, responses
from ..protocol.messages import Response
from ..protocol.routing import Action, Routed
from ..quotas.policy import QUOTA_HEADER
from ._create import create
from ._exchange import Exchange, send_response
from ._histograms import histograms
from ._read import delete, get, head
from ._request import RequestContext, new_request_id
from ._streams import ConnectionClosedError
from ._uploads import HandlerParts, apply_hook_response, check_access, hook_failure
from ._write import patch

_COUNTED_METHODS = frozenset({"GET", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS"})


class TusHandler:
    def __init__(self, parts: HandlerParts) -> None:
        self.parts = parts

    def for_prefix(self, prefix: str) -> TusHandler:
        """The same handler for an app mounted under ``prefix`` (ASGI ``root_path``):
        the base, health, metrics and profiling paths, and so ``Location`` and the paths
        presigned URLs cover, carry the prefix."""
        parts = self.parts
        protocol = parts.protocol
        protocol = replace(
            protocol,
            base_path=prefix + protocol.base_path,
            health_path=prefix + protocol.health_path,
            metrics_path=prefix + protocol.metrics_path if protocol.metrics_path else "",
            pprof_path=prefix + protocol.pprof_path if protocol.pprof_path else "",
        )
        auth = parts.auth
        if auth.enabled:
            auth = Authenticator(replace(auth.config, base_path=protocol.base_path))
        return TusHandler(replace(parts, protocol=protocol, auth=auth))

    # --- entry point -------------------------------------------------------------------

    async def __call__(self, exchange: Exchange) -> None:
        parts = self.parts
        request = exchange.request
        routed = ietf.route(request, parts.protocol, enabled=parts.experimental_protocol)
        method = routed.method
        # Every answer carries a request ID: the client's X-Request-ID, else a new one.
        client_id = (request.headers.get("x-request-id") or "")[:36]
        generated_id = "" if client_id else new_request_id()
        # As tusd: requests the tus handler serves are logged, with the method as
        # received; the greeting, metrics and health paths are not.
        reqlog = RequestLog(request.method, routed.log_path or "", client_id, generated_id)
        ctx = RequestContext(exchange, reqlog, client_id or generated_id)
        routed.common.append(("X-Request-ID", ctx.request_id))
        counted = method in _COUNTED_METHODS
        if counted:
            parts.metrics.requests_total[method] += 1
        started = time.monotonic()
        logged = routed.log_path is not None
        if logged:
            reqlog.info("RequestIncoming")
        status = 500
        body: bytes | None = b""
        try:
            response = await self._dispatch(ctx, routed)
            if response is not None:
                if ctx.hook_response is not None:
                    response = apply_hook_response(response, ctx.hook_response)
                status = response.status
                is_head = method == "HEAD"
                if is_head and request.method != "HEAD":
                    # HEAD through X-HTTP-Method-Override on a POST: the connection
                    # still carries a POST, whose answer has a real (empty) body.
                    is_head = False
                    response.headers = [
                        (k, v) for k, v in response.headers if k.lower() != "content-length"
                    ]
                    response.body = b""
                body = b"" if is_head else response.body
                await send_response(exchange, response, head=is_head)
            else:
                # A download streamed by _read.get: tusd logs no body for it.
                status = ctx.sent_status or (200 if exchange.response_started else 500)
                body = None
        except ConnectionClosedError:
            raise
        except errors.TusError as exc:
            status = exc.status
            body = await self._send_error(ctx, routed, exc)
            if isinstance(exc, errors.MethodNotAllowedError):
                logged = False  # tusd's router answers 405 without a ResponseOutgoing line
        except HookError as exc:
            status = 500
            body = await self._send_error(ctx, routed, hook_failure(ctx, exc))
        except Exception as exc:
            status = 500
            error = errors.TusError("the server failed to handle the request")
            reqlog.error(
                "InternalServerError",
                message=error.message,
                error=f"{type(exc).__name__}: {exc}",
                traceback="".join(traceback.format_exception(exc)),
            )
            ctx.internal_error_logged = True
            body = await self._send_error(ctx, routed, error)
        if counted:
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
        # One turn of the scheduler per request, once it is answered.  The store and
        # the lockers only check for cancellation (a yield each cost as much as their
        # work), and a transport yields when it reads the socket, but not for pipelined
        # requests already in its buffer: without this, a client sending many small
        # requests at once would hold the event loop until all were answered.
        await trio.lowlevel.checkpoint()

    async def _send_error(
        self, ctx: RequestContext, routed: Routed, exc: errors.TusError
    ) -> bytes | None:
        """Answer with ``exc``; returns the body sent (``None`` when the response had
        already started, so the connection is closed instead)."""
        exchange = ctx.exchange
        if exchange.response_started:
            exchange.close_after = True
            return None
        self.parts.metrics.errors_total[(str(exc.status), exc.code)] += 1
        if exc.code == "ERR_INTERNAL_SERVER_ERROR" and not ctx.internal_error_logged:
            ctx.log.error("InternalServerError", message=exc.message)
        if routed.interop is not None:
            response = ietf.error_response(
                exc, routed.interop, method=routed.method, common=routed.common
            )
        else:
            response = responses.error_response(exc, method=routed.method, common=routed.common)
        if exc.location is not None:
            response.headers.append(("Location", exc.location))
        if isinstance(exc, AuthError):
            response.headers += list(exc.headers.items())
        if isinstance(exc, errors.QuotaExceededError) and exc.quota_state is not None:
            response.headers.append((QUOTA_HEADER, exc.quota_state))
        if isinstance(exc.hook_response, HTTPResponse):
            response = apply_hook_response(response, exc.hook_response)
        head = ctx.request.method == "HEAD"
        await send_response(exchange, response, head=head)
        return b"" if head else response.body

    async def _dispatch(self, ctx: RequestContext, routed: Routed) -> Response | None:
        parts = self.parts
        if routed.error is not None:
            raise routed.error
        if routed.upload_id is not None:
            ctx.log.set_upload_id(routed.upload_id)
        action = routed.action
        if action is Action.OPTIONS:
            if routed.interop is not None:
                return ietf.options_response(routed.interop, parts.protocol, routed.common)
            return responses.options_response(parts.protocol, routed.common)
        if action is Action.GREETING:
            return responses.greeting_response()
        if action is Action.HEALTH or action is Action.READY:
            # Probes carry no credentials: the status is open, the details are not.
            details = parts.operator.access.allows(ctx.request)
            return await parts.operator.health(ready=action is Action.READY, details=details)
        if action is Action.METRICS:
            parts.operator.access.check(ctx.request)
            return parts.operator.metrics_response()
        if action is Action.PPROF:
            parts.operator.access.check(ctx.request)
            return await parts.operator.pprof.respond(ctx.request.target, parts.protocol.pprof_path)
        if parts.state.shutting_down and action in (Action.CREATE, Action.PATCH):
            raise errors.ServerShuttingDownError()
        auth = parts.auth
        if auth.enabled:
            request = ctx.request
            ctx.principal = auth.authenticate(
                routed.method, request.target, request.headers, time.time()
            )
        if action is Action.CREATE:
            try:
                return await create(parts, ctx, routed)
            except BaseException:
                if not ctx.upload_created:
                    auth.release(ctx.principal)
                raise
        upload_id = routed.upload_id
        assert upload_id is not None
        if parts.supervisor.hook_enabled("pre-access") or auth.enabled:
            # Our pre-access hook (and the owner check): may refuse every method below.
            await check_access(parts, ctx, await parts.store.get(upload_id))
        if action is Action.HEAD:
            return await head(parts, ctx, routed, upload_id)
        if action is Action.PATCH:
            return await patch(parts, ctx, routed, upload_id)
        if action is Action.GET:
            await get(parts, ctx, routed, upload_id)
            return None
        assert action is Action.DELETE
        return await delete(parts, ctx, routed, upload_id)
