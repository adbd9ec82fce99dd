"""The ``tusd-trio`` command line: tusd's flag names and syntax."""

from __future__ import annotations

import importlib
import logging
import os
import re
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import trio

from ._logging import setup_logging
from ._version import __version__
from .auth import AuthConfig, AuthConfigError, Authenticator, main_hash_key, main_sign
from .config import Config
from .hooks.model import parse_enabled_events
from .protocol.core import (
    DEFAULT_CORS_ALLOW_HEADERS,
    DEFAULT_CORS_ALLOW_METHODS,
    DEFAULT_CORS_EXPOSE_HEADERS,
    CorsConfig,
    ProtocolConfig,
)
from .protocol.headers import CHECKSUM_ALGORITHMS
from .server import TLS_MODES, TLSConfigError, load_metrics_token, parse_listen_address
from .stores.config import AzureConfig, GCSConfig, MiB, S3Config
from .stores.factory import StoreConfigError, store_description

log = logging.getLogger("tusd_trio")


class UsageError(Exception):
    pass


_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Go's duration syntax (``1h30m``, ``500ms``, ``0``); returns seconds."""
    value = text.strip()
    if value.startswith("+"):
        value = value[1:]
    if value in ("0", "-0"):
        return 0.0
    if not value:
        raise ValueError("empty duration")
    position = 0
    total = 0.0
    while position < len(value):
        match = _DURATION_PART.match(value, position)
        if match is None:
            raise ValueError(f"invalid duration {text!r} (use e.g. 30s, 5m, 24h)")
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    return total


def format_duration(seconds: float) -> str:
    """Go's ``time.Duration.String`` layout: ``1h30m0s``, ``45s``, ``500ms``."""
    if seconds == 0:
        return "0s"
    if seconds < 1:
        millis = seconds * 1000
        return f"{millis:g}ms" if millis >= 1 else f"{seconds * 1e6:g}µs"
    whole_hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    secs_text = f"{secs:g}s"
    if whole_hours:
        return f"{int(whole_hours)}h{int(minutes)}m{secs_text}"
    if minutes:
        return f"{int(minutes)}m{secs_text}"
    return secs_text


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "t", "true", "yes", "on"):
        return True
    if lowered in ("0", "f", "false", "no", "off"):
        return False
    raise ValueError(f"invalid boolean {text!r}")


def _parse_uint(text: str) -> int:
    if not re.fullmatch(r"[0-9]+", text.strip()):
        raise ValueError(f"invalid non-negative integer {text!r}")
    return int(text)


def _parse_octal(text: str) -> int:
    stripped = text.strip()
    if not re.fullmatch(r"0?[0-7]{1,4}", stripped):
        raise ValueError(f"invalid octal permissions {text!r}")
    return int(stripped, 8)


@dataclass(frozen=True)
class Flag:
    name: str
    kind: str  # str, bool, uint, duration, octal
    default: Any
    help: str
    group: str

    def parse(self, text: str) -> Any:
        if self.kind == "bool":
            return _parse_bool(text)
        if self.kind == "uint":
            return _parse_uint(text)
        if self.kind == "duration":
            return parse_duration(text)
        if self.kind == "octal":
            return _parse_octal(text)
        return text

    def default_text(self) -> str:
        if self.kind == "duration":
            return format_duration(float(self.default))
        if self.kind == "octal":
            return f"0{self.default:o}"
        if self.kind == "bool":
            return "true" if self.default else "false"
        return str(self.default) if self.default != "" else '""'


