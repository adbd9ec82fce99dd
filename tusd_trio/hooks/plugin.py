"""Python plugin hooks: an object in an importable module (``module:object``).

tusd's plugins are Go binaries spoken to over ``net/rpc``; ours are Python
objects loaded in-process.  The object has one method per hook type, named
with underscores (``pre_create``, ``post_finish``, ``pre_access``, ...), each
taking the hook request as a dict and returning a dict (the same JSON answer a
file or HTTP hook gives), a :class:`HookResponse` or ``None``.
"""

from __future__ import annotations

import copy
import functools
import importlib
import inspect
from typing import Any

import trio

from .model import HOOK_TYPES, HookError, HookResponse, parse_response

__all__ = ["PluginHookBackend", "load_plugin"]

_METHOD_NAMES = tuple(hook.replace("-", "_") for hook in HOOK_TYPES)


def load_plugin(spec: str) -> Any:
    """Import ``module:object`` (or a whole ``module``) and return the plugin.

    A class is instantiated without arguments.  Any other callable that has no
    hook method of its own is taken as a factory and called without arguments.
    Raises ``ValueError`` for a spec that cannot be loaded.
    """
    module_name, _, attr_path = spec.partition(":")
    if not module_name:
        raise ValueError(f"invalid hook plugin {spec!r}: expected 'module:object'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import hook plugin module {module_name!r}: {exc}") from exc
    for part in filter(None, attr_path.split(".")):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"hook plugin {spec!r}: {part!r} not found") from None
    if inspect.isclass(obj):
        return obj()
    if callable(obj) and not any(hasattr(obj, name) for name in _METHOD_NAMES):
        return obj()
    return obj


class PluginHookBackend:
    """Call the plugin's method for each hook type; a missing method is an empty answer.

    Coroutine methods are awaited in the event loop.  Plain methods run in a
    worker thread so that a slow or blocking plugin never stalls uploads (a
    thread the dispatcher gave up on is abandoned, not waited for).  An
    exception from the plugin, or an answer of another type, raises
    :class:`HookError`.  Each call gets its own copy of the request.
    """

    name = "plugin"

    def __init__(self, spec: str | None = None, *, plugin: Any = None) -> None:
        if (spec is None) == (plugin is None):
            raise TypeError("give exactly one of spec and plugin")
        self.spec = spec or type(plugin).__qualname__
        self.plugin: Any = load_plugin(spec) if spec is not None else plugin

    async def invoke(
        self,
        hook_type: str,
        payload: dict[str, Any],
        *,
        forward_headers: dict[str, list[str]] | None = None,
        once: bool = False,
    ) -> HookResponse:
        method = getattr(self.plugin, hook_type.replace("-", "_"), None)
        if method is None or not callable(method):
            await trio.lowlevel.checkpoint()
            return HookResponse()
        request = copy.deepcopy(payload)
        try:
            if inspect.iscoroutinefunction(method):
                answer = await method(request)
            else:
                answer = await trio.to_thread.run_sync(
                    functools.partial(method, request), abandon_on_cancel=True
                )
                if inspect.isawaitable(answer):
                    answer = await answer
        except HookError:
            raise
        except Exception as exc:
            raise HookError(f"hook plugin {hook_type} failed: {exc!r}") from exc
        if answer is None:
            return HookResponse()
        if isinstance(answer, HookResponse):
            return answer
        if isinstance(answer, dict):
            return parse_response(answer)
        raise HookError(
            f"hook plugin {hook_type} returned {type(answer).__name__}, "
            "expected a dict, a HookResponse or None"
        )

    async def aclose(self) -> None:
        """Call the plugin's ``aclose()`` or ``close()`` if it has one."""
        aclose = getattr(self.plugin, "aclose", None)
        close = getattr(self.plugin, "close", None)
        if callable(aclose):
            await aclose()
        elif callable(close):
            await trio.to_thread.run_sync(close)
        else:
            await trio.lowlevel.checkpoint()
