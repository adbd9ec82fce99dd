"""The locker protocol (one writer per upload), and the optional capabilities some
lockers have, declared here so that the server finds them with ``isinstance`` (they
are ``runtime_checkable``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol, runtime_checkable

import trio

ReleaseCallback = Callable[[], None]


class AcquireRelease(Protocol):
    """Taking an upload's lock and giving it back (see :class:`Locker`)."""

    async def acquire(
        self,
        upload_id: str,
        *,
        max_wait: float,
        on_release_requested: ReleaseCallback | None = None,
        access: str = "write",
        on_lost: ReleaseCallback | None = None,
    ) -> None: ...

    def release(self, upload_id: str) -> None: ...


class Locker(AcquireRelease, Protocol):
    """Grants one request at a time access to an upload.

    A request that wants a held lock calls the holder's ``on_release_requested``
    (the holder then saves what it has and lets go), and waits up to ``max_wait``
    seconds before ``LockTimeoutError``.

    ``access`` says what the holder does: ``"write"`` (change the upload),
    ``"read"`` (look at it: HEAD, downloads) or ``"new"`` (an upload this very
    request created).  Within a process every access is exclusive; a locker
    across processes may skip work for ``"read"`` and ``"new"``.

    ``on_lost`` is called if the lock stops being held while the holder still
    thinks it holds it (a distributed lease that could not be renewed); the
    holder must stop writing at once.  Lockers without leases ignore it.
    """

    name: str

    def lock(
        self,
        upload_id: str,
        *,
        max_wait: float,
        on_release_requested: ReleaseCallback | None = None,
        access: str = "write",
        on_lost: ReleaseCallback | None = None,
    ) -> AbstractAsyncContextManager[None]: ...

    async def aclose(self) -> None: ...


# --- optional capabilities -------------------------------------------------------------


@runtime_checkable
class BackgroundLocker(Protocol):
    """A locker with work of its own beside the requests (the Redis locker renews
    its leases and answers release requests from other instances).  The server
    starts ``run`` in its supervisor's nursery before serving; ``run`` calls
    ``task_status.started()`` once locks can be taken and returns when cancelled."""

    async def run(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None: ...


@runtime_checkable
class StopRequestWatcher(Protocol):
    """A locker that must look for release requests from other processes (the file
    locker's ``.stop`` files); the server runs ``watch_stop_requests`` for ever."""

    async def watch_stop_requests(self) -> None: ...


@runtime_checkable
class CheckedLocker(Protocol):
    """A locker that depends on a service (Redis): ``check`` raises
    :class:`~tusd_trio.protocol.errors.LockerUnavailableError` when it cannot take
    locks now; the readiness endpoint asks it."""

    async def check(self) -> None: ...


class LockContext:
    """``lock()`` for every locker: ``acquire``, then ``release`` whatever happens."""

    @asynccontextmanager
    async def lock(
        self: AcquireRelease,
        upload_id: str,
        *,
        max_wait: float,
        on_release_requested: ReleaseCallback | None = None,
        access: str = "write",
        on_lost: ReleaseCallback | None = None,
    ) -> AsyncIterator[None]:
        await self.acquire(
            upload_id,
            max_wait=max_wait,
            on_release_requested=on_release_requested,
            access=access,
            on_lost=on_lost,
        )
        try:
            yield
        finally:
            self.release(upload_id)
