"""Send one hook event to the configured backends and combine their answers."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from typing import Any, Protocol, runtime_checkable

import trio

from .model import (
    BLOCKING,
    HookError,
    HookEventLike,
    HookResponse,
    build_request,
    client_headers,
    merge_responses,
)

__all__ = [
    "BackendObserver",
    "BackgroundHookBackend",
    "CheckedHookBackend",
    "HookBackend",
    "HookDispatcher",
]

#: Told of each backend's outcome in :meth:`HookDispatcher.send`: the backend's name and
#: ``None`` when it took the event, else what it raised.
BackendObserver = Callable[[str, "Exception | None"], None]


class HookBackend(Protocol):
    """A hook transport: file, HTTP, gRPC, plugin or Redis stream.

    ``invoke`` sends one event.  A backend with retries of its own (HTTP, gRPC, Redis
    stream) makes them unless ``once`` is set: then it makes one attempt and the caller
    retries (the outbox does, so that only one layer retries an event).
    """

    name: str

    async def invoke(
        self,
        hook_type: str,
        payload: dict[str, Any],
        *,
        forward_headers: dict[str, list[str]] | None = None,
        once: bool = False,
    ) -> HookResponse: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class BackgroundHookBackend(Protocol):
    """A backend with a task of its own (the Redis stream holds its connection pool
    there).  :meth:`HookDispatcher.run` starts ``run``, which calls
    ``task_status.started()`` once events can be sent and returns when cancelled."""

    async def run(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None: ...


@runtime_checkable
class CheckedHookBackend(Protocol):
    """A backend that can tell whether it could deliver now (readiness, ``/health/ready``):
    ``check`` returns when it can and raises :class:`HookError` saying why not."""

    async def check(self) -> None: ...


class HookDispatcher:
    """Run enabled hooks on every backend, in order, and merge the answers.

    The request document is built once per event, with one idempotency key
    (a UUID4) that every backend and every retry sees.  The answers are merged
    with :func:`merge_responses`: any reject or stop wins, later ``HTTPResponse``
    fields override earlier ones, ``ChangeFileInfo`` is merged field by field.
    A failing backend fails the whole event (later backends are not called).

    A blocking hook (``pre-*``) that takes longer than ``blocking_timeout``
    seconds raises :class:`HookError`.  ``invocations`` and ``errors`` count
    events per hook type (one per event, whatever the number of backends).
    """

    def __init__(
        self,
        backends: Sequence[HookBackend],
        enabled: Collection[str],
        *,
        blocking_timeout: float = 30.0,
    ) -> None:
        self.backends = tuple(backends)
        #: The enabled hook types, in the order they were configured.
        self.enabled_in_order = tuple(dict.fromkeys(enabled))
        self.enabled = frozenset(self.enabled_in_order)
        self.blocking_timeout = blocking_timeout
        self.invocations: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()

    def is_enabled(self, hook_type: str) -> bool:
        """Whether an event of this type would reach a backend."""
        return bool(self.backends) and hook_type in self.enabled

    async def invoke(
        self,
        event: HookEventLike,
        *,
        forward_headers: dict[str, list[str]] | None = None,
    ) -> HookResponse | None:
        """The merged answer, or ``None`` when the type is disabled or there is no backend.

        ``forward_headers`` are the client headers HTTP backends may forward
        (each backend picks the names it was configured with); by default the
        event's own request headers.
        """
        if not self.is_enabled(event.type):
            await trio.lowlevel.checkpoint()
            return None
        hook_type = event.type
        self.invocations[hook_type] += 1
        payload = build_request(event, idempotency_key=str(uuid.uuid4()))
        timeout = self.blocking_timeout if hook_type in BLOCKING else float("inf")
        try:
            with trio.move_on_after(timeout):
                return await self.send(hook_type, payload, forward_headers)
            raise HookError(f"hook {hook_type} timed out after {self.blocking_timeout:g}s")
        except HookError:
            self.errors[hook_type] += 1
            raise
        except Exception as exc:
            self.errors[hook_type] += 1
            raise HookError(f"hook {hook_type} failed: {exc!r}") from exc

    async def send(
        self,
        hook_type: str,
        payload: dict[str, Any],
        forward_headers: dict[str, list[str]] | None = None,
        *,
        observe: BackendObserver | None = None,
        once: bool = False,
    ) -> HookResponse:
        """Send a built hook request to every backend, in order, and merge the answers:
        the one way an event reaches the backends (:meth:`invoke`, the outbox's sender).

        The first backend that fails stops the round (later ones are not called) and
        its exception is raised as it is.  ``forward_headers``: as for :meth:`invoke`;
        by default the request's own headers.  ``once``: each backend makes one attempt,
        without its own retries (see :class:`HookBackend`).
        """
        if forward_headers is None:
            forward_headers = client_headers(payload)
        merged = HookResponse()
        for backend in self.backends:
            try:
                answer = await backend.invoke(
                    hook_type, payload, forward_headers=forward_headers, once=once
                )
            except Exception as exc:
                if observe is not None:
                    observe(backend.name, exc)
                raise
            if observe is not None:
                observe(backend.name, None)
            merged = merge_responses(merged, answer)
        return merged

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the backends' own tasks (:class:`BackgroundHookBackend`) until cancelled;
        started once each of them is."""
        async with trio.open_nursery() as nursery:
            for backend in self.backends:
                if isinstance(backend, BackgroundHookBackend):
                    await nursery.start(backend.run)
            task_status.started()
            await trio.sleep_forever()

    async def aclose(self) -> None:
        """Close every backend (the HTTP client, a plugin's ``close``)."""
        for backend in self.backends:
            await backend.aclose()
