"""The protocols of the stores: what every store and writer implements (``Store``,
``ChunkWriter``), and the optional capabilities some have, declared here so that the
server finds them with ``isinstance`` (they are ``runtime_checkable``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

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

    # ``data`` may be a view of a buffer the HTTP layer reuses: a writer that keeps
    # bytes beyond the call copies them.
    async def write(self, data: bytes | bytearray | memoryview) -> None: ...

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


# --- optional capabilities -------------------------------------------------------------


@runtime_checkable
class InlineWriter(Protocol):
    """A writer that appends without waiting (the file store writes to the page
    cache): the handler calls ``write_nowait`` straight from the body pump, which
    saves a task switch per body chunk.  The handler looks for the method itself
    (``getattr``): an ``isinstance`` against this protocol costs 30 us per body."""

    def write_nowait(self, data: bytes | bytearray | memoryview) -> None: ...


@runtime_checkable
class DurableOnWrite(Protocol):
    """A writer whose every ``write`` reaches the upload at once, nothing held back.

    When a lock is lost mid-body the handler keeps what such a writer wrote (it is
    the upload's already) instead of discarding it.
    """

    durable_on_write: bool


@runtime_checkable
class ConsistencyCheckingStore(Protocol):
    """A store that can repair what an earlier crash left behind (interrupted
    creations, stray side files); the server runs the check once at start-up."""

    async def check_consistency(self, older_than: float = 60.0) -> list[str]:
        """Repair leftovers older than ``older_than`` seconds; a line per repair."""
        ...
