"""Settings of the stores, filled by the CLI (tusd's flag names, through
:meth:`tusd_trio.config.Config.store_settings`) or by an embedding application.
Credentials of the object stores come from the environment, as in tusd."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..protocol.config import StoreCapabilities

MiB = 1024 * 1024
GiB = 1024 * MiB
TiB = 1024 * GiB


@dataclass(frozen=True)
class FileStoreConfig:
    #: The upload directory (-upload-dir).
    directory: str = "./data"
    #: Permissions of the directories created (-dir-perms).
    dir_perms: int = 0o775
    #: Permissions of the files created (-file-perms).
    file_perms: int = 0o664
    #: fsync every chunk before acknowledging it (-fsync).
    fsync: bool = False


@dataclass(frozen=True)
class S3Config:
    bucket: str
    #: Key prefix; a "/" is added when missing.
    object_prefix: str = ""
    #: Custom endpoint with scheme (moto, MinIO, R2, ...); forces path-style addressing.
    endpoint: str = ""
    #: Region; empty = AWS_REGION / AWS_DEFAULT_REGION / ~/.aws/config, else us-east-1.
    region: str = ""
    #: Preferred part size (-s3-part-size).
    part_size: int = 50 * MiB
    #: Smallest part S3 accepts except the last (-s3-min-part-size).
    min_part_size: int = 5 * MiB
    #: Largest part S3 accepts.
    max_part_size: int = 5 * GiB
    #: Most parts in one multipart upload (-s3-max-parts; 10,000 on AWS).
    max_parts: int = 10_000
    #: Largest object S3 accepts.
    max_object_size: int = 5 * TiB
    #: Every part but the last has the same size (-s3-equal-parts; Cloudflare R2).
    equal_parts: bool = False
    #: Parts held in memory per upload, being filled or in flight (-s3-max-buffered-parts).
    #: tusd's default is 20 parts buffered on disk; ours are in memory, so fewer.
    max_buffered_parts: int = 4
    #: Parts uploaded at once per upload (-s3-concurrent-part-uploads).
    concurrent_part_uploads: int = 10
    #: Send no Content-MD5 / payload hashes (-s3-disable-content-hashes).
    disable_content_hashes: bool = False
    #: Plain HTTP to S3 (-s3-disable-ssl).
    disable_ssl: bool = False
    #: Use the S3 accelerate endpoint (-s3-transfer-acceleration).
    transfer_acceleration: bool = False
    #: Log every S3 call at debug level (-s3-log-api-calls).
    log_api_calls: bool = False


@dataclass(frozen=True)
class GCSConfig:
    bucket: str
    #: Object name prefix (-gcs-object-prefix); must not contain "_" (as in tusd).
    object_prefix: str = ""
    #: Custom endpoint (-gcs-endpoint), e.g. an emulator; anonymous credentials then
    #: unless GCS_SERVICE_ACCOUNT_FILE is set.
    endpoint: str = ""
    #: Service account JSON file (GCS_SERVICE_ACCOUNT_FILE); else Application Default
    #: Credentials.
    service_account_file: str = ""
    #: Project for the client (GOOGLE_CLOUD_PROJECT); rarely needed.
    project: str = ""


@dataclass(frozen=True)
class AzureConfig:
    #: Container name (-azure-storage).
    container: str
    #: AZURE_STORAGE_ACCOUNT.
    account: str = ""
    #: AZURE_STORAGE_KEY; empty = DefaultAzureCredential (Entra ID).
    key: str = ""
    #: -azure-endpoint; default https://<account>.blob.core.windows.net
    endpoint: str = ""
    #: "", "blob" or "container": public access of a container we create.
    container_access_type: str = ""
    #: "", "archive", "cool" or "hot": tier of finished blobs.
    blob_access_tier: str = ""
    #: Blob name prefix (-azure-object-prefix).
    object_prefix: str = ""


#: The settings of one store; their type says which store.
StoreConfig = FileStoreConfig | S3Config | GCSConfig | AzureConfig

# What each store can do, declared with its settings so that the -workers parent can
# print the advertised extensions without importing the store (and its SDK).
FILE_CAPABILITIES = StoreCapabilities()
GCS_CAPABILITIES = StoreCapabilities()
#: S3 and Azure cannot read what an unfinished upload holds so far.
S3_CAPABILITIES = StoreCapabilities(serve_incomplete=False)
AZURE_CAPABILITIES = StoreCapabilities(serve_incomplete=False)


def store_capabilities(settings: StoreConfig) -> StoreCapabilities:
    """The capabilities of the store these settings choose."""
    if isinstance(settings, S3Config):
        return S3_CAPABILITIES
    if isinstance(settings, GCSConfig):
        return GCS_CAPABILITIES
    if isinstance(settings, AzureConfig):
        return AZURE_CAPABILITIES
    return FILE_CAPABILITIES


def store_description(settings: StoreConfig) -> str:
    """The start-up line naming the store, worded as tusd's."""
    if isinstance(settings, S3Config):
        where = f"s3://{settings.bucket}/{settings.object_prefix}"
        line = f"Using '{where}' as S3 bucket for storage."
        if settings.endpoint:
            line += f" Endpoint: {settings.endpoint}"
        return line
    if isinstance(settings, GCSConfig):
        where = f"gcs://{settings.bucket}/{settings.object_prefix}"
        return f"Using '{where}' as GCS bucket for storage."
    if isinstance(settings, AzureConfig):
        account = settings.account
        endpoint = settings.endpoint or f"https://{account}.blob.core.windows.net"
        return f"Using Azure endpoint {endpoint} (container {settings.container!r}) for storage."
    return f"Using '{os.path.abspath(settings.directory)}' as directory storage."
