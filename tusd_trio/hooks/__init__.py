"""Hooks: tell other programs about uploads and let them decide (tusd's hook system).

Transports: :class:`.file.FileHookBackend` (``-hooks-dir``),
:class:`.http.HTTPHookBackend` (``-hooks-http``, needs ``httpx``),
:class:`.grpc.GRPCHookBackend` (``-hooks-grpc``, needs ``grpcio``),
:class:`.plugin.PluginHookBackend` (a Python object) and
:class:`.redis_stream.RedisStreamHookBackend` (``-hooks-redis-stream``, notifications
only, needs ``coredis``).  :class:`.dispatcher.HookDispatcher` sends events to one or
more of them; :mod:`.model` holds the events, requests and responses.

Everything is imported from the module it lives in: this package imports nothing, so
the settings (which read :data:`.model.HOOK_TYPES`) load neither Trio nor an optional
transport's library.
"""
