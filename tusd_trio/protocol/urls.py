"""Upload URLs: the origin and base path clients see (behind a proxy too), and the
upload ID in a URL a client sends back (final uploads name their partials)."""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

from . import errors
from .config import ProtocolConfig
from .headers import is_valid_host
from .info import check_upload_id
from .messages import Request

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
