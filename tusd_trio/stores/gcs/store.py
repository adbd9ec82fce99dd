"""The GCS store: the Store protocol over :class:`~.adapter.GCSAdapter` (see the
package docstring for the layout)."""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from functools import partial

import trio

from ...protocol.errors import StoreError, UploadNotFoundError
from ...protocol.info import UploadInfo
from .._sdk_calls import BackgroundCall
from ..config import GCS_CAPABILITIES, GCSConfig, MiB
from .adapter import STORE_NAME, GCSAdapter
from .layout import ID_ENDING_IN_INDEX, STAGE_MARK, StoredObject, UploadLayout, read_pieces
from .session import ALIGN
from .writer import ChunkObjectWriter

log = logging.getLogger("tusd_trio.gcsstore")

#: GCS composes at most this many sources in one request.
MAX_COMPOSE_SOURCES = 32
#: Requests at once when composing groups, deleting or reading partials.
_PARALLEL = 16


class GCSStore(GCSAdapter):
    name = STORE_NAME
    # Everything, also GET of an unfinished upload (its chunk objects, in order).
    capabilities = GCS_CAPABILITIES

    def __init__(self, config: GCSConfig, *, piece_size: int = 4 * MiB) -> None:
        if piece_size < ALIGN or piece_size % ALIGN:
            raise ValueError(f"piece_size must be a positive multiple of {ALIGN}")
        self.piece_size = piece_size
        super().__init__(config)

    async def _delete_many(self, names: list[str]) -> None:
        if names:
            calls = [partial(self._delete_quietly, name) for name in names]
            await self.sdk.gather("delete", calls, limit=_PARALLEL)

    # --- the Store protocol ------------------------------------------------------------------

    async def create(self, info: UploadInfo) -> UploadInfo:
        last = info.id.rsplit("/", 1)[-1]
        if ID_ENDING_IN_INDEX.search(last):
            # <a>_<n> would be read as chunk n of upload <a>.
            raise StoreError("upload IDs ending in _<number> cannot be stored in GCS")
        storage_info = {"Type": self.name, "Bucket": self.bucket_name, "Key": self.key(info.id)}
        stored = replace(info, offset=0, storage=storage_info)
        await self.sdk.run("creation of the upload", partial(self._write_info, stored, new=True))
        return stored

    async def get(self, upload_id: str) -> UploadInfo:
        read_info: Callable[[], object] = partial(self._read_info, upload_id)
        scan: Callable[[], object] = partial(self._scan, upload_id)
        found = await self.sdk.gather("reading the upload", [read_info, scan])
        info_and_object, layout = found
        assert isinstance(info_and_object, tuple) and isinstance(layout, UploadLayout)
        info: UploadInfo = info_and_object[0]
        info_obj: StoredObject = info_and_object[1]
        data = layout.data
        modified = max([info_obj.updated, *(obj.updated for obj in data)])
        created = info.created or info_obj.updated
        return replace(info, offset=layout.offset, modified=modified, created=created)

    async def open_writer(self, info: UploadInfo, *, staged: bool) -> ChunkObjectWriter:
        layout = await self.sdk.run("opening the upload", self._scan, info.id)
        if layout.info is None:
            raise UploadNotFoundError()
        if staged:
            target = f"{self.staging_prefix}{info.id}{STAGE_MARK}{secrets.token_hex(16)}"
        else:
            target = self.chunk_name(info.id, layout.next_chunk)
        return ChunkObjectWriter(self, info.id, target, staged, piece_size=self.piece_size)

    async def declare_length(self, info: UploadInfo, length: int) -> UploadInfo:
        await self.sdk.run("declaring the length", self._write_size, info.id, length)
        return replace(info, size=length, size_is_deferred=False)

    async def finish(self, info: UploadInfo) -> None:
        layout = await self.sdk.run("finishing the upload", self._scan, info.id)
        if layout.info is None:
            raise UploadNotFoundError()
        key = self.key(info.id)
        if layout.final is None:
            sources = [obj for _, obj in layout.chunks]
            await self._build(key, sources, info.metadata)
        # The chunks (and compose leftovers) go only once the final object exists.
        leftovers = [obj.name for _, obj in layout.chunks] + [obj.name for obj in layout.temps]
        await self._delete_many(leftovers)

    async def _build(
        self, key: str, sources: list[StoredObject], metadata: dict[str, str]
    ) -> StoredObject:
        """Make ``key`` the concatenation of ``sources`` (compose tree), metadata set."""
        if not sources:
            return await self.sdk.run("finishing the upload", self._put_empty, key, metadata)
        level = 0
        current = sources
        temps: list[str] = []
        try:
            while len(current) > MAX_COMPOSE_SOURCES:
                groups = [
                    current[start : start + MAX_COMPOSE_SOURCES]
                    for start in range(0, len(current), MAX_COMPOSE_SOURCES)
                ]
                names = [f"{key}_tmp_{level}_{index}" for index in range(len(groups))]
                temps.extend(names)
                composes = [
                    partial(self._compose, name, group, None)
                    for name, group in zip(names, groups, strict=True)
                ]
                current = await self.sdk.gather("composing the upload", composes, limit=_PARALLEL)
                level += 1
            return await self.sdk.run("composing the upload", self._compose, key, current, metadata)
        finally:
            with trio.CancelScope(shield=True):
                await self._delete_many(temps)

    async def terminate(self, info: UploadInfo) -> None:
        upload_id = info.id
        scan: Callable[[], object] = partial(self._scan, upload_id)
        staged_names: Callable[[], object] = partial(self._staged_names, upload_id)
        layout, staged = await self.sdk.gather("removing the upload", [scan, staged_names])
        assert isinstance(layout, UploadLayout) and isinstance(staged, list)
        names = [obj.name for _, obj in layout.chunks] + [obj.name for obj in layout.temps]
        names += staged
        if layout.final is not None:
            names.append(layout.final.name)
        await self._delete_many(names)
        # The .info goes last: an interrupted terminate can be repeated.
        await self.sdk.run("removing the upload", self._delete_quietly, self.info_name(upload_id))

    async def concat(self, info: UploadInfo, partials: list[UploadInfo]) -> UploadInfo:
        scans = [partial(self._scan, partial_info.id) for partial_info in partials]
        layouts = await self.sdk.gather("reading a partial upload", scans, limit=_PARALLEL)
        sources: list[StoredObject] = []
        for layout in layouts:
            if layout.info is None:
                raise UploadNotFoundError()
            sources.extend(obj for obj in layout.data if obj.size)
        final = await self._build(self.key(info.id), sources, info.metadata)
        total = final.size
        if info.size_is_deferred or info.size != total:
            await self.sdk.run("updating the final upload", self._write_size, info.id, total)
        return replace(info, size=total, size_is_deferred=False, offset=total)

    async def read(self, info: UploadInfo, start: int, end: int) -> AsyncIterator[bytes]:
        if end <= start:
            return
        segments = await self.sdk.run("reading the upload", self._segments, info.id)
        position = start
        resolved_again = False
        pieces = read_pieces(segments, position, end)
        current = next(pieces, None)
        download = self._start_download(current)
        while current is not None and download is not None:
            data = await download.result()
            if data is None:
                # finish() composed and deleted the chunks meanwhile: read the result.
                if resolved_again:
                    raise UploadNotFoundError()
                resolved_again = True
                log.debug("chunks of %s vanished mid-read; reading the final object", info.id)
                segments = await self.sdk.run("reading the upload", self._segments, info.id)
                pieces = read_pieces(segments, position, end)
                current = next(pieces, None)
                download = self._start_download(current)
                continue
            following = next(pieces, None)
            download = self._start_download(following)  # fetched while this piece is sent
            position += len(data)
            yield data
            current = following

    def _start_download(
        self, piece: tuple[StoredObject, int, int] | None
    ) -> BackgroundCall[bytes | None] | None:
        if piece is None:
            return None
        obj, first, last = piece
        return self.sdk.start("download", partial(self._download, obj, first, last))

    async def list_ids(self) -> list[str]:
        return await self.sdk.run("listing the uploads", self._list_ids)

    async def check_writable(self) -> None:
        await self.sdk.run(f"access to bucket {self.bucket_name}", self._check_bucket)

    async def aclose(self) -> None:
        await trio.to_thread.run_sync(self._close_clients)


__all__ = ["GCSStore"]
