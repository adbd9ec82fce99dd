"""The daemon's configuration: one immutable object built by the CLI or by an embedding app.

:class:`Config` checks its own values when it is made, so an application that builds
one (``tusd_trio.asgi.create_app(Config(...))``) gets the command line's checks; the
checks that read files or import modules are :meth:`Config.check_files`, which the
CLI runs before starting.  Messages name a setting by its command-line flag
(the README's tables list them, and each field below says its flag).

A configuration is never changed once made.  What the server derives from it
(the store's capabilities, the CORS headers an API key needs) is computed by
:meth:`Config.served_protocol`; a worker process's listening socket by
:meth:`Config.for_worker`.  Both return new objects.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Collection
from dataclasses import dataclass, field, replace

from ._values import parse_listen_address
from .auth import AuthConfig, AuthConfigError, Authenticator, load_metrics_token
from .hooks.model import HOOK_TYPES
from .lockers.config import LockerConfig
from .lockers.redis_url import parse_redis_url
from .protocol.config import ProtocolConfig, StoreCapabilities
from .protocol.headers import CHECKSUM_ALGORITHMS
from .quotas.policy import QuotaConfig
from .stores.config import AzureConfig, FileStoreConfig, GCSConfig, S3Config, StoreConfig

#: -tls-mode values (see :mod:`tusd_trio.server._tls`).
TLS_MODES = ("tls12", "tls12-strong", "tls13")
#: -log-format values.
LOG_FORMATS = ("text", "json")
HTTP1_PARSERS = ("auto", "httptools", "h11")
#: -locker values.
LOCKERS = ("file", "memory", "redis")
_GRPC_TLS_FILES = (
    ("hooks_grpc_server_tls_certificate", "hooks-grpc-server-tls-certificate"),
    ("hooks_grpc_client_tls_certificate", "hooks-grpc-client-tls-certificate"),
    ("hooks_grpc_client_tls_key", "hooks-grpc-client-tls-key"),
)


class ConfigError(ValueError):
    """A setting that cannot work; the message is one line naming its flag."""


@dataclass(frozen=True, slots=True)
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
    #: Which parser reads HTTP/1.1 requests (-http1-parser): auto | httptools | h11
    http1_parser: str = "auto"
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
    #: Name of the Redis stream notification events are added to ("" = none); on -redis-url.
    hooks_redis_stream: str = ""
    #: ``MAXLEN ~`` of that stream (0 = unbounded).
    hooks_redis_stream_maxlen: int = 100_000
    hooks_redis_stream_retry: int = 3
    hooks_redis_stream_backoff: float = 1.0
    hooks_blocking_timeout: float = 30.0
    #: Notification hooks through the durable outbox (hooks/outbox.py).
    hooks_outbox: bool = True
    #: Seconds an outbox event is retried before it is moved aside as dead.
    hooks_outbox_max_age: float = 24 * 3600.0
    #: Longest wait between two delivery attempts of an outbox event.
    hooks_outbox_max_backoff: float = 60.0
    #: The outbox's directory ("" = next to the file store's uploads, or Redis).
    hooks_outbox_dir: str = ""
    #: /health/ready fails while an outbox event waits longer than this (0 = never).
    hooks_outbox_ready_max_age: float = 0.0
    # Access control (off unless a credential kind is configured)
    auth: AuthConfig = field(default_factory=AuthConfig)
    # Per-principal quotas (only with access control; see quotas/)
    quota: QuotaConfig = field(default_factory=QuotaConfig)
    # Operator endpoints (/metrics, /health/ready details): see server/_operator.py
    #: ``host:port`` of a listener serving only them, without credentials ("" = none).
    metrics_listen: str = ""
    #: File holding a bearer token that unlocks them while access control is on.
    metrics_token_file: str = ""
    #: Serve them to anyone, also while access control is on.
    operator_endpoints_public: bool = False
    # Profiling (-expose-pprof: protocol.pprof_path).  tusd's two Go runtime rates are
    # kept for its command lines and have no effect here (no Go runtime to tune).
    pprof_block_profile_rate: int = 0
    pprof_mutex_profile_rate: int = 0
    # Live events (GET /events, WebSocket)
    expose_events: bool = False
    events_path: str = "/events"
    # Logging
    log_format: str = "text"
    verbose: bool = True
    show_startup_logs: bool = True

    def __post_init__(self) -> None:
        # Normalised once, while the object is being made.
        if self.idle_timeout <= 0:
            object.__setattr__(self, "idle_timeout", self.network_timeout)
        object.__setattr__(self, "hooks_enabled_events", tuple(self.hooks_enabled_events))
        self._check_listening()
        self._check_locks()
        self._check_protocol()
        self._check_hooks()
        self._check_operator()
        self._check_object_stores()
        self._check_workers()
        self._check_quota()

    # --- checks of the values (no I/O) -------------------------------------------------

    def _check_listening(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"invalid value '{self.port}' for flag -port: not a port number")
        if self.tls_mode not in TLS_MODES:
            raise ConfigError(
                "invalid value for flag -tls-mode: must be tls13, tls12 or tls12-strong"
            )
        if self.log_format not in LOG_FORMATS:
            raise ConfigError("invalid value for flag -log-format: must be text or json")
        if self.network_timeout <= 0:
            raise ConfigError("invalid value for flag -network-timeout: must be positive")
        if self.http1_parser not in HTTP1_PARSERS:
            raise ConfigError(
                "invalid value for flag -http1-parser: must be auto, httptools or h11"
            )

    def _check_locks(self) -> None:
        if self.locker not in LOCKERS:
            raise ConfigError("invalid value for flag -locker: must be file, memory or redis")
        if self.locker == "redis":
            self._check_redis_url("-locker redis")
            if self.redis_lock_ttl < 1:
                raise ConfigError("invalid value for flag -redis-lock-ttl: must be at least 1s")

    def _check_redis_url(self, user: str) -> None:
        """``user`` (a flag and its value) needs a usable -redis-url."""
        if not self.redis_url:
            raise ConfigError(f"{user} needs -redis-url (e.g. redis://127.0.0.1:6379/0)")
        try:
            parse_redis_url(self.redis_url)
        except ValueError as exc:
            raise ConfigError(f"invalid value for flag -redis-url: {exc}") from None

    def _check_protocol(self) -> None:
        cors = self.protocol.cors
        if cors is not None:
            try:
                re.compile(cors.allow_origin)
            except re.error as exc:
                raise ConfigError(f"invalid value for flag -cors-allow-origin: {exc}") from None
        for algorithm in self.protocol.checksum_algorithms:
            if algorithm not in CHECKSUM_ALGORITHMS:
                raise ConfigError(
                    f"invalid value for flag -checksum-algorithms: unknown algorithm {algorithm!r}"
                    f" (supported: {', '.join(CHECKSUM_ALGORITHMS)})"
                )

    def _check_hooks(self) -> None:
        for name in self.hooks_enabled_events:
            if name not in HOOK_TYPES:
                raise ConfigError(
                    "invalid value for flag -hooks-enabled-events: unknown hook event type "
                    f"in -hooks-enabled-events: {name!r}"
                )
        if self.hooks_http and not re.match(r"https?://", self.hooks_http):
            raise ConfigError(
                "invalid value for flag -hooks-http: must be an http:// or https:// URL"
            )
        for attribute, flag in _GRPC_TLS_FILES:
            if getattr(self, attribute) and not self.hooks_grpc_secure:
                raise ConfigError(f"flag -{flag} needs -hooks-grpc-secure")
        if self.hooks_redis_stream:
            self._check_redis_url("-hooks-redis-stream")
        if self.hooks_redis_stream_maxlen < 0:
            raise ConfigError(
                "invalid value for flag -hooks-redis-stream-maxlen: must not be negative"
            )

    def _check_operator(self) -> None:
        if self.metrics_listen:
            try:
                parse_listen_address(self.metrics_listen)
            except ValueError as exc:
                raise ConfigError(f"invalid value for flag -metrics-listen: {exc}") from None
        pprof = self.protocol.pprof_path
        if pprof:
            base = self.protocol.base_path
            if pprof == "/" or pprof.startswith(base) or base.startswith(pprof):
                raise ConfigError(
                    f"invalid value for flag -pprof-path: {pprof!r} must not be / and must "
                    f"not overlap -base-path {base!r}"
                )

    def _check_object_stores(self) -> None:
        s3, gcs, azure = self.s3, self.gcs, self.azure
        if s3 is not None:
            if s3.endpoint and not re.match(r"https?://", s3.endpoint):
                raise ConfigError(
                    "invalid value for flag -s3-endpoint: must start with http:// or https://"
                )
            if s3.part_size < s3.min_part_size:
                raise ConfigError("-s3-part-size must not be smaller than -s3-min-part-size")
            if s3.min_part_size < 1 or s3.max_parts < 1:
                raise ConfigError("-s3-min-part-size and -s3-max-parts must be at least 1")
            if s3.max_buffered_parts < 1 or s3.concurrent_part_uploads < 1:
                raise ConfigError(
                    "-s3-max-buffered-parts and -s3-concurrent-part-uploads must be at least 1"
                )
        if gcs is not None and "_" in gcs.object_prefix:
            raise ConfigError("invalid value for flag -gcs-object-prefix: must not contain '_'")
        if azure is not None:
            if not azure.account:
                raise ConfigError(
                    "-azure-storage needs the AZURE_STORAGE_ACCOUNT environment variable"
                )
            if azure.container_access_type not in ("", "blob", "container"):
                raise ConfigError(
                    "invalid value for flag -azure-container-access-type: must be blob, "
                    "container or empty"
                )
            if azure.blob_access_tier.lower() not in ("", "archive", "cool", "hot"):
                raise ConfigError(
                    "invalid value for flag -azure-blob-access-tier: must be archive, cool, "
                    "hot or empty"
                )

    @property
    def locks_across_processes(self) -> bool:
        """Whether the locker works across processes (file locker with the file store,
        or Redis): what more than one worker needs."""
        object_store = self.s3 is not None or self.gcs is not None or self.azure is not None
        return not (self.locker == "memory" or (object_store and self.locker != "redis"))

    @property
    def allows_several_workers(self) -> bool:
        """Whether ``-workers`` above 1 can work: a lock shared across processes and,
        with quotas, a ledger shared across them (Redis)."""
        if self.quota.enabled and self.locker != "redis":
            return False
        return self.locks_across_processes

    def _check_workers(self) -> None:
        if self.workers < 1:
            raise ConfigError("invalid value for flag -workers: must be at least 1")
        if self.workers > 1 and not self.locks_across_processes:
            raise ConfigError(
                "-workers above 1 needs a lock shared by the worker processes: -locker "
                "redis (or -locker file with the file store); the memory locker only works "
                "in one process"
            )

    def _check_quota(self) -> None:
        if not self.quota.enabled:
            return
        if not self.auth.enabled:
            raise ConfigError(
                "quotas (-auth-quota*) need access control: configure -auth-jwt-*, "
                "-auth-api-keys or -auth-signing-secret"
            )
        if self.workers > 1 and self.locker != "redis":
            raise ConfigError(
                "quotas with -workers above 1 need -locker redis: the in-process ledger "
                "only counts the uploads of one process"
            )

    # --- checks that read files or import modules ---------------------------------------

    def check_files(self) -> None:
        """Check what the settings name outside themselves: the hook plugin imports, the
        gRPC hook's TLS files and the hooks directory exist, the access-control keys
        and the metrics token load.  Raises :class:`ConfigError`."""
        if self.hooks_plugin:
            module_name, _, attribute = self.hooks_plugin.partition(":")
            try:
                module = importlib.import_module(module_name)
                if attribute:
                    getattr(module, attribute)
            except Exception as exc:
                raise ConfigError(f"invalid value for flag -hooks-plugin: {exc!r}") from None
        for attribute, flag in _GRPC_TLS_FILES:
            path = getattr(self, attribute)
            if path and not os.access(path, os.R_OK):
                raise ConfigError(f"invalid value for flag -{flag}: cannot read {path!r}")
        if self.hooks_dir and not os.path.isdir(self.hooks_dir):
            raise ConfigError("invalid value for flag -hooks-dir: not a directory")
        try:
            Authenticator(self.auth)  # reads the key files
        except (AuthConfigError, ImportError) as exc:
            raise ConfigError(f"invalid access-control settings (-auth-*): {exc}") from None
        if self.metrics_token_file:
            try:
                load_metrics_token(self.metrics_token_file)
            except AuthConfigError as exc:
                raise ConfigError(f"invalid value for flag -metrics-token-file: {exc}") from None

    # --- what the server derives ---------------------------------------------------------

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

    def served_protocol(self, capabilities: StoreCapabilities) -> ProtocolConfig:
        """The protocol settings the upload handler serves with: what the store can do
        decides what is advertised (Tus-Extension) and allowed; CORS preflights allow
        the API key header when API keys are on; with -metrics-listen the metrics and
        the profiling endpoints are served only on that listener, not on the upload
        port."""
        protocol = replace(self.protocol, capabilities=capabilities)
        cors = protocol.cors
        header = self.auth.api_key_header
        # Browsers may only send the API key header if the preflight allows it.
        if (
            self.auth.api_keys_file
            and cors is not None
            and header.lower() not in cors.allow_headers.lower()
        ):
            cors = replace(cors, allow_headers=f"{cors.allow_headers}, {header}")
            protocol = replace(protocol, cors=cors)
        if self.metrics_listen:
            protocol = replace(protocol, metrics_path="", pprof_path="")
        return protocol

    def for_worker(self, listen_fd: int, metrics_dir: str) -> Config:
        """This configuration in a worker process serving the inherited socket
        ``listen_fd``; the parent owns the UNIX socket's path, which a worker must
        never unlink."""
        return replace(self, listen_fd=listen_fd, workers=1, metrics_dir=metrics_dir, unix_sock="")

    @property
    def write_timeout(self) -> float:
        return 2 * self.network_timeout

    @property
    def janitor_interval(self) -> float:
        if self.expiration_interval > 0:
            return self.expiration_interval
        expiration = self.protocol.expiration
        return max(1.0, min(60.0, expiration / 4)) if expiration > 0 else 0.0