FLAGS: list[Flag] = [
    # Listening
    Flag("host", "str", "127.0.0.1", "Host to bind the HTTP server to", "Listening"),
    Flag("port", "str", "8080", "Port to bind the HTTP server to (0 = any free port)", "Listening"),
    Flag("unix-sock", "str", "", "Listen on this UNIX socket instead of TCP", "Listening"),
    Flag(
        "workers",
        "uint",
        1,
        "Worker processes sharing the port (restarted if they crash); more than 1 needs a "
        "locker that works across processes (file or redis)",
        "Listening",
    ),
    Flag("base-path", "str", "/files/", "Basepath of the HTTP server", "Listening"),
    Flag(
        "behind-proxy",
        "bool",
        False,
        "Respect X-Forwarded-* and Forwarded headers (only behind a trusted proxy)",
        "Listening",
    ),
    Flag(
        "relative-location",
        "bool",
        False,
        "Answer upload creation with a relative Location URL",
        "Listening",
    ),
    Flag(
        "enable-h2c",
        "bool",
        False,
        "Serve cleartext HTTP/2 (prior knowledge or Upgrade: h2c) beside HTTP/1.1",
        "Listening",
    ),
    Flag(
        "tls-certificate",
        "str",
        "",
        "Path to the PEM certificate chain; HTTPS is used if both it and -tls-key are set",
        "TLS",
    ),
    Flag("tls-key", "str", "", "Path to the unencrypted PEM private key", "TLS"),
    Flag(
        "tls-mode",
        "str",
        "tls12",
        "tls13 (TLS 1.3 only), tls12 (TLS 1.2+ with ECDHE AEAD suites) or "
        "tls12-strong (TLS 1.2 only, ECDHE AES-256-GCM)",
        "TLS",
    ),
    Flag(
        "max-connections",
        "uint",
        0,
        "Refuse new connections with 503 beyond this many (0 = no limit)",
        "Listening",
    ),
    Flag(
        "max-header-size",
        "uint",
        65536,
        "Largest request line plus header block in bytes (431 beyond)",
        "Listening",
    ),
    # Protocol
    Flag(
        "max-size",
        "uint",
        0,
        "Maximum size of a single upload in bytes (0 = no limit)",
        "Upload protocol",
    ),
    Flag(
        "disable-download", "bool", False, "Disable the download endpoint (GET)", "Upload protocol"
    ),
    Flag(
        "disable-termination",
        "bool",
        False,
        "Disable the termination extension (DELETE)",
        "Upload protocol",
    ),
    Flag(
        "disable-concatenation",
        "bool",
        False,
        "Disable the concatenation extension",
        "Upload protocol",
    ),
    Flag(
        "max-concat-partials",
        "uint",
        1000,
        "Most partial uploads one final upload may name (0 = no limit)",
        "Upload protocol",
    ),
    Flag(
        "expiration",
        "duration",
        0.0,
        "Unfinished uploads expire this long after their last change (0 = never)",
        "Upload protocol",
    ),
    Flag(
        "expiration-interval",
        "duration",
        0.0,
        "How often the janitor removes expired uploads (0 = automatic)",
        "Upload protocol",
    ),
    Flag(
        "checksum-algorithms",
        "str",
        ",".join(CHECKSUM_ALGORITHMS),
        "Checksum algorithms accepted in Upload-Checksum (empty = checksum extension off)",
        "Upload protocol",
    ),
    Flag(
        "enable-experimental-protocol",
        "bool",
        True,
        "Serve the IETF Resumable Uploads draft (interop versions 3-9) next to tus 1.0.0",
        "Upload protocol",
    ),
    Flag(
        "show-greeting",
        "bool",
        True,
        "Show the greeting message at non-tus paths",
        "Upload protocol",
    ),
    # CORS
    Flag("disable-cors", "bool", False, "Disable CORS headers", "CORS"),
    Flag("cors-allow-origin", "str", ".*", "Regular expression of allowed origins", "CORS"),
    Flag(
        "cors-allow-credentials",
        "bool",
        False,
        "Send Access-Control-Allow-Credentials: true",
        "CORS",
    ),
    Flag("cors-allow-methods", "str", "", "Methods added to Access-Control-Allow-Methods", "CORS"),
    Flag("cors-allow-headers", "str", "", "Headers added to Access-Control-Allow-Headers", "CORS"),
    Flag("cors-max-age", "uint", 86400, "Value of Access-Control-Max-Age (seconds)", "CORS"),
    Flag(
        "cors-expose-headers", "str", "", "Headers added to Access-Control-Expose-Headers", "CORS"
    ),
    # File store
    Flag("upload-dir", "str", "./data", "Directory to store uploads in", "File storage"),
    Flag("dir-perms", "octal", 0o775, "Permissions of created directories", "File storage"),
    Flag("file-perms", "octal", 0o664, "Permissions of created files", "File storage"),
    Flag(
        "fsync",
        "bool",
        False,
        "fsync data (then info) before acknowledging every PATCH",
        "File storage",
    ),
    Flag(
        "orphan-age",
        "duration",
        60.0,
        "At start-up, remove or repair crash leftovers older than this",
        "File storage",
    ),
    Flag(
        "locker",
        "str",
        "file",
        "Lock implementation: file (processes on one host), memory (one process) or redis "
        "(many instances; needs -redis-url)",
        "File storage",
    ),
    Flag(
        "filelock-holder-poll-interval",
        "duration",
        5.0,
        "How often a lock holder looks for release requests from other processes",
        "File storage",
    ),
    Flag(
        "filelock-acquirer-poll-interval",
        "duration",
        2.0,
        "How often a process retries a lock another process holds",
        "File storage",
    ),
    Flag(
        "redis-url",
        "str",
        "",
        "Redis for -locker redis: redis://[user:pw@]host:6379/0, rediss://, unix://, "
        "redis+sentinel://h1,h2/primary/0, redis+cluster://h1,h2",
        "Locks",
    ),
    Flag(
        "redis-lock-ttl",
        "duration",
        30.0,
        "Lease of a Redis lock; renewed every third of it while held",
        "Locks",
    ),
    Flag("redis-key-prefix", "str", "tusd-trio:", "Prefix of the Redis keys and channels", "Locks"),
    # S3 store (chosen when -s3-bucket is set)
    Flag(
        "s3-bucket",
        "str",
        "",
        "Use AWS S3 (or an S3-compatible store) with this bucket; credentials and region come "
        "from the AWS environment variables and files",
        "AWS S3 storage",
    ),
    Flag("s3-object-prefix", "str", "", "Prefix of the object keys", "AWS S3 storage"),
    Flag(
        "s3-endpoint",
        "str",
        "",
        "Endpoint with scheme (S3-compatible stores); forces path-style addressing",
        "AWS S3 storage",
    ),
    Flag("s3-part-size", "uint", 50 * MiB, "Preferred part size in bytes", "AWS S3 storage"),
    Flag(
        "s3-min-part-size",
        "uint",
        5 * MiB,
        "Smallest part the store accepts (except the last), in bytes",
        "AWS S3 storage",
    ),
    Flag(
        "s3-max-parts",
        "uint",
        10_000,
        "Most parts in one multipart upload (lower it for stores with lower caps)",
        "AWS S3 storage",
    ),
    Flag(
        "s3-equal-parts",
        "bool",
        False,
        "Make every part but the last the same size (Cloudflare R2 requires it)",
        "AWS S3 storage",
    ),
    Flag(
        "s3-max-buffered-parts",
        "uint",
        4,
        "Parts held in memory per upload (being filled or uploaded): memory per upload is at "
        "most this times the part size (tusd: 20, buffered on disk)",
        "AWS S3 storage",
    ),
    Flag(
        "s3-concurrent-part-uploads",
        "uint",
        10,
        "Parts uploaded at the same time per upload",
        "AWS S3 storage",
    ),
    Flag(
        "s3-disable-content-hashes",
        "bool",
        False,
        "Do not compute MD5/SHA-256 hashes of parts (saves CPU)",
        "AWS S3 storage",
    ),
    Flag("s3-disable-ssl", "bool", False, "Talk plain HTTP to S3", "AWS S3 storage"),
    Flag(
        "s3-transfer-acceleration",
        "bool",
        False,
        "Use the S3 Transfer Acceleration endpoint",
        "AWS S3 storage",
    ),
    Flag("s3-log-api-calls", "bool", False, "Log every S3 API call", "AWS S3 storage"),
    # GCS store (chosen when -gcs-bucket is set)
    Flag(
        "gcs-bucket",
        "str",
        "",
        "Use Google Cloud Storage with this bucket; credentials from GCS_SERVICE_ACCOUNT_FILE "
        "or Application Default Credentials",
        "Google Cloud Storage",
    ),
    Flag(
        "gcs-object-prefix",
        "str",
        "",
        "Prefix of the object names (must not contain an underscore)",
        "Google Cloud Storage",
    ),
    Flag("gcs-endpoint", "str", "", "Custom endpoint (e.g. an emulator)", "Google Cloud Storage"),
    # Azure store (chosen when -azure-storage is set)
    Flag(
        "azure-storage",
        "str",
        "",
        "Use Azure Blob Storage with this container; account and key from "
        "AZURE_STORAGE_ACCOUNT and AZURE_STORAGE_KEY",
        "Azure Blob storage",
    ),
    Flag(
        "azure-container-access-type",
        "str",
        "",
        "Public access of a container we create: blob, container or empty (private)",
        "Azure Blob storage",
    ),
    Flag(
        "azure-blob-access-tier",
        "str",
        "",
        "Access tier of finished blobs: archive, cool, hot or empty (account default)",
        "Azure Blob storage",
    ),
    Flag("azure-object-prefix", "str", "", "Prefix of the blob names", "Azure Blob storage"),
    Flag(
        "azure-endpoint",
        "str",
        "",
        "Endpoint (default https://ACCOUNT.blob.core.windows.net; e.g. Azurite)",
        "Azure Blob storage",
    ),
    # Hooks
    Flag(
        "hooks-enabled-events",
        "str",
        "pre-create,post-create,post-receive,post-terminate,post-finish",
        "Comma-separated hook events to send; empty = all of tusd's (pre-finish and "
        "pre-terminate are off by default; pre-access only when named)",
        "Hooks",
    ),
    Flag(
        "progress-hooks-interval",
        "duration",
        1.0,
        "Interval of post-receive events while data arrives",
        "Hooks",
    ),
    Flag(
        "hooks-dir",
        "str",
        "",
        "Directory of executable file hooks (one file per hook name)",
        "Hooks",
    ),
    Flag("hooks-http", "str", "", "URL of an HTTP hook endpoint", "Hooks"),
    Flag(
        "hooks-http-forward-headers",
        "str",
        "",
        "Comma-separated client headers forwarded to the HTTP hook endpoint",
        "Hooks",
    ),
    Flag("hooks-http-retry", "uint", 3, "Attempts on a network error or 5xx", "Hooks"),
    Flag("hooks-http-backoff", "duration", 1.0, "Pause between HTTP hook attempts", "Hooks"),
    Flag("hooks-http-timeout", "duration", 15.0, "Time limit of one HTTP hook call", "Hooks"),
    Flag(
        "hooks-http-size-limit", "uint", 5120, "Largest HTTP hook response body in bytes", "Hooks"
    ),
    Flag(
        "hooks-http-skip-verify",
        "bool",
        False,
        "Do not verify the hook endpoint's TLS certificate",
        "Hooks",
    ),
    Flag(
        "hooks-grpc",
        "str",
        "",
        "Address (host:port) of a gRPC hook server (tusd's hook.proto)",
        "Hooks",
    ),
    Flag("hooks-grpc-retry", "uint", 3, "gRPC hook attempts on retryable errors", "Hooks"),
    Flag("hooks-grpc-backoff", "duration", 1.0, "Pause between gRPC hook attempts", "Hooks"),
    Flag("hooks-grpc-timeout", "duration", 15.0, "Time limit of one gRPC hook attempt", "Hooks"),
    Flag("hooks-grpc-secure", "bool", False, "Use TLS to the gRPC hook server", "Hooks"),
    Flag(
        "hooks-grpc-server-tls-certificate",
        "str",
        "",
        "CA certificate (PEM) that signed the gRPC hook server's certificate",
        "Hooks",
    ),
    Flag(
        "hooks-grpc-client-tls-certificate",
        "str",
        "",
        "Client certificate (PEM) for mutual TLS to the gRPC hook server",
        "Hooks",
    ),
    Flag("hooks-grpc-client-tls-key", "str", "", "Client key (PEM) for mutual TLS", "Hooks"),
    Flag(
        "hooks-grpc-forward-headers",
        "str",
        "",
        "Comma-separated client headers sent to the gRPC hook server as metadata",
        "Hooks",
    ),
    Flag(
        "hooks-plugin",
        "str",
        "",
        "Python hook plugin as module:object (an object with one method per hook)",
        "Hooks",
    ),
    Flag(
        "hooks-blocking-timeout",
        "duration",
        30.0,
        "Time limit of a blocking hook (pre-*); then the request fails with 500",
        "Hooks",
    ),
    Flag(
        "expose-events",
        "bool",
        False,
        "Stream every hook event to WebSocket subscribers at -events-path",
        "Hooks",
    ),
    Flag("events-path", "str", "/events", "Path of the live event stream", "Hooks"),
    # Access control
    Flag(
        "auth-jwt-secret",
        "str",
        "",
        "HS256 secret for Authorization: Bearer tokens (32+ bytes)",
        "Access control",
    ),
    Flag("auth-jwt-secret-file", "str", "", "File holding the HS256 secret", "Access control"),
    Flag(
        "auth-jwt-public-key",
        "str",
        "",
        "PEM public key for RS256 (RSA) or ES256 (P-256) tokens",
        "Access control",
    ),
    Flag("auth-jwt-jwks", "str", "", "JWKS file; a token's kid picks the key", "Access control"),
    Flag("auth-jwt-audience", "str", "", "Accepted aud values (comma-separated)", "Access control"),
    Flag("auth-jwt-issuer", "str", "", "Accepted iss values (comma-separated)", "Access control"),
    Flag(
        "auth-jwt-admin-claim",
        "str",
        "",
        "Claim that makes a token an admin: CLAIM (true) or CLAIM=VALUE (e.g. roles=admin)",
        "Access control",
    ),
    Flag(
        "auth-jwt-leeway", "duration", 0.0, "Clock skew allowed for exp and nbf", "Access control"
    ),
    Flag(
        "auth-api-keys",
        "str",
        "",
        "File of hashed API keys (see tusd-trio hash-key)",
        "Access control",
    ),
    Flag(
        "auth-api-key-header",
        "str",
        "X-API-Key",
        "Header that carries an API key",
        "Access control",
    ),
    Flag(
        "auth-signing-secret",
        "str",
        "",
        "HMAC secret of pre-signed creation URLs (16+ bytes)",
        "Access control",
    ),
    Flag(
        "auth-signing-secret-file", "str", "", "File holding the signing secret", "Access control"
    ),
    Flag(
        "auth-presigned-upload-ttl",
        "duration",
        86400.0,
        "How long an upload created through a pre-signed URL stays reachable with its Location",
        "Access control",
    ),
    # Monitoring
    Flag("expose-metrics", "bool", True, "Expose Prometheus metrics", "Monitoring"),
    Flag(
        "metrics-path", "str", "/metrics", "Path under which the metrics are served", "Monitoring"
    ),
    Flag(
        "metrics-listen",
        "str",
        "",
        "Serve the metrics and health endpoints on this host:port instead, without "
        "credentials (protect it with the network); the upload port then has no metrics",
        "Monitoring",
    ),
    Flag(
        "metrics-token-file",
        "str",
        "",
        "File holding a bearer token (16+ bytes) that may read the metrics and readiness "
        "details while access control is on (besides admins)",
        "Monitoring",
    ),
    Flag(
        "operator-endpoints-public",
        "bool",
        False,
        "Serve the metrics and readiness details to anyone, also with access control on",
        "Monitoring",
    ),
    # Timeouts
    Flag(
        "network-timeout",
        "duration",
        60.0,
        "No data for this long ends a request (ERR_READ_TIMEOUT)",
        "Timeouts",
    ),
    Flag(
        "idle-timeout",
        "duration",
        0.0,
        "Close keep-alive connections idle this long (0 = network timeout)",
        "Timeouts",
    ),
    Flag("shutdown-timeout", "duration", 10.0, "Graceful shutdown window", "Timeouts"),
    Flag(
        "acquire-lock-timeout",
        "duration",
        20.0,
        "How long a request waits for an upload's lock (ERR_LOCK_TIMEOUT)",
        "Timeouts",
    ),
    Flag(
        "request-completion-timeout",
        "duration",
        10.0,
        "Time the store gets to save a request's bytes after the request ends",
        "Timeouts",
    ),
    # Logging
    Flag("log-format", "str", "text", "Log format: text or json", "Logging"),
    Flag("verbose", "bool", True, "Also log debug lines (hook invocations, S3 calls)", "Logging"),
    Flag("show-startup-logs", "bool", True, "Print the configuration at start-up", "Logging"),
    Flag("version", "bool", False, "Print the version and exit", "Logging"),
]

