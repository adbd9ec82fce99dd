"""Operator endpoints: who may read them, and the listener that serves only them.

Operator endpoints show how the daemon runs rather than what is uploaded: the Prometheus
metrics and the details of ``/health/ready`` (later also profiling).  Every one of them asks
:meth:`OperatorAccess.check`, the one rule:

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
import time
from typing import TYPE_CHECKING

from ..auth import AuthConfigError, Authenticator, AuthError, forbidden, read_secret_file
from ..protocol import errors
from ..protocol.core import Request, Response, error_response, request_path

if TYPE_CHECKING:
    from ..config import Config
    from ._handler import TusHandler
    from ._http import Exchange


#: The start-up line naming the operator listener (the daemon's, or the worker parent's).
LISTENING_MESSAGE = "Serving metrics and health at http://%s without credentials"


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


def parse_listen_address(text: str) -> tuple[str, int]:
    """``host:port`` or ``[ipv6]:port`` (-metrics-listen); ValueError when malformed."""
    host, sep, port = text.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"expected host:port, got {text!r}")
    return host, int(port)


def load_metrics_token(path: str) -> bytes:
    """The -metrics-token-file token; :class:`AuthConfigError` when unusable."""
    token = read_secret_file(path, "metrics token")
    if len(token) < 16:
        raise AuthConfigError(f"the metrics token in {path!r} must be at least 16 bytes long")
    return token


async def serve_operator_request(handler: TusHandler, exchange: Exchange) -> None:
    """The operator listener's handler: metrics and health, no uploads, no credentials."""
    request = exchange.request
    config = handler.config
    method = request.method.upper()
    try:
        path = request_path(request.target)
    except ValueError:
        path = ""
    response: Response
    if method not in ("GET", "HEAD"):
        response = error_response(errors.MethodNotAllowedError("GET, HEAD"), method=method)
    elif path == handler.server.metrics_path and path:
        response = handler.metrics_response()
    elif path == config.protocol.health_path:
        response = await handler.health()
    elif path == config.protocol.health_path + "/ready":
        response = await handler.health(ready=True, details=True)
    else:
        response = error_response(errors.UploadNotFoundError("not found"), method=method)
    await exchange.send_response(response, head=method == "HEAD")
