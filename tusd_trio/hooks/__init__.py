"""Hooks: tell other programs about uploads and let them decide (tusd's hook system).

Transports: :class:`FileHookBackend` (``-hooks-dir``), :class:`HTTPHookBackend`
(``-hooks-http``, needs ``httpx``), ``GRPCHookBackend`` (``-hooks-grpc``, needs
``grpcio``), :class:`PluginHookBackend` (a Python object) and
``RedisStreamHookBackend`` (``-hooks-redis-stream``, notifications only, needs
``coredis``).  :class:`HookDispatcher` sends events to one or more of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .dispatcher import BackgroundHookBackend, CheckedHookBackend, HookBackend, HookDispatcher
from .file import FileHookBackend
from .model import (
    BLOCKING,
    DEFAULT_ENABLED,
    HOOK_TYPES,
    TUSD_HOOK_TYPES,
    FileInfoChanges,
    HookError,
    HookEvent,
    HookEventLike,
    HookResponse,
    HTTPResponse,
    build_request,
    canonical_header_name,
    merge_http_response,
    merge_responses,
    parse_enabled_events,
    parse_response,
    validate_upload_id,
)
from .plugin import PluginHookBackend, load_plugin

if TYPE_CHECKING:
    from .http import HTTPHookBackend

__all__ = [
    "BLOCKING",
    "DEFAULT_ENABLED",
    "HOOK_TYPES",
    "TUSD_HOOK_TYPES",
    "BackgroundHookBackend",
    "CheckedHookBackend",
    "FileHookBackend",
    "FileInfoChanges",
    "HTTPHookBackend",
    "HTTPResponse",
    "HookBackend",
    "HookDispatcher",
    "HookError",
    "HookEvent",
    "HookEventLike",
    "HookResponse",
    "PluginHookBackend",
    "build_request",
    "canonical_header_name",
    "load_plugin",
    "merge_http_response",
    "merge_responses",
    "parse_enabled_events",
    "parse_response",
    "validate_upload_id",
]


def __getattr__(name: str) -> Any:
    # httpx is imported only when the HTTP transport is used.
    if name == "HTTPHookBackend":
        from .http import HTTPHookBackend

        return HTTPHookBackend
    if name == "GRPCHookBackend":
        # grpcio is an optional extra: pip install 'tusd-trio[grpc]'
        from .grpc import GRPCHookBackend

        return GRPCHookBackend
    if name == "RedisStreamHookBackend":
        # coredis is an optional extra: pip install 'tusd-trio[redis]'
        from .redis_stream import RedisStreamHookBackend

        return RedisStreamHookBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
