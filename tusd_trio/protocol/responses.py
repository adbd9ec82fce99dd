"""The answers built from what is known, with nothing to plan: errors (tusd's text
format), OPTIONS, HEAD (offset retrieval), DELETE (termination) and the greeting."""

from __future__ import annotations

from collections.abc import Iterable

from . import errors
from .config import ProtocolConfig
from .expiration import expires_header, is_expired
from .headers import serialize_metadata
from .info import UploadInfo
from .messages import TUS_VERSION, Request, Response
from .urls import upload_url


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


def options_response(config: ProtocolConfig, common: Iterable[tuple[str, str]]) -> Response:
    headers = list(common)
    headers.append(("Tus-Version", TUS_VERSION))
    headers.append(("Tus-Extension", ",".join(config.extensions())))
    if config.max_size > 0:
        headers.append(("Tus-Max-Size", str(config.max_size)))
    if config.checksum_enabled:
        headers.append(("Tus-Checksum-Algorithm", ",".join(config.checksum_algorithms)))
    return Response(200, headers)


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
    headers += expires_header(info, config, now)
    return Response(200, headers)


def delete_response(common: Iterable[tuple[str, str]]) -> Response:
    return Response(204, list(common))


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
