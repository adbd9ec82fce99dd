"""Build a store from its settings (:mod:`.config`): the settings' type chooses the
store.  The object-store packages are imported only when chosen, so their SDKs are
needed only by those who use them."""

from __future__ import annotations

from .base import Store
from .config import FileStoreConfig, GCSConfig, S3Config, StoreConfig
from .file import FileStore


class StoreConfigError(RuntimeError):
    """The chosen store cannot be set up (bad settings, missing SDK or credentials)."""


class MissingDependencyError(StoreConfigError):
    """The chosen store's SDK is not installed."""


def _extra(settings: StoreConfig) -> str:
    """The package extra that installs the SDK of the store ``settings`` choose."""
    if isinstance(settings, S3Config):
        return "s3"
    if isinstance(settings, GCSConfig):
        return "gcs"
    return "azure"


def build_store(settings: StoreConfig) -> Store:
    """The store ``settings`` configure; :class:`StoreConfigError` when it cannot be."""
    if isinstance(settings, FileStoreConfig):
        return FileStore(
            settings.directory,
            dir_perms=settings.dir_perms,
            file_perms=settings.file_perms,
            fsync=settings.fsync,
        )
    try:
        # The SDKs are optional dependencies: each store's package is imported here,
        # only when it is the one chosen.
        if isinstance(settings, S3Config):
            from .s3 import S3Store

            return S3Store(settings)
        if isinstance(settings, GCSConfig):
            from .gcs import GCSStore

            return GCSStore(settings)
        from .azure import AzureStore

        return AzureStore(settings)
    except ImportError as exc:
        extra = _extra(settings)
        raise MissingDependencyError(
            f"this store needs the {extra!r} extra: pip install 'tusd-trio[{extra}]' ({exc})"
        ) from None
    except ValueError as exc:
        raise StoreConfigError(str(exc)) from None
