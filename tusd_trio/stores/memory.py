"""An in-memory store, for tests and embedding.  Nothing survives the process."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import replace

import trio

from ..protocol.core import StoreCapabilities
from ..protocol.errors import UploadNotFoundError
from ..protocol.info import UploadInfo


class _Entry:
    __slots__ = ("data", "info")

    def __init__(self, info: UploadInfo) -> None:
        self.info = info
        self.data = bytearray()


class _MemoryWriter:
    #: Every write() reaches the upload at once (no buffer to drop on lease loss).
    durable_on_write = True

    def __init__(self, entry: _Entry, staged: bool) -> None:
        self._entry = entry
        self._staged = staged
        self._stage = bytearray()
        self._start = len(entry.data)
        self._written = 0

    @property
    def written(self) -> int:
        return self._written

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._staged:
            self._stage += data
        else:
            self._entry.data += data
            self._entry.info = replace(self._entry.info, modified=time.time())
        self._written += len(data)

    async def commit(self) -> None:
        if self._staged and self._stage:
            self._entry.data += self._stage
            self._entry.info = replace(self._entry.info, modified=time.time())
            self._stage = bytearray()
        await trio.lowlevel.checkpoint()

    async def discard(self) -> None:
        if self._staged:
            self._stage = bytearray()
        else:
            del self._entry.data[self._start :]
        self._written = 0
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        self._stage = bytearray()
        await trio.lowlevel.checkpoint()


class MemoryStore:
    name = "memorystore"
    capabilities = StoreCapabilities()

    def __init__(self) -> None:
        self._uploads: dict[str, _Entry] = {}

    def _entry(self, upload_id: str) -> _Entry:
        try:
            return self._uploads[upload_id]
        except KeyError:
            raise UploadNotFoundError() from None

    async def create(self, info: UploadInfo) -> UploadInfo:
        await trio.lowlevel.checkpoint()
        stored = replace(info, offset=0, storage={"Type": self.name})
        self._uploads[info.id] = _Entry(stored)
        return stored

    async def get(self, upload_id: str) -> UploadInfo:
        await trio.lowlevel.checkpoint()
        entry = self._entry(upload_id)
        return replace(entry.info, offset=len(entry.data))

    async def open_writer(self, info: UploadInfo, *, staged: bool) -> _MemoryWriter:
        await trio.lowlevel.checkpoint()
        return _MemoryWriter(self._entry(info.id), staged)

    async def declare_length(self, info: UploadInfo, length: int) -> UploadInfo:
        await trio.lowlevel.checkpoint()
        entry = self._entry(info.id)
        entry.info = replace(entry.info, size=length, size_is_deferred=False)
        return replace(entry.info, offset=len(entry.data))

    async def finish(self, info: UploadInfo) -> None:
        await trio.lowlevel.checkpoint()

    async def terminate(self, info: UploadInfo) -> None:
        await trio.lowlevel.checkpoint()
        self._uploads.pop(info.id, None)

    async def concat(self, info: UploadInfo, partials: list[UploadInfo]) -> UploadInfo:
        await trio.lowlevel.checkpoint()
        entry = self._entry(info.id)
        data = bytearray()
        for partial in partials:
            data += self._entry(partial.id).data[: partial.size]
        entry.data = data
        entry.info = replace(entry.info, size=len(data), size_is_deferred=False)
        return replace(entry.info, offset=len(data))

    async def read(self, info: UploadInfo, start: int, end: int) -> AsyncIterator[bytes]:
        data = self._entry(info.id).data
        position = start
        while position < end:
            step = min(end, position + 256 * 1024)
            yield bytes(data[position:step])
            position = step
            await trio.lowlevel.checkpoint()

    async def list_ids(self) -> list[str]:
        await trio.lowlevel.checkpoint()
        return list(self._uploads)

    async def check_writable(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()
