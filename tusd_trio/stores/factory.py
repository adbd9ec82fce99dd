"""Build the configured store: S3, then GCS, then Azure, else the file store (tusd's
order).  The object-store modules are imported only when chosen, so their SDKs
are needed only by those who use them."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .base import Store
from .file import FileStore

if TYPE_CHECKING:
    from ..config import Config


class StoreConfigError(RuntimeError):
    """The chosen store cannot be set up (bad settings, missing SDK or credentials)."""


class MissingDependencyError(StoreConfigError):
    """The chosen store's SDK is not installed."""


def build_store(config: Config) -> Store:
    try:
        if config.s3 is not None:
            from .s3 import S3Store

            return S3Store(config.s3)
        if config.gcs is not None:
            from .gcs import GCSStore

            return GCSStore(config.gcs)
        if config.azure is not None:
            from .azure import AzureStore

            return AzureStore(config.azure)
    except ImportError as exc:
        extra = "s3" if config.s3 else "gcs" if config.gcs else "azure"
        raise MissingDependencyError(
            f"this store needs the {extra!r} extra: pip install 'tusd-trio[{extra}]' ({exc})"
        ) from None
    except ValueError as exc:
        raise StoreConfigError(str(exc)) from None
    return FileStore(
        config.upload_dir,
        dir_perms=config.dir_perms,
        file_perms=config.file_perms,
        fsync=config.fsync,
    )


def store_description(config: Config) -> str:
    """The start-up line naming the store, worded as tusd's."""
    if config.s3 is not None:
        where = f"s3://{config.s3.bucket}/{config.s3.object_prefix}"
        line = f"Using '{where}' as S3 bucket for storage."
        if config.s3.endpoint:
            line += f" Endpoint: {config.s3.endpoint}"
        return line
    if config.gcs is not None:
        where = f"gcs://{config.gcs.bucket}/{config.gcs.object_prefix}"
        return f"Using '{where}' as GCS bucket for storage."
    if config.azure is not None:
        account = config.azure.account
        endpoint = config.azure.endpoint or f"https://{account}.blob.core.windows.net"
        return (
            f"Using Azure endpoint {endpoint} (container {config.azure.container!r}) for storage."
        )
    return f"Using '{os.path.abspath(config.upload_dir)}' as directory storage."
