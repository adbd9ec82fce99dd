"""Flag values (:func:`.flags.parse_args`) and the environment tusd reads, as a
:class:`~tusd_trio.config.Config`.

Only the flags' own syntax is checked here (a port given as text, the base path's
leading slash, the hook event list); every other check belongs to
:class:`~tusd_trio.config.Config`, so an embedding application gets it too.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from ..auth import AuthConfig
from ..config import Config, ConfigError
from ..hooks.model import parse_enabled_events
from ..protocol.config import (
    DEFAULT_CORS_ALLOW_HEADERS,
    DEFAULT_CORS_ALLOW_METHODS,
    DEFAULT_CORS_EXPOSE_HEADERS,
    CorsConfig,
    ProtocolConfig,
)
from ..quotas.policy import QuotaConfig
from ..stores.config import AzureConfig, GCSConfig, S3Config
from .flags import UsageError


def build_config(values: Mapping[str, Any]) -> Config:
    """The configuration the flag ``values`` describe; :class:`UsageError` naming the
    flag when they cannot work (also for what reading the files they name finds)."""
    try:
        config = _config(values)
        if values["workers"] == "auto" and config.allows_several_workers:
            config = replace(config, workers=usable_cores())
        config.check_files()
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    return config


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, which container
    runtimes' cpusets set), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - platforms without affinity
        return max(1, os.cpu_count() or 1)


def _workers(text: str) -> int:
    """-workers: a number, or auto (1 here; :func:`build_config` then sets one per
    core if several workers can work: see ``Config.allows_several_workers``)."""
    if text == "auto":
        return 1
    if not re.fullmatch(r"[0-9]{1,4}", text):
        raise UsageError(f"invalid value {text!r} for flag -workers: a number or auto")
    return int(text)


def _config(values: Mapping[str, Any]) -> Config:
    port_text = str(values["port"])
    if not re.fullmatch(r"[0-9]{1,5}", port_text):
        raise UsageError(f"invalid value {port_text!r} for flag -port: not a port number")
    base_path = values["base-path"]
    if not base_path.startswith("/"):
        raise UsageError("invalid value for flag -base-path: must start with /")
    try:
        enabled = parse_enabled_events(values["hooks-enabled-events"])
    except ValueError as exc:
        raise UsageError(f"invalid value for flag -hooks-enabled-events: {exc}") from None
    if values["expose-pprof"] and os.environ.get("TUSD_PPROF_AUTH"):
        # tusd puts basic auth on pprof from this variable.  Here the metrics' access
        # rule protects the profiling endpoints; starting without the protection the
        # operator asked for would open them silently.
        raise UsageError(
            "TUSD_PPROF_AUTH is not supported: the profiling endpoints of -expose-pprof are "
            "protected like /metrics (access control with an admin credential, "
            "-metrics-token-file, or -metrics-listen); unset it and use one of those"
        )
    s3, gcs, azure = _object_store_settings(values)
    return Config(
        s3=s3,
        gcs=gcs,
        azure=azure,
        auth=_auth_settings(values),
        quota=_quota_settings(values),
        host=values["host"],
        port=int(port_text),
        unix_sock=values["unix-sock"],
        enable_h2c=values["enable-h2c"],
        tls_certificate=values["tls-certificate"],
        tls_key=values["tls-key"],
        tls_mode=values["tls-mode"],
        workers=_workers(values["workers"]),
        protocol=_protocol_settings(values),
        upload_dir=values["upload-dir"],
        dir_perms=values["dir-perms"],
        file_perms=values["file-perms"],
        fsync=values["fsync"],
        locker=values["locker"],
        redis_url=values["redis-url"],
        redis_lock_ttl=values["redis-lock-ttl"],
        redis_key_prefix=values["redis-key-prefix"],
        enable_experimental_protocol=values["enable-experimental-protocol"],
        acquire_lock_timeout=values["acquire-lock-timeout"],
        filelock_holder_poll_interval=values["filelock-holder-poll-interval"],
        filelock_acquirer_poll_interval=values["filelock-acquirer-poll-interval"],
        network_timeout=values["network-timeout"],
        idle_timeout=values["idle-timeout"],
        request_completion_timeout=values["request-completion-timeout"],
        shutdown_timeout=values["shutdown-timeout"],
        max_header_size=values["max-header-size"],
        http1_parser=values["http1-parser"],
        max_connections=values["max-connections"],
        expiration_interval=values["expiration-interval"],
        orphan_age=values["orphan-age"],
        hooks_enabled_events=enabled,
        progress_hooks_interval=max(0.01, values["progress-hooks-interval"]),
        hooks_dir=values["hooks-dir"],
        hooks_http=values["hooks-http"],
        hooks_http_forward_headers=_names(values["hooks-http-forward-headers"]),
        hooks_http_retry=max(1, values["hooks-http-retry"]),
        hooks_http_backoff=values["hooks-http-backoff"],
        hooks_http_timeout=values["hooks-http-timeout"],
        hooks_http_size_limit=values["hooks-http-size-limit"],
        hooks_http_skip_verify=values["hooks-http-skip-verify"],
        hooks_grpc=values["hooks-grpc"],
        hooks_grpc_retry=max(1, values["hooks-grpc-retry"]),
        hooks_grpc_backoff=values["hooks-grpc-backoff"],
        hooks_grpc_timeout=values["hooks-grpc-timeout"],
        hooks_grpc_secure=values["hooks-grpc-secure"],
        hooks_grpc_server_tls_certificate=values["hooks-grpc-server-tls-certificate"],
        hooks_grpc_client_tls_certificate=values["hooks-grpc-client-tls-certificate"],
        hooks_grpc_client_tls_key=values["hooks-grpc-client-tls-key"],
        hooks_grpc_forward_headers=_names(values["hooks-grpc-forward-headers"]),
        hooks_plugin=values["hooks-plugin"],
        hooks_redis_stream=values["hooks-redis-stream"],
        hooks_redis_stream_maxlen=values["hooks-redis-stream-maxlen"],
        hooks_redis_stream_retry=max(1, values["hooks-redis-stream-retry"]),
        hooks_redis_stream_backoff=values["hooks-redis-stream-backoff"],
        hooks_blocking_timeout=values["hooks-blocking-timeout"],
        hooks_outbox=values["hooks-outbox"],
        hooks_outbox_max_age=values["hooks-outbox-max-age"],
        hooks_outbox_max_backoff=max(0.01, values["hooks-outbox-max-backoff"]),
        hooks_outbox_dir=values["hooks-outbox-dir"],
        hooks_outbox_ready_max_age=values["hooks-outbox-ready-max-age"],
        expose_events=values["expose-events"],
        events_path=values["events-path"],
        metrics_listen=values["metrics-listen"],
        metrics_token_file=values["metrics-token-file"],
        operator_endpoints_public=values["operator-endpoints-public"],
        pprof_block_profile_rate=values["pprof-block-profile-rate"],
        pprof_mutex_profile_rate=values["pprof-mutex-profile-rate"],
        log_format=values["log-format"],
        verbose=values["verbose"],
        show_startup_logs=values["show-startup-logs"],
    )


def _names(text: str) -> tuple[str, ...]:
    """A comma-separated list of header names, blanks dropped."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _protocol_settings(values: Mapping[str, Any]) -> ProtocolConfig:
    def extend(default: str, extra: str) -> str:
        return f"{default}, {extra}" if extra.strip() else default

    cors = None
    if not values["disable-cors"]:
        cors = CorsConfig(
            allow_origin=values["cors-allow-origin"],
            allow_credentials=values["cors-allow-credentials"],
            allow_methods=extend(DEFAULT_CORS_ALLOW_METHODS, values["cors-allow-methods"]),
            allow_headers=extend(DEFAULT_CORS_ALLOW_HEADERS, values["cors-allow-headers"]),
            expose_headers=extend(DEFAULT_CORS_EXPOSE_HEADERS, values["cors-expose-headers"]),
            max_age=str(values["cors-max-age"]),
        )
    return ProtocolConfig(
        base_path=values["base-path"],
        max_size=values["max-size"],
        disable_download=values["disable-download"],
        disable_termination=values["disable-termination"],
        disable_concatenation=values["disable-concatenation"],
        cors=cors,
        behind_proxy=values["behind-proxy"],
        relative_location=values["relative-location"],
        expiration=values["expiration"],
        checksum_algorithms=_names(values["checksum-algorithms"]),
        show_greeting=values["show-greeting"],
        metrics_path=values["metrics-path"] if values["expose-metrics"] else "",
        pprof_path=values["pprof-path"] if values["expose-pprof"] else "",
        max_concat_partials=values["max-concat-partials"],
    )


