"""The start-up lines describing the configuration, in tusd's words and order.

The daemon and the worker supervisor (``-workers N``) both print them: the
store and the maximum size first (the CLI), then these, then ``You can now
upload files to: <url>``, the line test harnesses wait for.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

from .config import Config
from .lockers.redis_url import parse_redis_url


def startup_lines(config: Config, *, extensions: str) -> list[str]:
    """Hook endpoints and events, extensions, the listening address, the paths."""
    lines = hook_lines(config)
    if extensions:
        lines.append(f"Supported tus extensions: {extensions}")
    if config.unix_sock:
        lines.append(f"Using {config.unix_sock} as socket to listen.")
    else:
        # As tusd: the configured address (-port 0 stays 0; the URL line has the port).
        lines.append(f"Using {config.host}:{config.port} as address to listen.")
    lines.append(f"Using {config.protocol.base_path} as the base path.")
    if config.protocol.metrics_path:
        lines.append(f"Using {config.protocol.metrics_path} as the metrics path.")
    if config.protocol.pprof_path:
        lines.append(f"Using {config.protocol.pprof_path} as the profiling path.")
    if config.pprof_block_profile_rate or config.pprof_mutex_profile_rate:
        lines.append(
            "Ignoring -pprof-block-profile-rate and -pprof-mutex-profile-rate: they tune "
            "Go's runtime, which tusd-trio does not have."
        )
    return lines


def hook_lines(config: Config) -> list[str]:
    """One line per hook backend, then the enabled events (none without a backend)."""
    lines = []
    if config.hooks_dir:
        lines.append(f"Using '{os.path.abspath(config.hooks_dir)}' for hooks")
    if config.hooks_http:
        lines.append(f"Using '{_without_password(config.hooks_http)}' as the endpoint for hooks")
    if config.hooks_grpc:
        lines.append(f"Using '{config.hooks_grpc}' as the endpoint for gRPC hooks")
    if config.hooks_plugin:
        lines.append(f"Using '{config.hooks_plugin}' to load plugin for hooks")
    if config.hooks_redis_stream:
        where = parse_redis_url(config.redis_url).describe()
        lines.append(
            f"Adding notification hook events to the Redis stream "
            f"'{config.hooks_redis_stream}' at {where}"
        )
    if lines:
        lines.append(f"Enabled hook events: {', '.join(config.hooks_enabled_events)}")
    return lines


def _without_password(url: str) -> str:
    """The URL with the password of its user information (if any) hidden."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    user, _, host = parts.netloc.rpartition("@")
    name = user.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{name}:[redacted]@{host}"))
