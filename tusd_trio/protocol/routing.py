"""Routing: what a request asks for, and the headers every answer to it carries."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from urllib.parse import unquote, urlsplit

from . import errors
from .config import ProtocolConfig
from .cors import origin_allowed
from .headers import is_valid_host
from .info import check_upload_id
from .interop import InteropVersion
from .messages import TUS_VERSION, Request


class Action(Enum):
    CREATE = "create"
    HEAD = "head"
    PATCH = "patch"
    GET = "get"
    DELETE = "delete"
    OPTIONS = "options"
    GREETING = "greeting"
    HEALTH = "health"
    READY = "ready"
    METRICS = "metrics"
    PPROF = "pprof"


@dataclass(slots=True)
class Routed:
    """The outcome of :func:`route`: an action, or an error to answer with."""

    method: str
    action: Action | None = None
    upload_id: str | None = None
    #: Headers every response to this request carries (Tus-Resumable, CORS, ...).
    common: list[tuple[str, str]] = field(default_factory=list)
    error: errors.TusError | None = None
    #: The IETF draft interop version the request speaks; None for tus 1.0.0.
    interop: InteropVersion | None = None
    #: The path relative to the base path (tusd's ``path`` log field); None for a
    #: request outside the base path, which is not logged.
    log_path: str | None = None


_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS"})
#: What a method on an upload's URL asks for (GET and DELETE only when enabled).
_UPLOAD_ACTIONS = {
    "GET": Action.GET,
    "HEAD": Action.HEAD,
    "PATCH": Action.PATCH,
    "DELETE": Action.DELETE,
}


def request_path(target: str) -> str:
    """The percent-decoded path of a request target (no query string)."""
    path = target.split("?", 1)[0].split("#", 1)[0]
    if path.startswith(("http://", "https://")):
        path = urlsplit(path).path or "/"
    if "%" not in path:
        return path
    lowered = path.lower()
    if "%2f" in lowered or "%5c" in lowered:
        # An encoded slash or backslash would turn into a path separator after
        # decoding; IDs with "/" must be written with real slashes.
        raise ValueError("encoded path separator")
    return unquote(path, errors="strict")


def in_pprof_path(path: str, pprof_path: str) -> bool:
    """Whether ``path`` is one of the profiling endpoints under ``pprof_path`` (which
    ends with "/"; empty = not served).  The path without its trailing slash is the
    index too."""
    if not pprof_path:
        return False
    return path.startswith(pprof_path) or path == pprof_path.rstrip("/")


def route(
    request: Request, config: ProtocolConfig, *, interop: InteropVersion | None = None
) -> Routed:
    """Decide what a request asks for, and the headers every answer carries.

    ``interop`` is the IETF draft version the request speaks (see
    :func:`tusd_trio.protocol.ietf.route`): such a request needs no
    ``Tus-Resumable`` header and its answers carry none.
    """
    headers = request.headers
    # Methods are case-sensitive (RFC 9110, Go's router, h11): "patch" is not PATCH.
    method = request.method
    override = headers.first("x-http-method-override")
    if method == "POST" and override:
        method = override.strip()
    routed = Routed(method=method, interop=interop)
    common = routed.common
    common.append(("X-Content-Type-Options", "nosniff"))
    host = headers.get("host")
    if host and not is_valid_host(host):
        # It would end up in a Location header; Go's server refuses it as well.
        routed.error = errors.InvalidHostError()
        return routed

    try:
        path = request_path(request.target)
    except ValueError:  # bad percent-encoding or a malformed absolute-form target
        routed.error = errors.InvalidUploadIDError()
        return routed

    base = config.base_path
    in_base = path == base or path == base.rstrip("/") or path.startswith(base)
    if method in ("GET", "HEAD"):
        if path == config.health_path:
            routed.action = Action.HEALTH
            return routed
        if path == config.health_path + "/ready":
            routed.action = Action.READY
            return routed
        if config.metrics_path and path == config.metrics_path:
            routed.action = Action.METRICS
            return routed
        if in_pprof_path(path, config.pprof_path):
            routed.action = Action.PPROF
            return routed
    if not in_base:
        if config.show_greeting and method in ("GET", "HEAD"):
            routed.action = Action.GREETING
        else:
            routed.error = errors.UploadNotFoundError("not found")
        return routed
    # From here on the request is the tus handler's, which logs it (tusd logs nothing
    # for the greeting, the metrics or other paths).
    relative = path[len(base) :] if path.startswith(base) else ""
    routed.log_path = relative

    if interop is None:
        common.append(("Tus-Resumable", TUS_VERSION))
    else:
        common.append(("Upload-Draft-Interop-Version", str(interop.number)))

    origin = headers.get("origin")
    if config.cors is not None and origin is not None:
        cors = config.cors
        if not origin_allowed(cors, origin):
            routed.error = errors.OriginNotAllowedError()
            return routed
        common.append(("Access-Control-Allow-Origin", origin))
        common.append(("Vary", "Origin"))
        if cors.allow_credentials:
            common.append(("Access-Control-Allow-Credentials", "true"))
        if method == "OPTIONS":
            common.append(("Access-Control-Allow-Methods", cors.allow_methods))
            common.append(("Access-Control-Allow-Headers", cors.allow_headers))
            common.append(("Access-Control-Max-Age", cors.max_age))
        else:
            common.append(("Access-Control-Expose-Headers", cors.expose_headers))

    if method == "OPTIONS":
        routed.action = Action.OPTIONS
        return routed

    version = (headers.first("tus-resumable") or "").strip()
    if (
        interop is None
        and method not in ("GET", "HEAD")
        and method in _KNOWN_METHODS
        and version != TUS_VERSION
    ):
        routed.error = errors.UnsupportedVersionError()
        return routed

    upload_part = relative.strip("/")
    if not upload_part:
        if method == "POST":
            routed.action = Action.CREATE
        else:
            routed.error = errors.MethodNotAllowedError("POST")
        return routed

    action = _UPLOAD_ACTIONS.get(method)
    if (
        action is None
        or (action is Action.GET and config.disable_download)
        or (action is Action.DELETE and not config.termination_enabled)
    ):
        allowed_methods = ["HEAD", "PATCH"]
        if not config.disable_download:
            allowed_methods.insert(0, "GET")
        if config.termination_enabled:
            allowed_methods.append("DELETE")
        routed.error = errors.MethodNotAllowedError(", ".join(allowed_methods))
        return routed
    try:
        routed.upload_id = check_upload_id(upload_part)
    except errors.TusError as exc:
        routed.error = exc
        return routed
    routed.action = action
    return routed
