"""Request bodies moved from the socket to the upload's file by the kernel (Linux ``splice``).

The copying body pump reads each chunk into a Python buffer (``recv_into``: the kernel
copies it out of the socket) and writes it to the file (``os.write``: copied again, into
the page cache).  ``splice`` moves the socket's pages into a pipe without copying them,
and from the pipe into the page cache with one copy, so a byte of an upload crosses
memory once instead of twice and never reaches Python.  benchmarks/PROFILE.md ("Bulk
uploads with splice") has the numbers.

It is used only where nothing but the file needs the bytes: a plain TCP (or Unix)
socket (under TLS the bytes must be decrypted in Python), a Content-Length body on the
HTTP/1.1 direct path (h11 holds none of it), and a sink that is exactly the file store
writer's own ``write_nowait`` (a checksum or digest wraps the writer in a hashing sink,
which keeps the copying pump).

Each chunk goes socket → pipe → file before the next is read, and the pipe is empty
whenever the pump waits, so a read timeout, a cancelled body or a lost connection
never leaves bytes in flight: every byte counted in ``received`` and in the writer's
``written`` is in the file, at the offset after the previous one.  A pipe left with
bytes in it (the file write failed) is closed, never reused.

A kernel or file system that cannot splice (``EINVAL``, ``ENOSYS``...) is found out on
the first chunk: those bytes are copied out of the pipe instead, the process remembers
it and every later body takes the copying path.
"""

from __future__ import annotations

import errno
import fcntl
import os
from typing import Protocol, runtime_checkable

import trio

from ..protocol import errors
from ._lowat import LowWaterSocket

#: How many bytes one splice moves at most (the pipe's capacity, when it can be set).
PIPE_SIZE = 1024 * 1024
#: Empty pipes kept for the next body (each costs two descriptors; the kernel allocates
#: the pages of a pipe only while bytes are in it).
MAX_IDLE_PIPES = 16
#: Bodies spliced at once (see _PipePool), and the smallest pipe worth splicing through.
MAX_LENT_PIPES = 32
MIN_PIPE_SIZE = 64 * 1024
#: The errors that mean "this kernel or file system does not splice", not "the
#: connection or the disk failed".
_UNSUPPORTED = frozenset({errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP})
_FLAGS = getattr(os, "SPLICE_F_MOVE", 0) | getattr(os, "SPLICE_F_NONBLOCK", 0)


@runtime_checkable
class PipeWriter(Protocol):
    """A store writer that can take a chunk straight from a pipe (the file store's)."""

    def write_nowait(self, data: bytes | bytearray | memoryview) -> None: ...

    def start_pipe_writes(self) -> None:
        """Get ready for :meth:`write_from_pipe` (raises OSError when it cannot)."""

    def write_from_pipe(self, pipe: int, count: int) -> bool:
        """Move exactly ``count`` bytes from ``pipe`` to the end of the upload; False
        when the file could not take them by splice (then they were copied)."""
        ...

    def end_pipe_writes(self) -> None:
        """Back to ``write_nowait`` appends (also after a failure)."""


class _Switch:
    """Whether splice is on for this process (off once it failed here), and how many
    body bytes it moved (tests check which path a body took)."""

    enabled = hasattr(os, "splice")
    moved = 0


def set_splice_enabled(enabled: bool) -> None:
    """Turn the splice path on or off for this process (tests)."""
    _Switch.enabled = enabled and hasattr(os, "splice")


def splice_enabled() -> bool:
    return _Switch.enabled


def spliced_bytes() -> int:
    """Body bytes this process moved by splice so far."""
    return _Switch.moved


def unsupported(exc: OSError) -> bool:
    """Whether ``exc`` means splice does not work here (remembered: splice is then off)."""
    if exc.errno in _UNSUPPORTED:
        _Switch.enabled = False
        return True
    return False


