"""Parsing and formatting of the tus header fields.  Pure functions, stdlib only."""

from __future__ import annotations

import base64
import binascii
import email.utils
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

from .errors import (
    InvalidChecksumError,
    InvalidConcatError,
    UnsupportedChecksumAlgorithmError,
)

#: The largest value an offset or length may take (tusd stores them as int64).
MAX_INT64 = 2**63 - 1

_DECIMAL = re.compile(r"[0-9]{1,19}")


def parse_uint(value: str | None) -> int | None:
    """Parse a non-negative decimal integer header value.

    Returns ``None`` for a missing, empty, signed, non-decimal or out-of-range
    (beyond int64) value.  Surrounding whitespace is tolerated, nothing else.
    """
    if value is None:
        return None
    text = value.strip()
    if not _DECIMAL.fullmatch(text):
        return None
    number = int(text)
    if number > MAX_INT64:
        return None
    return number


_SIGNED_DECIMAL = re.compile(r"([+-]?)0*([0-9]{1,19})")


def parse_offset(value: str | None) -> int | None:
    """Parse ``Upload-Length`` or ``Upload-Offset`` as tusd does.

    tusd reads them with Go's ``strconv.ParseInt(value, 10, 64)`` and refuses a
    negative result, so a leading ``+`` (``+10``), leading zeros and ``-0`` are
    accepted.  Returns ``None`` for a missing or empty value, anything else that
    is not a decimal integer, a negative one, or one beyond int64.
    """
    if value is None:
        return None
    match = _SIGNED_DECIMAL.fullmatch(value.strip())
    if match is None:
        return None
    sign, digits = match.groups()
    number = int(digits)
    if number > MAX_INT64 or (sign == "-" and number != 0):
        return None
    return number


# --- Upload-Metadata -------------------------------------------------------


def parse_metadata(value: str | None) -> dict[str, str]:
    """Parse ``Upload-Metadata`` the way tusd does.

    The header is a comma-separated list of ``key base64value`` pairs.  tusd never
    rejects the header: an element with an empty key, more than one space or a value
    that is not padded standard base64 is dropped; a duplicate key keeps the last
    value.  Values are decoded as UTF-8 with invalid sequences replaced.
    """
    result: dict[str, str] = {}
    if not value:
        return result
    for element in value.split(","):
        element = element.strip()
        parts = element.split(" ")
        if len(parts) > 2:
            continue
        key = parts[0]
        if not key:
            continue
        if len(parts) == 1:
            result[key] = ""
            continue
        encoded = parts[1]
        try:
            raw = base64.b64decode(encoded.encode("ascii"), validate=True)
        except (binascii.Error, ValueError, UnicodeEncodeError):
            continue
        result[key] = raw.decode("utf-8", errors="replace")
    return result


def serialize_metadata(metadata: Mapping[str, str]) -> str:
    """Format metadata for ``Upload-Metadata`` in a response (keys sorted).

    Keys that the header cannot carry (empty, with a space or comma, or with
    whitespace at either end, possible only in metadata set by a hook or read
    from an ``.info`` file) are left out.
    """
    parts: list[str] = []
    for key in sorted(metadata):
        if not key or key.strip() != key or " " in key or "," in key:
            continue  # cannot be written so that it reads back the same: leave it out
        value = metadata[key]
        if value:
            encoded = base64.b64encode(value.encode("utf-8")).decode("ascii")
            parts.append(f"{key} {encoded}")
        else:
            parts.append(key)
    return ",".join(parts)


# --- Upload-Concat ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Concat:
    """A parsed ``Upload-Concat`` header."""

    is_partial: bool = False
    is_final: bool = False
    partial_urls: tuple[str, ...] = ()


def parse_concat(value: str | None) -> Concat:
    """Parse ``Upload-Concat``: ``partial`` or ``final;<url> <url> ...``.

    An absent or empty header is neither partial nor final.  Anything else, or
    ``final;`` without any URL, raises :class:`InvalidConcatError`.
    """
    if value is None:
        return Concat()
    text = value.strip()
    if not text:
        return Concat()
    if text == "partial":
        return Concat(is_partial=True)
    if text.startswith("final;"):
        urls = tuple(token for token in text[len("final;") :].split() if token)
        if urls:
            return Concat(is_final=True, partial_urls=urls)
    raise InvalidConcatError()


# --- Upload-Checksum -------------------------------------------------------

#: Supported algorithms, in the order they are advertised, with the
#: :mod:`hashlib` name and the digest size in bytes.
CHECKSUM_ALGORITHMS: dict[str, tuple[str, int]] = {
    "sha1": ("sha1", 20),
    "md5": ("md5", 16),
    "sha256": ("sha256", 32),
    "sha512": ("sha512", 64),
}


@dataclass(frozen=True, slots=True)
class Checksum:
    algorithm: str
    digest: bytes


