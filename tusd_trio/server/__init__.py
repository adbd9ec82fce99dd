"""The Trio I/O layer: transports, the tus handler, the runtime they serve with.

Modules outside ``server/`` import from here, never from its private modules.
"""

from ._app import Server as Server, serve
from ._asgi_exchange import ASGIExchange
from ._exchange import Exchange, TransportSettings, send_response
from ._framing import refusal
from ._handler import TusHandler
from ._runtime import Runtime, build_runtime
from ._state import ServerState
from ._streams import ConnectionClosedError
from ._tls import TLSConfigError

__all__ = [
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
    "send_response",
    "serve",
]