_BY_NAME = {flag.name: flag for flag in FLAGS}


def parse_args(argv: Sequence[str]) -> dict[str, Any]:
    """Parse Go-style flags: ``-name=value``, ``-name value``, ``--name``.

    A boolean flag alone means true; ``-name=false`` sets it false.
    """
    values: dict[str, Any] = {flag.name: flag.default for flag in FLAGS}
    args = list(argv)
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        if arg in ("-h", "-help", "--help"):
            raise _HelpRequestedError
        if not arg.startswith("-") or arg in ("-", "--"):
            raise UsageError(f"unexpected argument {arg!r} (flags start with -)")
        body = arg[2:] if arg.startswith("--") else arg[1:]
        name, has_value, text = body.partition("=")
        flag = _BY_NAME.get(name)
        if flag is None:
            raise UsageError(f"flag provided but not defined: -{name}")
        if not has_value:
            if flag.kind == "bool":
                text = "true"
            else:
                if index >= len(args):
                    raise UsageError(f"flag needs an argument: -{name}")
                text = args[index]
                index += 1
        try:
            values[name] = flag.parse(text)
        except ValueError as exc:
            raise UsageError(f"invalid value {text!r} for flag -{name}: {exc}") from None
    return values


class _HelpRequestedError(Exception):
    pass