def parse_checksum(value: str, enabled: tuple[str, ...]) -> Checksum:
    """Parse ``Upload-Checksum: <algorithm> <base64 digest>``.

    An algorithm that is not enabled raises
    :class:`UnsupportedChecksumAlgorithmError` (400); a malformed value or a digest
    of the wrong length raises :class:`InvalidChecksumError` (400).
    """
    parts = value.strip().split(" ")
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise InvalidChecksumError()
    algorithm, encoded = parts
    if algorithm not in enabled or algorithm not in CHECKSUM_ALGORITHMS:
        raise UnsupportedChecksumAlgorithmError(f"unsupported checksum algorithm: {algorithm!r}")
    try:
        digest = base64.b64decode(encoded.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise InvalidChecksumError("checksum is not valid base64") from None
    if len(digest) != CHECKSUM_ALGORITHMS[algorithm][1]:
        raise InvalidChecksumError("checksum has the wrong length for its algorithm")
    return Checksum(algorithm, digest)


def trailer_announces_checksum(value: str | None) -> bool:
    """Whether a ``Trailer`` request header announces ``Upload-Checksum``."""
    if not value:
        return False
    return any(name.strip().lower() == "upload-checksum" for name in value.split(","))


# --- Dates -------------------------------------------------------------------


def format_http_date(timestamp: float) -> str:
    """An RFC 9110 IMF-fixdate, e.g. ``Wed, 25 Jun 2014 16:00:00 GMT``."""
    return email.utils.formatdate(timestamp, usegmt=True)


def parse_http_date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.timestamp()


# --- Host ---------------------------------------------------------------------

# RFC 3986 section 3.2.2: a host is a bracketed IP literal or a reg-name (an IPv4 address
# is a reg-name too), then an optional port.  Nothing else (no "/", "?", "@", quotes,
# angle brackets or blanks) can reach a Location built from it.
_HOST = re.compile(
    r"(?:\[[0-9A-Fa-f:.]+(?:%25[A-Za-z0-9\-._~]+)?\]"  # IPv6, with an RFC 6874 zone
    r"|(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})+)"
    r"(?::[0-9]{0,5})?"
)


def is_valid_host(value: str) -> bool:
    """Whether ``value`` is an RFC 3986 ``host [":" port]`` (Host, :authority, forwarded)."""
    return len(value) <= 255 and _HOST.fullmatch(value) is not None


# --- Media types and Content-Disposition --------------------------------------

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")

#: Media types a browser may show inline (tusd's allow-list).
INLINE_MEDIA_TYPES = frozenset(
    {
        "text/plain",
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/bmp",
        "image/webp",
        "audio/wave",
        "audio/wav",
        "audio/x-wav",
        "audio/x-pn-wav",
        "audio/webm",
        "audio/ogg",
        "video/mp4",
        "video/webm",
        "video/ogg",
        "application/ogg",
    }
)


def media_type(value: str | None) -> str | None:
    """Return the bare, lower-cased ``type/subtype`` of a Content-Type, or None."""
    if not value:
        return None
    main = value.split(";", 1)[0].strip()
    if "/" not in main:
        return None
    kind, sub = main.split("/", 1)
    if not _TOKEN.fullmatch(kind) or not _TOKEN.fullmatch(sub):
        return None
    return f"{kind}/{sub}".lower()


def is_safe_header_value(value: str) -> bool:
    """True when ``value`` can go into a response header as it is."""
    return all(32 <= ord(ch) < 127 or ch == "\t" for ch in value)


def content_type_for(filetype: str | None) -> str:
    """The Content-Type to serve for an upload's ``filetype`` metadata."""
    if filetype and is_safe_header_value(filetype):
        bare = media_type(filetype)
        if bare is not None:
            # Keep parameters (e.g. charset) only when they are printable ASCII.
            return filetype.strip()
    return "application/octet-stream"


def content_disposition_for(filetype: str | None, filename: str | None) -> str:
    """``inline`` for allow-listed media types, else ``attachment``; plus the filename.

    The filename is quoted with backslash escapes; non-ASCII names are given as an
    RFC 8187 ``filename*`` parameter as well, with an ASCII fallback.
    """
    # Inline only when the Content-Type actually served is the allow-listed type.
    served = content_type_for(filetype)
    bare = media_type(served)
    disposition = "inline" if bare in INLINE_MEDIA_TYPES else "attachment"
    if not filename:
        return disposition
    ascii_name = "".join(ch if 32 <= ord(ch) < 127 else "_" for ch in filename)
    quoted = ascii_name.replace("\\", "\\\\").replace('"', '\\"')
    result = f'{disposition};filename="{quoted}"'
    if ascii_name != filename:
        result += f";filename*=UTF-8''{quote(filename, safe='')}"
    return result


# --- Range ----------------------------------------------------------------------


def parse_range(value: str | None, size: int) -> tuple[int, int] | bool | None:
    """Parse a single ``bytes=`` range against ``size``.

    Returns ``None`` to serve the whole body (no header, or a form we ignore such as
    several ranges), ``(start, end_exclusive)`` for a satisfiable range and
    ``False`` for an unsatisfiable one (416).
    """
    if not value:
        return None
    text = value.strip()
    if not text.startswith("bytes="):
        return None
    spec = text[len("bytes=") :].strip()
    if "," in spec or "-" not in spec:
        return None
    first, last = (part.strip() for part in spec.split("-", 1))
    if not first:
        suffix = parse_uint(last)
        if suffix is None:
            return None
        if suffix == 0 or size == 0:
            return False
        return (max(0, size - suffix), size)
    start = parse_uint(first)
    if start is None:
        return None
    if last:
        end = parse_uint(last)
        if end is None or end < start:
            return None
        end_exclusive = min(end + 1, size)
    else:
        end_exclusive = size
    if start >= size:
        return False
    return (start, end_exclusive)
