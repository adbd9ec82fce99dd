"""What the protocol core is configured with: paths, limits, extensions, CORS, and
what the store can do (which decides what is advertised)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .headers import CHECKSUM_ALGORITHMS

DEFAULT_CORS_ALLOW_METHODS = "POST, HEAD, PATCH, OPTIONS, GET, DELETE"
DEFAULT_CORS_ALLOW_HEADERS = (
    "Authorization, Origin, X-Requested-With, X-Request-ID, X-HTTP-Method-Override, "
    "Content-Type, Upload-Length, Upload-Offset, Tus-Resumable, Upload-Metadata, "
    "Upload-Defer-Length, Upload-Concat, Upload-Incomplete, Upload-Complete, "
    "Upload-Draft-Interop-Version, Upload-Checksum"
)
DEFAULT_CORS_EXPOSE_HEADERS = (
    "Upload-Offset, Location, Upload-Length, Tus-Version, Tus-Resumable, Tus-Max-Size, "
    "Tus-Extension, Upload-Metadata, Upload-Defer-Length, Upload-Concat, Upload-Incomplete, "
    "Upload-Complete, Upload-Draft-Interop-Version, Upload-Expires, Tus-Checksum-Algorithm, "
    "WWW-Authenticate, Upload-Limit, Tusd-Trio-Quota"
)


@dataclass(frozen=True, slots=True)
class CorsConfig:
    allow_origin: str = ".*"
    allow_credentials: bool = False
    allow_methods: str = DEFAULT_CORS_ALLOW_METHODS
    allow_headers: str = DEFAULT_CORS_ALLOW_HEADERS
    expose_headers: str = DEFAULT_CORS_EXPOSE_HEADERS
    max_age: str = "86400"


@dataclass(frozen=True, slots=True)
class StoreCapabilities:
    """What the configured store can do; decides what is advertised."""

    terminate: bool = True
    concatenate: bool = True
    defer_length: bool = True
    checksum: bool = True
    #: GET of an unfinished upload serves the bytes so far (file store); otherwise
    #: 400 ERR_INCOMPLETE_UPLOAD (tusd's S3 store; Azure cannot read uncommitted blocks).
    serve_incomplete: bool = True


@dataclass(frozen=True, slots=True)
class ProtocolConfig:
    base_path: str = "/files/"
    max_size: int = 0
    disable_download: bool = False
    disable_termination: bool = False
    disable_concatenation: bool = False
    #: ``None`` disables CORS handling.
    cors: CorsConfig | None = field(default_factory=CorsConfig)
    behind_proxy: bool = False
    relative_location: bool = False
    #: Seconds after the last change at which an unfinished upload expires; 0 = never.
    expiration: float = 0.0
    checksum_algorithms: tuple[str, ...] = tuple(CHECKSUM_ALGORITHMS)
    capabilities: StoreCapabilities = field(default_factory=StoreCapabilities)
    show_greeting: bool = True
    health_path: str = "/health"
    #: Whether request trailers reach the handler (not over ASGI): checksum-trailer.
    request_trailers: bool = True
    #: Path of the Prometheus metrics; empty = not served.
    metrics_path: str = ""
    #: Path under which the profiling endpoints are served (-expose-pprof); always
    #: ends with "/"; empty = not served.
    pprof_path: str = ""
    #: Most partial uploads one final upload may name (0 = no limit, as tusd).
    max_concat_partials: int = 1000

    def __post_init__(self) -> None:
        base = self.base_path
        if not base.startswith("/"):
            base = "/" + base
        if not base.endswith("/"):
            base += "/"
        object.__setattr__(self, "base_path", base)
        pprof = self.pprof_path
        if pprof:
            pprof = "/" + pprof.strip("/") + "/" if pprof.strip("/") else "/"
            object.__setattr__(self, "pprof_path", pprof)

    @property
    def termination_enabled(self) -> bool:
        return self.capabilities.terminate and not self.disable_termination

    @property
    def concatenation_enabled(self) -> bool:
        return self.capabilities.concatenate and not self.disable_concatenation

    @property
    def checksum_enabled(self) -> bool:
        return self.capabilities.checksum and bool(self.checksum_algorithms)

    def extensions(self) -> list[str]:
        """The ``Tus-Extension`` list, in tusd's order plus our additions."""
        names = ["creation", "creation-with-upload"]
        if self.termination_enabled:
            names.append("termination")
        if self.concatenation_enabled:
            names += ["concatenation", "concatenation-unfinished"]
        if self.capabilities.defer_length:
            names.append("creation-defer-length")
        if self.checksum_enabled:
            names.append("checksum")
            if self.request_trailers:
                names.append("checksum-trailer")
        if self.expiration > 0:
            names.append("expiration")
        return names
