"""The daemon's configuration: one object built by the CLI or by an embedding app."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from .auth import AuthConfig
from .lockers.config import LockerConfig
from .protocol.core import ProtocolConfig
from .stores.config import AzureConfig, FileStoreConfig, GCSConfig, S3Config, StoreConfig


@dataclass
class Config:
    # Listening
    host: str = "127.0.0.1"
    port: int = 8080
    unix_sock: str = ""
    # Worker processes sharing the listening socket (-workers); 1 = this process serves
    workers: int = 1
    #: An already bound, listening socket inherited from the worker supervisor (-1 = none).
    listen_fd: int = -1
    #: Directory where worker processes share their metrics ("" = not a worker).
    metrics_dir: str = ""
    # TLS and HTTP/2 on the native server
    tls_certificate: str = ""
    tls_key: str = ""
    tls_mode: str = "tls12"  # tls12 | tls12-strong | tls13
    enable_h2c: bool = False
    # IETF Resumable Uploads draft (on by default; tusd's -enable-experimental-protocol)
    enable_experimental_protocol: bool = True
    # Protocol (base path, max size, CORS, extensions, expiration, ...)
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    # File store
    upload_dir: str = "./data"
    dir_perms: int = 0o775
    file_perms: int = 0o664
    fsync: bool = False
    # Object stores (the first one set wins: S3, GCS, Azure; none = the file store)
    s3: S3Config | None = None
    gcs: GCSConfig | None = None
    azure: AzureConfig | None = None
    # Locks
    locker: str = "file"  # file | memory | redis
    redis_url: str = ""
    redis_lock_ttl: float = 30.0
    redis_key_prefix: str = "tusd-trio:"
    acquire_lock_timeout: float = 20.0
    filelock_holder_poll_interval: float = 5.0
    filelock_acquirer_poll_interval: float = 2.0
    # Timeouts
    network_timeout: float = 60.0
    idle_timeout: float = 0.0  # 0 = the network timeout
    request_completion_timeout: float = 10.0
    shutdown_timeout: float = 10.0
    # HTTP limits
    max_header_size: int = 64 * 1024
    max_connections: int = 0
    # Expiration janitor
    expiration_interval: float = 0.0  # 0 = automatic
    # Start-up check: leftovers older than this are removed or repaired
    orphan_age: float = 60.0
    # Hooks
    #: In the order given (the ``Enabled hook events`` start-up line keeps it).
    hooks_enabled_events: Collection[str] = (
        "pre-create",
        "post-create",
        "post-receive",
        "post-terminate",
        "post-finish",
    )
    progress_hooks_interval: float = 1.0
    hooks_dir: str = ""
    hooks_http: str = ""
    hooks_http_forward_headers: tuple[str, ...] = ()
    hooks_http_retry: int = 3
    hooks_http_backoff: float = 1.0
    hooks_http_timeout: float = 15.0
    hooks_http_size_limit: int = 5120
    hooks_http_skip_verify: bool = False
    hooks_grpc: str = ""
    hooks_grpc_retry: int = 3
    hooks_grpc_backoff: float = 1.0
    hooks_grpc_timeout: float = 15.0
    hooks_grpc_secure: bool = False
    hooks_grpc_server_tls_certificate: str = ""
    hooks_grpc_client_tls_certificate: str = ""
    hooks_grpc_client_tls_key: str = ""
    hooks_grpc_forward_headers: tuple[str, ...] = ()
    hooks_plugin: str = ""
    hooks_blocking_timeout: float = 30.0
    # Access control (off unless a credential kind is configured)
    auth: AuthConfig = field(default_factory=AuthConfig)
    # Operator endpoints (/metrics, /health/ready details): see server/_operator.py
    #: ``host:port`` of a listener serving only them, without credentials ("" = none).
    metrics_listen: str = ""
    #: File holding a bearer token that unlocks them while access control is on.
    metrics_token_file: str = ""
    #: Serve them to anyone, also while access control is on.
    operator_endpoints_public: bool = False
    # Live events (GET /events, WebSocket)
    expose_events: bool = False
    events_path: str = "/events"
    # Logging
    log_format: str = "text"
    verbose: bool = True
    show_startup_logs: bool = True

    def __post_init__(self) -> None:
        if self.idle_timeout <= 0:
            self.idle_timeout = self.network_timeout

    def store_settings(self) -> StoreConfig:
        """The settings of the store to build: S3, then GCS, then Azure, else the
        file store (tusd's order)."""
        if self.s3 is not None:
            return self.s3
        if self.gcs is not None:
            return self.gcs
        if self.azure is not None:
            return self.azure
        return FileStoreConfig(
            directory=self.upload_dir,
            dir_perms=self.dir_perms,
            file_perms=self.file_perms,
            fsync=self.fsync,
        )

    def locker_settings(self) -> LockerConfig:
        """The settings of the locker to build."""
        return LockerConfig(
            kind=self.locker,
            redis_url=self.redis_url,
            redis_lock_ttl=self.redis_lock_ttl,
            redis_key_prefix=self.redis_key_prefix,
            filelock_holder_poll_interval=self.filelock_holder_poll_interval,
            filelock_acquirer_poll_interval=self.filelock_acquirer_poll_interval,
        )

    @property
    def write_timeout(self) -> float:
        return 2 * self.network_timeout

    @property
    def janitor_interval(self) -> float:
        if self.expiration_interval > 0:
            return self.expiration_interval
        expiration = self.protocol.expiration
        return max(1.0, min(60.0, expiration / 4)) if expiration > 0 else 0.0
