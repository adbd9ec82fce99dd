"""Operator endpoints: ``/metrics``, ``/health``, ``/health/ready`` and, with
``-expose-pprof``, the profiling endpoints (:mod:`._pprof`); who sees what, and the
listener that serves only them.

They show how the daemon runs rather than what is uploaded.  The metrics, the details
of ``/health/ready`` and the profiling endpoints ask :meth:`OperatorAccess.check`, the
one rule:

1. on the operator listener (``-metrics-listen``) everything is shown: that port is
   protected by the network (a NetworkPolicy, a firewall), not by credentials;
2. ``-operator-endpoints-public`` shows them to anyone;
3. with ``-metrics-listen`` set they are not shown on the upload port at all;
4. with access control off they are open, as tusd's ``/metrics`` is;
5. otherwise the request needs an admin credential, or the metrics token
   (``-metrics-token-file``) as ``Authorization: Bearer <token>``.

Liveness (``/health``) and the status of ``/health/ready`` stay open: probes carry no
credentials.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time

import trio

from ..auth import Authenticator, AuthError, forbidden, load_metrics_token
from ..config import Config
from ..hooks.dispatcher import CheckedHookBackend, HookDispatcher
from ..hooks.model import HookError
from ..hooks.outbox import HookOutbox
from ..lockers.base import CheckedLocker, Locker
from ..protocol import errors
from ..protocol.messages import Request, Response
from ..protocol.responses import error_response
from ..protocol.routing import in_pprof_path, request_path
from ..stores.base import Store
from ._exchange import Exchange, send_response
from ._metrics import METRICS_CONTENT_TYPE, MetricsSource, render_metrics
from ._pprof import PprofEndpoints

log = logging.getLogger("tusd_trio")


class OperatorAccess:
    """The access rule of the operator endpoints (see the module documentation)."""

    def __init__(self, config: Config, auth: Authenticator) -> None:
        self._auth = auth
        self._public = config.operator_endpoints_public
        self._own_listener = bool(config.metrics_listen)
        self._token_digest: bytes | None = None
        if config.metrics_token_file:
            token = load_metrics_token(config.metrics_token_file)
            self._token_digest = hashlib.sha256(token).digest()

    def check(self, request: Request) -> None:
        """Return when ``request`` (on the upload port) may read operator data; raise
        :class:`AuthError` (401 without a credential, 403 with one that is not enough)
        otherwise.  The operator listener does not ask: it shows everything."""
        if self._public:
            return
        if self._own_listener:
            raise forbidden("operator endpoints are served on the -metrics-listen address")
        if not self._auth.enabled:
            return
        if self._token_digest is not None and self._has_token(request):
            return
        principal = self._auth.authenticate("GET", request.target, request.headers, time.time())
        if principal is None or not principal.admin:
            raise forbidden("operator endpoints are for administrators")

    def allows(self, request: Request) -> bool:
        try:
            self.check(request)
        except AuthError:
            return False
        return True

    def _has_token(self, request: Request) -> bool:
        scheme, _, value = (request.headers.get("authorization") or "").strip().partition(" ")
        if scheme.lower() != "bearer" or self._token_digest is None:
            return False
        # Digests of equal length: the comparison time says nothing about the token.
        given = hashlib.sha256(value.strip().encode("utf-8", "replace")).digest()
        return hmac.compare_digest(given, self._token_digest)


class OperatorEndpoints:
    """The answers of the operator endpoints, shared by the upload port's handler and the
    operator listener."""

    def __init__(
        self,
        config: Config,
        *,
        auth: Authenticator,
        store: Store,
        locker: Locker,
        hooks: HookDispatcher | None,
        metrics: MetricsSource,
        outbox: HookOutbox | None = None,
    ) -> None:
        self._config = config
        self._auth = auth
        self._store = store
        self._locker = locker
        self._hooks = hooks
        self._outbox = outbox
        self._metrics = metrics
        self.access = OperatorAccess(config, auth)
        #: The profiling endpoints, served when the protocol settings have a pprof path.
        self.pprof = PprofEndpoints()
        #: Health checks failing now, with their texts (logged when they change).
        self._failing_checks: dict[str, str] = {}

    def metrics_response(self) -> Response:
        return Response(
            200,
            [("Content-Type", METRICS_CONTENT_TYPE), ("Cache-Control", "no-store")],
            render_metrics(self._metrics).encode(),
        )

    async def health(self, *, ready: bool = False, details: bool = True) -> Response:
        """``/health``: the loop answers and the store takes a write.  ``/health/ready``
        also reports the hook backends and the access-control set-up, and is 503
        while shutting down so load balancers drain the instance.

        Without ``details`` (a caller the operator rule does not admit) each check says
        only ``ok`` or ``failing``: failure texts name internal addresses.  They are
        logged whenever they change."""
        checks: dict[str, str] = {}
        status = 200
        if ready:
            hooks = self._hooks
            checks["hooks"] = (
                ", ".join(backend.name for backend in hooks.backends) if hooks else "none"
            )
            checks["auth"] = "on" if self._auth.enabled else "off"
        try:
            with trio.fail_after(5):
                await self._store.check_writable()
            checks["store"] = "ok"
        except (errors.TusError, trio.TooSlowError) as exc:
            checks["store"] = f"failing: {exc}"
            status = 503
        if ready:
            for name, target in (
                ("hooks_http", self._config.hooks_http),
                ("hooks_grpc", self._config.hooks_grpc),
            ):
                if not target:
                    continue
                problem = await _probe_endpoint(target)
                checks[name] = "ok" if problem is None else f"failing: {problem}"
                if problem is not None:
                    status = 503
            for backend in self._hooks.backends if self._hooks else ():
                if not isinstance(backend, CheckedHookBackend):
                    continue
                name = "hooks_" + backend.name.replace("-", "_")  # hooks_redis_stream
                try:
                    with trio.fail_after(5):
                        await backend.check()
                    checks[name] = "ok"
                except (HookError, trio.TooSlowError) as exc:
                    checks[name] = f"failing: {exc}"
                    status = 503
        locker = self._locker
        if ready and isinstance(locker, CheckedLocker):
            try:
                with trio.fail_after(5):
                    await locker.check()
                checks["locker"] = "ok"
            except (errors.TusError, trio.TooSlowError) as exc:
                checks["locker"] = f"failing: {exc}"
                status = 503
        outbox = self._outbox
        if ready and outbox is not None and self._config.hooks_outbox_ready_max_age > 0:
            checks["hooks_outbox"] = await self._outbox_check(outbox)
            if checks["hooks_outbox"] != "ok":
                status = 503
        if self._metrics.state.shutting_down:
            checks["server"] = "shutting down"
            status = 503
        self._log_check_changes(checks)
        if not details:
            checks = {
                name: value if value in ("ok", "shutting down") else "failing"
                for name, value in checks.items()
                if name not in ("hooks", "auth")
            }
        body = json.dumps({"status": "ok" if status == 200 else "unavailable", "checks": checks})
        return Response(
            status,
            [
                ("Content-Type", "application/json"),
                ("Cache-Control", "no-store"),
                ("X-Content-Type-Options", "nosniff"),
            ],
            body.encode(),
        )

    async def _outbox_check(self, outbox: HookOutbox) -> str:
        """``failing`` while the oldest pending event is older than
        -hooks-outbox-ready-max-age (read from the store: any process can tell)."""
        threshold = self._config.hooks_outbox_ready_max_age
        try:
            with trio.fail_after(5):
                age = await outbox.oldest_pending_age()
        except Exception as exc:
            return f"failing: cannot read the outbox ({exc.__class__.__name__})"
        if age > threshold:
            return (
                f"failing: an event has waited {age:.0f}s for delivery "
                f"(-hooks-outbox-ready-max-age {threshold:g}s)"
            )
        return "ok"

    def _log_check_changes(self, checks: dict[str, str]) -> None:
        """Log a failing health check when its text changes, and its recovery."""
        for name, value in checks.items():
            if name in ("hooks", "auth", "server"):
                continue
            before = self._failing_checks.get(name)
            if value == "ok":
                if before is not None:
                    del self._failing_checks[name]
                    log.info("HealthCheckRecovered check=%s", name)
            elif value != before:
                self._failing_checks[name] = value
                log.warning("HealthCheckFailing check=%s: %s", name, value)

    async def serve_listener(self, exchange: Exchange) -> None:
        """The operator listener's handler: metrics, health and profiling, no uploads, no
        credentials."""
        request = exchange.request
        protocol = self._config.protocol
        method = request.method.upper()
        try:
            path = request_path(request.target)
        except ValueError:
            path = ""
        response: Response
        if method not in ("GET", "HEAD"):
            response = error_response(errors.MethodNotAllowedError("GET, HEAD"), method=method)
        elif path and path == protocol.metrics_path:
            response = self.metrics_response()
        elif path == protocol.health_path:
            response = await self.health()
        elif path == protocol.health_path + "/ready":
            response = await self.health(ready=True, details=True)
        elif in_pprof_path(path, protocol.pprof_path):
            try:
                response = await self.pprof.respond(request.target, protocol.pprof_path)
            except errors.TusError as exc:
                response = error_response(exc, method=method)
        else:
            response = error_response(errors.UploadNotFoundError("not found"), method=method)
        await send_response(exchange, response, head=method == "HEAD")


async def _probe_endpoint(target: str) -> str | None:
    """Open (and close) a TCP connection to a hook endpoint; the problem, or None."""
    from urllib.parse import urlsplit

    parts = urlsplit(target if "://" in target else f"tcp://{target}")
    host = parts.hostname or "127.0.0.1"
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return f"invalid endpoint {target!r}"
    try:
        with trio.fail_after(2):
            stream = await trio.open_tcp_stream(host, port)
        await stream.aclose()
    except (OSError, trio.TooSlowError) as exc:
        return f"cannot connect to {host}:{port} ({exc.__class__.__name__})"
    return None
