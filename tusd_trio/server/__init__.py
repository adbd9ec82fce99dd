"""The Trio I/O layer: transports, the tus handler, the runtime they serve with.

Modules outside ``server/`` import from here, never from its private modules.
"""

from ._app import Server as Server, remove_stale_socket, serve
from ._asgi_exchange import ASGIExchange
from ._exchange import Exchange, TransportSettings, send_response
from ._framing import refusal
from ._handler import TusHandler
from ._metrics import retire_snapshot, snapshot_path
from ._operator import LISTENING_MESSAGE
from ._runtime import Runtime, build_runtime
from ._state import ServerState
from ._streams import ConnectionClosedError
from ._tls import TLSConfigError, tls_enabled

__all__ = [
    "LISTENING_MESSAGE",
    "ASGIExchange",
    "ConnectionClosedError",
    "Exchange",
    "Runtime",
    "Server",
    "ServerState",
    "TLSConfigError",
    "TransportSettings",
    "TusHandler",
    "build_runtime",
    "refusal",
    "remove_stale_socket",
    "retire_snapshot",
    "send_response",
    "serve",
    "snapshot_path",
    "tls_enabled",
]
