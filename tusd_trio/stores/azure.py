"""The Azure Blob store, in tusd's azurestore layout (both daemons share a container).

Layout (``<prefix>`` is ``-azure-object-prefix`` with a ``/`` added when missing):

- ``<prefix><id>``: a block blob with the data.  Block IDs are the base64 of the
  block's index as a little-endian uint32, as in tusd.  While the upload is
  unfinished its blocks are *uncommitted*; a one-byte sentinel block (index
  2**31-1) is staged at creation so an unfinished upload always has uncommitted
  blocks.  ``finish`` commits the data blocks in index order (the sentinel is left
  out, so Azure drops it), with the configured access tier.
- ``<prefix><id>.info``: a block blob with the JSON info (tusd's FileInfo),
  ``Storage = {"Type": "azurestore", "Container": ..., "Key": ...}``.

The offset is the size of the uncommitted blocks except the sentinel, or the
size of the committed blocks once there are no uncommitted blocks (finished).

Writing streams: a PATCH body is cut into blocks of ``block_size`` (8 MiB by
default, more for large uploads of known size, see :func:`AzureStore.block_size_for`)
that are staged in worker threads while the next block fills, at most
``max_blocks_in_flight`` (2) at a time.  ``commit`` stages the partly filled
last block, so every received byte is kept, also after a client disconnect.
Staged writes (checksum extension) are spooled (in memory up to 1 MiB, then in
an anonymous temporary file) and become blocks only on ``commit``.

Memory per upload: at most ``(max_blocks_in_flight + 2) * block size`` for an
unstaged writer (the blocks in flight, the one filling and its copy while it is
handed over: 32 MiB by default; 400 MiB at the largest block size of 100 MiB,
used only for uploads of known size above 343 GiB), ``1 MiB + 2 * block size``
for a staged one, ``4 * block size`` for a concatenation copied through this
server and ``4 MiB`` for a download.

Limits (Azure: 50,000 committed blocks per blob, 4000 MiB per block): every
PATCH request uses at least one block, so an upload holds at most 50,000
requests' worth of data; the largest upload accepted is ``45,000 * 100 MiB``
(about 4.29 TiB; 45,000 leaves room for the partial blocks that end requests),
and uploads of deferred length reach at most ``50,000 * 8 MiB`` (390 GiB).

tusd's differences: tusd buffers each whole PATCH body in a temporary file and
stages one block per request; tusd has no concatenation on Azure (we build the
final blob from the partials' blobs, server-side with Put Block From URL when an
account key is configured, else through this server in bounded blocks).

The sync SDK client is used from worker threads (its aio client needs asyncio).
Block operations go through the SDK's generated REST layer because the public
methods re-encode block IDs as text, which cannot express tusd's binary IDs.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import importlib
import logging
import struct
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import replace
from functools import partial
from typing import IO, Any, TypeVar, cast

import trio

try:
    from azure.core.credentials import AzureNamedKeyCredential
    from azure.core.exceptions import (
        AzureError,
        ClientAuthenticationError,
        HttpResponseError,
        ResourceExistsError,
        ResourceNotFoundError,
        ServiceRequestError,
        ServiceResponseError,
    )
    from azure.storage.blob import (
        BlobClient,
        BlobSasPermissions,
        ContainerClient,
        ContentSettings,
        ExponentialRetry,
        generate_blob_sas,
    )
    from azure.storage.blob._generated.models import BlockLookupList
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        "the Azure store needs azure-storage-blob: pip install 'tusd-trio[azure]'"
    ) from exc

from ..protocol.core import StoreCapabilities
from ..protocol.errors import (
    MaxSizeExceededError,
    StoreError,
    TusError,
    UploadNotFoundError,
)
from ..protocol.info import UploadInfo
from .config import AzureConfig, MiB

log = logging.getLogger("tusd_trio.azurestore")

T = TypeVar("T")

INFO_SUFFIX = ".info"
#: Azure: committed blocks per blob.
MAX_BLOCKS = 50_000
#: Azure: largest block (service version 2019-12-12 and later).
MAX_STAGE_BLOCK = 4000 * MiB
#: Index of tusd's sentinel block (math.MaxInt32).
SENTINEL_INDEX = 2**31 - 1
#: Default size of the blocks a PATCH body is cut into.
DEFAULT_BLOCK_SIZE = 8 * MiB
#: Largest block size chosen for big uploads (bounds the memory per upload).
MAX_ADAPTIVE_BLOCK = 100 * MiB
#: Blocks planned for the data of an upload of known size; the rest of the 50,000
#: are left for the partly filled blocks that end PATCH requests.
DATA_BLOCK_BUDGET = 45_000
#: Largest upload accepted (45,000 blocks of 100 MiB, about 4.29 TiB).
MAX_UPLOAD_SIZE = DATA_BLOCK_BUDGET * MAX_ADAPTIVE_BLOCK
#: Staged (checksum) chunks are kept in memory up to this size, then spooled to disk.
SPOOL_MEMORY = 1 * MiB
#: Download piece sizes: a small first piece for a quick first byte, then larger.
FIRST_READ_PIECE = 1 * MiB
READ_PIECE = 4 * MiB
#: Blocks copied at once when building a concatenated blob.
CONCAT_PARALLEL = 4
#: Pieces copied server-side (Put Block From URL) are at least this large.
SERVER_COPY_PIECE = 256 * MiB
#: How long the block index learned by ``get`` is trusted by ``open_writer``.
_HINT_TTL = 30.0
_HINT_MAX = 4096

_ACCESS_TYPES = {"": None, "private": None, "blob": "blob", "container": "container"}
_TIERS = {"": None, "archive": "Archive", "cool": "Cool", "hot": "Hot"}


def block_id(index: int) -> str:
    """tusd's block ID: base64 of the index as a little-endian uint32."""
    return base64.b64encode(struct.pack("<I", index)).decode("ascii")


