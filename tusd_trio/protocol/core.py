"""The tus 1.0.0 decisions: pure functions from a parsed request to what to do.

Rules of this module (after h11's ``_state.py``):

1. Every decision about tus semantics (status codes, headers, offsets, lengths,
   which bytes may be accepted) is made here, never in the I/O layer.
2. Nothing here performs I/O, reads a clock or knows which store is in use: the
   caller passes the upload's stored state and the current time in.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from . import errors
from .headers import (
    CHECKSUM_ALGORITHMS,
    MAX_INT64,
    Checksum,
    Concat,
    content_disposition_for,
    content_type_for,
    format_http_date,
    is_valid_host,
    parse_checksum,
    parse_concat,
    parse_metadata,
    parse_offset,
    parse_range,
    parse_uint,
    serialize_metadata,
    trailer_announces_checksum,
)
from .info import UploadInfo, check_upload_id

if TYPE_CHECKING:  # the draft table imports this module; no import cycle at run time
    from .ietf import InteropVersion

TUS_VERSION = "1.0.0"
OFFSET_OCTET_STREAM = "application/offset+octet-stream"

DEFAULT_CORS_ALLOW_METHODS = "POST, HEAD, PATCH, OPTIONS, GET, DELETE"
DEFAULT_CORS_ALLOW_HEADERS = (
    "Authorization, Origin, X-Requested-With, X-Request-ID, X-HTTP-Method-Override, "
    "Content-Type, Upload-Length, Upload-Offset, Tus-Resumable, Upload-Metadata, "
    "Upload-Defer-Length, Upload-Concat, Upload-Incomplete, Upload-Complete, "
    "Upload-Draft-Interop-Version, Upload-Checksum"
)
DEFAULT_CORS_EXPOSE_HEADERS = (
    "Upload-Offset, Location, Upload-Length, Tus-Version, Tus-Resumable, Tus-Max-Size, "
    "Tus-Extension, Upload-Metadata, Upload-Defer-Length, Upload-Concat, Upload-Incomplete, "
    "Upload-Complete, Upload-Draft-Interop-Version, Upload-Expires, Tus-Checksum-Algorithm, "
    "WWW-Authenticate, Upload-Limit"
)


# --- Configuration -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CorsConfig:
    allow_origin: str = ".*"
    allow_credentials: bool = False
    allow_methods: str = DEFAULT_CORS_ALLOW_METHODS
    allow_headers: str = DEFAULT_CORS_ALLOW_HEADERS
    expose_headers: str = DEFAULT_CORS_EXPOSE_HEADERS
    max_age: str = "86400"


@dataclass(frozen=True, slots=True)
class StoreCapabilities:
    """What the configured store can do; decides what is advertised."""

    terminate: bool = True
    concatenate: bool = True
    defer_length: bool = True
    checksum: bool = True
    #: GET of an unfinished upload serves the bytes so far (file store); otherwise
    #: 400 ERR_INCOMPLETE_UPLOAD (tusd's S3 store; Azure cannot read uncommitted blocks).
    serve_incomplete: bool = True


@dataclass(frozen=True, slots=True)
class ProtocolConfig:
    base_path: str = "/files/"
    max_size: int = 0
    disable_download: bool = False
    disable_termination: bool = False
    disable_concatenation: bool = False
    #: ``None`` disables CORS handling.
    cors: CorsConfig | None = field(default_factory=CorsConfig)
    behind_proxy: bool = False
    relative_location: bool = False
    #: Seconds after the last change at which an unfinished upload expires; 0 = never.
    expiration: float = 0.0
    checksum_algorithms: tuple[str, ...] = tuple(CHECKSUM_ALGORITHMS)
    capabilities: StoreCapabilities = field(default_factory=StoreCapabilities)
    show_greeting: bool = True
    health_path: str = "/health"
    #: Whether request trailers reach the handler (not over ASGI): checksum-trailer.
    request_trailers: bool = True
    #: Path of the Prometheus metrics; empty = not served.
    metrics_path: str = ""
    #: Most partial uploads one final upload may name (0 = no limit, as tusd).
    max_concat_partials: int = 1000

    def __post_init__(self) -> None:
        base = self.base_path
        if not base.startswith("/"):
            base = "/" + base
        if not base.endswith("/"):
            base += "/"
        object.__setattr__(self, "base_path", base)

    @property
    def termination_enabled(self) -> bool:
        return self.capabilities.terminate and not self.disable_termination

    @property
    def concatenation_enabled(self) -> bool:
        return self.capabilities.concatenate and not self.disable_concatenation

    @property
    def checksum_enabled(self) -> bool:
        return self.capabilities.checksum and bool(self.checksum_algorithms)

    def extensions(self) -> list[str]:
        """The ``Tus-Extension`` list, in tusd's order plus our additions."""
        names = ["creation", "creation-with-upload"]
        if self.termination_enabled:
            names.append("termination")
        if self.concatenation_enabled:
            names += ["concatenation", "concatenation-unfinished"]
        if self.capabilities.defer_length:
            names.append("creation-defer-length")
        if self.checksum_enabled:
            names.append("checksum")
            if self.request_trailers:
                names.append("checksum-trailer")
        if self.expiration > 0:
            names.append("expiration")
        return names


