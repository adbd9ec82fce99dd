"""Pre-signed creation URLs and the per-upload access grants they lead to.

A pre-signed URL lets its holder create **one** upload (a POST to the base path)
without other credentials::

    http://host/files/?tus-expires=1767225600&tus-max-size=1048576
        &tus-metadata=filename%20YS50eHQ%3D&tus-nonce=...&tus-signature=...

``tus-expires`` is a unix time, ``tus-max-size`` (optional) caps Upload-Length,
``tus-metadata`` (optional, Upload-Metadata syntax) holds values forced onto the
upload, ``tus-nonce`` is random and ``tus-signature`` is the unpadded base64url
HMAC-SHA256 over all of them (and a purpose tag), keyed with the signing secret.
The host and path are not signed: the URL is only ever valid for a POST to the
server's base path, which keeps it usable behind path-rewriting proxies.

Single use is enforced by remembering each used nonce until its URL expires.
That memory is **per process**: several tusd-trio processes behind one load
balancer accept the same URL once each, and a restart forgets used nonces.

Because a tus client needs to HEAD and PATCH the upload it created, the server
appends a *grant* to the Location of such an upload, ``?tus-access=NONCE.EXPIRES.SIG``
(HMAC over the purpose tag, nonce, expiry and upload ID).  Tus clients reuse the
Location verbatim, so the grant lets that client, and only for that upload, resume
it; the grant's principal (``presigned:NONCE``) owns the upload.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
import secrets
import time
from collections.abc import Mapping
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit, urlunsplit

from ..protocol.headers import parse_metadata, serialize_metadata
from ._model import AuthConfigError, Principal, forbidden

P_EXPIRES = "tus-expires"
P_MAX_SIZE = "tus-max-size"
P_METADATA = "tus-metadata"
P_NONCE = "tus-nonce"
P_SIGNATURE = "tus-signature"
P_ACCESS = "tus-access"
CREATION_PARAMS = (P_EXPIRES, P_MAX_SIZE, P_METADATA, P_NONCE, P_SIGNATURE)
#: Query parameters whose values are (parts of) credentials: never logged or passed on.
SECRET_PARAMS = frozenset({P_SIGNATURE, P_NONCE, P_EXPIRES, P_ACCESS})
REDACTED = "REDACTED"

_CREATE_TAG = "tusd-trio-presigned-create-v1"
_ACCESS_TAG = "tusd-trio-presigned-access-v1"
MIN_SECRET_BYTES = 16
_DIGITS = re.compile(r"[0-9]{1,20}")
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,128}")


def redact_url(url: str) -> str:
    """``url`` (a request target or a whole URL) with the values of the credential query
    parameters (:data:`SECRET_PARAMS`) replaced by ``REDACTED``; the names stay.

    The one place that decides what a logged URL, a hook's ``URI`` or an event shows.
    A parameter name is compared as the authenticator reads it (percent-decoded), so an
    encoded name cannot slip through.
    """
    if "?" not in url:
        return url
    base, _, query = url.partition("?")
    parts = query.split("&")
    changed = False
    for index, part in enumerate(parts):
        name, equals, _value = part.partition("=")
        if equals and unquote_plus(name) in SECRET_PARAMS:
            parts[index] = f"{name}={REDACTED}"
            changed = True
    return f"{base}?{'&'.join(parts)}" if changed else url


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _mac(secret: bytes, *fields: str) -> str:
    message = json.dumps(list(fields), separators=(",", ":")).encode("utf-8")
    return _b64(hmac.new(secret, message, hashlib.sha256).digest())


def _secret_bytes(secret: str | bytes) -> bytes:
    data = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
    if len(data) < MIN_SECRET_BYTES:
        raise ValueError(f"the signing secret must be at least {MIN_SECRET_BYTES} bytes long")
    return data


def sign_upload_url(
    base_url: str,
    secret: str | bytes,
    *,
    expires_in: float,
    max_size: int | None = None,
    metadata: Mapping[str, str] | None = None,
    now: float | None = None,
    nonce: str | None = None,
) -> str:
    """A URL that lets its holder create one upload at ``base_url`` until it expires.

    ``base_url`` is the creation endpoint (e.g. ``http://host/files/``); other query
    parameters it has are kept.  ``now`` (unix time) and ``nonce`` are for tests.
    """
    key = _secret_bytes(secret)
    if not expires_in > 0:
        raise ValueError("expires_in must be positive")
    if max_size is not None and max_size < 0:
        raise ValueError("max_size must not be negative")
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"base URL {base_url!r} must be an absolute http(s) URL")
    existing = parse_qsl(parts.query, keep_blank_values=True)
    if any(name.startswith("tus-") for name, _ in existing):
        raise ValueError("the base URL already has tus-* query parameters")
    expires = str(math.ceil((time.time() if now is None else now) + expires_in))
    size_text = "" if max_size is None else str(int(max_size))
    meta_text = ""
    if metadata:
        for name in metadata:
            if not name or name.strip() != name or " " in name or "," in name:
                raise ValueError(f"invalid metadata key {name!r}")
        meta_text = serialize_metadata(metadata)
    nonce = nonce if nonce is not None else _b64(secrets.token_bytes(16))
    if not _TOKEN.fullmatch(nonce):
        raise ValueError("invalid nonce")
    signature = _mac(key, _CREATE_TAG, expires, size_text, meta_text, nonce)
    params: list[tuple[str, str]] = [*existing, (P_EXPIRES, expires)]
    if size_text:
        params.append((P_MAX_SIZE, size_text))
    if meta_text:
        params.append((P_METADATA, meta_text))
    params += [(P_NONCE, nonce), (P_SIGNATURE, signature)]
    return urlunsplit(parts._replace(query=urlencode(params)))


class PresignVerifier:
    """Verifies pre-signed creation URLs and access grants; remembers used nonces."""

    PURGE_INTERVAL = 60.0

    def __init__(self, secret: bytes, access_ttl: float) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise AuthConfigError(
                f"the signing secret must be at least {MIN_SECRET_BYTES} bytes long"
            )
        if not access_ttl > 0:
            raise AuthConfigError("the pre-signed upload access lifetime must be positive")
        self._secret = secret
        self._access_ttl = access_ttl
        self._used: dict[str, float] = {}  # nonce -> expiry of its URL
        self._next_purge = 0.0

    def _purge(self, now: float) -> None:
        if now < self._next_purge:
            return
        self._next_purge = now + self.PURGE_INTERVAL
        for nonce in [nonce for nonce, expires in self._used.items() if expires <= now]:
            del self._used[nonce]

    def release(self, nonce: str) -> None:
        """Forget a use: the creation it authorized did not happen."""
        self._used.pop(nonce, None)

    def used_count(self) -> int:
        return len(self._used)

    def verify_creation(self, params: Mapping[str, str], now: float) -> Principal:
        """Check a creation URL's parameters (the caller checked it is a POST to the base path)."""
        expires_text = params.get(P_EXPIRES, "")
        size_text = params.get(P_MAX_SIZE, "")
        meta_text = params.get(P_METADATA, "")
        nonce = params.get(P_NONCE, "")
        signature = params.get(P_SIGNATURE, "")
        if (
            not _DIGITS.fullmatch(expires_text)
            or not _TOKEN.fullmatch(nonce)
            or (size_text and not _DIGITS.fullmatch(size_text))
        ):
            raise forbidden("malformed pre-signed URL")
        expected = _mac(self._secret, _CREATE_TAG, expires_text, size_text, meta_text, nonce)
        if not hmac.compare_digest(expected.encode("ascii"), signature.encode("utf-8")):
            raise forbidden("invalid pre-signed URL signature")
        expires = float(int(expires_text))
        if now >= expires:
            raise forbidden("pre-signed URL expired")
        self._purge(now)
        if nonce in self._used:
            raise forbidden("pre-signed URL already used")
        self._used[nonce] = expires
        limits: dict[str, object] = {
            "max_size": int(size_text) if size_text else None,
            "metadata": parse_metadata(meta_text),
            "expires": expires,
        }
        return Principal(subject=nonce, admin=False, via="presigned", limits=limits)

    def grant(self, nonce: str, upload_id: str, now: float) -> str:
        """The ``tus-access`` value letting the creator resume ``upload_id``."""
        expires = str(math.ceil(now + self._access_ttl))
        signature = _mac(self._secret, _ACCESS_TAG, nonce, expires, upload_id)
        return f"{nonce}.{expires}.{signature}"

    def verify_grant(self, value: str, upload_id: str | None, now: float) -> Principal:
        nonce, _, rest = value.partition(".")
        expires_text, _, signature = rest.partition(".")
        if upload_id is None:
            raise forbidden("an upload access grant is valid only for its upload")
        if not _TOKEN.fullmatch(nonce) or not _DIGITS.fullmatch(expires_text):
            raise forbidden("malformed upload access grant")
        expected = _mac(self._secret, _ACCESS_TAG, nonce, expires_text, upload_id)
        if not hmac.compare_digest(expected.encode("ascii"), signature.encode("utf-8")):
            raise forbidden("invalid upload access grant")
        if now >= int(expires_text):
            raise forbidden("upload access grant expired")
        return Principal(subject=nonce, admin=False, via="presigned")