def _quota_settings(values: Mapping[str, Any]) -> QuotaConfig:
    limits = (
        values["auth-quota-bytes"],
        values["auth-quota-uploads"],
        values["auth-quota-max-size"],
    )
    return QuotaConfig(
        enabled=bool(values["auth-quotas"]) or any(limit > 0 for limit in limits),
        bytes=limits[0],
        uploads=limits[1],
        max_size=limits[2],
    )


def _auth_settings(values: Mapping[str, Any]) -> AuthConfig:
    base_path = values["base-path"]
    return AuthConfig(
        jwt_secret=values["auth-jwt-secret"],
        jwt_secret_file=values["auth-jwt-secret-file"],
        jwt_public_key_file=values["auth-jwt-public-key"],
        jwt_jwks_file=values["auth-jwt-jwks"],
        jwt_audience=values["auth-jwt-audience"],
        jwt_issuer=values["auth-jwt-issuer"],
        jwt_admin_claim=values["auth-jwt-admin-claim"],
        jwt_leeway=values["auth-jwt-leeway"],
        api_keys_file=values["auth-api-keys"],
        api_key_header=values["auth-api-key-header"],
        signing_secret=values["auth-signing-secret"],
        signing_secret_file=values["auth-signing-secret-file"],
        presigned_upload_ttl=values["auth-presigned-upload-ttl"],
        base_path=base_path if base_path.endswith("/") else base_path + "/",
    )


