"""Download (GET of an upload): status, headers and the byte range to send."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from . import errors
from .config import ProtocolConfig
from .expiration import is_expired
from .headers import content_disposition_for, content_type_for, format_http_date, parse_range
from .info import UploadInfo
from .messages import Request


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
