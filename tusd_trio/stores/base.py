"""The capability protocols every store implements."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from ..protocol.config import StoreCapabilities
from ..protocol.info import UploadInfo


class ChunkWriter(Protocol):
    """Appends one request's body to an upload.

    ``write`` appends at once (unstaged) or into a staging area (staged, used
    when a checksum must be verified first).  ``commit`` makes the bytes part of
    the upload (and durable when the store is configured so); ``discard`` drops
    everything this writer wrote.  Whatever was written before an error stays
    written unless ``discard`` is called.
    """

    @property
    def written(self) -> int: ...

    async def write(self, data: bytes) -> None: ...

    async def commit(self) -> None: ...

    async def discard(self) -> None: ...

    async def aclose(self) -> None: ...


class Store(Protocol):
    """A place to keep uploads: the data and the info document."""

    name: str
    capabilities: StoreCapabilities

    async def create(self, info: UploadInfo) -> UploadInfo:
        """Create a new, empty upload.  ``info.id`` must be set."""
        ...

    async def get(self, upload_id: str) -> UploadInfo:
        """The stored info with the real offset; raises ``UploadNotFoundError``."""
        ...

    async def open_writer(self, info: UploadInfo, *, staged: bool) -> ChunkWriter: ...

    async def declare_length(self, info: UploadInfo, length: int) -> UploadInfo: ...

    async def finish(self, info: UploadInfo) -> None: ...

    async def terminate(self, info: UploadInfo) -> None: ...

    async def concat(self, info: UploadInfo, partials: list[UploadInfo]) -> UploadInfo:
        """Fill a final upload with the data of its (finished) partials, in order."""
        ...

    def read(self, info: UploadInfo, start: int, end: int) -> AsyncIterator[bytes]:
        """Yield the upload's bytes in ``[start, end)``."""
        ...

    async def list_ids(self) -> list[str]:
        """Every upload ID in the store (for the janitor and start-up checks)."""
        ...

    async def check_writable(self) -> None:
        """Raise if the store cannot accept a write right now (health checks)."""
        ...

    async def aclose(self) -> None: ...
