"""Body reads on a plain socket that wake once a full buffer (or the rest of the body) is there.

A sender that writes a little at a time (curl writes 64 KiB, a proxy forwards what it
has) makes every read of a body return a little, and each read is a trip through the
event loop.  The kernel can wait for us: with ``SO_RCVLOWAT`` set to the number of
bytes a read wants, the socket only reports readable once that many are queued (or at
the end of the stream, an error, or when the kernel's receive window would otherwise
close).  :class:`LowWaterSocket` sets it to what each read asks for, which the body
pump already bounds by what the body still owes, so the last bytes of a body wake a
read as soon as they are all there.

A sender that stops short of the mark must not be left unread: after ``patience``
seconds without a full mark the read takes whatever is queued (with the mark back at
one byte), so bytes are never held back longer than that and the caller's read
timeout sees them as before.  The mark goes back to one byte after every read, so the
next request head is read as usual.
"""

from __future__ import annotations

import os
import socket

import trio

#: Reads smaller than this are not worth two extra system calls.
MIN_MARK = 16 * 1024


class LowWaterSocket:
    """The :class:`~._streams.DirectReader` of a plain TCP socket, with ``SO_RCVLOWAT``."""

    def __init__(self, sock: trio.socket.SocketType, patience: float) -> None:
        self._sock = sock
        self._fd = sock.fileno()
        self._patience = patience
        #: The last read returned less than it asked for: the sender is the slower side.
        self._short = False

    async def recv_into(self, buffer: memoryview, nbytes: int, /) -> int:
        if nbytes < MIN_MARK or not self._short:
            n = await self._sock.recv_into(buffer, nbytes)
            self._short = n < nbytes
            return n
        n = await self._recv_marked(buffer, nbytes)
        self._short = n < nbytes
        return n

    def fileno(self) -> int:
        return self._fd

    def recv_queued(self, buffer: memoryview, nbytes: int) -> int:
        """Up to ``nbytes`` of what the kernel holds now, without waiting (0: none)."""
        try:
            return os.readv(self._fd, [buffer[:nbytes]])
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError:  # reset: nothing more to take
            return 0

    def note_read(self, n: int, nbytes: int) -> None:
        """A read made past :meth:`recv_into` (a splice) returned ``n`` of ``nbytes``."""
        self._short = n < nbytes

    async def wait_readable(self, nbytes: int) -> None:
        """Wait until the socket has bytes for a read of ``nbytes`` made past
        :meth:`recv_into`: with a slow sender, until ``nbytes`` are queued or
        ``patience`` has passed."""
        sock = self._sock
        if nbytes >= MIN_MARK and self._short:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, nbytes)
            try:
                with trio.move_on_after(self._patience):
                    await trio.lowlevel.wait_readable(sock)
                    return
            finally:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)
        await trio.lowlevel.wait_readable(sock)

    async def _recv_marked(self, buffer: memoryview, nbytes: int) -> int:
        sock = self._sock
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, nbytes)
        try:
            with trio.move_on_after(self._patience):
                await trio.lowlevel.wait_readable(sock)
                try:
                    return os.readv(self._fd, [buffer[:nbytes]])
                except BlockingIOError:
                    pass
        finally:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)
        # Less than the mark within ``patience``: whatever is there, as a plain read.
        return await sock.recv_into(buffer, nbytes)
