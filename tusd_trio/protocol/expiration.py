"""The expiration extension: when an unfinished upload expires (-expiration), and the
``Upload-Expires`` header that says so."""

from __future__ import annotations

import math

from .config import ProtocolConfig
from .headers import format_http_date
from .info import UploadInfo


def expires_at(info: UploadInfo, config: ProtocolConfig) -> float | None:
    """When an unfinished upload expires, or None if it never does."""
    if config.expiration <= 0 or info.is_complete or info.is_final:
        return None
    last = max(info.modified, info.created)
    return last + config.expiration


def is_expired(info: UploadInfo, config: ProtocolConfig, now: float) -> bool:
    deadline = expires_at(info, config)
    return deadline is not None and now >= deadline


def expires_header(info: UploadInfo, config: ProtocolConfig, now: float) -> list[tuple[str, str]]:
    """``Upload-Expires`` for an upload that expires, else nothing."""
    deadline = expires_at(info, config)
    if deadline is None:
        return []
    # Rounded up to the second: the header never promises less time than there is.
    return [("Upload-Expires", format_http_date(math.ceil(max(deadline, now))))]
