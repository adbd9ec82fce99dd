"""The upload's state, in tusd's ``.info`` JSON layout."""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidUploadIDError

#: Characters tusd allows in an upload ID (``validateUploadId``).
_ID_CHARS = re.compile(r"[A-Za-z0-9\-._~%!$'()*+,;=/:@]+")


def new_upload_id() -> str:
    """A random, unguessable ID: 32 lower-case hex characters (128 bits), like tusd."""
    return secrets.token_hex(16)


def check_upload_id(upload_id: str) -> str:
    """Validate an ID taken from a URL or a hook; raise 404 for an unsafe one.

    IDs may contain ``/`` (sub-directories), but no empty, ``.`` or ``..``
    segment, no leading or trailing ``/``, no backslash, NUL or control
    character, nothing outside tusd's allowed characters, no ``.info``, ``.lock``,
    ``.stop`` or ``.part`` suffix (those name our side files) and no more than
    1,024 characters (200 between two slashes).
    """
    if not upload_id or len(upload_id) > 1024 or not _ID_CHARS.fullmatch(upload_id):
        raise InvalidUploadIDError()
    for segment in upload_id.split("/"):
        if segment in ("", ".", "..") or segment.endswith(SIDE_FILE_SUFFIXES):
            raise InvalidUploadIDError()
        if len(segment) > MAX_SEGMENT_LENGTH:
            raise InvalidUploadIDError()  # the file system could not name it
        if "%" in segment and _looks_encoded(segment):
            raise InvalidUploadIDError()
    return upload_id


#: ``json.dumps(..., separators=(",", ":"))`` without a new encoder per call (dumps makes
#: one whenever an option is not the default); the output is the same.
_INFO_ENCODER = json.JSONEncoder(separators=(",", ":"))

SIDE_FILE_SUFFIXES = (".info", ".lock", ".stop", ".part", ".tmp")
#: Longest part of an ID between slashes: file names are limited to 255 bytes and
#: side files add suffixes such as ``.lock.<pid>.<n>.tmp``.
MAX_SEGMENT_LENGTH = 200


def _looks_encoded(segment: str) -> bool:
    # A percent-encoded dot, slash, backslash or NUL could turn into a path
    # trick further down the line (for example in a proxy); refuse them outright.
    lowered = segment.lower()
    return any(code in lowered for code in ("%2e", "%2f", "%5c", "%00"))


@dataclass(frozen=True, slots=True)
class UploadInfo:
    """What is known about one upload.  Field names follow tusd's FileInfo."""

    id: str
    size: int = 0
    size_is_deferred: bool = False
    offset: int = 0
    metadata: dict[str, str] = field(default_factory=dict)
    is_partial: bool = False
    is_final: bool = False
    partial_uploads: tuple[str, ...] | None = None
    storage: dict[str, str] | None = None
    #: Unix time of the last change to the upload's data (for expiry); not in tusd.
    modified: float = 0.0
    #: Unix time the upload was created; stored as an extra field tusd ignores.
    created: float = 0.0

    @property
    def is_complete(self) -> bool:
        return not self.size_is_deferred and self.offset >= self.size

    def with_offset(self, offset: int) -> UploadInfo:
        return self.with_changes(offset=offset)

    def with_changes(
        self,
        *,
        id: str | None = None,
        offset: int | None = None,
        metadata: dict[str, str] | None = None,
        storage: dict[str, str] | None = None,
        modified: float | None = None,
    ) -> UploadInfo:
        """A copy with the fields a request changes (``None``: kept).

        ``dataclasses.replace`` walks ``fields()`` and builds keyword arguments on
        every call, 2.5 times the cost of this positional call to the constructor;
        a request makes two to six copies.  Every field is passed here, in order
        (a test compares the result with ``replace`` field by field).
        """
        return UploadInfo(
            self.id if id is None else id,
            self.size,
            self.size_is_deferred,
            self.offset if offset is None else offset,
            self.metadata if metadata is None else metadata,
            self.is_partial,
            self.is_final,
            self.partial_uploads,
            self.storage if storage is None else storage,
            self.modified if modified is None else modified,
            self.created,
        )

    def to_json_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "ID": self.id,
            "Size": self.size,
            "SizeIsDeferred": self.size_is_deferred,
            "Offset": self.offset,
            "MetaData": dict(self.metadata),
            "IsPartial": self.is_partial,
            "IsFinal": self.is_final,
            "PartialUploads": list(self.partial_uploads)
            if self.partial_uploads is not None
            else None,
            "Storage": dict(self.storage) if self.storage is not None else None,
        }
        if self.created:
            data["CreatedAt"] = self.created
        return data

    def to_json(self) -> bytes:
        return _INFO_ENCODER.encode(self.to_json_dict()).encode("utf-8")

    @classmethod
    def from_json(cls, raw: bytes | str) -> UploadInfo:
        """Read an ``.info`` document written by tusd-trio or by tusd.

        Keys are matched case-insensitively, as Go's ``encoding/json`` does.
        Raises ``ValueError`` for a document that is not a valid info.
        """
        try:
            data = json.loads(raw)
        except RecursionError:
            raise ValueError("info is nested too deeply") from None
        if not isinstance(data, dict):
            raise ValueError("info is not a JSON object")
        lowered = {str(key).lower(): value for key, value in data.items()}

        def get(name: str, default: Any = None) -> Any:
            return lowered.get(name.lower(), default)

        upload_id = get("ID")
        if not isinstance(upload_id, str) or not upload_id:
            raise ValueError("info has no ID")
        size = _as_int(get("Size", 0))
        offset = _as_int(get("Offset", 0))
        metadata_raw = get("MetaData") or {}
        if not isinstance(metadata_raw, dict):
            raise ValueError("MetaData is not an object")
        metadata = {str(k): str(v) for k, v in metadata_raw.items()}
        partials_raw = get("PartialUploads")
        partials: tuple[str, ...] | None
        if partials_raw is None:
            partials = None
        elif isinstance(partials_raw, list):
            partials = tuple(str(p) for p in partials_raw)
        else:
            raise ValueError("PartialUploads is not a list")
        storage_raw = get("Storage")
        storage = (
            {str(k): str(v) for k, v in storage_raw.items()}
            if isinstance(storage_raw, dict)
            else None
        )
        created = get("CreatedAt", 0.0)
        return cls(
            id=upload_id,
            size=size,
            size_is_deferred=bool(get("SizeIsDeferred", False)),
            offset=offset,
            metadata=metadata,
            is_partial=bool(get("IsPartial", False)),
            is_final=bool(get("IsFinal", False)),
            partial_uploads=partials,
            storage=storage,
            created=_as_time(created),
        )


def _as_time(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    try:
        number = float(value)
    except OverflowError:
        return 0.0
    return number if 0.0 <= number < 1e12 else 0.0


def _as_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("expected an integer")
    if value < 0:
        raise ValueError("expected a non-negative integer")
    return value
