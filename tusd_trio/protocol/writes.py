"""Writes (PATCH, and the body of a creation-with-upload POST): how many body bytes a
request may append, its checksum, and the 204."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from . import errors
from .config import ProtocolConfig
from .expiration import expires_header, is_expired
from .headers import Checksum, parse_checksum, parse_offset, parse_uint, trailer_announces_checksum
from .info import UploadInfo
from .messages import Request, Response, is_offset_stream


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
    #: The request's Content-Length (``None``: none, or chunked), parsed once here
    #: for the handler; request data, not part of the plan's decision (not compared).
    content_length: int | None = field(default=None, compare=False)

    @property
    def verify_checksum(self) -> bool:
        return self.checksum is not None or self.checksum_in_trailer


def check_patch_headers(request: Request) -> int:
    """The checks that need no stored state: Content-Type and Upload-Offset."""
    headers = request.headers
    if not is_offset_stream(headers.first("content-type")):
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
        content_length=content_length,
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
    headers += expires_header(info, config, now)
    return Response(204, headers)
