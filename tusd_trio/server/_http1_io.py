"""Socket-first I/O of an HTTP/1.1 connection, whichever parser reads its requests.

Both HTTP/1.1 connections (``_h11.HTTPConnection`` and ``_httptools.
HttpToolsConnection``) read and write through :class:`Http1IO`: a read or a write
is tried on the non-blocking socket first, and trio is asked to wait (in a deadline
scope) only when the kernel cannot answer at once.
"""

from __future__ import annotations

import trio

from ._exchange import Exchange, TransportSettings
from ._framing import RawHeaders, http_date
from ._state import ServerState
from ._streams import RECEIVE_SIZE, ConnectionClosedError, direct_reader, plain_socket


class Http1IO:
    """The byte stream of one HTTP/1.1 connection and its limits."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        settings: TransportSettings,
        state: ServerState,
        remote_addr: str,
    ) -> None:
        self.stream = stream
        self.settings = settings
        self.state = state
        self.remote_addr = remote_addr
        #: What direct body reads read from (the socket; the TLS stream under TLS).
        self.socket = direct_reader(stream, settings.network_timeout)
        #: The plain socket for calls tried before trio waits (None: use ``stream``).
        self._plain = plain_socket(stream)
        self._body_buffer: bytearray | None = None
        #: Close gracefully (half-close, then drain) because the peer may still be
        #: sending: closing with unread input would reset the connection and could
        #: destroy the answer we just sent.
        self.linger = False
        self.cancel_scope: trio.CancelScope | None = None

    def body_buffer(self) -> bytearray:
        """The connection's one receive buffer for direct body reads (64 KiB)."""
        if self._body_buffer is None:
            self._body_buffer = bytearray(RECEIVE_SIZE)
        return self._body_buffer

    def try_receive(self) -> bytes | None:
        """What the kernel has for us right now (b"" at EOF), without trio; None
        when it has nothing yet, or under TLS (then :meth:`receive_waiting`)."""
        sock = self._plain
        if sock is None:
            return None
        try:
            return sock.recv(RECEIVE_SIZE)
        except BlockingIOError:
            return None
        except OSError as exc:
            raise ConnectionClosedError(reset=True) from exc

    async def receive_waiting(self) -> bytes:
        """Wait for the next bytes (the caller bounds the wait with a scope)."""
        sock = self._plain
        if sock is None:
            try:
                data = await self.stream.receive_some(RECEIVE_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                raise ConnectionClosedError(reset=True) from exc
            return data if type(data) is bytes else bytes(data)
        while True:
            try:
                await trio.lowlevel.wait_readable(sock)
                return sock.recv(RECEIVE_SIZE)
            except BlockingIOError:
                continue
            except (trio.ClosedResourceError, OSError) as exc:
                raise ConnectionClosedError(reset=True) from exc

    async def receive(self, limit: float) -> bytes:
        """The next bytes, within ``limit`` seconds (else TimeoutError).

        The read is tried first: a deadline scope is opened only when the kernel
        has nothing yet.  Bytes that were there at once still pass one checkpoint,
        so a client that keeps sending cannot starve the other connections.
        """
        data = self.try_receive()
        if data is not None:
            await trio.lowlevel.checkpoint()
            return data
        with trio.move_on_after(limit):
            return await self.receive_waiting()
        raise TimeoutError

    async def send_all(self, data: bytes) -> None:
        """Send ``data`` within the write timeout.  The kernel usually takes a small
        response at once: only what it does not take waits, in a deadline scope."""
        sock = self._plain
        if sock is None:
            with trio.move_on_after(self.settings.write_timeout) as scope:
                try:
                    await self.stream.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                    raise ConnectionClosedError(reset=True) from exc
            if scope.cancelled_caught:
                raise ConnectionClosedError(reset=True)
            return
        try:
            sent = sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            raise ConnectionClosedError(reset=True) from exc
        if sent == len(data):
            return
        rest = memoryview(data)[sent:]
        with trio.move_on_after(self.settings.write_timeout):
            while rest:
                try:
                    await trio.lowlevel.wait_writable(sock)
                    rest = rest[sock.send(rest) :]
                except BlockingIOError:
                    continue
                except (trio.ClosedResourceError, OSError) as exc:
                    raise ConnectionClosedError(reset=True) from exc
            return
        raise ConnectionClosedError(reset=True)


def end_of_head(
    exchange: Exchange, connection: Http1IO, headers: RawHeaders, *, can_drain: bool
) -> None:
    """What either HTTP/1.1 exchange adds to its response head: ``Connection: close``
    when the connection ends after the response, and ``Date``.

    A body that was not (fully) read ends the connection, unless what is left is
    small enough to drain afterwards (``can_drain``); the connection then lingers
    on close, since the client may still be sending it.
    """
    if not exchange.body_done and not can_drain:
        exchange.close_after = True
    if exchange.close_after and not exchange.body_done:
        connection.linger = True
    if exchange.close_after or connection.state.shutting_down:
        headers.append((b"Connection", b"close"))
    headers.append((b"Date", http_date()))