SENTINEL_ID = block_id(SENTINEL_INDEX)


def block_index(name: str) -> int | None:
    """The index of a tusd block ID, or None for a foreign one."""
    try:
        raw = base64.b64decode(name, validate=True)
    except ValueError:
        return None
    if len(raw) != 4:
        return None
    index: int = struct.unpack("<I", raw)[0]
    return index


def _error_code(exc: HttpResponseError) -> str:
    code = getattr(exc, "error_code", None)
    headers = getattr(exc.response, "headers", None)
    if not code and headers is not None:
        code = headers.get("x-ms-error-code")
    return str(code or "")


def _store_error(exc: Exception, what: str) -> TusError:
    """One line for the client and the log, no traceback text."""
    if isinstance(exc, TusError):
        return exc
    if isinstance(exc, HttpResponseError):
        code = _error_code(exc)
        if code == "ContainerNotFound":
            # A configuration problem, not a missing upload.
            return StoreError(f"{what}: the container does not exist")
        if exc.status_code == 404 or isinstance(exc, ResourceNotFoundError):
            return UploadNotFoundError()
        if exc.status_code in (401, 403) or isinstance(exc, ClientAuthenticationError):
            detail = "access denied (check the account key or the role assignment)"
        else:
            detail = f"Azure answered {exc.status_code} {code}".rstrip()
        return StoreError(f"{what}: {detail}")
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return StoreError(f"{what}: cannot reach Azure Blob Storage ({type(exc).__name__})")
    if isinstance(exc, AzureError):
        return StoreError(f"{what}: {type(exc).__name__}")
    if isinstance(exc, OSError):
        return StoreError(f"{what}: {exc.strerror or type(exc).__name__}")
    return StoreError(f"{what}: {type(exc).__name__}")


def _first_tus_error(group: BaseExceptionGroup[BaseException]) -> TusError | None:
    """The first store error in a nursery's exception group, if any."""
    for exc in group.exceptions:
        if isinstance(exc, TusError):
            return exc
        if isinstance(exc, BaseExceptionGroup):
            found = _first_tus_error(exc)
            if found is not None:
                return found
    return None


class _Flight:
    """One block being staged in a worker thread."""

    __slots__ = ("data", "done", "error", "index", "size")

    def __init__(self, index: int, data: bytes) -> None:
        self.index = index
        self.data: bytes | None = data
        self.size = len(data)
        self.done = trio.Event()
        self.error: TusError | None = None


