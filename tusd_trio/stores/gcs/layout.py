"""The GCS store's view of one upload: the objects that hold it (see the package
docstring for their names) and what is known of each."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..config import MiB
from .crc import decode_crc32c

STAGING_DIR = ".tusd-trio-staging/"
STAGE_MARK = ".stage-"
CHUNK_INDEX = re.compile(r"[0-9]+")
TEMP_SUFFIX = re.compile(r"tmp_[0-9]+_[0-9]+")
#: <a>_<n> would be read as chunk n of upload <a>.
ID_ENDING_IN_INDEX = re.compile(r"_[0-9]+$")
_MIME = re.compile(r"[A-Za-z0-9][\w.+-]*/[\w.+-]+")
#: Bytes fetched per ranged download while reading.
READ_PIECE = 2 * MiB


@dataclass(frozen=True, slots=True)
class StoredObject:
    """One object as listed: enough to compose, check and read it."""

    name: str
    size: int
    crc: int | None
    generation: int | None
    updated: float


@dataclass(slots=True)
class UploadLayout:
    """Every object of one upload, from one listing of ``<key>*``."""

    info: StoredObject | None
    final: StoredObject | None
    chunks: list[tuple[int, StoredObject]]
    temps: list[StoredObject]

    @property
    def data(self) -> list[StoredObject]:
        """The objects holding the bytes, in order."""
        if self.final is not None:
            return [self.final]
        return [obj for _, obj in self.chunks]

    @property
    def offset(self) -> int:
        return sum(obj.size for obj in self.data)

    @property
    def next_chunk(self) -> int:
        """The index of the chunk object the next PATCH writes."""
        return self.chunks[-1][0] + 1 if self.chunks else 0


def object_from_blob(blob: Any) -> StoredObject:
    updated = blob.updated
    return StoredObject(
        name=blob.name,
        size=int(blob.size or 0),
        crc=decode_crc32c(blob.crc32c),
        generation=int(blob.generation) if blob.generation is not None else None,
        updated=updated.timestamp() if updated is not None else 0.0,
    )


def object_from_resource(resource: dict[str, Any]) -> StoredObject:
    return StoredObject(
        name=str(resource.get("name", "")),
        size=int(resource.get("size", 0)),
        crc=decode_crc32c(resource.get("crc32c")),
        generation=int(resource["generation"]) if resource.get("generation") else None,
        updated=time.time(),
    )


def content_type(metadata: dict[str, str]) -> str:
    """The final object's Content-Type: the upload's ``filetype`` when it is one."""
    filetype = metadata.get("filetype", "")
    return filetype if _MIME.fullmatch(filetype) else "application/octet-stream"


def read_pieces(
    segments: list[StoredObject], start: int, end: int
) -> Iterator[tuple[StoredObject, int, int]]:
    """The ranged downloads that read ``[start, end)`` of the concatenated segments."""
    base = 0
    for obj in segments:
        low = max(start, base)
        high = min(end, base + obj.size)
        while low < high:
            step = min(high, low + READ_PIECE)
            yield obj, low - base, step - base
            low = step
        base += obj.size
        if base >= end:
            return
