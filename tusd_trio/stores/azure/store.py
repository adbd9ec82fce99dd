"""The Azure store: the Store protocol over :class:`~.adapter.AzureAdapter` (see the
package docstring for the layout)."""

from __future__ import annotations

import datetime
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING

import trio

from ...protocol.errors import MaxSizeExceededError, StoreError, TusError
from ...protocol.info import UploadInfo
from .._spool import SpooledWriter
from ..config import AZURE_CAPABILITIES, AzureConfig, MiB
from .adapter import STORE_NAME, AzureAdapter
from .blocks import (
    DATA_BLOCK_BUDGET,
    DEFAULT_BLOCK_SIZE,
    MAX_ADAPTIVE_BLOCK,
    MAX_BLOCKS,
    MAX_STAGE_BLOCK,
    SERVER_COPY_PIECE,
    BlockIndexHints,
    block_size_for,
    concat_piece_size,
)
from .writer import BlockWriter

if TYPE_CHECKING:
    from azure.storage.blob import BlobClient

log = logging.getLogger("tusd_trio.azurestore")

#: Download piece sizes: a small first piece for a quick first byte, then larger.
FIRST_READ_PIECE = 1 * MiB
READ_PIECE = 4 * MiB
#: Blocks copied at once when building a concatenated blob.
CONCAT_PARALLEL = 4


