"""The hook dispatcher for a configuration: which backends, with which settings."""

from __future__ import annotations

import logging
import math
import os

from ..config import Config
from .dispatcher import HookBackend, HookDispatcher
from .file import FileHookBackend
from .outbox import DURABLE_TYPES, AttemptObserver, HookOutbox, OutboxStore
from .outbox_file import FileOutboxStore
from .plugin import PluginHookBackend

log = logging.getLogger("tusd_trio")


def build_hooks(config: Config) -> HookDispatcher | None:
    """The hook dispatcher for the configured backends (several may be set at once)."""
    backends: list[HookBackend] = []
    if config.hooks_dir:
        # No limit of its own: blocking hooks are limited by the dispatcher
        # (-hooks-blocking-timeout); notification hooks may run as long as they need.
        backends.append(FileHookBackend(config.hooks_dir, timeout=math.inf))
    if config.hooks_http:
        from .http import HTTPHookBackend

        backends.append(
            HTTPHookBackend(
                config.hooks_http,
                retry=config.hooks_http_retry,
                backoff=config.hooks_http_backoff,
                timeout=config.hooks_http_timeout,
                size_limit=config.hooks_http_size_limit,
                forward_headers=config.hooks_http_forward_headers,
                skip_verify=config.hooks_http_skip_verify,
            )
        )
    if config.hooks_grpc:
        try:
            from .grpc import GRPCHookBackend
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise RuntimeError("-hooks-grpc needs grpcio: pip install 'tusd-trio[grpc]'") from exc
        backends.append(
            GRPCHookBackend(
                config.hooks_grpc,
                retry=config.hooks_grpc_retry,
                backoff=config.hooks_grpc_backoff,
                timeout=config.hooks_grpc_timeout,
                secure=config.hooks_grpc_secure,
                server_ca=config.hooks_grpc_server_tls_certificate or None,
                client_cert=config.hooks_grpc_client_tls_certificate or None,
                client_key=config.hooks_grpc_client_tls_key or None,
                forward_headers=config.hooks_grpc_forward_headers,
            )
        )
    if config.hooks_plugin:
        backends.append(PluginHookBackend(config.hooks_plugin))
    if config.hooks_redis_stream:
        # Last: it answers nothing, and an unreachable Redis (which fails the event
        # for the backends after it) does not keep the others from being called.
        try:
            from .redis_stream import RedisStreamHookBackend
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise RuntimeError(
                "-hooks-redis-stream needs coredis: pip install 'tusd-trio[redis]'"
            ) from exc
        backends.append(
            RedisStreamHookBackend(
                config.redis_url,
                config.hooks_redis_stream,
                maxlen=config.hooks_redis_stream_maxlen,
                retry=config.hooks_redis_stream_retry,
                backoff=config.hooks_redis_stream_backoff,
            )
        )
    if not backends:
        return None
    return HookDispatcher(
        backends, config.hooks_enabled_events, blocking_timeout=config.hooks_blocking_timeout
    )


def build_outbox(
    config: Config,
    hooks: HookDispatcher | None,
    *,
    upload_dir: str | None,
    on_attempt: AttemptObserver | None = None,
) -> HookOutbox | None:
    """The outbox of the notification hooks, where the deployment keeps state:
    ``-hooks-outbox-dir`` when given, else Redis with ``-locker redis`` (any instance
    may then deliver), else next to the file store's uploads.  ``None`` when it is off,
    when no notification hook is enabled, or when there is nowhere durable to keep it
    (another store without Redis or a directory: a start-up warning says so)."""
    if not config.hooks_outbox or hooks is None:
        return None
    if not any(hooks.is_enabled(hook_type) for hook_type in DURABLE_TYPES):
        return None
    store: OutboxStore
    if config.hooks_outbox_dir:
        store = FileOutboxStore(config.hooks_outbox_dir, fsync=config.fsync)
    elif config.locker == "redis":
        from .outbox_redis import RedisOutboxStore

        store = RedisOutboxStore(
            config.redis_url,
            key_prefix=config.redis_key_prefix,
            lease_ttl=config.redis_lock_ttl,
        )
    elif upload_dir is not None:
        store = FileOutboxStore(os.path.join(upload_dir, ".hooks-outbox"), fsync=config.fsync)
    else:
        log.warning(
            "The hook outbox is off: this store has no directory and -locker is not redis; "
            "set -hooks-outbox-dir to keep notification events durably"
        )
        return None
    return HookOutbox(
        store,
        hooks,
        max_age=config.hooks_outbox_max_age,
        max_backoff=config.hooks_outbox_max_backoff,
        # As long as a notification of the upload is waited for without the outbox.
        gate_timeout=config.hooks_blocking_timeout,
        on_attempt=on_attempt,
    )
