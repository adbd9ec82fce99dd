"""The Azure store's writer: one request body appended to an upload as uncommitted
blocks (staged writes go through :class:`~tusd_trio.stores._spool.SpooledWriter`
first, then through this writer).

Full blocks go to the background uploader, at most ``max_blocks_in_flight`` at a
time; ``commit`` stages the partly filled last block.  ``written`` counts only the
staged prefix.  ``discard`` can drop only what is not staged yet (the handler
discards staged writers only).  A block that failed while a later one was staged is
staged once more, so the offset never counts bytes behind a hole.
"""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import TYPE_CHECKING

import trio

from ...protocol.errors import StoreError, TusError
from ...protocol.info import UploadInfo
from .._ordered_uploads import OrderedUploads
from .adapter import AzureAdapter
from .blocks import MAX_BLOCKS, BlockIndexHints

if TYPE_CHECKING:
    from azure.storage.blob import BlobClient

log = logging.getLogger("tusd_trio.azurestore")


class BlockWriter:
    """Appends one request's body to an upload as uncommitted blocks."""

    def __init__(
        self,
        store: AzureAdapter,
        info: UploadInfo,
        blob: BlobClient,
        next_index: int,
        block_size: int,
        *,
        in_flight: int,
        hints: BlockIndexHints,
    ) -> None:
        self._store = store
        self._hints = hints
        self._info = info
        self._blob = blob
        self._next_index = next_index
        self._block_size = block_size
        self._written = 0
        self._accepted = 0
        self._done = False
        self._block = bytearray()
        # A failed block does not stop the others: it is staged again in place
        # (fill_holes) when a later one was stored.
        self._uploads: OrderedUploads[int] = OrderedUploads(
            store.sdk,
            "staging a block",
            in_flight=in_flight,
            held=in_flight + 1,
            stop_on_failure=False,
        )

    @property
    def written(self) -> int:
        """Bytes taken so far while writing; after ``commit``/``discard``/``aclose``
        only the bytes that are staged in Azure."""
        return self._written if self._done else self._accepted

    # --- writing ------------------------------------------------------------------

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._done:
            raise StoreError("writing the upload: the writer is closed")
        await self._repair()
        if not data:
            await trio.lowlevel.checkpoint()
            return
        self._accepted += len(data)
        view = memoryview(data)
        size = self._block_size
        while view:
            room = size - len(self._block)
            self._block += view[:room]
            view = view[room:]
            if len(self._block) >= size:
                block, self._block = bytes(self._block), bytearray()
                await self._stage(block)
        await trio.lowlevel.checkpoint_if_cancelled()

    def _take_index(self) -> int:
        index = self._next_index
        if index >= MAX_BLOCKS:
            raise StoreError(
                f"writing the upload: it would need more than {MAX_BLOCKS} blocks "
                "(send larger PATCH requests)"
            )
        self._next_index += 1
        return index

    async def _stage(self, block: bytes) -> None:
        index = self._take_index()
        await self._uploads.add(partial(self._store.stage_block_sync, self._blob, index, block))
        await self._repair()

    async def _repair(self) -> None:
        """After a failed block: wait for the others, stage it again if a later one
        was stored (a hole would make the offset count missing bytes), and raise
        what could not be repaired."""
        if self._uploads.failure is not None:
            await self._uploads.fill_holes()
            if self._uploads.failure is not None:
                raise self._uploads.failure

    async def _land(self) -> None:
        """Wait for every block, repair holes, count the staged prefix; raise the
        first failure left."""
        await self._uploads.fill_holes()
        self._written = sum(self._uploads.done_prefix())
        if self._uploads.failure is not None:
            raise self._uploads.failure

    # --- settling ---------------------------------------------------------------

    async def commit(self) -> None:
        if self._done:
            await trio.lowlevel.checkpoint()
            return
        self._done = True
        try:
            last_block: TusError | None = None
            if self._block and self._uploads.failure is None:
                block, self._block = bytes(self._block), bytearray()
                try:
                    await self._stage(block)
                except TusError as exc:  # e.g. too many blocks: count what is staged
                    last_block = exc
            self._block = bytearray()
            await self._land()
            if last_block is not None:
                raise last_block
        finally:
            self._hints.forget(self._info.id)
        if self._written:
            await self._touch()

    async def _touch(self) -> None:
        """Mark the upload as changed now (the info blob's Last-Modified is the
        upload's ``modified`` time, used for expiry); best effort."""
        store = self._store
        upload_id = self._info.id
        try:
            await store.sdk.run("touching the info", store._touch_sync, upload_id, int(time.time()))
        except TusError as exc:
            log.warning("could not update the info of %s: %s", upload_id, exc.message)

    async def discard(self) -> None:
        if self._done:
            await trio.lowlevel.checkpoint()
            return
        self._done = True
        self._block = bytearray()
        # Staged blocks cannot be removed from an unfinished blob: they stay, and
        # ``written`` says so.
        try:
            await self._land()
        except TusError:
            pass
        finally:
            self._hints.forget(self._info.id)

    async def aclose(self) -> None:
        if not self._done:
            await self.commit()
            return
        await trio.lowlevel.checkpoint()