def build_config(values: dict[str, Any]) -> Config:
    port_text = str(values["port"])
    if not re.fullmatch(r"[0-9]{1,5}", port_text) or int(port_text) > 65535:
        raise UsageError(f"invalid value {port_text!r} for flag -port: not a port number")
    if values["tls-mode"] not in TLS_MODES:
        raise UsageError("invalid value for flag -tls-mode: must be tls13, tls12 or tls12-strong")
    if values["log-format"] not in ("text", "json"):
        raise UsageError("invalid value for flag -log-format: must be text or json")
    if values["locker"] not in ("file", "memory", "redis"):
        raise UsageError("invalid value for flag -locker: must be file, memory or redis")
    if values["locker"] == "redis":
        if not values["redis-url"]:
            raise UsageError("-locker redis needs -redis-url (e.g. redis://127.0.0.1:6379/0)")
        from .lockers.redis_url import parse_redis_url

        try:
            parse_redis_url(values["redis-url"])
        except ValueError as exc:
            raise UsageError(f"invalid value for flag -redis-url: {exc}") from None
        if values["redis-lock-ttl"] < 1:
            raise UsageError("invalid value for flag -redis-lock-ttl: must be at least 1s")
    origin = values["cors-allow-origin"]
    try:
        re.compile(origin)
    except re.error as exc:
        raise UsageError(f"invalid value for flag -cors-allow-origin: {exc}") from None
    algorithms = tuple(a.strip() for a in values["checksum-algorithms"].split(",") if a.strip())
    for algorithm in algorithms:
        if algorithm not in CHECKSUM_ALGORITHMS:
            raise UsageError(
                f"invalid value for flag -checksum-algorithms: unknown algorithm {algorithm!r}"
                f" (supported: {', '.join(CHECKSUM_ALGORITHMS)})"
            )
    try:
        enabled = parse_enabled_events(values["hooks-enabled-events"])
    except ValueError as exc:
        raise UsageError(f"invalid value for flag -hooks-enabled-events: {exc}") from None
    if values["hooks-http"] and not re.match(r"https?://", values["hooks-http"]):
        raise UsageError("invalid value for flag -hooks-http: must be an http:// or https:// URL")
    if values["hooks-plugin"]:
        module_name, _, attribute = values["hooks-plugin"].partition(":")
        try:
            module = importlib.import_module(module_name)
            if attribute:
                getattr(module, attribute)
        except Exception as exc:
            raise UsageError(f"invalid value for flag -hooks-plugin: {exc!r}") from None
    for flag in (
        "hooks-grpc-server-tls-certificate",
        "hooks-grpc-client-tls-certificate",
        "hooks-grpc-client-tls-key",
    ):
        path = values[flag]
        if path and not os.access(path, os.R_OK):
            raise UsageError(f"invalid value for flag -{flag}: cannot read {path!r}")
        if path and not values["hooks-grpc-secure"]:
            raise UsageError(f"flag -{flag} needs -hooks-grpc-secure")
    if values["hooks-dir"] and not os.path.isdir(values["hooks-dir"]):
        raise UsageError("invalid value for flag -hooks-dir: not a directory")
    base_path = values["base-path"]
    if not base_path.startswith("/"):
        raise UsageError("invalid value for flag -base-path: must start with /")
    if values["network-timeout"] <= 0:
        raise UsageError("invalid value for flag -network-timeout: must be positive")

    def extend(default: str, extra: str) -> str:
        return f"{default}, {extra}" if extra.strip() else default

    cors = None
    if not values["disable-cors"]:
        cors = CorsConfig(
            allow_origin=origin,
            allow_credentials=values["cors-allow-credentials"],
            allow_methods=extend(DEFAULT_CORS_ALLOW_METHODS, values["cors-allow-methods"]),
            allow_headers=extend(DEFAULT_CORS_ALLOW_HEADERS, values["cors-allow-headers"]),
            expose_headers=extend(DEFAULT_CORS_EXPOSE_HEADERS, values["cors-expose-headers"]),
            max_age=str(values["cors-max-age"]),
        )
    protocol = ProtocolConfig(
        base_path=base_path,
        max_size=values["max-size"],
        disable_download=values["disable-download"],
        disable_termination=values["disable-termination"],
        disable_concatenation=values["disable-concatenation"],
        cors=cors,
        behind_proxy=values["behind-proxy"],
        relative_location=values["relative-location"],
        expiration=values["expiration"],
        checksum_algorithms=algorithms,
        show_greeting=values["show-greeting"],
        metrics_path=values["metrics-path"] if values["expose-metrics"] else "",
        max_concat_partials=values["max-concat-partials"],
    )
    auth = AuthConfig(
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
    try:
        Authenticator(auth)  # reads the key files: a bad one stops the start here
    except (AuthConfigError, ImportError) as exc:
        raise UsageError(f"invalid access-control settings (-auth-*): {exc}") from None
    if values["metrics-listen"]:
        try:
            parse_listen_address(values["metrics-listen"])
        except ValueError as exc:
            raise UsageError(f"invalid value for flag -metrics-listen: {exc}") from None
    if values["metrics-token-file"]:
        try:
            load_metrics_token(values["metrics-token-file"])
        except AuthConfigError as exc:
            raise UsageError(f"invalid value for flag -metrics-token-file: {exc}") from None
    s3, gcs, azure = _object_store_configs(values)
    if values["workers"] < 1:
        raise UsageError("invalid value for flag -workers: must be at least 1")
    if values["workers"] > 1:
        object_store = s3 is not None or gcs is not None or azure is not None
        if values["locker"] == "memory" or (object_store and values["locker"] != "redis"):
            raise UsageError(
                "-workers above 1 needs a lock shared by the worker processes: -locker redis "
                "(or -locker file with the file store); the memory locker only works in one process"
            )
    return Config(
        s3=s3,
        gcs=gcs,
        azure=azure,
        auth=auth,
        host=values["host"],
        port=int(port_text),
        unix_sock=values["unix-sock"],
        enable_h2c=values["enable-h2c"],
        tls_certificate=values["tls-certificate"],
        tls_key=values["tls-key"],
        tls_mode=values["tls-mode"],
        workers=values["workers"],
        protocol=protocol,
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
        max_connections=values["max-connections"],
        expiration_interval=values["expiration-interval"],
        orphan_age=values["orphan-age"],
        hooks_enabled_events=enabled,
        progress_hooks_interval=max(0.01, values["progress-hooks-interval"]),
        hooks_dir=values["hooks-dir"],
        hooks_http=values["hooks-http"],
        hooks_http_forward_headers=tuple(
            h.strip() for h in values["hooks-http-forward-headers"].split(",") if h.strip()
        ),
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
        hooks_grpc_forward_headers=tuple(
            h.strip() for h in values["hooks-grpc-forward-headers"].split(",") if h.strip()
        ),
        hooks_plugin=values["hooks-plugin"],
        hooks_blocking_timeout=values["hooks-blocking-timeout"],
        expose_events=values["expose-events"],
        events_path=values["events-path"],
        metrics_listen=values["metrics-listen"],
        metrics_token_file=values["metrics-token-file"],
        operator_endpoints_public=values["operator-endpoints-public"],
        log_format=values["log-format"],
        verbose=values["verbose"],
        show_startup_logs=values["show-startup-logs"],
    )


def _object_store_configs(
    values: dict[str, Any],
) -> tuple[S3Config | None, GCSConfig | None, AzureConfig | None]:
    """The object store settings; the first configured store wins (S3, GCS, Azure),
    as in tusd."""
    s3 = gcs = azure = None
    if values["s3-bucket"]:
        endpoint = values["s3-endpoint"]
        if endpoint and not re.match(r"https?://", endpoint):
            raise UsageError(
                "invalid value for flag -s3-endpoint: must start with http:// or https://"
            )
        min_part, part = values["s3-min-part-size"], values["s3-part-size"]
        if part < min_part:
            raise UsageError("-s3-part-size must not be smaller than -s3-min-part-size")
        if min_part < 1 or values["s3-max-parts"] < 1:
            raise UsageError("-s3-min-part-size and -s3-max-parts must be at least 1")
        if values["s3-max-buffered-parts"] < 1 or values["s3-concurrent-part-uploads"] < 1:
            raise UsageError(
                "-s3-max-buffered-parts and -s3-concurrent-part-uploads must be at least 1"
            )
        s3 = S3Config(
            bucket=values["s3-bucket"],
            object_prefix=values["s3-object-prefix"],
            endpoint=endpoint,
            region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "",
            part_size=part,
            min_part_size=min_part,
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
        if "_" in values["gcs-object-prefix"]:
            raise UsageError("invalid value for flag -gcs-object-prefix: must not contain '_'")
        gcs = GCSConfig(
            bucket=values["gcs-bucket"],
            object_prefix=values["gcs-object-prefix"],
            endpoint=values["gcs-endpoint"],
            service_account_file=os.environ.get("GCS_SERVICE_ACCOUNT_FILE", ""),
            project=os.environ.get("GOOGLE_CLOUD_PROJECT", ""),
        )
    elif values["azure-storage"]:
        account = os.environ.get("AZURE_STORAGE_ACCOUNT", "")
        if not account:
            raise UsageError("-azure-storage needs the AZURE_STORAGE_ACCOUNT environment variable")
        if values["azure-container-access-type"] not in ("", "blob", "container"):
            raise UsageError(
                "invalid value for flag -azure-container-access-type: must be blob, container "
                "or empty"
            )
        if values["azure-blob-access-tier"].lower() not in ("", "archive", "cool", "hot"):
            raise UsageError(
                "invalid value for flag -azure-blob-access-tier: must be archive, cool, hot "
                "or empty"
            )
        azure = AzureConfig(
            container=values["azure-storage"],
            account=account,
            key=os.environ.get("AZURE_STORAGE_KEY", ""),
            endpoint=values["azure-endpoint"],
            container_access_type=values["azure-container-access-type"],
            blob_access_tier=values["azure-blob-access-tier"].lower(),
            object_prefix=values["azure-object-prefix"],
        )
    return s3, gcs, azure


def usage() -> str:
    lines = [
        "Usage: tusd-trio [flags]",
        "       tusd-trio sign -auth-signing-secret S -base-url URL [-expires 1h] ...",
        "       tusd-trio hash-key [-name NAME] [-admin] [-generate] [KEY]",
        "",
        "A tus resumable upload server (tus 1.0.0), compatible with tusd.",
        "Flags take one or two dashes: -port=8080, -port 8080, --port=8080.",
        "Boolean flags alone mean true; turn them off with -flag=false.",
        "Durations use Go syntax: 500ms, 30s, 5m, 24h, 1h30m.",
    ]
    group = ""
    for flag in FLAGS:
        if flag.group != group:
            group = flag.group
            lines += ["", f"{group} options:"]
        kind = {"bool": "", "uint": " int", "duration": " duration", "octal": " octal"}.get(
            flag.kind, " string"
        )
        lines.append(f"  -{flag.name}{kind}")
        lines.append(f"        {flag.help} (default {flag.default_text()})")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if args and args[0] == "sign":
        return main_sign(args[1:])
    if args and args[0] == "hash-key":
        return main_hash_key(args[1:])
    try:
        values = parse_args(args)
        if values["version"]:
            sys.stdout.write(f"tusd-trio {__version__}\n")
            return 0
        config = build_config(values)
    except _HelpRequestedError:
        sys.stdout.write(usage())
        return 0
    except UsageError as exc:
        sys.stderr.write(f"tusd-trio: {exc} (tusd-trio -help lists the flags)\n")
        return 2
    setup_logging(config.log_format, config.verbose)
    _raise_file_limit()
    if config.s3 is None and config.gcs is None and config.azure is None:
        try:
            os.makedirs(config.upload_dir, mode=config.dir_perms, exist_ok=True)
        except OSError as exc:
            sys.stderr.write(f"tusd-trio: cannot create -upload-dir {config.upload_dir!r}: {exc}\n")
            return 1
    if config.show_startup_logs:
        log.info("%s", store_description(config.store_settings()))
        log.info("Using %.2fMB as maximum size.", config.protocol.max_size / 1024 / 1024)
    # --- worker processes (-workers N; see tusd_trio/_workers.py) ---
    worker_fd = os.environ.get("TUSD_TRIO_WORKER_FD")
    if worker_fd is not None:
        # A worker started by the parent: serve on the socket it passed down.
        from ._workers import setup_worker

        if not setup_worker(config, int(worker_fd)):
            return 1  # the parent is gone already
    elif config.workers > 1:
        from ._workers import run_workers

        return run_workers(config, args)
    # --- end of worker processes ---
    try:
        trio.run(_run, config)
    except (OSError, BaseExceptionGroup) as exc:
        failure = _find_os_error(exc)
        if failure is None:
            raise
        where = (
            f"-unix-sock {config.unix_sock}"
            if config.unix_sock
            else f"-host {config.host} -port {config.port}"
        )
        sys.stderr.write(f"tusd-trio: cannot listen on {where}: {failure}\n")
        return 1
    except StoreConfigError as exc:
        sys.stderr.write(f"tusd-trio: cannot use the configured store: {exc}\n")
        return 1
    except TLSConfigError as exc:
        sys.stderr.write(f"tusd-trio: {exc}\n")
        return 1
    except KeyboardInterrupt:  # pragma: no cover - signals are handled in _run
        return 130
    return 0


def _find_os_error(exc: BaseException) -> OSError | None:
    """The OSError (binding a socket, ...) inside what trio.run raised, if any."""
    if isinstance(exc, OSError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _find_os_error(inner)
            if found is not None:
                return found
    return None


def _raise_file_limit() -> None:
    """Use as many file descriptors as the hard limit allows (connections, files)."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY:
            hard = 1 << 20
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):  # pragma: no cover - platform limits
        pass


async def _run(config: Config, *, on_started: Callable[[object], None] | None = None) -> None:
    from .server import Server

    server = Server(config)
    async with trio.open_nursery() as nursery:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:

            async def watch_signals() -> None:
                count = 0
                async for _signum in signals:
                    count += 1
                    if count == 1:
                        server.request_shutdown()
                    else:
                        log.warning("Second signal received: exiting at once.")
                        os._exit(1)

            nursery.start_soon(watch_signals)
            await nursery.start(server.serve)
            if on_started is not None:
                on_started(server)
            await server.wait_stopped()
            nursery.cancel_scope.cancel()