class _AzureWriter:
    """Appends one request's body to an upload as uncommitted blocks.

    Unstaged: full blocks are staged in the background (at most
    ``max_in_flight``), the rest on ``commit``/``aclose``.  ``written`` counts
    only staged bytes.  ``discard`` can drop only what is not staged yet (the
    handler discards staged writers only).  Staged: spooled until ``commit``.
    A block that fails after a later one was staged is staged once more, so
    the offset never counts bytes behind a hole.
    """

    def __init__(
        self,
        store: AzureStore,
        info: UploadInfo,
        blob: BlobClient,
        next_index: int,
        block_size: int,
        staged: bool,
    ) -> None:
        self._store = store
        self._info = info
        self._blob = blob
        self._next_index = next_index
        self._block_size = block_size
        self._staged = staged
        self._written = 0
        self._accepted = 0
        self._done = False
        self._failure: TusError | None = None
        # unstaged
        self._block = bytearray()
        self._flights: list[_Flight] = []
        # staged
        self._spool_buffer = bytearray()
        self._spool: IO[bytes] | None = None
        self._spooled = 0

    @property
    def written(self) -> int:
        """Bytes taken so far while writing; after ``commit``/``discard``/``aclose``
        only the bytes that are staged in Azure."""
        return self._written if self._done else self._accepted

    # --- writing ------------------------------------------------------------------

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._done:
            raise StoreError("writing the upload: the writer is closed")
        if self._failure is not None:
            raise self._failure
        if not data:
            await trio.lowlevel.checkpoint()
            return
        self._accepted += len(data)
        if self._staged:
            await self._spool_write(data)
            return
        view = memoryview(data)
        size = self._block_size
        while view:
            room = size - len(self._block)
            self._block += view[:room]
            view = view[room:]
            if len(self._block) >= size:
                block, self._block = bytes(self._block), bytearray()
                await self._launch(block)
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

    async def _launch(self, block: bytes) -> None:
        while len(self._flights) >= self._store.max_blocks_in_flight:
            await self._land(everything=False)
        flight = _Flight(self._take_index(), block)
        self._flights.append(flight)
        trio.lowlevel.spawn_system_task(self._fly, flight, self._store, self._blob)

    @staticmethod
    async def _fly(flight: _Flight, store: AzureStore, blob: BlobClient) -> None:
        # A system task: the staging finishes even if the request is cancelled,
        # and the writer collects the outcome (never raises out of here).
        data = flight.data
        assert data is not None
        try:
            await store.call(
                store.stage_block_sync, blob, flight.index, data, what="staging a block"
            )
        except TusError as exc:
            flight.error = exc
        except Exception as exc:  # mapped, never lost
            flight.error = _store_error(exc, "staging a block")
        finally:
            flight.done.set()

    async def _land(self, *, everything: bool) -> None:
        """Collect finished blocks in order; raise the first failure."""
        while self._flights and (
            everything or len(self._flights) >= self._store.max_blocks_in_flight
        ):
            head = self._flights[0]
            await head.done.wait()
            if head.error is not None:
                await self._repair()
                return
            self._flights.pop(0)
            self._written += head.size
            head.data = None
        if self._failure is not None:
            raise self._failure

    async def _repair(self) -> None:
        """A block failed: wait for the rest, re-stage any failed block that has a
        staged block after it (a hole would make the offset count missing bytes),
        then count the staged prefix and remember the failure."""
        for flight in self._flights:
            await flight.done.wait()
        for position, flight in enumerate(self._flights):
            later_ok = any(f.error is None for f in self._flights[position + 1 :])
            if flight.error is not None and later_ok and flight.data is not None:
                try:
                    await self._store.call(
                        self._store.stage_block_sync,
                        self._blob,
                        flight.index,
                        flight.data,
                        what="staging a block",
                    )
                    flight.error = None
                except TusError as exc:
                    flight.error = exc
        for flight in self._flights:
            if flight.error is not None:
                self._failure = flight.error
                break
            self._written += flight.size
        for flight in self._flights:
            flight.data = None
        self._flights.clear()
        if self._failure is not None:
            raise self._failure

    # --- staged spool ----------------------------------------------------------------

    async def _spool_write(self, data: bytes | bytearray | memoryview) -> None:
        self._spool_buffer += data
        self._spooled += len(data)
        if len(self._spool_buffer) >= SPOOL_MEMORY:
            chunk, self._spool_buffer = bytes(self._spool_buffer), bytearray()
            try:
                await trio.to_thread.run_sync(self._spill, chunk)
            except OSError as exc:
                self._failure = _store_error(exc, "spooling the chunk")
                raise self._failure from exc
        else:
            await trio.lowlevel.checkpoint_if_cancelled()

    def _spill(self, chunk: bytes) -> None:
        if self._spool is None:
            self._spool = tempfile.TemporaryFile(prefix="tusd-trio-az-")  # noqa: SIM115
        self._spool.write(chunk)

    def _pieces_sync(self) -> Iterable[bytes]:
        """The spooled chunk in blocks, read back from disk one block at a time."""
        spool = self._spool
        if spool is None:
            data = bytes(self._spool_buffer)
            for start in range(0, len(data), self._block_size):
                yield data[start : start + self._block_size]
            return
        if self._spool_buffer:
            spool.write(self._spool_buffer)
            self._spool_buffer = bytearray()
        spool.flush()
        spool.seek(0)
        while True:
            piece = spool.read(self._block_size)
            if not piece:
                return
            yield piece

    def _commit_spool_sync(self, progress: list[int]) -> None:
        for piece in self._pieces_sync():
            index = self._take_index()
            self._store.stage_block_sync(self._blob, index, piece)
            progress[0] += len(piece)

    # --- settling ---------------------------------------------------------------

    async def commit(self) -> None:
        if self._done:
            await trio.lowlevel.checkpoint()
            return
        self._done = True
        try:
            if self._staged:
                await self._commit_staged()
            else:
                if self._block and self._failure is None:
                    block, self._block = bytes(self._block), bytearray()
                    await self._launch(block)
                self._block = bytearray()
                await self._land(everything=True)
        finally:
            self._store.forget_hint(self._info.id)
            await self._release_spool()
        if self._written:
            await self._store.touch(self._info)

    async def _commit_staged(self) -> None:
        if self._failure is not None:
            self._written = 0
            raise self._failure
        self._written = 0
        if not self._spooled:
            await trio.lowlevel.checkpoint()
            return
        progress = [0]
        try:
            await trio.to_thread.run_sync(self._commit_spool_sync, progress)
        except TusError:
            raise
        except Exception as exc:
            raise _store_error(exc, "staging the chunk") from None
        finally:
            # Blocks staged before a failure are verified bytes: they are part of
            # the upload now.
            self._written = progress[0]

    async def discard(self) -> None:
        if self._done:
            await trio.lowlevel.checkpoint()
            return
        self._done = True
        self._block = bytearray()
        if self._staged:
            self._spool_buffer = bytearray()
            self._written = 0
            await self._release_spool()
            return
        # Staged blocks cannot be removed from an unfinished blob: they stay, and
        # ``written`` says so.
        try:
            await self._land(everything=True)
        except TusError:
            pass
        finally:
            self._store.forget_hint(self._info.id)

    async def aclose(self) -> None:
        if not self._done:
            if self._staged:
                await self.discard()
            else:
                await self.commit()
            return
        await self._release_spool()

    async def _release_spool(self) -> None:
        spool, self._spool = self._spool, None
        self._spool_buffer = bytearray()
        if spool is not None:
            await trio.to_thread.run_sync(spool.close)
        else:
            await trio.lowlevel.checkpoint()


