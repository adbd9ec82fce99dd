"""Which protocol an accepted connection speaks, decided in one place.

TLS connections are handshaken here (in the connection's own task) and become
HTTP/2 when ALPN chose ``h2``.  With ``-enable-h2c`` a cleartext connection that
opens with the HTTP/2 preface is HTTP/2 (prior knowledge), and an HTTP/1.1 request
asking ``Upgrade: h2c`` turns its connection into HTTP/2.  With ``-expose-events``
an HTTP/1.1 ``GET <events path>`` asking for a WebSocket becomes an event stream.
The HTTP/1.1 connection learns of the last two only through its ``takeover``.

HTTP/1.1 requests are read by httptools (``_httptools``) when it is installed and
``-http1-parser`` allows, else by h11 (``_h11``); the httptools connection hands
upgrades, like everything out of the ordinary, to an h11 connection, so a
``takeover`` always gets an h11 request.
"""

from __future__ import annotations

import logging

import h11
import trio

from ..config import ConfigError
from ..protocol.messages import Headers, Request
from ._events import EventStream, is_websocket_upgrade
from ._exchange import Handler, TransportSettings
from ._h2 import PREFACE, H2Connection, is_h2c_upgrade, sniff_preface
from ._h11 import HTTPConnection, Takeover
from ._httptools import HTTPTOOLS_AVAILABLE, HttpToolsConnection
from ._state import ServerState
from ._streams import ReplayStream, close_gracefully
from ._tls import handshake
from ._tls_stream import BatchingTLSStream

log = logging.getLogger("tusd_trio.http")

Connection = HTTPConnection | HttpToolsConnection | H2Connection


def use_httptools(choice: str) -> bool:
    """Whether ``-http1-parser choice`` reads HTTP/1.1 with httptools."""
    if choice == "httptools" and not HTTPTOOLS_AVAILABLE:
        raise ConfigError(
            "-http1-parser httptools: the httptools package cannot be imported "
            "(use -http1-parser h11 or auto)"
        )
    return choice == "httptools" or (choice == "auto" and HTTPTOOLS_AVAILABLE)


class ConnectionDispatcher:
    def __init__(
        self,
        *,
        settings: TransportSettings,
        state: ServerState,
        handler: Handler,
        events: EventStream,
        enable_h2c: bool,
        events_path: str | None,
        http1_parser: str = "auto",
    ) -> None:
        self._settings = settings
        self._state = state
        self._handler = handler
        self._events = events
        self._enable_h2c = enable_h2c
        #: The event stream's path (None: not exposed).
        self._events_path = events_path
        self._httptools = use_httptools(http1_parser)

    def operator_connection(
        self, stream: trio.abc.Stream, remote_addr: str
    ) -> HTTPConnection | HttpToolsConnection:
        """Plain HTTP/1.1 (what Prometheus and probes speak): no upgrade, no events."""
        return self._http1(stream, remote_addr, takeover=None)

    async def open(self, stream: trio.abc.Stream, remote_addr: str) -> Connection | None:
        """The connection object for an accepted stream; None when the TLS handshake
        failed (the stream is closed)."""
        if isinstance(stream, trio.SSLStream):
            try:
                alpn = await handshake(stream, self._settings.network_timeout)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                log.debug("TLS handshake with %s failed: %s", remote_addr, exc)
                with trio.CancelScope(shield=True):
                    await close_gracefully(stream, linger=False)
                return None
            batching = BatchingTLSStream(stream)
            if alpn == "h2":
                return self._http2(batching, remote_addr, scheme="https")
            return self._http1(batching, remote_addr, takeover=self._takeover)
        if self._enable_h2c:
            initial = await sniff_preface(stream, self._settings.idle_timeout)
            if initial.startswith(PREFACE):
                return self._http2(stream, remote_addr, initial=initial)
            if initial:
                stream = ReplayStream(stream, initial)
        return self._http1(stream, remote_addr, takeover=self._takeover)

    def _http1(
        self, stream: trio.abc.Stream, remote_addr: str, *, takeover: Takeover | None
    ) -> HTTPConnection | HttpToolsConnection:
        parser = HttpToolsConnection if self._httptools else HTTPConnection
        return parser(
            stream,
            settings=self._settings,
            state=self._state,
            remote_addr=remote_addr,
            takeover=takeover if (self._enable_h2c or self._events_path is not None) else None,
        )

    def _http2(
        self,
        stream: trio.abc.Stream,
        remote_addr: str,
        *,
        scheme: str = "http",
        initial: bytes = b"",
        upgrade: tuple[bytes, Request] | None = None,
    ) -> H2Connection:
        return H2Connection(
            stream,
            settings=self._settings,
            state=self._state,
            remote_addr=remote_addr,
            scheme=scheme,
            initial=initial,
            upgrade=upgrade,
        )

    async def _takeover(self, connection: HTTPConnection, event: h11.Request) -> bool:
        """Serve the rest of an HTTP/1.1 connection another way, if its request asks."""
        if self._enable_h2c and await self._upgrade_h2c(connection, event):
            return True
        if self._events_path is not None and event.method == b"GET":
            path = event.target.split(b"?", 1)[0].decode("latin-1")
            if path == self._events_path and is_websocket_upgrade(event):
                await self._events.serve(
                    connection.stream, event, bytes(connection.conn.trailing_data[0])
                )
                return True
        return False

    async def _upgrade_h2c(self, connection: HTTPConnection, event: h11.Request) -> bool:
        """Serve the connection as HTTP/2 if ``event`` asks ``Upgrade: h2c``.

        Only for cleartext connections and requests without a body (RFC 9113
        removed the upgrade; clients that still use it, like curl ``--http2``, send
        it on bodyless requests).  False, changing nothing, when the request is not
        such an upgrade; True once the HTTP/2 connection ended.
        """
        if isinstance(connection.stream, (trio.SSLStream, BatchingTLSStream)):
            return False
        headers = Headers(
            (bytes(name).decode("latin-1"), bytes(value).decode("latin-1"))
            for name, value in event.headers
        )
        settings = is_h2c_upgrade(headers)
        if settings is None or "content-length" in headers or "transfer-encoding" in headers:
            return False
        conn = connection.conn
        try:
            end = conn.next_event()
        except h11.RemoteProtocolError:
            return False
        if type(end) is not h11.EndOfMessage:  # pragma: no cover - bodyless by the checks above
            return False
        await connection.send_event(
            h11.InformationalResponse(
                status_code=101, headers=[(b"Connection", b"Upgrade"), (b"Upgrade", b"h2c")]
            )
        )
        request = Request(
            method=event.method.decode("ascii", errors="replace"),
            target=event.target.decode("latin-1"),
            headers=Headers(
                (name, value)
                for name, value in headers.raw
                if name not in ("connection", "upgrade", "http2-settings")
            ),
            scheme="http",
        )
        h2_connection = self._http2(
            connection.stream,
            connection.remote_addr,
            initial=bytes(conn.trailing_data[0]),
            upgrade=(settings, request),
        )
        connection.idle = False
        await h2_connection.serve(self._handler)
        return True
