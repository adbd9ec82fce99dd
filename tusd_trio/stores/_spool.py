"""The one spool of the object stores: staged (checksummed) chunks of S3 and Azure.

A staged chunk must not become part of the upload before its checksum is verified,
and neither S3 nor Azure can hold bytes aside and add them later without a copy.  So
the chunk waits here, the first MiB in memory and the rest in an anonymous temporary
file (memory per upload stays bounded whatever the chunk's size); ``commit`` then
streams it through an unstaged writer of the store, ``discard`` drops it.  (GCS
stages in the bucket instead, the file and memory stores next to the upload.)
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from typing import IO

import trio

from ..protocol.errors import StoreError, TusError
from ._sdk_calls import SDKCalls
from .base import ChunkWriter

#: Staged bytes kept in memory before they are spooled to a temporary file.
SPOOL_MEMORY = 1024 * 1024
#: Pieces read back from the file on commit.
_READ_PIECE = 1024 * 1024


class SpooledWriter:
    """A staged :class:`ChunkWriter` for a store without a staging area of its own.

    ``open_unstaged`` makes the store's unstaged writer that ``commit`` streams the
    chunk through; ``written`` is then that writer's count (the store's own rules
    decide what a failure in the middle keeps).  ``calls`` maps a failure of the
    temporary file to the store's error.
    """

    def __init__(
        self,
        open_unstaged: Callable[[], ChunkWriter],
        calls: SDKCalls,
        *,
        file_prefix: str,
        memory: int = SPOOL_MEMORY,
    ) -> None:
        self._open_unstaged = open_unstaged
        self._calls = calls
        self._file_prefix = file_prefix
        self._memory_limit = memory
        self._memory = bytearray()
        self._file: IO[bytes] | None = None
        self._count = 0
        self._written = 0
        self._settled = False
        self._failure: TusError | None = None

    @property
    def written(self) -> int:
        """Bytes taken while writing; after ``commit`` the bytes stored in the upload."""
        return self._written if self._settled else self._count

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._settled:
            raise StoreError("the writer is closed")
        if self._failure is not None:
            raise self._failure
        self._memory += data
        self._count += len(data)
        if len(self._memory) < self._memory_limit:
            await trio.lowlevel.checkpoint()
            return
        chunk, self._memory = bytes(self._memory), bytearray()
        try:
            await trio.to_thread.run_sync(self._spill, chunk)
        except OSError as exc:
            self._failure = self._calls.as_store_error(exc, "spooling the chunk")
            raise self._failure from None

    def _spill(self, chunk: bytes) -> None:
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix=self._file_prefix)  # noqa: SIM115
        self._file.write(chunk)

    def _read_back(self, file: IO[bytes]) -> bytes:
        return file.read(_READ_PIECE)

    async def _stream_into(self, unstaged: ChunkWriter) -> None:
        """The spooled chunk in order: the file's bytes, then what is in memory."""
        file = self._file
        if file is not None:
            await trio.to_thread.run_sync(file.seek, 0)
            while piece := await trio.to_thread.run_sync(self._read_back, file):
                await unstaged.write(piece)
        await unstaged.write(bytes(self._memory))

    async def commit(self) -> None:
        if self._settled:
            await trio.lowlevel.checkpoint()
            return
        if self._failure is not None:
            # The chunk is incomplete: nothing of it may be stored.
            self._count = 0
            await self._close()
            raise self._failure
        unstaged = self._open_unstaged()
        try:
            try:
                await self._stream_into(unstaged)
            except TusError:
                pass  # the unstaged writer keeps its failure; its commit reports it
            await unstaged.commit()
        finally:
            self._written = unstaged.written
            await self._close()

    async def discard(self) -> None:
        self._count = 0
        self._written = 0
        await self._close()

    async def _close(self) -> None:
        self._settled = True
        self._memory = bytearray()
        if self._file is not None:
            file, self._file = self._file, None
            await trio.to_thread.run_sync(file.close)
        else:
            await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        if not self._settled:
            self._written = 0
        await self._close()
