"""The locker protocol (one writer per upload), and the optional capabilities some
lockers have, declared here so that the server finds them with ``isinstance`` (they
are ``runtime_checkable``)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
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


class _Held:
    """What ``lock()`` returns: ``acquire`` on entry, ``release`` on exit, whatever
    happens.  A plain class: every request takes a lock, and a generator-based
    ``asynccontextmanager`` costs a generator and two extra frames per use."""

    __slots__ = (
        "_access",
        "_locker",
        "_max_wait",
        "_on_lost",
        "_on_release_requested",
        "_upload_id",
    )

    def __init__(
        self,
        locker: AcquireRelease,
        upload_id: str,
        max_wait: float,
        on_release_requested: ReleaseCallback | None,
        access: str,
        on_lost: ReleaseCallback | None,
    ) -> None:
        self._locker = locker
        self._upload_id = upload_id
        self._max_wait = max_wait
        self._on_release_requested = on_release_requested
        self._access = access
        self._on_lost = on_lost

    async def __aenter__(self) -> None:
        await self._locker.acquire(
            self._upload_id,
            max_wait=self._max_wait,
            on_release_requested=self._on_release_requested,
            access=self._access,
            on_lost=self._on_lost,
        )

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._locker.release(self._upload_id)


class LockContext:
    """``lock()`` for every locker: ``acquire``, then ``release`` whatever happens."""

    def lock(
        self: AcquireRelease,
        upload_id: str,
        *,
        max_wait: float,
        on_release_requested: ReleaseCallback | None = None,
        access: str = "write",
        on_lost: ReleaseCallback | None = None,
    ) -> AbstractAsyncContextManager[None]:
        return _Held(self, upload_id, max_wait, on_release_requested, access, on_lost)
