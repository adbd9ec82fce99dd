"""Hook types, the JSON request sent to hooks and the response they may give.

The wire format is tusd's (``pkg/hooks``): Go struct names as JSON keys, headers
as canonical names with lists of values.  tusd-trio adds one top-level key,
``IdempotencyKey``, which tusd hook servers ignore, and one hook type,
``pre-access``.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from .._version import __version__
from ..auth.presign import redact_url
from ..protocol.info import UploadInfo
from ..protocol.messages import Request

__all__ = [
    "BLOCKING",
    "DEFAULT_ENABLED",
    "HOOK_TYPES",
    "NOT_FORWARDED",
    "TUSD_HOOK_TYPES",
    "FileInfoChanges",
    "HTTPResponse",
    "HookError",
    "HookEvent",
    "HookEventLike",
    "HookResponse",
    "build_request",
    "canonical_header_name",
    "client_headers",
    "merge_http_response",
    "merge_responses",
    "parse_enabled_events",
    "parse_response",
    "validate_upload_id",
]

#: The ``User-Agent`` of requests to hook endpoints.
USER_AGENT = f"tusd-trio/{__version__}"

#: Client headers no backend forwards to a hook: the hook request sets them itself, or
#: they describe one connection only, so forwarding them would corrupt the hook request.
NOT_FORWARDED = frozenset(
    {
        "content-type",
        "content-length",
        "transfer-encoding",
        "host",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-connection",
    }
)

#: tusd's seven hook types, then ours.
HOOK_TYPES: tuple[str, ...] = (
    "pre-create",
    "post-create",
    "post-receive",
    "pre-finish",
    "post-finish",
    "pre-terminate",
    "post-terminate",
    "pre-access",
)

#: tusd's hook types in tusd's own order (what an empty -hooks-enabled-events enables).
TUSD_HOOK_TYPES: tuple[str, ...] = (
    "pre-create",
    "post-create",
    "post-receive",
    "pre-terminate",
    "post-terminate",
    "post-finish",
    "pre-finish",
)

#: What ``-hooks-enabled-events`` defaults to (tusd's default, in its order).
DEFAULT_ENABLED: tuple[str, ...] = (
    "pre-create",
    "post-create",
    "post-receive",
    "post-terminate",
    "post-finish",
)

#: Hooks whose answer the request waits for.
BLOCKING: frozenset[str] = frozenset({"pre-create", "pre-finish", "pre-terminate", "pre-access"})


class HookError(Exception):
    """A hook could not be run or gave an unusable answer.

    The message is short and safe to show: the handler turns it into
    ``500 ERR_INTERNAL_SERVER_ERROR: <message>``.
    """


def parse_enabled_events(text: str) -> tuple[str, ...]:
    """Parse ``-hooks-enabled-events``: a comma-separated list of hook types.

    Returns the names in the order given (each once), which is the order of the
    ``Enabled hook events`` start-up line.  As tusd: an empty value (or one of
    only blanks) enables every tusd hook type, including ``pre-finish`` and
    ``pre-terminate``, in tusd's order; our ``pre-access`` only when it is named
    (a tusd-era hook receiver would refuse it, failing every request).  An
    unknown name raises ``ValueError`` naming it.

    Unlike tusd, blanks around each name are ignored, so ``"pre-create, post-finish"``
    works (tusd compares the untrimmed token and rejects it).  Empty items left by a
    doubled or trailing comma are skipped.
    """
    if not text.strip():
        return TUSD_HOOK_TYPES
    enabled: list[str] = []
    for token in text.split(","):
        name = token.strip()
        if not name:
            continue
        if name not in HOOK_TYPES:
            raise ValueError(f"unknown hook event type in -hooks-enabled-events: {name!r}")
        if name not in enabled:
            enabled.append(name)
    return tuple(enabled)


# --- the request -----------------------------------------------------------------


class _UploadLike(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def size_is_deferred(self) -> bool: ...
    @property
    def offset(self) -> int: ...
    @property
    def metadata(self) -> Mapping[str, str]: ...
    @property
    def is_partial(self) -> bool: ...
    @property
    def is_final(self) -> bool: ...
    @property
    def partial_uploads(self) -> Iterable[str] | None: ...
    @property
    def storage(self) -> Mapping[str, str] | None: ...


class _RequestLike(Protocol):
    @property
    def method(self) -> str: ...
    @property
    def target(self) -> str: ...
    @property
    def headers(self) -> Mapping[str, str]: ...


@dataclass(frozen=True)
class HookEvent:
    """What a hook is told: the upload and the request that caused the event."""

    type: str
    upload: UploadInfo
    request: Request | None
    remote_addr: str = ""


class HookEventLike(Protocol):
    """What :func:`build_request` needs; :class:`HookEvent` fits."""

    @property
    def type(self) -> str: ...
    @property
    def upload(self) -> _UploadLike: ...
    @property
    def request(self) -> _RequestLike | None: ...
    @property
    def remote_addr(self) -> str: ...


_TOKEN_CHARS = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~")


def canonical_header_name(name: str) -> str:
    """Go's ``CanonicalMIMEHeaderKey``: ``x-request-id`` becomes ``X-Request-Id``.

    A name holding a character that is not valid in a header name is returned
    unchanged, as Go does.
    """
    if not name or any(ch not in _TOKEN_CHARS for ch in name):
        return name
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def _header_lists(headers: Mapping[str, str]) -> dict[str, list[str]]:
    """Go's ``http.Header``: canonical names, one list item per header line.

    Values are the bytes received read as UTF-8 (the HTTP layer hands them over
    as Latin-1 text), as a Go string holding them would be.
    """
    raw = getattr(headers, "raw", None)
    items = raw if isinstance(raw, list) else list(headers.items())
    result: dict[str, list[str]] = {}
    for name, value in items:
        try:
            text = value.encode("latin-1").decode("utf-8", errors="replace")
        except UnicodeEncodeError:
            text = value
        result.setdefault(canonical_header_name(name), []).append(text)
    return result


def client_headers(payload: dict[str, Any]) -> dict[str, list[str]]:
    """The client's headers as a hook request document holds them (``Event.HTTPRequest
    .Header``): what a backend forwards from unless it is given others."""
    request: dict[str, Any] = payload.get("Event", {}).get("HTTPRequest", {})
    headers: dict[str, list[str]] | None = request.get("Header")
    return headers or {}


def build_request(event: HookEventLike, *, idempotency_key: str) -> dict[str, Any]:
    """The JSON document (as a dict) sent to file, HTTP and plugin hooks.

    tusd's shape exactly, plus the top-level ``IdempotencyKey``.  For
    ``pre-create`` the upload has no ID (``""``) and no storage (``null``) yet.
    An event without a request (the expiry janitor) has empty request fields.
    """
    upload = event.upload
    pre_create = event.type == "pre-create"
    partials = upload.partial_uploads
    storage = upload.storage
    upload_doc: dict[str, Any] = {
        "ID": "" if pre_create else upload.id,
        "Size": upload.size,
        "SizeIsDeferred": upload.size_is_deferred,
        "Offset": upload.offset,
        "MetaData": dict(upload.metadata),
        "IsPartial": upload.is_partial,
        "IsFinal": upload.is_final,
        "PartialUploads": list(partials) if partials is not None else None,
        "Storage": None if pre_create or storage is None else dict(storage),
    }
    request = event.request
    http_doc: dict[str, Any]
    if request is None:
        http_doc = {"Method": "", "URI": "", "RemoteAddr": "", "Header": {}}
    else:
        header = _header_lists(request.headers)
        # Go keeps Host outside Request.Header; tusd puts it back.
        header.setdefault("Host", [""])
        http_doc = {
            "Method": request.method,
            # Pre-signed URL and grant credentials never leave the server.
            "URI": redact_url(request.target),
            "RemoteAddr": event.remote_addr,
            "Header": header,
        }
    return {
        "Type": event.type,
        "Event": {"Upload": upload_doc, "HTTPRequest": http_doc},
        "IdempotencyKey": idempotency_key,
    }


# --- the response ----------------------------------------------------------------


@dataclass
class HTTPResponse:
    """Changes to the HTTP response tusd-trio sends (``HTTPResponse`` in tusd)."""

    status_code: int | None = None
    body: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class FileInfoChanges:
    """``ChangeFileInfo`` of a pre-create answer; ``None`` means "leave as is".

    ``metadata`` and ``storage``, when given, replace the whole mapping (an empty
    mapping clears it), as in tusd.
    """

    id: str | None = None
    metadata: dict[str, str] | None = None
    storage: dict[str, str] | None = None


@dataclass
class HookResponse:
    http_response: HTTPResponse | None = None
    reject_upload: bool = False
    reject_termination: bool = False
    #: Answer of our ``pre-access`` hook: refuse the request.
    reject_access: bool = False
    stop_upload: bool = False
    change_file_info: FileInfoChanges | None = None


# tusd's validateUploadId: no leading or trailing slash, and only these characters.
_VALID_ID = re.compile(r"[A-Za-z0-9\-._~%!$'()*+,;=/:@]*")


def validate_upload_id(new_id: str) -> None:
    """Raise :class:`HookError` for an ID tusd would refuse in ``ChangeFileInfo``."""
    if new_id.startswith("/") or new_id.endswith("/"):
        raise HookError(
            f"validation error in FileInfoChanges: ID must not begin or end with '/': {new_id!r}"
        )
    if not _VALID_ID.fullmatch(new_id):
        raise HookError(
            "validation error in FileInfoChanges: ID must only contain characters "
            f"A-Z a-z 0-9 - . _ ~ % ! $ ' ( ) * + , ; = / : @: {new_id!r}"
        )


def _fields(obj: Any, where: str) -> dict[str, Any]:
    """An object's keys lower-cased (Go matches struct fields case-insensitively).

    ``null`` for a struct leaves it unset, as Go does.
    """
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise HookError(f"failed to parse hook response: {where} is not a JSON object")
    return {str(key).lower(): value for key, value in obj.items()}


def _bool(value: Any, where: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise HookError(f"failed to parse hook response: {where} is not a boolean")
    return value


def _string(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise HookError(f"failed to parse hook response: {where} is not a string")
    return value


def _string_map(value: Any, where: str) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise HookError(f"failed to parse hook response: {where} is not a JSON object")
    result: dict[str, str] = {}
    for key, item in value.items():
        text = _string(item, f"{where}.{key}")
        result[str(key)] = "" if text is None else text
    return result


def parse_response(raw: bytes | str | dict[str, Any]) -> HookResponse:
    """Decode a hook's answer as Go's ``encoding/json`` would decode tusd's struct.

    Keys match case-insensitively at every level, unknown keys are ignored, an
    empty document is an empty response.  Invalid JSON, a wrong type or an
    invalid ``ChangeFileInfo.ID`` raise :class:`HookError`.
    """
    data: Any
    if isinstance(raw, dict):
        data = raw
    else:
        text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
        if not text.strip():
            return HookResponse()
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise HookError(f"failed to parse hook response: {exc}") from None
    top = _fields(data, "response")
    result = HookResponse(
        reject_upload=_bool(top.get("rejectupload"), "RejectUpload"),
        reject_termination=_bool(top.get("rejecttermination"), "RejectTermination"),
        reject_access=_bool(top.get("rejectaccess"), "RejectAccess"),
        stop_upload=_bool(top.get("stopupload"), "StopUpload"),
    )
    if top.get("httpresponse") is not None:
        http = _fields(top["httpresponse"], "HTTPResponse")
        status = http.get("statuscode")
        if status is not None and (isinstance(status, bool) or not isinstance(status, int)):
            raise HookError("failed to parse hook response: HTTPResponse.StatusCode is not an int")
        if status and not 200 <= status <= 599:
            raise HookError(
                f"hook response HTTPResponse.StatusCode {status} is not a final status (200-599)"
            )
        result.http_response = HTTPResponse(
            status_code=status or None,
            body=_string(http.get("body"), "HTTPResponse.Body"),
            headers=_string_map(http.get("header"), "HTTPResponse.Header") or {},
        )
    if top.get("changefileinfo") is not None:
        changes = _fields(top["changefileinfo"], "ChangeFileInfo")
        new_id = _string(changes.get("id"), "ChangeFileInfo.ID") or None
        if new_id is not None:
            validate_upload_id(new_id)
        result.change_file_info = FileInfoChanges(
            id=new_id,
            metadata=_string_map(changes.get("metadata"), "ChangeFileInfo.MetaData"),
            storage=_string_map(changes.get("storage"), "ChangeFileInfo.Storage"),
        )
    return result


# --- merging -----------------------------------------------------------------------


def _merge_headers(
    base: Iterable[tuple[str, str]], override: Mapping[str, str]
) -> list[tuple[str, str]]:
    replaced = {name.lower() for name in override}
    merged = [(name, value) for name, value in base if name.lower() not in replaced]
    merged.extend(override.items())
    return merged


def merge_http_response(
    base_status: int,
    base_headers: Mapping[str, str] | Iterable[tuple[str, str]],
    hook_resp: HTTPResponse | HookResponse | None,
    *,
    base_body: bytes = b"",
) -> tuple[int, list[tuple[str, str]], bytes]:
    """Apply a hook's ``HTTPResponse`` to a response, as tusd's ``MergeWith``.

    A non-zero hook status replaces ``base_status``, a non-empty hook body
    replaces ``base_body``, and each hook header replaces the base header of the
    same name (compared case-insensitively) or is added.  Returns
    ``(status, headers, body)``.
    """
    items = list(base_headers.items() if isinstance(base_headers, Mapping) else base_headers)
    http = hook_resp.http_response if isinstance(hook_resp, HookResponse) else hook_resp
    if http is None:
        return base_status, items, base_body
    status = http.status_code or base_status
    body = http.body.encode("utf-8") if http.body else base_body
    return status, _merge_headers(items, http.headers), body


def merge_responses(first: HookResponse, second: HookResponse) -> HookResponse:
    """Combine the answers of two backends for one event; ``second`` came later.

    Any reject or stop wins; later ``HTTPResponse`` fields override earlier ones
    (non-zero status, non-empty body, headers by name); ``ChangeFileInfo`` is
    merged field by field, a later non-``None`` field winning.
    """
    http: HTTPResponse | None
    if first.http_response is None or second.http_response is None:
        http = second.http_response or first.http_response
    else:
        a, b = first.http_response, second.http_response
        headers = dict(_merge_headers(a.headers.items(), b.headers))
        http = HTTPResponse(
            status_code=b.status_code or a.status_code,
            body=b.body if b.body else a.body,
            headers=headers,
        )
    changes: FileInfoChanges | None
    if first.change_file_info is None or second.change_file_info is None:
        changes = second.change_file_info or first.change_file_info
    else:
        c1, c2 = first.change_file_info, second.change_file_info
        changes = FileInfoChanges(
            id=c2.id if c2.id is not None else c1.id,
            metadata=c2.metadata if c2.metadata is not None else c1.metadata,
            storage=c2.storage if c2.storage is not None else c1.storage,
        )
    return HookResponse(
        http_response=http,
        reject_upload=first.reject_upload or second.reject_upload,
        reject_termination=first.reject_termination or second.reject_termination,
        reject_access=first.reject_access or second.reject_access,
        stop_upload=first.stop_upload or second.stop_upload,
        change_file_info=changes,
    )
