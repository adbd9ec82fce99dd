"""The S3 store's view of one upload: its IDs, its stored parts, and what a writer
needs to know before it appends (see the package docstring for the layout)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ...protocol.errors import UploadNotFoundError


def split_upload_id(upload_id: str) -> tuple[str, str]:
    """``(objectId, multipartUploadId)``; a missing half means no such upload."""
    object_id, plus, multipart_id = upload_id.rpartition("+")
    if not plus or not object_id or not multipart_id:
        raise UploadNotFoundError()
    return object_id, multipart_id


def timestamp(value: Any) -> float:
    """An SDK time (``LastModified``) as seconds since the epoch; 0 when absent."""
    return value.timestamp() if isinstance(value, datetime) else 0.0


@dataclass(frozen=True, slots=True)
class StoredPart:
    """One part of a multipart upload, as ListParts (or UploadPart) reports it."""

    number: int
    size: int
    etag: str
    modified: float


def contiguous(parts: list[StoredPart]) -> list[StoredPart]:
    """Parts 1, 2, ... up to the first gap (a failed part leaves later ones stale)."""
    result: list[StoredPart] = []
    for part in sorted(parts, key=lambda p: p.number):
        if part.number != len(result) + 1:
            break
        result.append(part)
    return result


@dataclass(slots=True)
class UploadState:
    """What a writer needs to know of an upload (from ListParts and HEAD .part)."""

    object_id: str
    multipart_id: str
    size: int | None
    done_bytes: int
    done_parts: int
    first_part_size: int
    pending: int  # size of the .part object
    #: The stored parts 1..done_parts with their ETags, when kept (for finish).
    parts: tuple[StoredPart, ...] | None = None

    @property
    def upload_id(self) -> str:
        return f"{self.object_id}+{self.multipart_id}"


def upload_state(
    object_id: str,
    multipart_id: str,
    size: int | None,
    stored: list[StoredPart],
    pending: int,
) -> UploadState:
    return UploadState(
        object_id=object_id,
        multipart_id=multipart_id,
        size=size,
        done_bytes=sum(p.size for p in stored),
        done_parts=len(stored),
        first_part_size=stored[0].size if stored else 0,
        pending=pending,
        parts=tuple(stored),
    )