class AzureStore(AzureAdapter):
    """Uploads in an Azure Blob Storage container, in tusd's azurestore layout."""

    name = STORE_NAME
    # Everything but GET of an unfinished upload (uncommitted blocks cannot be read).
    capabilities = AZURE_CAPABILITIES

    def __init__(
        self,
        config: AzureConfig,
        *,
        block_size: int = DEFAULT_BLOCK_SIZE,
        max_blocks_in_flight: int = 2,
    ) -> None:
        if not 1 <= block_size <= MAX_STAGE_BLOCK:
            raise ValueError("block_size must be between 1 byte and 4000 MiB")
        if max_blocks_in_flight < 1:
            raise ValueError("max_blocks_in_flight must be at least 1")
        super().__init__(config)
        self.block_size = block_size
        self.max_blocks_in_flight = max_blocks_in_flight
        self.max_block_size = max(block_size, MAX_ADAPTIVE_BLOCK)
        self.max_upload_size = DATA_BLOCK_BUDGET * self.max_block_size
        self._container_ready = False
        self._container_lock = trio.Lock()
        self._hints = BlockIndexHints()
        #: Put Block From URL works (cleared after the first failure, e.g. Azurite).
        self._server_copy = bool(config.key)

    # --- helpers ---------------------------------------------------------------------

    def block_size_for(self, info: UploadInfo) -> int:
        """The block size for an upload: the default, larger when the known size
        would need more than 45,000 blocks (whole MiB, at most 100 MiB)."""
        size = None if info.size_is_deferred else info.size
        return block_size_for(size, self.block_size, self.max_block_size)

    def _check_size(self, size: int) -> None:
        if size > self.max_upload_size:
            raise MaxSizeExceededError(
                f"upload size {size} exceeds the Azure store's maximum of "
                f"{self.max_upload_size} bytes"
            )

    async def _ensure_container(self) -> None:
        if self._container_ready:
            return
        async with self._container_lock:
            if not self._container_ready:
                await self.sdk.run("creating the container", self._create_container_sync)
                self._container_ready = True

    # --- the Store protocol ------------------------------------------------------

    async def create(self, info: UploadInfo) -> UploadInfo:
        if not info.size_is_deferred:
            self._check_size(info.size)
        await self._ensure_container()
        storage = {
            "Type": self.name,
            "Container": self.config.container,
            "Key": self.data_key(info.id),
        }
        stored = replace(info, offset=0, storage=storage)
        await self.sdk.run("creating the upload", self._create_sync, stored)
        self._hints.remember(stored.id, 0, 0)
        return stored

    async def get(self, upload_id: str) -> UploadInfo:
        await self._ensure_container()
        info, next_index = await self.sdk.run("reading the upload", self._get_sync, upload_id)
        self._hints.remember(upload_id, info.offset, next_index)
        return info

    async def open_writer(self, info: UploadInfo, *, staged: bool) -> BlockWriter | SpooledWriter:
        await self._ensure_container()
        hinted = self._hints.next_index(info.id, info.offset)
        if hinted is not None:
            next_index = hinted
            await trio.lowlevel.checkpoint()
        else:
            fresh, next_index = await self.sdk.run("reading the upload", self._get_sync, info.id)
            self._hints.remember(info.id, fresh.offset, next_index)
        blob = self.blob(self.data_key(info.id))
        open_blocks = partial(
            BlockWriter,
            self,
            info,
            blob,
            next_index,
            self.block_size_for(info),
            in_flight=self.max_blocks_in_flight,
            hints=self._hints,
        )
        if staged:
            return SpooledWriter(open_blocks, self.sdk, file_prefix="tusd-trio-az-")
        return open_blocks()

    async def declare_length(self, info: UploadInfo, length: int) -> UploadInfo:
        self._check_size(length)
        await self._ensure_container()
        await self.sdk.run("declaring the length", self._declare_sync, info.id, length)
        return replace(info, size=length, size_is_deferred=False)

    async def finish(self, info: UploadInfo) -> None:
        await self._ensure_container()
        await self.sdk.run("finishing the upload", self._finish_sync, info.id)
        self._hints.forget(info.id)

    async def terminate(self, info: UploadInfo) -> None:
        await self._ensure_container()
        self._hints.forget(info.id)
        await self.sdk.run("terminating the upload", self._terminate_sync, info.id)

    # --- concatenation -------------------------------------------------------------

    async def concat(self, info: UploadInfo, partials: list[UploadInfo]) -> UploadInfo:
        await self._ensure_container()
        await self.sdk.run("reading the partial uploads", self._check_partials_sync, info, partials)
        total = sum(p.size for p in partials)
        if total > self.max_upload_size:
            raise StoreError(
                f"concatenating: {total} bytes exceed the Azure store's maximum of "
                f"{self.max_upload_size} bytes"
            )
        target = self.blob(self.data_key(info.id))
        count = 0
        if self._server_copy:
            try:
                count = await self._copy_pieces(target, partials, total, server_side=True)
            except TusError as exc:
                log.warning(
                    "Put Block From URL failed (%s); concatenating through this server instead",
                    exc.message,
                )
                self._server_copy = False
        if not self._server_copy:
            count = await self._copy_pieces(target, partials, total, server_side=False)
        await self.sdk.run("concatenating", self._finish_concat_sync, info, target, count, total)
        self._hints.forget(info.id)
        return replace(info, size=total, size_is_deferred=False, offset=total)

    async def _copy_pieces(
        self, target: BlobClient, partials: list[UploadInfo], total: int, *, server_side: bool
    ) -> int:
        """Stage the partials' bytes as blocks 0..n-1 of ``target``; return n."""
        if server_side:
            piece = concat_piece_size(total, SERVER_COPY_PIECE, MAX_STAGE_BLOCK)
        else:
            piece = concat_piece_size(total, self.block_size, self.max_block_size)
        copy = self._copy_url_sync if server_side else self._copy_through_sync
        expiry = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=6)
        copies: list[Callable[[], None]] = []
        for partial_info in partials:
            key = self.data_key(partial_info.id)
            for start in range(0, partial_info.size, piece):
                length = min(piece, partial_info.size - start)
                copies.append(partial(copy, target, len(copies), key, start, length, expiry))
        if len(copies) > MAX_BLOCKS:
            raise StoreError(f"concatenating: more than {MAX_BLOCKS} blocks needed")
        if copies:
            # The first block alone: a failure (e.g. no Put Block From URL) shows at once.
            await self.sdk.run("concatenating", copies[0])
        await self.sdk.gather("concatenating", copies[1:], limit=CONCAT_PARALLEL)
        return len(copies)

    # --- reading, listing, health -----------------------------------------------------

    async def read(self, info: UploadInfo, start: int, end: int) -> AsyncIterator[bytes]:
        """The bytes in ``[start, end)`` of a finished upload, in ranged downloads."""
        blob = self.blob(self.data_key(info.id))
        position = start
        piece = FIRST_READ_PIECE
        if position >= end:
            await trio.lowlevel.checkpoint()
            return
        await self._ensure_container()
        while position < end:
            length = min(piece, end - position)
            data = await self.sdk.run("reading", self._download_sync, blob, position, length)
            if not data:
                raise StoreError("reading: the blob is shorter than the upload")
            yield data
            position += len(data)
            piece = READ_PIECE

    async def list_ids(self) -> list[str]:
        await self._ensure_container()
        return await self.sdk.run("listing the uploads", self._list_sync)

    async def check_writable(self) -> None:
        await self._ensure_container()
        await self.sdk.run("checking the container", self._check_container_sync)

    async def aclose(self) -> None:
        self._hints.clear()
        await trio.to_thread.run_sync(self._close_sync)
