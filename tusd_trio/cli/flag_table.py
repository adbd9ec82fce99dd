"""The daemon's flags: tusd's names, value syntax and defaults, grouped as ``-help`` lists them.

:mod:`.flags` parses a command line against this table; ``scripts/flag_reference.py``
writes the documentation's flag reference from it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from .._values import (
    format_duration,
    parse_bool,
    parse_duration,
    parse_int,
    parse_octal,
    parse_uint,
)
from ..protocol.headers import CHECKSUM_ALGORITHMS
from ..stores.config import MiB


@dataclass(frozen=True, slots=True)
class Flag:
    name: str
    kind: str  # str, bool, uint, int, duration, octal
    default: Any
    help: str
    #: The section of ``-help`` listing the flag.
    group: str = ""

    def parse(self, text: str) -> Any:
        if self.kind == "bool":
            return parse_bool(text)
        if self.kind == "uint":
            return parse_uint(text)
        if self.kind == "int":
            return parse_int(text)
        if self.kind == "duration":
            return parse_duration(text)
        if self.kind == "octal":
            return parse_octal(text)
        return text

    def default_text(self) -> str:
        if self.kind == "duration":
            return format_duration(float(self.default))
        if self.kind == "octal":
            return f"0{self.default:o}"
        if self.kind == "bool":
            return "true" if self.default else "false"
        return str(self.default) if self.default != "" else '""'


def _group(title: str, *flags: Flag) -> tuple[Flag, ...]:
    return tuple(replace(flag, group=title) for flag in flags)


FLAGS: tuple[Flag, ...] = (
    *_group(
        "Listening",
        Flag("host", "str", "127.0.0.1", "Host to bind the HTTP server to"),
        Flag("port", "str", "8080", "Port to bind the HTTP server to (0 = any free port)"),
        Flag("unix-sock", "str", "", "Listen on this UNIX socket instead of TCP"),
        Flag(
            "workers",
            "str",
            "1",
            "Worker processes sharing the port (restarted if they crash): a number, or auto "
            "for one per CPU core this process may use; more than 1 needs a locker that works "
            "across processes (file or redis), auto with any other locker means 1",
        ),
        Flag("base-path", "str", "/files/", "Basepath of the HTTP server"),
        Flag(
            "behind-proxy",
            "bool",
            False,
            "Respect X-Forwarded-* and Forwarded headers (only behind a trusted proxy)",
        ),
        Flag(
            "relative-location",
            "bool",
            False,
            "Answer upload creation with a relative Location URL",
        ),
        Flag(
            "enable-h2c",
            "bool",
            False,
            "Serve cleartext HTTP/2 (prior knowledge or Upgrade: h2c) beside HTTP/1.1",
        ),
    ),
    *_group(
        "TLS",
        Flag(
            "tls-certificate",
            "str",
            "",
            "Path to the PEM certificate chain; HTTPS is used if both it and -tls-key are set",
        ),
        Flag("tls-key", "str", "", "Path to the unencrypted PEM private key"),
        Flag(
            "tls-mode",
            "str",
            "tls12",
            "tls13 (TLS 1.3 only), tls12 (TLS 1.2+ with ECDHE AEAD suites) or "
            "tls12-strong (TLS 1.2 only, ECDHE AES-256-GCM)",
        ),
    ),
    *_group(
        "Listening",
        Flag(
            "max-connections",
            "uint",
            0,
            "Refuse new connections with 503 beyond this many (0 = no limit)",
        ),
        Flag(
            "max-header-size",
            "uint",
            65536,
            "Largest request line plus header block in bytes (431 beyond)",
        ),
        Flag(
            "http1-parser",
            "str",
            "auto",
            "HTTP/1.1 request parser: httptools (llhttp, faster), h11 (pure Python), "
            "or auto (httptools when installed)",
        ),
    ),
    *_group(
        "Upload protocol",
        Flag("max-size", "uint", 0, "Maximum size of a single upload in bytes (0 = no limit)"),
        Flag("disable-download", "bool", False, "Disable the download endpoint (GET)"),
        Flag("disable-termination", "bool", False, "Disable the termination extension (DELETE)"),
        Flag("disable-concatenation", "bool", False, "Disable the concatenation extension"),
        Flag(
            "max-concat-partials",
            "uint",
            1000,
            "Most partial uploads one final upload may name (0 = no limit)",
        ),
        Flag(
            "expiration",
            "duration",
            0.0,
            "Unfinished uploads expire this long after their last change (0 = never)",
        ),
        Flag(
            "expiration-interval",
            "duration",
            0.0,
            "How often the janitor removes expired uploads (0 = automatic)",
        ),
        Flag(
            "checksum-algorithms",
            "str",
            ",".join(CHECKSUM_ALGORITHMS),
            "Checksum algorithms accepted in Upload-Checksum (empty = checksum extension off)",
        ),
        Flag(
            "enable-experimental-protocol",
            "bool",
            True,
            "Serve the IETF Resumable Uploads draft (interop versions 3-9) next to tus 1.0.0",
        ),
        Flag("show-greeting", "bool", True, "Show the greeting message at non-tus paths"),
    ),
    *_group(
        "CORS",
        Flag("disable-cors", "bool", False, "Disable CORS headers"),
        Flag("cors-allow-origin", "str", ".*", "Regular expression of allowed origins"),
        Flag(
            "cors-allow-credentials", "bool", False, "Send Access-Control-Allow-Credentials: true"
        ),
        Flag("cors-allow-methods", "str", "", "Methods added to Access-Control-Allow-Methods"),
        Flag("cors-allow-headers", "str", "", "Headers added to Access-Control-Allow-Headers"),
        Flag("cors-max-age", "uint", 86400, "Value of Access-Control-Max-Age (seconds)"),
        Flag("cors-expose-headers", "str", "", "Headers added to Access-Control-Expose-Headers"),
    ),
    *_group(
        "File storage",
        Flag("upload-dir", "str", "./data", "Directory to store uploads in"),
        Flag("dir-perms", "octal", 0o775, "Permissions of created directories"),
        Flag("file-perms", "octal", 0o664, "Permissions of created files"),
        Flag("fsync", "bool", False, "fsync data (then info) before acknowledging every PATCH"),
        Flag(
            "orphan-age",
            "duration",
            60.0,
            "At start-up, remove or repair crash leftovers older than this",
        ),
        Flag(
            "locker",
            "str",
            "file",
            "Lock implementation: file (processes on one host), memory (one process) or redis "
            "(many instances; needs -redis-url)",
        ),
        Flag(
            "filelock-holder-poll-interval",
            "duration",
            5.0,
            "How often a lock holder looks for release requests from other processes",
        ),
        Flag(
            "filelock-acquirer-poll-interval",
            "duration",
            2.0,
            "How often a process retries a lock another process holds",
        ),
    ),
    *_group(
        "Locks",
        Flag(
            "redis-url",
            "str",
            "",
            "Redis for -locker redis and -hooks-redis-stream: redis://[user:pw@]host:6379/0, "
            "rediss://, unix://, "
            "redis+sentinel://h1,h2/primary/0, redis+cluster://h1,h2",
        ),
        Flag(
            "redis-lock-ttl",
            "duration",
            30.0,
            "Lease of a Redis lock; renewed every third of it while held",
        ),
        Flag("redis-key-prefix", "str", "tusd-trio:", "Prefix of the Redis keys and channels"),
    ),
    *_group(
        "AWS S3 storage",
        Flag(
            "s3-bucket",
            "str",
            "",
            "Use AWS S3 (or an S3-compatible store) with this bucket; credentials and region come "
            "from the AWS environment variables and files",
        ),
        Flag("s3-object-prefix", "str", "", "Prefix of the object keys"),
        Flag(
            "s3-endpoint",
            "str",
            "",
            "Endpoint with scheme (S3-compatible stores); forces path-style addressing",
        ),
        Flag("s3-part-size", "uint", 50 * MiB, "Preferred part size in bytes"),
        Flag(
            "s3-min-part-size",
            "uint",
            5 * MiB,
            "Smallest part the store accepts (except the last), in bytes",
        ),
        Flag(
            "s3-max-parts",
            "uint",
            10_000,
            "Most parts in one multipart upload (lower it for stores with lower caps)",
        ),
        Flag(
            "s3-equal-parts",
            "bool",
            False,
            "Make every part but the last the same size (Cloudflare R2 requires it)",
        ),
        Flag(
            "s3-max-buffered-parts",
            "uint",
            4,
            "Parts held in memory per upload (being filled or uploaded): memory per upload is at "
            "most this times the part size (tusd: 20, buffered on disk)",
        ),
        Flag(
            "s3-concurrent-part-uploads", "uint", 10, "Parts uploaded at the same time per upload"
        ),
        Flag(
            "s3-disable-content-hashes",
            "bool",
            False,
            "Do not compute MD5/SHA-256 hashes of parts (saves CPU)",
        ),
        Flag("s3-disable-ssl", "bool", False, "Talk plain HTTP to S3"),
        Flag(
            "s3-transfer-acceleration", "bool", False, "Use the S3 Transfer Acceleration endpoint"
        ),
        Flag("s3-log-api-calls", "bool", False, "Log every S3 API call"),
    ),
    *_group(
        "Google Cloud Storage",
        Flag(
            "gcs-bucket",
            "str",
            "",
            "Use Google Cloud Storage with this bucket; credentials from GCS_SERVICE_ACCOUNT_FILE "
            "or Application Default Credentials",
        ),
        Flag(
            "gcs-object-prefix",
            "str",
            "",
            "Prefix of the object names (must not contain an underscore)",
        ),
        Flag("gcs-endpoint", "str", "", "Custom endpoint (e.g. an emulator)"),
    ),
    *_group(
        "Azure Blob storage",
        Flag(
            "azure-storage",
            "str",
            "",
            "Use Azure Blob Storage with this container; account and key from "
            "AZURE_STORAGE_ACCOUNT and AZURE_STORAGE_KEY",
        ),
        Flag(
            "azure-container-access-type",
            "str",
            "",
            "Public access of a container we create: blob, container or empty (private)",
        ),
        Flag(
            "azure-blob-access-tier",
            "str",
            "",
            "Access tier of finished blobs: archive, cool, hot or empty (account default)",
        ),
        Flag("azure-object-prefix", "str", "", "Prefix of the blob names"),
        Flag(
            "azure-endpoint",
            "str",
            "",
            "Endpoint (default https://ACCOUNT.blob.core.windows.net; e.g. Azurite)",
        ),
    ),
    *_group(
        "Hooks",
        Flag(
            "hooks-enabled-events",
            "str",
            "pre-create,post-create,post-receive,post-terminate,post-finish",
            "Comma-separated hook events to send; empty = all of tusd's (pre-finish and "
            "pre-terminate are off by default; pre-access only when named)",
        ),
        Flag(
            "progress-hooks-interval",
            "duration",
            1.0,
            "Interval of post-receive events while data arrives",
        ),
        Flag("hooks-dir", "str", "", "Directory of executable file hooks (one file per hook name)"),
        Flag("hooks-http", "str", "", "URL of an HTTP hook endpoint"),
        Flag(
            "hooks-http-forward-headers",
            "str",
            "",
            "Comma-separated client headers forwarded to the HTTP hook endpoint",
        ),
        Flag("hooks-http-retry", "uint", 3, "Attempts on a network error or 5xx"),
        Flag("hooks-http-backoff", "duration", 1.0, "Pause between HTTP hook attempts"),
        Flag("hooks-http-timeout", "duration", 15.0, "Time limit of one HTTP hook call"),
        Flag("hooks-http-size-limit", "uint", 5120, "Largest HTTP hook response body in bytes"),
        Flag(
            "hooks-http-skip-verify",
            "bool",
            False,
            "Do not verify the hook endpoint's TLS certificate",
        ),
        Flag(
            "hooks-grpc", "str", "", "Address (host:port) of a gRPC hook server (tusd's hook.proto)"
        ),
        Flag("hooks-grpc-retry", "uint", 3, "gRPC hook attempts on retryable errors"),
        Flag("hooks-grpc-backoff", "duration", 1.0, "Pause between gRPC hook attempts"),
        Flag("hooks-grpc-timeout", "duration", 15.0, "Time limit of one gRPC hook attempt"),
        Flag("hooks-grpc-secure", "bool", False, "Use TLS to the gRPC hook server"),
        Flag(
            "hooks-grpc-server-tls-certificate",
            "str",
            "",
            "CA certificate (PEM) that signed the gRPC hook server's certificate",
        ),
        Flag(
            "hooks-grpc-client-tls-certificate",
            "str",
            "",
            "Client certificate (PEM) for mutual TLS to the gRPC hook server",
        ),
        Flag("hooks-grpc-client-tls-key", "str", "", "Client key (PEM) for mutual TLS"),
        Flag(
            "hooks-grpc-forward-headers",
            "str",
            "",
            "Comma-separated client headers sent to the gRPC hook server as metadata",
        ),
        Flag(
            "hooks-plugin",
            "str",
            "",
            "Python hook plugin as module:object (an object with one method per hook)",
        ),
        Flag(
            "hooks-redis-stream",
            "str",
            "",
            "Redis stream (on -redis-url) that notification events (post-*) are added to",
        ),
        Flag(
            "hooks-redis-stream-maxlen",
            "uint",
            100_000,
            "Approximate length limit of the hook stream (MAXLEN ~); 0 = unbounded",
        ),
        Flag("hooks-redis-stream-retry", "uint", 3, "Attempts to add an event to the hook stream"),
        Flag("hooks-redis-stream-backoff", "duration", 1.0, "Pause between hook stream attempts"),
        Flag(
            "hooks-blocking-timeout",
            "duration",
            30.0,
            "Time limit of a blocking hook (pre-*); then the request fails with 500",
        ),
        Flag("hooks-outbox", "bool", True, "Keep post-create/finish/terminate until delivered"),
        Flag("hooks-outbox-max-age", "duration", 86400.0, "Retry outbox events this long"),
        Flag("hooks-outbox-max-backoff", "duration", 60.0, "Longest pause between retries"),
        Flag("hooks-outbox-dir", "str", "", "Outbox directory (default: by the store/locker)"),
        Flag("hooks-outbox-ready-max-age", "duration", 0.0, "Unready when older events wait"),
        Flag(
            "expose-events",
            "bool",
            False,
            "Stream every hook event to WebSocket subscribers at -events-path",
        ),
        Flag("events-path", "str", "/events", "Path of the live event stream"),
    ),
    *_group(
        "Access control",
        Flag(
            "auth-jwt-secret",
            "str",
            "",
            "HS256 secret for Authorization: Bearer tokens (32+ bytes)",
        ),
        Flag("auth-jwt-secret-file", "str", "", "File holding the HS256 secret"),
        Flag(
            "auth-jwt-public-key",
            "str",
            "",
            "PEM public key for RS256 (RSA) or ES256 (P-256) tokens",
        ),
        Flag("auth-jwt-jwks", "str", "", "JWKS file; a token's kid picks the key"),
        Flag("auth-jwt-audience", "str", "", "Accepted aud values (comma-separated)"),
        Flag("auth-jwt-issuer", "str", "", "Accepted iss values (comma-separated)"),
        Flag(
            "auth-jwt-admin-claim",
            "str",
            "",
            "Claim that makes a token an admin: CLAIM (true) or CLAIM=VALUE (e.g. roles=admin)",
        ),
        Flag("auth-jwt-leeway", "duration", 0.0, "Clock skew allowed for exp and nbf"),
        Flag("auth-api-keys", "str", "", "File of hashed API keys (see tusd-trio hash-key)"),
        Flag("auth-api-key-header", "str", "X-API-Key", "Header that carries an API key"),
        Flag(
            "auth-signing-secret", "str", "", "HMAC secret of pre-signed creation URLs (16+ bytes)"
        ),
        Flag("auth-signing-secret-file", "str", "", "File holding the signing secret"),
        Flag(
            "auth-presigned-upload-ttl",
            "duration",
            86400.0,
            "How long an upload created through a pre-signed URL stays reachable with its Location",
        ),
        Flag("auth-quotas", "bool", False, "Count uploads per principal (for quota claims)"),
        Flag("auth-quota-bytes", "uint", 0, "Bytes a principal may hold (0 = no limit)"),
        Flag("auth-quota-uploads", "uint", 0, "Unfinished uploads per principal (0 = no limit)"),
        Flag("auth-quota-max-size", "uint", 0, "Largest upload of a principal (0 = no limit)"),
    ),
    *_group(
        "Monitoring",
        Flag("expose-metrics", "bool", True, "Expose Prometheus metrics"),
        Flag("metrics-path", "str", "/metrics", "Path under which the metrics are served"),
        Flag(
            "metrics-listen",
            "str",
            "",
            "Serve the metrics and health endpoints on this host:port instead, without "
            "credentials (protect it with the network); the upload port then has no metrics",
        ),
        Flag(
            "metrics-token-file",
            "str",
            "",
            "File holding a bearer token (16+ bytes) that may read the metrics and readiness "
            "details while access control is on (besides admins)",
        ),
        Flag(
            "operator-endpoints-public",
            "bool",
            False,
            "Serve the metrics and readiness details to anyone, also with access control on",
        ),
        Flag(
            "expose-pprof",
            "bool",
            False,
            "Serve the profiling endpoints at -pprof-path (Trio task stacks; CPU profiles "
            "taken by py-spy), where the metrics are and to whom they are shown",
        ),
        Flag("pprof-path", "str", "/debug/pprof/", "Path under which the profiling is served"),
        Flag(
            "pprof-block-profile-rate",
            "int",
            0,
            "Accepted for tusd command lines; no effect: it tunes the Go runtime's blocking "
            "profile (the task stacks at -pprof-path show what waits)",
        ),
        Flag(
            "pprof-mutex-profile-rate",
            "int",
            0,
            "Accepted for tusd command lines; no effect: it tunes the Go runtime's mutex "
            "profile (the task stacks at -pprof-path show what waits)",
        ),
    ),
    *_group(
        "Timeouts",
        Flag(
            "network-timeout",
            "duration",
            60.0,
            "No data for this long ends a request (ERR_READ_TIMEOUT)",
        ),
        Flag(
            "idle-timeout",
            "duration",
            0.0,
            "Close keep-alive connections idle this long (0 = network timeout)",
        ),
        Flag("shutdown-timeout", "duration", 10.0, "Graceful shutdown window"),
        Flag(
            "acquire-lock-timeout",
            "duration",
            20.0,
            "How long a request waits for an upload's lock (ERR_LOCK_TIMEOUT)",
        ),
        Flag(
            "request-completion-timeout",
            "duration",
            10.0,
            "Time the store gets to save a request's bytes after the request ends",
        ),
    ),
    *_group(
        "Logging",
        Flag("log-format", "str", "text", "Log format: text or json"),
        Flag("verbose", "bool", True, "Also log debug lines (hook invocations, S3 calls)"),
        Flag("show-startup-logs", "bool", True, "Print the configuration at start-up"),
        Flag("version", "bool", False, "Print the version and exit"),
    ),
)