class AzureStore:
    """Uploads in an Azure Blob Storage container, in tusd's azurestore layout."""

    name = "azurestore"
    capabilities = StoreCapabilities(
        terminate=True,
        concatenate=True,
        defer_length=True,
        checksum=True,
        serve_incomplete=False,
    )

    def __init__(
        self,
        config: AzureConfig,
        *,
        block_size: int = DEFAULT_BLOCK_SIZE,
        max_blocks_in_flight: int = 2,
    ) -> None:
        if config.container_access_type.lower() not in _ACCESS_TYPES:
            raise ValueError(
                f"unknown Azure container access type {config.container_access_type!r} "
                "(use '', 'blob' or 'container')"
            )
        if config.blob_access_tier.lower() not in _TIERS:
            raise ValueError(
                f"unknown Azure blob access tier {config.blob_access_tier!r} "
                "(use '', 'archive', 'cool' or 'hot')"
            )
        if not 1 <= block_size <= MAX_STAGE_BLOCK:
            raise ValueError("block_size must be between 1 byte and 4000 MiB")
        if max_blocks_in_flight < 1:
            raise ValueError("max_blocks_in_flight must be at least 1")
        if not config.container:
            raise ValueError("no Azure container given (-azure-storage)")
        self.config = config
        self.block_size = block_size
        self.max_blocks_in_flight = max_blocks_in_flight
        self.max_block_size = max(block_size, MAX_ADAPTIVE_BLOCK)
        self.max_upload_size = DATA_BLOCK_BUDGET * self.max_block_size
        self._access = _ACCESS_TYPES[config.container_access_type.lower()]
        self._tier = _TIERS[config.blob_access_tier.lower()]
        prefix = config.object_prefix
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        self.prefix = prefix
        account = config.account
        endpoint = config.endpoint.rstrip("/")
        if not endpoint:
            if not account:
                raise ValueError("AZURE_STORAGE_ACCOUNT or an Azure endpoint is required")
            endpoint = f"https://{account}.blob.core.windows.net"
        self.endpoint = endpoint
        credential: Any
        if config.key:
            if not account:
                raise ValueError("AZURE_STORAGE_ACCOUNT is required with AZURE_STORAGE_KEY")
            credential = AzureNamedKeyCredential(account, config.key)
        else:
            try:
                identity = importlib.import_module("azure.identity")
            except ImportError:
                raise ValueError(
                    "AZURE_STORAGE_KEY is not set and azure-identity is not installed: set the "
                    "key, or `pip install azure-identity` to sign in with Entra ID "
                    "(DefaultAzureCredential)"
                ) from None
            credential = identity.DefaultAzureCredential()
        self._credential = credential
        self._client = ContainerClient(
            endpoint,
            config.container,
            credential=credential,
            # Throttling, 5xx and connection errors: 5 retries, 1 s to ~17 s apart.
            retry_policy=ExponentialRetry(
                initial_backoff=1, increment_base=2, retry_total=5, random_jitter_range=1
            ),
            connection_timeout=20,
            read_timeout=120,
        )
        self._container_ready = False
        self._container_lock = trio.Lock()
        #: upload ID -> (offset, next block index, time): learned by ``get`` so that
        #: the ``open_writer`` right after it needs no second block list.
        self._hints: dict[str, tuple[int, int, float]] = {}
        #: Put Block From URL works (cleared after the first failure, e.g. Azurite).
        self._server_copy = bool(config.key)

    # --- names and helpers ---------------------------------------------------------

    def data_key(self, upload_id: str) -> str:
        return self.prefix + upload_id

    def info_key(self, upload_id: str) -> str:
        return self.prefix + upload_id + INFO_SUFFIX

    def blob(self, name: str) -> BlobClient:
        return self._client.get_blob_client(name)

    async def call(self, fn: Callable[..., T], *args: Any, what: str) -> T:
        """Run a blocking SDK call in a worker thread, mapping its errors."""
        try:
            return await trio.to_thread.run_sync(partial(fn, *args))
        except TusError:
            raise
        except Exception as exc:
            raise _store_error(exc, what) from None

    def forget_hint(self, upload_id: str) -> None:
        self._hints.pop(upload_id, None)

    def _remember_hint(self, upload_id: str, offset: int, next_index: int) -> None:
        if len(self._hints) >= _HINT_MAX:
            self._hints.pop(next(iter(self._hints)))
        self._hints[upload_id] = (offset, next_index, time.monotonic())

    def block_size_for(self, info: UploadInfo) -> int:
        """The block size for an upload: the default, larger when the known size
        would need more than 45,000 blocks (whole MiB, at most 100 MiB)."""
        if info.size_is_deferred or info.size <= self.block_size * DATA_BLOCK_BUDGET:
            return self.block_size
        wanted = -(-info.size // DATA_BLOCK_BUDGET)
        wanted = -(-wanted // MiB) * MiB
        return min(max(self.block_size, wanted), self.max_block_size)

    def _check_size(self, size: int) -> None:
        if size > self.max_upload_size:
            raise MaxSizeExceededError(
                f"upload size {size} exceeds the Azure store's maximum of "
                f"{self.max_upload_size} bytes"
            )

    # --- container ---------------------------------------------------------------

    async def _ensure_container(self) -> None:
        if self._container_ready:
            return
        async with self._container_lock:
            if not self._container_ready:
                await self.call(self._create_container_sync, what="creating the container")
                self._container_ready = True

    def _create_container_sync(self) -> None:
        try:
            self._client.create_container(public_access=self._access)
        except ResourceExistsError:
            return
        except HttpResponseError as exc:
            if exc.status_code != 403:
                raise
            # No right to create containers: fine if it exists already.
            self._client.get_container_properties()

    # --- blocking helpers (worker threads) -------------------------------------------

    @staticmethod
    def stage_block_sync(blob: BlobClient, index: int, data: bytes) -> None:
        digest = hashlib.md5(data, usedforsecurity=False).digest()
        blob._client.block_blob.stage_block(
            block_id=block_id(index),
            content_length=len(data),
            body=cast(IO[bytes], data),
            transactional_content_md5=digest,
        )

    @staticmethod
    def block_list_sync(blob: BlobClient) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
        """(committed, uncommitted) blocks as (base64 ID, size); ([], []) if no blob."""
        try:
            result = blob._client.block_blob.get_block_list(list_type="all")
        except ResourceNotFoundError:
            return [], []
        committed = [(b.name, b.size) for b in result.committed_blocks or []]
        uncommitted = [(b.name, b.size) for b in result.uncommitted_blocks or []]
        return committed, uncommitted

    @staticmethod
    def _offset_of(
        committed: list[tuple[str, int]], uncommitted: list[tuple[str, int]]
    ) -> tuple[int, list[int]]:
        """tusd's offset rule, and the data block indices in order."""
        if not uncommitted:
            return sum(size for _, size in committed), []
        offset = 0
        indices: list[int] = []
        for name, size in uncommitted:
            if name == SENTINEL_ID:
                continue
            offset += size
            index = block_index(name)
            if index is not None:
                indices.append(index)
        indices.sort()
        return offset, indices

    def _commit_sync(self, blob: BlobClient, indices: list[int], tier: str | None) -> None:
        blob._client.block_blob.commit_block_list(
            blocks=BlockLookupList(latest=[block_id(i) for i in indices]), tier=tier
        )

    def _read_info_sync(self, upload_id: str) -> tuple[UploadInfo, float, float]:
        """The parsed info and the info blob's (last modified, creation) times."""
        downloader = self.blob(self.info_key(upload_id)).download_blob()
        raw = downloader.readall()
        props = downloader.properties
        try:
            info = UploadInfo.from_json(raw)
        except ValueError as exc:
            log.warning("ignoring unreadable info blob %s: %s", self.info_key(upload_id), exc)
            raise UploadNotFoundError() from None
        if info.id != upload_id:
            raise UploadNotFoundError()
        modified = props.last_modified.timestamp() if props.last_modified else 0.0
        created = props.creation_time.timestamp() if props.creation_time else modified
        return info, modified, created

    def _write_info_sync(self, info: UploadInfo, *, new: bool) -> None:
        self.blob(self.info_key(info.id)).upload_blob(
            info.to_json(),
            overwrite=not new,
            content_settings=ContentSettings(content_type="application/json"),
        )

    def _get_sync(self, upload_id: str) -> tuple[UploadInfo, int]:
        info, modified, created = self._read_info_sync(upload_id)
        committed, uncommitted = self.block_list_sync(self.blob(self.data_key(upload_id)))
        offset, indices = self._offset_of(committed, uncommitted)
        next_index = indices[-1] + 1 if indices else 0
        info = replace(info, offset=offset, modified=modified, created=info.created or created)
        return info, next_index

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
        await self.call(self._create_sync, stored, what="creating the upload")
        self._remember_hint(stored.id, 0, 0)
        return stored

    def _create_sync(self, stored: UploadInfo) -> None:
        try:
            self._write_info_sync(stored, new=True)
        except ResourceExistsError:
            raise StoreError("an upload with this ID exists already") from None
        try:
            # The sentinel: "no uncommitted blocks" then always means "finished".
            self.stage_block_sync(self.blob(self.data_key(stored.id)), SENTINEL_INDEX, b"\0")
        except Exception:
            try:
                self.blob(self.info_key(stored.id)).delete_blob()
            except AzureError:
                pass
            raise

    async def get(self, upload_id: str) -> UploadInfo:
        await self._ensure_container()
        info, next_index = await self.call(self._get_sync, upload_id, what="reading the upload")
        self._remember_hint(upload_id, info.offset, next_index)
        return info

    async def open_writer(self, info: UploadInfo, *, staged: bool) -> _AzureWriter:
        await self._ensure_container()
        hint = self._hints.get(info.id)
        if hint is not None and hint[0] == info.offset and time.monotonic() - hint[2] < _HINT_TTL:
            next_index = hint[1]
            await trio.lowlevel.checkpoint()
        else:
            fresh, next_index = await self.call(self._get_sync, info.id, what="reading the upload")
            self._remember_hint(info.id, fresh.offset, next_index)
        blob = self.blob(self.data_key(info.id))
        return _AzureWriter(self, info, blob, next_index, self.block_size_for(info), staged)

    async def declare_length(self, info: UploadInfo, length: int) -> UploadInfo:
        self._check_size(length)
        await self._ensure_container()
        await self.call(self._declare_sync, info.id, length, what="declaring the length")
        return replace(info, size=length, size_is_deferred=False)

    def _declare_sync(self, upload_id: str, length: int) -> None:
        stored, _, _ = self._read_info_sync(upload_id)
        self._write_info_sync(replace(stored, size=length, size_is_deferred=False), new=False)

    async def finish(self, info: UploadInfo) -> None:
        await self._ensure_container()
        await self.call(self._finish_sync, info.id, what="finishing the upload")
        self.forget_hint(info.id)

    def _finish_sync(self, upload_id: str) -> None:
        blob = self.blob(self.data_key(upload_id))
        committed, uncommitted = self.block_list_sync(blob)
        if committed and not uncommitted:
            return  # finished already
        if not uncommitted and not committed:
            # No blob at all (only possible for uploads created elsewhere): an
            # empty upload still gets its empty blob.
            self._read_info_sync(upload_id)
        _, indices = self._offset_of(committed, uncommitted)
        self._commit_sync(blob, indices, self._tier)

    async def terminate(self, info: UploadInfo) -> None:
        await self._ensure_container()
        self.forget_hint(info.id)
        await self.call(self._terminate_sync, info.id, what="terminating the upload")

    def _terminate_sync(self, upload_id: str) -> None:
        # The data first: if this fails, the upload is still listed and can be
        # terminated again.  Uncommitted blocks cannot be deleted directly (Azure
        # keeps them for a week): committing an empty list drops them.
        blob = self.blob(self.data_key(upload_id))
        _, uncommitted = self.block_list_sync(blob)
        if uncommitted:
            self._commit_sync(blob, [], None)
        # Always: a finished empty upload is a blob without any block.
        try:
            blob.delete_blob(delete_snapshots="include")
        except ResourceNotFoundError:
            pass
        try:
            self.blob(self.info_key(upload_id)).delete_blob()
        except ResourceNotFoundError:
            pass

    # --- concatenation -------------------------------------------------------------

    async def concat(self, info: UploadInfo, partials: list[UploadInfo]) -> UploadInfo:
        await self._ensure_container()
        await self.call(
            self._check_partials_sync, info, partials, what="reading the partial uploads"
        )
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
        await self.call(self._finish_concat_sync, info, target, count, total, what="concatenating")
        self.forget_hint(info.id)
        return replace(info, size=total, size_is_deferred=False, offset=total)

    def _check_partials_sync(self, final: UploadInfo, partials: list[UploadInfo]) -> None:
        self._read_info_sync(final.id)  # no blob is committed for a final that is gone
        for partial_info in partials:
            if not partial_info.size:
                # An empty partial has no bytes to copy; it must exist all the same.
                self._read_info_sync(partial_info.id)
                continue
            props = self.blob(self.data_key(partial_info.id)).get_blob_properties()
            if props.size < partial_info.size:
                raise StoreError(f"concatenating: partial upload {partial_info.id} is not finished")

    async def _copy_pieces(
        self, target: BlobClient, partials: list[UploadInfo], total: int, *, server_side: bool
    ) -> int:
        """Stage the partials' bytes as blocks 0..n-1 of ``target``; return n."""
        base = SERVER_COPY_PIECE if server_side else self.block_size
        cap = MAX_STAGE_BLOCK if server_side else self.max_block_size
        piece = min(max(base, -(-total // DATA_BLOCK_BUDGET)), cap)
        jobs: list[tuple[int, str, int, int]] = []
        for partial_info in partials:
            key = self.data_key(partial_info.id)
            for start in range(0, partial_info.size, piece):
                jobs.append((len(jobs), key, start, min(piece, partial_info.size - start)))
        if len(jobs) > MAX_BLOCKS:
            raise StoreError(f"concatenating: more than {MAX_BLOCKS} blocks needed")
        limiter = trio.CapacityLimiter(CONCAT_PARALLEL)
        copy = self._copy_url_sync if server_side else self._copy_through_sync
        expiry = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=6)

        async def run(job: tuple[int, str, int, int]) -> None:
            async with limiter:
                await self.call(copy, target, *job, expiry, what="concatenating")

        if jobs:
            # The first block alone: a failure (e.g. no Put Block From URL) shows at once.
            await run(jobs[0])
        try:
            async with trio.open_nursery() as nursery:
                for job in jobs[1:]:
                    nursery.start_soon(run, job)
        except BaseExceptionGroup as group:
            first = _first_tus_error(group)
            if first is None:
                raise
            raise first from None
        return len(jobs)

    def _copy_url_sync(
        self,
        target: BlobClient,
        index: int,
        source_key: str,
        start: int,
        length: int,
        expiry: datetime.datetime,
    ) -> None:
        sas = generate_blob_sas(
            self.config.account,
            self.config.container,
            source_key,
            account_key=self.config.key,
            permission=BlobSasPermissions(read=True),
            expiry=expiry,
        )
        source = self.blob(source_key)
        target._client.block_blob.stage_block_from_url(
            block_id=block_id(index),
            content_length=0,
            source_url=f"{source.url}?{sas}",
            source_range=f"bytes={start}-{start + length - 1}",
        )

    def _copy_through_sync(
        self,
        target: BlobClient,
        index: int,
        source_key: str,
        start: int,
        length: int,
        expiry: datetime.datetime,
    ) -> None:
        data = self.blob(source_key).download_blob(offset=start, length=length).readall()
        if len(data) != length:
            raise StoreError("concatenating: a partial upload is shorter than its size")
        self.stage_block_sync(target, index, data)

    def _finish_concat_sync(
        self, info: UploadInfo, target: BlobClient, count: int, total: int
    ) -> None:
        # Commit first: if the info update fails, the final upload still looks
        # unfinished and the concatenation runs again.
        self._commit_sync(target, list(range(count)), self._tier)
        stored, _, _ = self._read_info_sync(info.id)
        self._write_info_sync(replace(stored, size=total, size_is_deferred=False), new=False)

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
            data = await self.call(self._download_sync, blob, position, length, what="reading")
            if not data:
                raise StoreError("reading: the blob is shorter than the upload")
            yield data
            position += len(data)
            piece = READ_PIECE

    @staticmethod
    def _download_sync(blob: BlobClient, offset: int, length: int) -> bytes:
        return blob.download_blob(offset=offset, length=length).readall()

    async def list_ids(self) -> list[str]:
        await self._ensure_container()
        return await self.call(self._list_sync, what="listing the uploads")

    def _list_sync(self) -> list[str]:
        cut = len(self.prefix)
        return [
            name[cut : -len(INFO_SUFFIX)]
            for name in self._client.list_blob_names(name_starts_with=self.prefix or None)
            if name.endswith(INFO_SUFFIX) and len(name) > cut + len(INFO_SUFFIX)
        ]

    async def check_writable(self) -> None:
        await self._ensure_container()
        await self.call(self._client.get_container_properties, what="checking the container")

    async def touch(self, info: UploadInfo) -> None:
        """Mark the upload as changed now (the info blob's Last-Modified is the
        upload's ``modified`` time, used for expiry); best effort."""
        try:
            await self.call(
                self.blob(self.info_key(info.id)).set_blob_metadata,
                {"tusdtriomodified": str(int(time.time()))},
                what="touching the info",
            )
        except TusError as exc:
            log.warning("could not update the info of %s: %s", info.id, exc.message)

    async def aclose(self) -> None:
        self._hints.clear()
        await trio.to_thread.run_sync(self._close_sync)

    def _close_sync(self) -> None:
        self._client.close()
        close = getattr(self._credential, "close", None)
        if callable(close):
            close()
