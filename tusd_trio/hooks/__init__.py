"""Hooks: tell other programs about uploads and let them decide (tusd's hook system).

Transports: :class:`.file.FileHookBackend` (``-hooks-dir``),
:class:`.http.HTTPHookBackend` (``-hooks-http``, needs ``httpx``),
:class:`.grpc.GRPCHookBackend` (``-hooks-grpc``, needs ``grpcio``),
:class:`.plugin.PluginHookBackend` (a Python object) and
:class:`.redis_stream.RedisStreamHookBackend` (``-hooks-redis-stream``, notifications
only, needs ``coredis``).  :class:`.dispatcher.HookDispatcher` sends events to one or
more of them; :mod:`.model` holds the events, requests and responses.

The package re-exports only :mod:`.model` (what a plugin may use: ``HookResponse``,
``HookEvent``, ...); the transports and the dispatcher are imported from their modules,
so the settings (which read :data:`.model.HOOK_TYPES`) load neither Trio nor an
optional transport's library.
"""

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

__all__ = [
    "BLOCKING",
    "DEFAULT_ENABLED",
    "HOOK_TYPES",
    "TUSD_HOOK_TYPES",
    "FileInfoChanges",
    "HTTPResponse",
    "HookError",
    "HookEvent",
    "HookEventLike",
    "HookResponse",
    "build_request",
    "canonical_header_name",
    "merge_http_response",
    "merge_responses",
    "parse_enabled_events",
    "parse_response",
    "validate_upload_id",
]