# --- Requests and responses ------------------------------------------------------


class Headers(Mapping[str, str]):
    """Case-insensitive request headers; repeated fields are joined with ``, ``.

    ``counts`` keeps how often each name occurred so callers can refuse
    duplicates where a duplicate is ambiguous (``Upload-Checksum``, ...);
    :meth:`first` is the first field's value, which is what tusd (Go's
    ``Header.Get``) reads for the tus headers.
    """

    __slots__ = ("_counts", "_data", "_first", "raw")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._data: dict[str, str] = {}
        self._counts: dict[str, int] = {}
        self._first: dict[str, str] = {}
        #: The header lines as received (lower-case names), repeated ones apart.
        self.raw: list[tuple[str, str]] = []
        for name, value in items:
            self.raw.append((name.lower(), value))
            key = name.lower()
            if key in self._data:
                self._data[key] = f"{self._data[key]}, {value}"
                self._counts[key] += 1
            else:
                self._data[key] = value
                self._first[key] = value
                self._counts[key] = 1

    def __getitem__(self, name: str) -> str:
        return self._data[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._data

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return self._data.get(name.lower(), default)

    def count(self, name: str) -> int:
        return self._counts.get(name.lower(), 0)

    def first(self, name: str) -> str | None:
        """The value of the first field with this name (later ones are ignored)."""
        return self._first.get(name.lower())


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    target: str
    headers: Headers
    #: ``https`` when the connection is TLS.
    scheme: str = "http"


@dataclass(slots=True)
class Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        for key, value in self.headers:
            if key.lower() == lowered:
                return value
        return None


def error_response(
    error: errors.TusError,
    *,
    method: str = "GET",
    common: Iterable[tuple[str, str]] = (),
) -> Response:
    """tusd's error format: ``ERR_CODE: message`` as plain text, no body on HEAD."""
    headers = list(common)
    body = f"{error.code}: {error.message}\n".encode()
    headers.append(("Content-Type", "text/plain; charset=utf-8"))
    if isinstance(error, errors.UnsupportedVersionError):
        headers.append(("Tus-Version", TUS_VERSION))
    if isinstance(error, errors.MethodNotAllowedError):
        headers.append(("Allow", error.allow))
    if isinstance(error, errors.RangeNotSatisfiableError):
        headers.append(("Content-Range", f"bytes */{error.size}"))
    if isinstance(error, errors.UnavailableError):
        headers.append(("Retry-After", str(error.retry_after)))
    if method == "HEAD":
        body = b""
    return Response(error.status, headers, body)


# --- Routing -------------------------------------------------------------------------


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
    if not in_base:
        if config.show_greeting and method in ("GET", "HEAD"):
            routed.action = Action.GREETING
        else:
            routed.error = errors.UploadNotFoundError("not found")
        return routed
    # From here on the request is the tus handler's, which logs it (tusd logs nothing
    # for the greeting, the metrics or other paths).
    routed.log_path = path[len(base) :] if path.startswith(base) else ""

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

    upload_part = path[len(base) :] if path.startswith(base) else ""
    upload_part = upload_part.strip("/")
    if not upload_part:
        if method == "POST":
            routed.action = Action.CREATE
        else:
            routed.error = errors.MethodNotAllowedError("POST")
        return routed

    allowed_methods = ["HEAD", "PATCH"]
    if not config.disable_download:
        allowed_methods.insert(0, "GET")
    if config.termination_enabled:
        allowed_methods.append("DELETE")
    if method not in allowed_methods:
        routed.error = errors.MethodNotAllowedError(", ".join(allowed_methods))
        return routed
    try:
        routed.upload_id = check_upload_id(upload_part)
    except errors.TusError as exc:
        routed.error = exc
        return routed
    routed.action = {
        "GET": Action.GET,
        "HEAD": Action.HEAD,
        "PATCH": Action.PATCH,
        "DELETE": Action.DELETE,
    }[method]
    return routed


def origin_allowed(cors: CorsConfig, origin: str) -> bool:
    """tusd's origin check: an unanchored regular-expression search of the ``Origin``."""
    try:
        return re.search(cors.allow_origin, origin) is not None
    except re.error:  # pragma: no cover - validated at start-up
        return False


def cors_origin_warning(cors: CorsConfig | None) -> str | None:
    """A start-up warning when credentialed CORS rests on an unanchored origin pattern.

    tusd searches the pattern anywhere in the ``Origin`` (kept for compatibility), so
    ``https://app\\.example\\.com`` also lets ``https://app.example.com.evil.net`` make
    credentialed requests.
    """
    if cors is None or not cors.allow_credentials or _is_anchored(cors.allow_origin):
        return None
    return (
        f"-cors-allow-origin '{cors.allow_origin}' is not anchored: with "
        "-cors-allow-credentials any origin containing a match (such as "
        "https://app.example.com.evil.net for https://app\\.example\\.com) may make "
        "credentialed requests; anchor it: '^https://app\\.example\\.com$'"
    )


def _is_anchored(pattern: str) -> bool:
    """Whether the pattern can only match a whole string: ``^``/``\\A`` at the start,
    ``$``/``\\Z`` at the end, and no alternation outside a group."""
    if not pattern.startswith(("^", "\\A")):
        return False
    ends_escaped = pattern.endswith("\\Z") and not pattern.endswith("\\\\Z")
    ends_dollar = pattern.endswith("$") and not pattern.endswith("\\$")
    if not (ends_escaped or ends_dollar):
        return False
    depth = 0
    in_class = False
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            index += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            return False
        index += 1
    return True


# --- OPTIONS -------------------------------------------------------------------------


def options_response(config: ProtocolConfig, common: Iterable[tuple[str, str]]) -> Response:
    headers = list(common)
    headers.append(("Tus-Version", TUS_VERSION))
    headers.append(("Tus-Extension", ",".join(config.extensions())))
    if config.max_size > 0:
        headers.append(("Tus-Max-Size", str(config.max_size)))
    if config.checksum_enabled:
        headers.append(("Tus-Checksum-Algorithm", ",".join(config.checksum_algorithms)))
    return Response(200, headers)


# --- URLs ------------------------------------------------------------------------------

_FORWARDED_HOST = re.compile(r'host="?([^;",]+)', re.IGNORECASE)
_FORWARDED_PROTO = re.compile(r"proto=\"?(https?)\b", re.IGNORECASE)


def origin_of(request: Request, config: ProtocolConfig) -> str:
    """``scheme://host`` as the client sees it (honouring proxies if configured)."""
    headers = request.headers
    scheme = request.scheme
    host = headers.get("host") or "localhost"
    if config.behind_proxy:
        # A forwarded host that is not a host (a path, quotes, markup) is ignored.
        forwarded_host = (headers.get("x-forwarded-host") or "").split(",", 1)[0].strip()
        if is_valid_host(forwarded_host):
            host = forwarded_host
        forwarded_proto = (headers.get("x-forwarded-proto") or "").split(",", 1)[0].strip()
        if forwarded_proto.lower() in ("http", "https"):
            scheme = forwarded_proto.lower()
        forwarded_port = (headers.get("x-forwarded-port") or "").strip()
        forwarded = headers.get("forwarded")
        if forwarded:
            first = forwarded.split(",", 1)[0]
            match = _FORWARDED_HOST.search(first)
            if match and is_valid_host(match.group(1).strip()):
                host = match.group(1).strip()
            match = _FORWARDED_PROTO.search(first)
            if match:
                scheme = match.group(1).lower()
        elif forwarded_port.isdigit() and not _has_port(host):
            host = f"{host}:{forwarded_port}"
        if scheme == "http" and host.endswith(":80"):
            host = host[:-3]
        elif scheme == "https" and host.endswith(":443"):
            host = host[:-4]
    return f"{scheme}://{host}"


def _has_port(host: str) -> bool:
    if host.startswith("["):
        return "]:" in host
    return ":" in host


def upload_url(request: Request, config: ProtocolConfig, upload_id: str) -> str:
    path = public_base_path(request, config) + upload_id
    if config.relative_location:
        return path
    return origin_of(request, config) + path


#: A path prefix a proxy may announce: "/"-separated non-empty segments of RFC 3986
#: path characters (no "." or ".." segment, no "//" that would make a relative
#: Location point at another host).
_PREFIX_SEGMENT = r"(?:[A-Za-z0-9\-._~!$&'()*+;=:@]|%[0-9A-Fa-f]{2})+"
_FORWARDED_PREFIX = re.compile(rf"(?:/{_PREFIX_SEGMENT})*")


def public_base_path(request: Request, config: ProtocolConfig) -> str:
    """The base path as clients see it.

    With -behind-proxy, ``X-Forwarded-Prefix`` is the public path at which the
    proxy serves the base path (``location /api/uploads/ { proxy_pass
    http://backend/files/; proxy_set_header X-Forwarded-Prefix /api/uploads; }``
    makes ``/files/<id>`` public as ``/api/uploads/<id>``).  A value that is not a
    plain absolute path is ignored.
    """
    base = config.base_path
    if not config.behind_proxy:
        return base
    prefix = request.headers.first("x-forwarded-prefix")
    if prefix is None:
        return base
    prefix = prefix.split(",", 1)[0].strip().rstrip("/")
    if len(prefix) > 1024 or not _FORWARDED_PREFIX.fullmatch(prefix):
        return base
    if any(segment in (".", "..") for segment in prefix.split("/")):
        return base
    return prefix + "/"


def id_from_url(url: str, config: ProtocolConfig, public_base: str | None = None) -> str:
    """The upload ID in a partial-upload URL: the text after the base path.

    A URL whose path starts with ``public_base`` (the base path as a proxy
    publishes it, see :func:`public_base_path`) is read after that prefix.
    """
    text = url.strip().split("?", 1)[0].split("#", 1)[0]
    if "://" in text:
        # An absolute URL: look for the base path in its path only, not its host.
        try:
            text = urlsplit(text).path
        except ValueError:
            raise errors.UploadNotFoundError() from None
    try:
        decoded = unquote(text, errors="strict")
    except UnicodeDecodeError:
        raise errors.UploadNotFoundError() from None
    if public_base not in (None, config.base_path) and decoded.startswith(public_base):
        return check_upload_id(decoded[len(public_base) :].strip("/"))
    index = decoded.find(config.base_path)
    if index < 0:
        raise errors.UploadNotFoundError()
    return check_upload_id(decoded[index + len(config.base_path) :].strip("/"))


# --- Expiration ------------------------------------------------------------------------


def expires_at(info: UploadInfo, config: ProtocolConfig) -> float | None:
    """When an unfinished upload expires, or None if it never does."""
    if config.expiration <= 0 or info.is_complete or info.is_final:
        return None
    last = max(info.modified, info.created)
    return last + config.expiration


def is_expired(info: UploadInfo, config: ProtocolConfig, now: float) -> bool:
    deadline = expires_at(info, config)
    return deadline is not None and now >= deadline


def _expires_header(info: UploadInfo, config: ProtocolConfig, now: float) -> list[tuple[str, str]]:
    deadline = expires_at(info, config)
    if deadline is None:
        return []
    # Rounded up to the second: the header never promises less time than there is.
    return [("Upload-Expires", format_http_date(math.ceil(max(deadline, now))))]


# --- POST (creation) ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreationPlan:
    """A checked creation request.  ``info.id`` is empty until the store assigns one."""

    info: UploadInfo
    #: The request carries upload data (creation-with-upload).
    has_body: bool
    #: For a final upload: the partial IDs, in order.
    partial_ids: tuple[str, ...] = ()


def plan_creation(request: Request, config: ProtocolConfig, now: float) -> CreationPlan:
    """Check a POST and work out the upload to create.  Raises :class:`TusError`.

    A final upload's size is filled in by :func:`plan_final` once the partials
    are known.
    """
    headers = request.headers
    # tusd reads the first field of each header (Go's Header.Get); so do we.
    has_body = _is_offset_stream(headers.first("content-type"))
    concat_header = headers.first("upload-concat")
    concat = Concat()
    if concat_header is not None and concat_header.strip():
        if not config.concatenation_enabled:
            raise errors.ConcatUnsupportedError()
        concat = parse_concat(concat_header)

    metadata = parse_metadata(headers.first("upload-metadata"))

    if concat.is_final:
        if has_body:
            raise errors.ModifyFinalError()
        limit = config.max_concat_partials
        if limit and len(concat.partial_urls) > limit:
            raise errors.InvalidConcatError(
                f"a final upload may name at most {limit} partial uploads, "
                f"this one names {len(concat.partial_urls)}"
            )
        public_base = public_base_path(request, config)
        partial_ids = tuple(id_from_url(url, config, public_base) for url in concat.partial_urls)
        if len(set(partial_ids)) != len(partial_ids):
            # Each repeat would copy the same bytes again: one small request could
            # fill the disk (tusd accepts it).
            repeated = next(pid for pid in partial_ids if partial_ids.count(pid) > 1)
            raise errors.InvalidConcatError(
                f"the final upload names partial upload {repeated} twice"
            )
        info = UploadInfo(
            id="",
            metadata=metadata,
            is_final=True,
            partial_uploads=partial_ids,
            created=now,
            modified=now,
        )
        return CreationPlan(info, has_body=False, partial_ids=partial_ids)

    length_header = headers.first("upload-length") or None
    defer_header = headers.first("upload-defer-length") or None
    if (
        defer_header is not None
        and defer_header.strip() == "1"
        and not config.capabilities.defer_length
    ):
        raise errors.NotImplementedFeatureError()
    if length_header is not None and defer_header is not None:
        raise errors.AmbiguousUploadLengthError()
    deferred = False
    size = 0
    if defer_header is not None:
        if defer_header.strip() != "1":
            raise errors.InvalidUploadLengthDeferError()
        deferred = True
    else:
        parsed = parse_offset(length_header)
        if parsed is None:
            raise errors.InvalidUploadLengthError()
        size = parsed
    if not deferred and config.max_size > 0 and size > config.max_size:
        raise errors.MaxSizeExceededError()
    info = UploadInfo(
        id="",
        size=size,
        size_is_deferred=deferred,
        metadata=metadata,
        is_partial=concat.is_partial,
        created=now,
        modified=now,
    )
    return CreationPlan(info, has_body=has_body)


def plan_final(
    plan: CreationPlan, partials: Iterable[UploadInfo], config: ProtocolConfig
) -> UploadInfo:
    """Size a final upload from its partials.

    Every partial must be a partial upload.  With ``concatenation-unfinished``,
    partials may still be running: the final's size is the sum when every
    partial's length is known, and deferred otherwise.
    """
    total = 0
    deferred = False
    for partial in partials:
        if not partial.is_partial:
            raise errors.InvalidConcatError("upload is not a partial upload: " + partial.id)
        if partial.size_is_deferred:
            deferred = True
        else:
            total += partial.size
    check_final_length(total, config, deferred=deferred)
    info = plan.info
    return UploadInfo(
        id=info.id,
        size=0 if deferred else total,
        size_is_deferred=deferred,
        metadata=info.metadata,
        is_final=True,
        partial_uploads=plan.partial_ids,
        created=info.created,
        modified=info.modified,
    )


def check_final_length(total: int, config: ProtocolConfig, *, deferred: bool = False) -> None:
    """Refuse a final upload whose partials add up to too much.

    ``total`` is the sum of the known partial lengths; with ``deferred`` some are not
    known yet, and only the int64 bound (tusd's type for lengths, in ``.info`` too)
    can already be exceeded.
    """
    if total > MAX_INT64:
        raise errors.MaxSizeExceededError(
            f"the partial uploads add up to {total} bytes, more than an upload may hold "
            f"({MAX_INT64})"
        )
    if not deferred and config.max_size > 0 and total > config.max_size:
        raise errors.MaxSizeExceededError()


def partials_finished(partials: Iterable[UploadInfo]) -> bool:
    return all(p.is_complete for p in partials)


def creation_response(
    request: Request,
    config: ProtocolConfig,
    info: UploadInfo,
    common: Iterable[tuple[str, str]],
    *,
    wrote_body: bool,
    now: float,
) -> Response:
    headers = list(common)
    headers.append(("Location", upload_url(request, config, info.id)))
    if wrote_body:
        headers.append(("Upload-Offset", str(info.offset)))
    headers += _expires_header(info, config, now)
    return Response(201, headers)


# --- PATCH ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WritePlan:
    """How many body bytes a PATCH (or POST with body) may append."""

    offset: int
    #: Upper bound of bytes accepted; ``None`` = unlimited (deferred, no max size).
    limit: int | None
    #: The error to give when the body goes beyond ``limit``.
    limit_error: type[errors.TusError] = errors.SizeExceededError
    #: A length declared by this request (creation-defer-length).
    declare_length: int | None = None
    checksum: Checksum | None = None
    #: The client announced the checksum as a trailer.
    checksum_in_trailer: bool = False
    #: The upload is already complete: answer without reading the body.
    already_complete: bool = False

    @property
    def verify_checksum(self) -> bool:
        return self.checksum is not None or self.checksum_in_trailer


def check_patch_headers(request: Request) -> int:
    """The checks that need no stored state: Content-Type and Upload-Offset."""
    headers = request.headers
    if not _is_offset_stream(headers.first("content-type")):
        raise errors.InvalidContentTypeError()
    offset = parse_offset(headers.first("upload-offset"))
    if offset is None:
        raise errors.InvalidOffsetError()
    return offset


def plan_patch(request: Request, info: UploadInfo, config: ProtocolConfig, now: float) -> WritePlan:
    """Check a PATCH against the stored upload.  Raises :class:`TusError`."""
    offset = check_patch_headers(request)
    if info.is_final:
        raise errors.ModifyFinalError()
    if is_expired(info, config, now):
        raise errors.UploadGoneError()
    if offset != info.offset:
        raise errors.MismatchedOffsetError(
            f"mismatched offset: the upload is at {info.offset}, the request says {offset}"
        )
    checksum, in_trailer = _checksum_of(request, config)
    if info.is_complete:
        return WritePlan(offset=offset, limit=0, already_complete=True)

    headers = request.headers
    declared: int | None = None
    length_header = headers.first("upload-length")
    if length_header:
        if not config.capabilities.defer_length:
            raise errors.NotImplementedFeatureError()
        if not info.size_is_deferred:
            raise errors.InvalidUploadLengthError(
                "Upload-Length can only be set on an upload with a deferred length"
            )
        declared = parse_offset(length_header)
        if declared is None or declared < info.offset:
            raise errors.InvalidUploadLengthError()
        if config.max_size > 0 and declared > config.max_size:
            raise errors.InvalidUploadLengthError("Upload-Length exceeds the maximum size")
    return _write_plan(request, info, config, offset, declared, checksum, in_trailer)


def plan_append_write(
    request: Request,
    info: UploadInfo,
    config: ProtocolConfig,
    offset: int,
    declared: int | None,
) -> WritePlan:
    """The write plan of an append whose offset and new length are already checked."""
    checksum, in_trailer = _checksum_of(request, config)
    return _write_plan(request, info, config, offset, declared, checksum, in_trailer)


def plan_body_write(request: Request, info: UploadInfo, config: ProtocolConfig) -> WritePlan:
    """The write plan for the body of a creation-with-upload POST."""
    checksum, in_trailer = _checksum_of(request, config)
    return _write_plan(request, info, config, info.offset, None, checksum, in_trailer)


def _checksum_of(request: Request, config: ProtocolConfig) -> tuple[Checksum | None, bool]:
    headers = request.headers
    raw = headers.get("upload-checksum")
    announced = trailer_announces_checksum(headers.get("trailer"))
    if not config.checksum_enabled:
        return None, False
    if raw is not None:
        if headers.count("upload-checksum") > 1:
            raise errors.InvalidChecksumError()
        return parse_checksum(raw, config.checksum_algorithms), False
    if announced and not config.request_trailers:
        raise errors.InvalidChecksumError(
            "request trailers do not reach this server: send Upload-Checksum as a header"
        )
    return None, announced


def _write_plan(
    request: Request,
    info: UploadInfo,
    config: ProtocolConfig,
    offset: int,
    declared: int | None,
    checksum: Checksum | None,
    in_trailer: bool,
) -> WritePlan:
    content_length = parse_uint(request.headers.get("content-length"))
    size_known = not info.size_is_deferred or declared is not None
    size = declared if declared is not None else info.size
    limit: int | None
    limit_error: type[errors.TusError] = errors.SizeExceededError
    if size_known:
        limit = size - offset
        if content_length is not None and content_length > limit:
            raise errors.SizeExceededError()
    elif config.max_size > 0:
        limit = max(0, config.max_size - offset)
        if content_length is not None and content_length > limit:
            raise errors.SizeExceededError()
    else:
        limit = None
    return WritePlan(
        offset=offset,
        limit=limit,
        limit_error=limit_error,
        declare_length=declared,
        checksum=checksum,
        checksum_in_trailer=in_trailer,
    )


def checksum_from_trailers(
    trailers: Iterable[tuple[str, str]], config: ProtocolConfig
) -> Checksum | None:
    """The ``Upload-Checksum`` found in a chunked body's trailer section, if any."""
    if not config.checksum_enabled:
        return None
    values = [value for name, value in trailers if name.lower() == "upload-checksum"]
    if not values:
        return None
    if len(values) > 1:
        raise errors.InvalidChecksumError()
    return parse_checksum(values[0], config.checksum_algorithms)


def patch_response(
    info: UploadInfo, config: ProtocolConfig, common: Iterable[tuple[str, str]], now: float
) -> Response:
    headers = list(common)
    headers.append(("Upload-Offset", str(info.offset)))
    headers += _expires_header(info, config, now)
    return Response(204, headers)


# --- HEAD ---------------------------------------------------------------------------------


def head_response(
    request: Request,
    info: UploadInfo,
    config: ProtocolConfig,
    common: Iterable[tuple[str, str]],
    now: float,
) -> Response:
    if is_expired(info, config, now):
        raise errors.UploadGoneError()
    headers = list(common)
    headers.append(("Cache-Control", "no-store"))
    concat_done = not info.is_final or info.is_complete
    if concat_done:
        headers.append(("Upload-Offset", str(info.offset)))
    if info.is_partial:
        headers.append(("Upload-Concat", "partial"))
    elif info.is_final:
        urls = " ".join(upload_url(request, config, pid) for pid in info.partial_uploads or ())
        headers.append(("Upload-Concat", f"final;{urls}"))
    if info.metadata:
        headers.append(("Upload-Metadata", serialize_metadata(info.metadata)))
    if info.size_is_deferred:
        if not info.is_final:
            headers.append(("Upload-Defer-Length", "1"))
        headers.append(("Content-Length", str(info.offset)))
    else:
        headers.append(("Upload-Length", str(info.size)))
        # tusd sends the upload's size as Content-Length of a HEAD response.
        headers.append(("Content-Length", str(info.size)))
    headers += _expires_header(info, config, now)
    return Response(200, headers)


# --- GET (download) ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DownloadPlan:
    status: int
    headers: list[tuple[str, str]]
    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start


def plan_download(
    request: Request,
    info: UploadInfo,
    config: ProtocolConfig,
    common: Iterable[tuple[str, str]],
    now: float,
) -> DownloadPlan:
    """Status, headers and byte range to send for a GET of an upload's data.

    An unfinished upload serves the bytes received so far, as tusd's file store
    does.  A single ``Range`` is honoured (206/416); ``If-Range`` is not supported,
    so a request carrying it gets the whole body.
    """
    if is_expired(info, config, now):
        raise errors.UploadGoneError()
    if info.is_final and not info.is_complete:
        raise errors.UploadNotFinishedError("the concatenation has not finished yet")
    headers = list(common)
    filetype = info.metadata.get("filetype")
    headers.append(("Content-Type", content_type_for(filetype)))
    headers.append(
        ("Content-Disposition", content_disposition_for(filetype, info.metadata.get("filename")))
    )
    if info.offset == 0 and not config.capabilities.serve_incomplete:
        # Nothing to read: tusd answers 204 before it asks such a store.
        return DownloadPlan(204, headers, 0, 0)
    if not info.is_complete and not config.capabilities.serve_incomplete:
        raise errors.IncompleteUploadError()
    available = info.offset
    headers.append(("Accept-Ranges", "bytes"))
    if info.modified:
        headers.append(("Last-Modified", format_http_date(info.modified)))
    headers.append(("Cache-Control", "no-store" if not info.is_complete else "private"))
    wanted = None
    if request.headers.get("if-range") is None:
        wanted = parse_range(request.headers.get("range"), available)
    if wanted is False:
        raise errors.RangeNotSatisfiableError(available)
    if isinstance(wanted, tuple):
        start, end = wanted
        headers.append(("Content-Range", f"bytes {start}-{end - 1}/{available}"))
        headers.append(("Content-Length", str(end - start)))
        return DownloadPlan(206, headers, start, end)
    headers.append(("Content-Length", str(available)))
    return DownloadPlan(200, headers, 0, available)


# --- DELETE ------------------------------------------------------------------------------


def delete_response(common: Iterable[tuple[str, str]]) -> Response:
    return Response(204, list(common))


# --- helpers ------------------------------------------------------------------------------


def _is_offset_stream(content_type: str | None) -> bool:
    if content_type is None:
        return False
    return content_type.split(";", 1)[0].strip().lower() == OFFSET_OCTET_STREAM


def greeting_response() -> Response:
    body = (
        b"Welcome to tusd-trio\n\n"
        b"This is a tus resumable upload server (https://tus.io).\n"
        b"Uploads are accepted at the configured base path.\n"
    )
    return Response(
        200,
        [("Content-Type", "text/plain; charset=utf-8"), ("X-Content-Type-Options", "nosniff")],
        body,
    )
