"""The blocking half of the Azure store: the azure-storage-blob container client, one
method per operation on the container (each run in a worker thread through
:attr:`AzureAdapter.sdk`), and the mapping of the SDK's errors to store errors.
:class:`~.store.AzureStore` adds the async Store protocol on top.

The sync SDK client is used from worker threads (its aio client needs asyncio).
Block operations go through the SDK's generated REST layer because the public
methods re-encode block IDs as text, which cannot express tusd's binary IDs.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib
import logging
from dataclasses import replace
from typing import IO, Any, cast

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

from ...protocol.errors import StoreError, TusError, UploadNotFoundError
from ...protocol.info import UploadInfo
from .._sdk_calls import SDKCalls
from ..config import AzureConfig
from .blocks import SENTINEL_INDEX, block_id, offset_of

log = logging.getLogger("tusd_trio.azurestore")

#: The store's name, also the ``Storage.Type`` of its info documents (tusd's).
STORE_NAME = "azurestore"
INFO_SUFFIX = ".info"
_ACCESS_TYPES = {"": None, "private": None, "blob": "blob", "container": "container"}
_TIERS = {"": None, "archive": "Archive", "cool": "Cool", "hot": "Hot"}


def _error_code(exc: HttpResponseError) -> str:
    code = getattr(exc, "error_code", None)
    headers = getattr(exc.response, "headers", None)
    if not code and headers is not None:
        code = headers.get("x-ms-error-code")
    return str(code or "")


def azure_error(exc: Exception, what: str) -> TusError:
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


class AzureAdapter:
    """One container (and blob prefix) through azure-storage-blob; every method
    here blocks."""

    def __init__(self, config: AzureConfig) -> None:
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
        if not config.container:
            raise ValueError("no Azure container given (-azure-storage)")
        self.config = config
        self._access = _ACCESS_TYPES[config.container_access_type.lower()]
        self._tier = _TIERS[config.blob_access_tier.lower()]
        prefix = config.object_prefix
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        self.prefix = prefix
        self.sdk = SDKCalls(azure_error, thread_name="azure")
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
                # Optional: only needed to sign in with Entra ID.
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

    # --- names ---------------------------------------------------------------------

    def data_key(self, upload_id: str) -> str:
        return self.prefix + upload_id

    def info_key(self, upload_id: str) -> str:
        return self.prefix + upload_id + INFO_SUFFIX

    def blob(self, name: str) -> BlobClient:
        return self._client.get_blob_client(name)

    # --- the container ---------------------------------------------------------------

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

    def _check_container_sync(self) -> None:
        self._client.get_container_properties()

    def _list_sync(self) -> list[str]:
        cut = len(self.prefix)
        return [
            name[cut : -len(INFO_SUFFIX)]
            for name in self._client.list_blob_names(name_starts_with=self.prefix or None)
            if name.endswith(INFO_SUFFIX) and len(name) > cut + len(INFO_SUFFIX)
        ]

    def _close_sync(self) -> None:
        self._client.close()
        close = getattr(self._credential, "close", None)
        if callable(close):
            close()

    # --- blocks ----------------------------------------------------------------------

    @staticmethod
    def stage_block_sync(blob: BlobClient, index: int, data: bytes) -> int:
        """Stage one block; its size."""
        digest = hashlib.md5(data, usedforsecurity=False).digest()
        blob._client.block_blob.stage_block(
            block_id=block_id(index),
            content_length=len(data),
            body=cast(IO[bytes], data),
            transactional_content_md5=digest,
        )
        return len(data)

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

    def _commit_sync(self, blob: BlobClient, indices: list[int], tier: str | None) -> None:
        blob._client.block_blob.commit_block_list(
            blocks=BlockLookupList(latest=[block_id(i) for i in indices]), tier=tier
        )

    # --- the info blob ----------------------------------------------------------------

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

    def _touch_sync(self, upload_id: str, now: int) -> None:
        self.blob(self.info_key(upload_id)).set_blob_metadata({"tusdtriomodified": str(now)})

    # --- whole uploads ----------------------------------------------------------------

    def _get_sync(self, upload_id: str) -> tuple[UploadInfo, int]:
        info, modified, created = self._read_info_sync(upload_id)
        committed, uncommitted = self.block_list_sync(self.blob(self.data_key(upload_id)))
        offset, indices = offset_of(committed, uncommitted)
        next_index = indices[-1] + 1 if indices else 0
        info = replace(info, offset=offset, modified=modified, created=info.created or created)
        return info, next_index

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

    def _declare_sync(self, upload_id: str, length: int) -> None:
        stored, _, _ = self._read_info_sync(upload_id)
        self._write_info_sync(replace(stored, size=length, size_is_deferred=False), new=False)

    def _finish_sync(self, upload_id: str) -> None:
        blob = self.blob(self.data_key(upload_id))
        committed, uncommitted = self.block_list_sync(blob)
        if committed and not uncommitted:
            return  # finished already
        if not uncommitted and not committed:
            # No blob at all (only possible for uploads created elsewhere): an
            # empty upload still gets its empty blob.
            self._read_info_sync(upload_id)
        _, indices = offset_of(committed, uncommitted)
        self._commit_sync(blob, indices, self._tier)

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

    # --- concatenation and reading -----------------------------------------------------

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

    def _copy_url_sync(
        self,
        target: BlobClient,
        index: int,
        source_key: str,
        start: int,
        length: int,
        expiry: datetime.datetime,
    ) -> None:
        """Stage a block of ``target`` from a range of another blob, server-side."""
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
        """Stage a block of ``target`` from a range of another blob, through here."""
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

    @staticmethod
    def _download_sync(blob: BlobClient, offset: int, length: int) -> bytes:
        return blob.download_blob(offset=offset, length=length).readall()