def _object_store_settings(
    values: Mapping[str, Any],
) -> tuple[S3Config | None, GCSConfig | None, AzureConfig | None]:
    """The object store settings; the first configured store wins (S3, GCS, Azure),
    as in tusd.  Region and credentials come from the environment, as in tusd."""
    s3 = gcs = azure = None
    if values["s3-bucket"]:
        s3 = S3Config(
            bucket=values["s3-bucket"],
            object_prefix=values["s3-object-prefix"],
            endpoint=values["s3-endpoint"],
            region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "",
            part_size=values["s3-part-size"],
            min_part_size=values["s3-min-part-size"],
            max_parts=values["s3-max-parts"],
            equal_parts=values["s3-equal-parts"],
            max_buffered_parts=values["s3-max-buffered-parts"],
            concurrent_part_uploads=values["s3-concurrent-part-uploads"],
            disable_content_hashes=values["s3-disable-content-hashes"],
            disable_ssl=values["s3-disable-ssl"],
            transfer_acceleration=values["s3-transfer-acceleration"],
            log_api_calls=values["s3-log-api-calls"],
        )
    elif values["gcs-bucket"]:
        gcs = GCSConfig(
            bucket=values["gcs-bucket"],
            object_prefix=values["gcs-object-prefix"],
            endpoint=values["gcs-endpoint"],
            service_account_file=os.environ.get("GCS_SERVICE_ACCOUNT_FILE", ""),
            project=os.environ.get("GOOGLE_CLOUD_PROJECT", ""),
        )
    elif values["azure-storage"]:
        azure = AzureConfig(
            container=values["azure-storage"],
            account=os.environ.get("AZURE_STORAGE_ACCOUNT", ""),
            key=os.environ.get("AZURE_STORAGE_KEY", ""),
            endpoint=values["azure-endpoint"],
            container_access_type=values["azure-container-access-type"],
            blob_access_tier=values["azure-blob-access-tier"].lower(),
            object_prefix=values["azure-object-prefix"],
        )
    return s3, gcs, azure
