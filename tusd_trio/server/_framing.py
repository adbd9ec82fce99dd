"""HTTP message framing, the one copy every transport uses.

HTTP/1.1 (h11), HTTP/2 (h2) and ASGI differ in how bytes reach the peer, not in
what a response is: which header values may be sent, when ``Content-Length`` is
added, which statuses carry no body, which headers belong to one connection only
(hop-by-hop), the ``Date`` value, and the plain-text refusals written before a
request reaches the handler (``408``, ``431``, ``400``, ``503``).  All of it is
decided here, once.
"""

from __future__ import annotations

import functools
import re
import time
from email.utils import formatdate
from http import HTTPStatus

from ..protocol import errors
from ..protocol.messages import Response

RawHeaders = list[tuple[bytes, bytes]]

#: Fields that describe one connection, never the message (RFC 9110 7.6.1): a
#: transport that frames the message itself (HTTP/2, an ASGI server) drops them.
#: ``te`` is one of them; HTTP/2 refuses it in a response outright (RFC 9113 8.2.2).
HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"te", b"transfer-encoding", b"upgrade"}
)

_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_EXTRA_REASONS = {104: "Upload Resumption Supported", 460: "Checksum Mismatch"}


#: Every byte as itself, except controls (not TAB) and DEL, which become ``?``.
_SAFE_VALUE = bytes(b if (b >= 32 or b == 9) and b != 127 else 0x3F for b in range(256))
#: Header names encoded once (None: not an HTTP token, dropped); names come from a
#: small set (ours, the hooks'), but the cache is bounded all the same.
_NAMES: dict[str, bytes | None] = {}
_NAMES_MAX = 1024


def _encode_name(name: str) -> bytes | None:
    raw_name = name.encode("ascii", errors="replace")
    encoded = raw_name if _TOKEN.fullmatch(raw_name) else None
    if len(_NAMES) < _NAMES_MAX:
        _NAMES[name] = encoded
    return encoded


def encode_headers(headers: list[tuple[str, str]]) -> RawHeaders:
    """Header fields as bytes, made safe to put on the wire.

    A value can never break the header block: CR, LF, NUL and other controls
    become ``?``.  A field whose name is not an HTTP token is dropped.
    """
    out: RawHeaders = []
    names = _NAMES
    for name, value in headers:
        raw_name = names.get(name, b"")
        if raw_name == b"":
            raw_name = _encode_name(name)
        if raw_name is None:
            continue
        out.append((raw_name, value.encode("latin-1", errors="replace").translate(_SAFE_VALUE)))
    return out


def status_has_body(status: int) -> bool:
    """Whether a response with this status may carry a body (RFC 9110 6.4.1)."""
    return not (100 <= status < 200 or status == 204 or status == 304)


def frame_response(response: Response, *, head: bool) -> tuple[RawHeaders, bytes]:
    """The encoded headers and the body to send for ``response``.

    ``Content-Length`` is added unless the response has one or its status has no
    body; an answer to HEAD gets the length a GET would have, and no body.
    """
    headers = encode_headers(response.headers)
    has_body = status_has_body(response.status)
    if has_body:
        for name, _ in headers:
            if len(name) == 14 and name.lower() == b"content-length":
                break
        else:
            headers.append((b"Content-Length", str(len(response.body)).encode("ascii")))
    body = response.body if has_body and not head else b""
    return headers, body


def without_hop_by_hop(headers: RawHeaders) -> RawHeaders:
    """Lower-cased fields without the hop-by-hop ones (HTTP/2 and ASGI framing)."""
    out: RawHeaders = []
    for name, value in headers:
        lowered = name.lower()
        if lowered not in HOP_BY_HOP:
            out.append((lowered, value))
    return out


class _DateCache:
    """The ``Date`` value, formatted once a second."""

    __slots__ = ("_second", "_value")

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def get(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._value = formatdate(now, usegmt=True).encode("ascii")
        return self._value


http_date = _DateCache().get


def reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return _EXTRA_REASONS.get(status, "Unknown")


@functools.lru_cache(maxsize=128)
def reason_phrase(status: int) -> bytes:
    return reason(status).encode("ascii")


# --- plain-text refusals ----------------------------------------------------------------


def refusal(error: errors.TusError) -> tuple[RawHeaders, bytes]:
    """The headers (without ``Date`` and ``Connection``) and body of a plain-text
    answer carrying ``error``'s code: what is sent when there is no request the
    handler could answer (a refused connection, an unreadable head, an ASGI app
    that was not started)."""
    body = f"{error.code}: {error.message}\n".encode()
    headers: RawHeaders = [
        (b"Content-Type", b"text/plain; charset=utf-8"),
        (b"Content-Length", str(len(body)).encode("ascii")),
        (b"X-Content-Type-Options", b"nosniff"),
    ]
    if isinstance(error, errors.UnavailableError):
        headers.append((b"Retry-After", str(error.retry_after).encode("ascii")))
    return headers, body


def raw_refusal(error: errors.TusError) -> bytes:
    """``error`` as a whole HTTP/1.1 response that closes the connection, written
    without h11 (which sends no response before it has seen a request)."""
    headers, body = refusal(error)
    headers += [(b"Connection", b"close"), (b"Date", http_date())]
    head = f"HTTP/1.1 {error.status} {reason(error.status)}\r\n".encode("ascii")
    head += b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    return head + b"\r\n" + body


def malformed_request(status_hint: int, detail: str) -> errors.TusError:
    """The error for HTTP that h11 could not parse, by h11's status hint."""
    message = f"malformed HTTP request: {detail or 'malformed request'}"
    if status_hint == 431:
        return errors.HeaderFieldsTooLargeError(message)
    if status_hint == 501:
        return errors.NotImplementedFeatureError(message)
    return errors.MalformedRequestError(message, status=status_hint)
