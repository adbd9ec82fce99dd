"""The IETF "Resumable Uploads for HTTP" draft: its decisions, for the interop version
a request speaks (:mod:`tusd_trio.protocol.interop` holds the table of versions).

Draft uploads are ordinary uploads for stores, hooks, locks and expiry: only the
headers and the error format differ, so the tus 1.0.0 planning is reused
(:mod:`.creation`, :mod:`.writes`) and these functions add what the draft changes.

Behaviour shared by all versions here: creation is a POST to the base path
carrying the completion field; the 104 goes out after the upload exists and
before the body is read; appends answer 204, creations 201; a 409 always
carries the correct ``Upload-Offset``.  Progress 104s (interop 5 and later,
optional in every draft) are not sent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote

from . import errors, responses, routing
from .config import ProtocolConfig
from .creation import CreationPlan
from .expiration import expires_at, is_expired
from .headers import media_type, parse_uint
from .info import UploadInfo
from .interop import (
    COMPLETED_UPLOAD,
    INCONSISTENT_LENGTH,
    MISMATCHING_OFFSET,
    PARTIAL_UPLOAD,
    InteropVersion,
    detect,
    parse_sf_uint,
)
from .messages import Headers, Request, Response
from .routing import Routed
from .writes import WritePlan, plan_append_write

PROBLEM_JSON = "application/problem+json"


def route(request: Request, config: ProtocolConfig, *, enabled: bool) -> Routed:
    """:func:`tusd_trio.protocol.routing.route`, knowing whether the request speaks the draft."""
    return routing.route(request, config, interop=detect(request.headers, enabled=enabled))


# --- Limits --------------------------------------------------------------------------


def upload_limit(
    version: InteropVersion, config: ProtocolConfig, info: UploadInfo | None, now: float
) -> str | None:
    """The ``Upload-Limit`` value, None where the version does not define it.

    ``max-size`` is -max-size, else the upload's known length (as tusd); the
    lifetime key is the time until the upload expires (-expiration).
    """
    if not version.upload_limit:
        return None
    parts = ["min-size=0"]
    if config.max_size > 0:
        parts.append(f"max-size={config.max_size}")
    elif info is not None and not info.size_is_deferred:
        parts.append(f"max-size={info.size}")
    if version.lifetime_key is not None and info is not None:
        deadline = expires_at(info, config)
        if deadline is not None:
            parts.append(f"{version.lifetime_key}={max(0, int(deadline - now))}")
    return ",".join(parts)


def _with_limit(
    headers: list[tuple[str, str]],
    version: InteropVersion,
    config: ProtocolConfig,
    info: UploadInfo | None,
    now: float,
) -> list[tuple[str, str]]:
    limit = upload_limit(version, config, info, now)
    if limit is not None:
        headers.append(("Upload-Limit", limit))
    return headers


# --- Creation --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DraftCreation:
    plan: CreationPlan
    #: The request carries the whole representation (``Upload-Complete: ?1``).
    complete: bool


def _length(headers: Headers, version: InteropVersion, offset: int, complete: bool) -> int | None:
    """The length a request indicates (``Upload-Length``, or offset + Content-Length
    of a completing request); the two must agree."""
    declared: int | None = None
    if version.upload_length and "upload-length" in headers:
        if headers.count("upload-length") > 1:
            raise errors.InvalidUploadLengthError()
        declared = parse_sf_uint(headers.get("upload-length"))
        if declared is None:
            raise errors.InvalidUploadLengthError()
    if complete:
        content_length = parse_uint(headers.get("content-length"))
        if content_length is not None:
            if declared is not None and declared != offset + content_length:
                raise errors.InconsistentUploadLengthError()
            declared = offset + content_length
    return declared


def _filename(disposition: str | None) -> str | None:
    """The ``filename*`` (RFC 8187) or ``filename`` parameter of a Content-Disposition."""
    if not disposition:
        return None
    plain: str | None = None
    for param in disposition.split(";")[1:]:
        name, _, value = param.partition("=")
        name = name.strip().lower()
        value = value.strip()
        if name == "filename*":
            charset, _, rest = value.partition("'")
            _, _, encoded = rest.partition("'")
            if charset.lower() == "utf-8" and encoded:
                try:
                    return unquote(encoded, errors="strict")
                except UnicodeDecodeError:
                    continue
        elif name == "filename" and value:
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            plain = value
    return plain


def plan_creation(
    request: Request, config: ProtocolConfig, version: InteropVersion, now: float
) -> DraftCreation:
    """Check a draft creation request (a POST carrying the completion field)."""
    headers = request.headers
    complete = version.read_complete(headers)
    if complete is None:
        raise errors.InvalidUploadCompleteError(
            f"missing or invalid {version.complete_field} header"
        )
    size = _length(headers, version, 0, complete)
    if size is None and not config.capabilities.defer_length:
        raise errors.NotImplementedFeatureError()
    if size is not None and config.max_size > 0 and size > config.max_size:
        raise errors.MaxSizeExceededError()
    metadata: dict[str, str] = {}
    filetype = media_type(headers.get("content-type"))
    if filetype is not None:
        metadata["filetype"] = filetype
    filename = _filename(headers.get("content-disposition"))
    if filename:
        metadata["filename"] = filename
    info = UploadInfo(
        id="",
        size=size or 0,
        size_is_deferred=size is None,
        metadata=metadata,
        created=now,
        modified=now,
    )
    return DraftCreation(CreationPlan(info, has_body=True), complete)


def interim_headers(
    version: InteropVersion, config: ProtocolConfig, info: UploadInfo, location: str, now: float
) -> list[tuple[str, str]]:
    """The headers of the ``104 (Upload Resumption Supported)`` sent before the body."""
    headers = [("Location", location), ("Upload-Draft-Interop-Version", str(version.number))]
    return _with_limit(headers, version, config, info, now)


def creation_response(
    version: InteropVersion,
    config: ProtocolConfig,
    info: UploadInfo,
    location: str,
    common: Iterable[tuple[str, str]],
    now: float,
) -> Response:
    headers = list(common)
    headers.append(("Location", location))
    headers.append(("Upload-Offset", str(info.offset)))
    headers.append(version.complete_header(info.is_complete))
    return Response(201, _with_limit(headers, version, config, info, now))


def length_to_declare(info: UploadInfo, complete: bool) -> int | None:
    """After a completing request's body was fully stored: the length to declare.

    A deferred length becomes the offset; a known length the body fell short
    of is an inconsistency (the upload stays incomplete).
    """
    if not complete or info.is_complete:
        return None
    if info.size_is_deferred:
        return info.offset
    raise errors.InconsistentUploadLengthError(
        f"the request completes the upload at {info.offset} bytes, its length is {info.size}"
    )


# --- Append ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DraftAppend:
    offset: int
    complete: bool


def check_append_headers(request: Request, version: InteropVersion) -> DraftAppend:
    """The checks of an append that need no stored state."""
    headers = request.headers
    wanted = version.append_media_type
    if wanted is not None and media_type(headers.get("content-type")) != wanted:
        raise errors.InvalidContentTypeError(
            f"appending needs Content-Type: {version.append_media_type}"
        )
    complete = version.read_complete(headers)
    if complete is None:
        if version.complete_required:
            raise errors.InvalidUploadCompleteError(
                f"missing or invalid {version.complete_field} header"
            )
        complete = False
    offset = None
    if headers.count("upload-offset") == 1:
        offset = parse_sf_uint(headers.get("upload-offset"))
    if offset is None:
        raise errors.InvalidOffsetError()
    return DraftAppend(offset, complete)


def _has_content(headers: Headers) -> bool:
    if "transfer-encoding" in headers:
        return True
    return (parse_uint(headers.get("content-length")) or 0) > 0


def plan_append(
    request: Request,
    info: UploadInfo,
    config: ProtocolConfig,
    version: InteropVersion,
    now: float,
) -> tuple[DraftAppend, WritePlan]:
    """Check a draft append (PATCH) against the stored upload."""
    append = check_append_headers(request, version)
    if info.is_final:
        raise errors.ModifyFinalError()
    if is_expired(info, config, now):
        raise errors.UploadGoneError()
    if info.is_complete:
        if append.complete and append.offset == info.offset and not _has_content(request.headers):
            # Completing a complete upload again (its answer may have been lost).
            return append, WritePlan(offset=info.offset, limit=0, already_complete=True)
        raise errors.CompletedUploadError()
    if append.offset != info.offset:
        raise errors.MismatchingUploadOffsetError(info.offset, append.offset)
    declared = _length(request.headers, version, info.offset, append.complete)
    if declared is not None:
        if not info.size_is_deferred:
            if declared != info.size:
                raise errors.InconsistentUploadLengthError()
            declared = None
        elif declared < info.offset:
            raise errors.InconsistentUploadLengthError()
        elif config.max_size > 0 and declared > config.max_size:
            raise errors.MaxSizeExceededError()
    return append, plan_append_write(request, info, config, info.offset, declared)


def append_response(
    version: InteropVersion,
    config: ProtocolConfig,
    info: UploadInfo,
    common: Iterable[tuple[str, str]],
    now: float,
) -> Response:
    headers = list(common)
    headers.append(("Upload-Offset", str(info.offset)))
    headers.append(version.complete_header(info.is_complete))
    return Response(204, _with_limit(headers, version, config, info, now))


# --- Offset retrieval, cancellation, discovery ---------------------------------------------


def check_state_fields(request: Request, version: InteropVersion) -> None:
    """Interop 3-6: HEAD and DELETE must not carry the upload state fields (400)."""
    if not version.state_fields_forbidden:
        return
    for name in version.state_fields():
        if name in request.headers:
            raise errors.ProtocolError(f"{name} is not allowed in this request")


def state_headers(
    version: InteropVersion, config: ProtocolConfig, info: UploadInfo, now: float
) -> list[tuple[str, str]]:
    """What an offset retrieval reports: offset, completeness, length, limits."""
    headers = [("Upload-Offset", str(info.offset)), version.complete_header(info.is_complete)]
    if version.upload_length and not info.size_is_deferred:
        headers.append(("Upload-Length", str(info.size)))
    return _with_limit(headers, version, config, info, now)


def head_response(
    version: InteropVersion,
    config: ProtocolConfig,
    info: UploadInfo,
    common: Iterable[tuple[str, str]],
    now: float,
) -> Response:
    if is_expired(info, config, now):
        raise errors.UploadGoneError()
    headers = list(common)
    headers += state_headers(version, config, info, now)
    headers.append(("Cache-Control", "no-store"))
    return Response(204, headers)


def options_response(
    version: InteropVersion, config: ProtocolConfig, common: Iterable[tuple[str, str]]
) -> Response:
    response = responses.options_response(config, common)
    if version.options_limits:
        _with_limit(response.headers, version, config, None, 0.0)
    if version.accept_patch:
        response.headers.append(("Accept-Patch", PARTIAL_UPLOAD))
    return response


# --- Errors ----------------------------------------------------------------------------------


def _problem_type(exc: errors.TusError, version: InteropVersion) -> str:
    if isinstance(exc, errors.MismatchingUploadOffsetError):
        kind = MISMATCHING_OFFSET
    elif isinstance(exc, errors.CompletedUploadError):
        kind = COMPLETED_UPLOAD
    elif isinstance(exc, errors.InconsistentUploadLengthError):
        kind = INCONSISTENT_LENGTH
    else:
        return "about:blank"
    return kind if kind in version.problem_types else "about:blank"


def error_response(
    exc: errors.TusError,
    version: InteropVersion,
    *,
    method: str,
    common: Iterable[tuple[str, str]],
) -> Response:
    """An error in the request's draft version: problem details (RFC 9457) where the
    version defines them, else tusd's text; a 409 carries the correct offset."""
    response = responses.error_response(exc, method=method, common=common)
    if isinstance(exc, errors.MismatchingUploadOffsetError):
        response.headers.append(("Upload-Offset", str(exc.expected)))
    if version.errors_say_incomplete and method in ("POST", "PATCH"):
        response.headers.append(version.complete_header(False))
    if not version.problem_details:
        return response
    problem: dict[str, object] = {
        "type": _problem_type(exc, version),
        "title": exc.message,
        "status": exc.status,
        "code": exc.code,
    }
    if isinstance(exc, errors.MismatchingUploadOffsetError):
        problem["expected-offset"] = exc.expected
        problem["provided-offset"] = exc.provided
    response.headers = [
        ("Content-Type", PROBLEM_JSON) if k.lower() == "content-type" else (k, v)
        for k, v in response.headers
    ]
    if method != "HEAD":
        response.body = json.dumps(problem).encode()
    return response
