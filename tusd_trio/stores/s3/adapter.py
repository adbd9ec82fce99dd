"""The blocking half of the S3 store: the boto3 client, one method per S3 operation
(each run in a worker thread through :attr:`S3Adapter.sdk`), and the mapping of
boto3's errors to store errors.  :class:`~.store.S3Store` adds the async Store
protocol on top."""

from __future__ import annotations

import logging
import re
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import boto3
import httpx
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from ...protocol.errors import StoreError, UploadNotFoundError
from ...protocol.info import UploadInfo
from ...protocol.parts import PartLimits, PartPlanError, PartState, finishing_parts
from .._sdk_calls import SDKCalls
from ..config import S3Config
from .layout import (
    StoredPart,
    UploadState,
    contiguous,
    split_upload_id,
    timestamp,
    upload_state,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger("tusd_trio.s3store")

#: The store's name, also the ``Storage.Type`` of its info documents (tusd's).
STORE_NAME = "s3store"
#: tusd replaces every character outside these in S3 user metadata with "?".
_NON_PRINTABLE = re.compile(r"[^\x09\x20-\x7E]")
_MISSING_OBJECT = {"NoSuchKey", "404", "NotFound"}
_MISSING_UPLOAD = {"NoSuchUpload", "NoSuchKey", "404", "NotFound"}
_NO_ACCESS = {"AccessDenied", "Forbidden", "403"}
_BAD_PART_LIST = {"InvalidPart", "InvalidPartOrder"}


def error_code(exc: BaseException) -> str:
    """S3's error code (``NoSuchKey``, ...) of a boto3 error; "" for any other."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def s3_error(exc: BaseException, what: str) -> StoreError:
    """A one-line StoreError for an SDK failure (no traceback text for the client)."""
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        detail = f"{error.get('Code', 'error')}: {error.get('Message', '')}".rstrip(": ")
    elif isinstance(exc, BotoCoreError):
        detail = type(exc).__name__
    else:
        detail = f"{type(exc).__name__}: {exc}"
    return StoreError(f"S3 {what} failed ({detail})")


class S3Adapter:
    """One bucket (and key prefix) through boto3; every method here blocks."""

    def __init__(self, config: S3Config) -> None:
        self.config = config
        prefix = config.object_prefix
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        self.prefix = prefix
        self.bucket = config.bucket
        try:
            self.limits = PartLimits(
                preferred_part_size=config.part_size,
                min_part_size=config.min_part_size,
                max_part_size=config.max_part_size,
                max_parts=config.max_parts,
                max_object_size=config.max_object_size,
                equal_parts=config.equal_parts,
            )
        except PartPlanError as exc:
            raise ValueError(f"invalid S3 part settings: {exc}") from None
        # Only boto3's own errors are mapped; anything else is a bug and shows as one.
        self.sdk = SDKCalls(s3_error, sdk_errors=(ClientError, BotoCoreError), thread_name="s3")
        session = boto3.session.Session()
        region = config.region or session.region_name or "us-east-1"
        s3_options: dict[str, Any] = {}
        if config.endpoint:
            s3_options["addressing_style"] = "path"
        if config.transfer_acceleration:
            s3_options["use_accelerate_endpoint"] = True
        extra: dict[str, Any] = {}
        if config.disable_content_hashes:
            s3_options["payload_signing_enabled"] = False
            extra["request_checksum_calculation"] = "when_required"
        boto_config = BotoConfig(
            region_name=region,
            retries={"mode": "standard", "max_attempts": 3},
            max_pool_connections=max(10, 2 * config.concurrent_part_uploads + 8),
            s3=s3_options,  # type: ignore[arg-type]
            **extra,
        )
        self._client: S3Client = session.client(
            "s3",
            endpoint_url=config.endpoint or None,
            use_ssl=not config.disable_ssl,
            config=boto_config,
        )
        self._http: Any = None
        if config.disable_content_hashes:
            # This mode sends the parts itself (see _upload_part).
            self._http = httpx.Client(
                timeout=httpx.Timeout(60.0, connect=10.0),
                transport=httpx.HTTPTransport(retries=3),
            )
        if config.log_api_calls:
            self._client.meta.events.register("before-call.s3", self._log_call)

    @staticmethod
    def _log_call(model: Any = None, params: Any = None, **_: Any) -> None:
        name = getattr(model, "name", "?")
        log.debug("S3 call %s", name)

    def _key(self, object_id: str) -> str:
        return self.prefix + object_id

    # --- the info object ---------------------------------------------------------------

    def _read_info(self, object_id: str, upload_id: str | None) -> tuple[UploadInfo, float]:
        try:
            response = self._client.get_object(
                Bucket=self.bucket, Key=self._key(object_id) + ".info"
            )
        except ClientError as exc:
            if error_code(exc) in _MISSING_OBJECT:
                raise UploadNotFoundError() from None
            raise
        with response["Body"] as body:
            raw = body.read()
        try:
            info = UploadInfo.from_json(raw)
        except ValueError as exc:
            log.warning("ignoring unreadable info object for %s: %s", object_id, exc)
            raise UploadNotFoundError() from None
        if upload_id is not None and info.id != upload_id:
            raise UploadNotFoundError()  # an older upload that reused the object ID
        return info, timestamp(response.get("LastModified"))

    def _info_id(self, object_id: str) -> str | None:
        """The upload ID in ``<object_id>.info``; None when it is gone or unreadable."""
        try:
            info, _ = self._read_info(object_id, None)
        except UploadNotFoundError:
            return None
        return info.id

    def _write_info(self, info: UploadInfo) -> None:
        object_id, _ = split_upload_id(info.id)
        payload = info.to_json()
        self._client.put_object(
            Bucket=self.bucket,
            Key=self._key(object_id) + ".info",
            Body=payload,
            ContentLength=len(payload),
        )

    def _info_keys(self) -> list[str]:
        object_ids = []
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
            for item in page.get("Contents", []):
                key = item.get("Key", "")
                if key.endswith(".info"):
                    object_ids.append(key[len(self.prefix) : -len(".info")])
        return object_ids

    # --- parts and the .part object ------------------------------------------------------

    def _list_parts(self, object_id: str, multipart_id: str) -> list[StoredPart] | None:
        """Every part (paginated); ``None`` when the multipart upload is gone."""
        parts: list[StoredPart] = []
        marker = 0
        while True:
            try:
                response = self._client.list_parts(
                    Bucket=self.bucket,
                    Key=self._key(object_id),
                    UploadId=multipart_id,
                    PartNumberMarker=marker,
                )
            except ClientError as exc:
                if error_code(exc) in _MISSING_UPLOAD:
                    return None
                raise
            parts.extend(
                StoredPart(
                    number=int(item.get("PartNumber", 0)),
                    size=int(item.get("Size", 0)),
                    etag=str(item.get("ETag", "")),
                    modified=timestamp(item.get("LastModified")),
                )
                for item in response.get("Parts", [])
            )
            if not response.get("IsTruncated"):
                return parts
            next_marker = int(response.get("NextPartNumberMarker", 0) or 0)
            if next_marker <= marker:
                return parts
            marker = next_marker

    def _head_pending(self, object_id: str) -> tuple[int, float]:
        try:
            response = self._client.head_object(
                Bucket=self.bucket, Key=self._key(object_id) + ".part"
            )
        except ClientError as exc:
            if error_code(exc) in _MISSING_OBJECT | _NO_ACCESS:
                return 0, 0.0
            raise
        return int(response.get("ContentLength", 0)), timestamp(response.get("LastModified"))

    def _get_pending(self, object_id: str) -> bytes:
        try:
            response = self._client.get_object(
                Bucket=self.bucket, Key=self._key(object_id) + ".part"
            )
        except ClientError as exc:
            if error_code(exc) in _MISSING_OBJECT | _NO_ACCESS:
                return b""
            raise
        with response["Body"] as body:
            data: bytes = body.read()
        return data

    def _put_pending(self, object_id: str, data: bytes) -> None:
        self._client.put_object(
            Bucket=self.bucket,
            Key=self._key(object_id) + ".part",
            Body=data,
            ContentLength=len(data),
        )

    def _delete_pending(self, object_id: str) -> None:
        self._client.delete_object(Bucket=self.bucket, Key=self._key(object_id) + ".part")

    def _upload_part(self, object_id: str, multipart_id: str, number: int, data: bytes) -> str:
        if self._http is not None:
            # -s3-disable-content-hashes: a presigned UploadPart sent as a plain PUT
            # with an explicit Content-Length, so no hash of the body is computed.
            url = self._client.generate_presigned_url(
                "upload_part",
                Params={
                    "Bucket": self.bucket,
                    "Key": self._key(object_id),
                    "UploadId": multipart_id,
                    "PartNumber": number,
                },
                ExpiresIn=15 * 60,
            )
            response = self._http.put(url, content=data, headers={"Content-Length": str(len(data))})
            if response.status_code != 200:
                raise StoreError(f"S3 UploadPart {number} failed (HTTP {response.status_code})")
            return str(response.headers.get("ETag", ""))
        result = self._client.upload_part(
            Bucket=self.bucket,
            Key=self._key(object_id),
            UploadId=multipart_id,
            PartNumber=number,
            Body=data,
            ContentLength=len(data),
        )
        return str(result.get("ETag", ""))

    def _writer_state(self, info: UploadInfo) -> UploadState:
        """What a writer needs when no hand-off from ``get`` applies: ask S3."""
        object_id, multipart_id = split_upload_id(info.id)
        parts = self._list_parts(object_id, multipart_id)
        if parts is None:
            self._read_info(object_id, info.id)  # raises UploadNotFoundError when gone
            raise StoreError("the S3 upload is already complete")
        stored = contiguous(parts)
        pending, _ = self._head_pending(object_id)
        size = None if info.size_is_deferred else info.size
        return upload_state(object_id, multipart_id, size, stored, pending)

    # --- whole uploads ------------------------------------------------------------------

    def _create_sync(self, info: UploadInfo) -> UploadInfo:
        object_id = info.id
        key = self._key(object_id)
        metadata = {k: _NON_PRINTABLE.sub("?", v) for k, v in info.metadata.items()}
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key, "Metadata": metadata}
        if "filetype" in info.metadata:
            params["ContentType"] = info.metadata["filetype"]
        response = self._client.create_multipart_upload(**params)
        multipart_id = response["UploadId"]
        stored = replace(
            info,
            id=f"{object_id}+{multipart_id}",
            offset=0,
            storage={"Type": STORE_NAME, "Bucket": self.bucket, "Key": key},
            created=info.created or time.time(),
        )
        self._write_info(stored)
        return stored

    def _finish_sync(self, info: UploadInfo, known: tuple[StoredPart, ...] | None = None) -> None:
        """Complete the multipart upload; ``known``: every part, from the commit just
        before (same locked request), which stored every byte and left no .part."""
        object_id, multipart_id = split_upload_id(info.id)
        if known is not None:
            stored = list(known)
            pending = b""
        else:
            parts = self._list_parts(object_id, multipart_id)
            if parts is None:
                # Completed before (finish is idempotent), or gone.
                self._read_info(object_id, info.id)
                return
            stored = contiguous(parts)
            pending = self._get_pending(object_id)
        state = PartState(
            size=None,
            done_bytes=sum(p.size for p in stored),
            done_parts=len(stored),
            first_part_size=stored[0].size if stored else 0,
            buffered=len(pending),
        )
        try:
            needed = finishing_parts(self.limits, state)
        except PartPlanError as exc:
            raise StoreError(f"S3 upload cannot be completed: {exc}") from None
        if needed:
            number = len(stored) + 1
            if pending:
                self._delete_pending(object_id)
            etag = self._upload_part(object_id, multipart_id, number, pending)
            stored.append(StoredPart(number, len(pending), etag, 0.0))
        try:
            self._client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self._key(object_id),
                UploadId=multipart_id,
                MultipartUpload={
                    "Parts": [{"ETag": p.etag, "PartNumber": p.number} for p in stored]
                },
            )
        except ClientError as exc:
            if known is not None and error_code(exc) in _BAD_PART_LIST:
                log.warning("stale part list for %s; listing the parts", object_id)
                self._finish_sync(info)
                return
            if error_code(exc) not in _MISSING_UPLOAD:
                raise
            self._read_info(object_id, info.id)  # completed meanwhile, or gone

    def _terminate_sync(self, info: UploadInfo) -> None:
        object_id, multipart_id = split_upload_id(info.id)
        key = self._key(object_id)
        try:
            self._client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=multipart_id)
        except ClientError as exc:
            if error_code(exc) not in _MISSING_UPLOAD:
                raise
        response = self._client.delete_objects(
            Bucket=self.bucket,
            Delete={
                "Objects": [{"Key": key}, {"Key": key + ".part"}, {"Key": key + ".info"}],
                "Quiet": True,
            },
        )
        failed = [e for e in response.get("Errors", []) if e.get("Code") not in _MISSING_OBJECT]
        if failed:
            raise StoreError(
                f"S3 DeleteObjects failed ({failed[0].get('Code')}: {failed[0].get('Key')})"
            )

    # --- concatenation and reading -------------------------------------------------------

    def _partial_sizes(self, sources: list[str]) -> list[int]:
        sizes = []
        for source in sources:
            try:
                head = self._client.head_object(Bucket=self.bucket, Key=self._key(source))
            except ClientError as exc:
                if error_code(exc) in _MISSING_OBJECT:
                    raise UploadNotFoundError() from None
                raise
            sizes.append(int(head.get("ContentLength", 0)))
        return sizes

    def _copy_part(
        self,
        object_id: str,
        multipart_id: str,
        number: int,
        source: str,
        start: int,
        end: int,
        ranged: bool,
    ) -> None:
        params: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": self._key(object_id),
            "UploadId": multipart_id,
            "PartNumber": number,
            "CopySource": {"Bucket": self.bucket, "Key": self._key(source)},
        }
        if ranged:
            params["CopySourceRange"] = f"bytes={start}-{end - 1}"
        self._client.upload_part_copy(**params)

    def _open_body(self, object_id: str, start: int, end: int) -> Any:
        """The streaming body of the bytes ``[start, end)`` of the final object."""
        try:
            response = self._client.get_object(
                Bucket=self.bucket, Key=self._key(object_id), Range=f"bytes={start}-{end - 1}"
            )
        except ClientError as exc:
            if error_code(exc) in _MISSING_OBJECT:
                raise UploadNotFoundError() from None
            raise
        return response["Body"]

    def _check_bucket(self) -> None:
        self._client.head_bucket(Bucket=self.bucket)

    def _close_clients(self) -> None:
        self._client.close()
        if self._http is not None:
            self._http.close()