class _PipePool:
    """Empty pipes for bodies to borrow, per process (a forked worker starts its own).

    At most ``MAX_LENT_PIPES`` bodies splice at once: the kernel charges every pipe's
    capacity to the user (``/proc/sys/fs/pipe-user-pages-soft``, 64 MiB by default) and
    gives a user over it pipes of two pages; the bodies beyond the budget are copied.
    """

    def __init__(self) -> None:
        self._pid = os.getpid()
        self._idle: list[tuple[int, int, int]] = []
        self._lent = 0

    def take(self) -> tuple[int, int, int] | None:
        """A pipe (read end, write end, capacity in bytes), or None: copy this body."""
        if self._pid != os.getpid():
            # Inherited from the parent, shared with it: never use these.
            self._pid, self._idle, self._lent = os.getpid(), [], 0
        if self._lent >= MAX_LENT_PIPES:
            return None
        if self._idle:
            pipe = self._idle.pop()
        else:
            read_end, write_end = os.pipe()
            for end in (read_end, write_end):
                os.set_blocking(end, False)
            try:
                fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
            except OSError:
                pass  # over the user's pipe budget: see the size it has
            pipe = (read_end, write_end, fcntl.fcntl(write_end, fcntl.F_GETPIPE_SZ))
            if pipe[2] < MIN_PIPE_SIZE:
                # A pipe of a user over the budget: copying costs less than tiny splices.
                os.close(read_end)
                os.close(write_end)
                return None
        self._lent += 1
        return pipe

    def give_back(self, pipe: tuple[int, int, int], *, empty: bool) -> None:
        if self._pid != os.getpid():
            return  # a fork in the middle of a body: the parent's, not ours
        self._lent -= 1
        if empty and len(self._idle) < MAX_IDLE_PIPES:
            self._idle.append(pipe)
        else:
            os.close(pipe[0])
            os.close(pipe[1])


_pipes = _PipePool()


def splice_target(sock: object, sink: object) -> tuple[LowWaterSocket, PipeWriter] | None:
    """The socket and the writer to splice a body between, when ``sock`` is a plain
    socket and ``sink`` exactly a splice-capable writer's ``write_nowait`` (a sink
    that hashes the bytes wraps it, and keeps the copying pump)."""
    if not _Switch.enabled or type(sock) is not LowWaterSocket:
        return None
    writer = getattr(sink, "__self__", None)
    if not isinstance(writer, PipeWriter) or sink != writer.write_nowait:
        return None
    return sock, writer


class BodyCounter(Protocol):
    """Where the bytes read so far are counted (read meanwhile by progress events)."""

    received: int


async def splice_body(
    sock: LowWaterSocket,
    writer: PipeWriter,
    count: int,
    *,
    counter: BodyCounter,
    deadline_scope: trio.CancelScope,
    read_timeout: float,
) -> None:
    """Move up to ``count`` body bytes from ``sock`` into ``writer``'s file.

    ``counter.received`` grows by each chunk as it is written.  Returns early (fewer
    bytes moved) only when splice turned out not to work here; the caller reads the
    rest by copying.  Errors are the copying pump's: a closed or reset connection, or
    the store's error for a failed write.
    """
    try:
        writer.start_pipe_writes()
    except OSError:
        return
    try:
        pipe = _pipes.take()
    except OSError:  # out of descriptors
        pipe = None
    if pipe is None:  # copy this body
        writer.end_pipe_writes()
        return
    read_end, write_end, capacity = pipe
    empty = True
    try:
        moved = 0
        fd = sock.fileno()
        while moved < count:
            want = min(capacity, count - moved)
            deadline_scope.deadline = trio.current_time() + read_timeout
            try:
                n = os.splice(fd, write_end, want, flags=_FLAGS)
            except BlockingIOError:
                await sock.wait_readable(want)
                continue
            except OSError as exc:
                if unsupported(exc):
                    return
                raise errors.ConnectionResetError_() from None
            sock.note_read(n, want)
            if n == 0:
                raise errors.UnexpectedEOFError()
            empty = False
            if writer.write_from_pipe(read_end, n):
                _Switch.moved += n
            else:
                _Switch.enabled = False
            empty = True
            # Counted once in the file, as the copying pump counts after its sink.
            counter.received += n
            moved += n
            if not _Switch.enabled:
                return
            # One trip through the event loop per chunk, even when the next one is
            # there already: the other connections get their turn.
            await trio.lowlevel.checkpoint()
    finally:
        _pipes.give_back(pipe, empty=empty)
        writer.end_pipe_writes()


__all__ = [
    "PipeWriter",
    "set_splice_enabled",
    "splice_body",
    "splice_enabled",
    "splice_target",
    "spliced_bytes",
]
