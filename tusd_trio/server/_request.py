"""What the handler knows about one request beyond its bytes."""

from __future__ import annotations

from dataclasses import dataclass

from .._logging import RequestLog
from ..auth import Principal
from ..hooks import HTTPResponse
from ..protocol.messages import Request
from ._exchange import Exchange


@dataclass(eq=False, slots=True)
class RequestContext:
    """One request as the handler tracks it; the transport's side is ``exchange``.

    Created by the handler for every request, so no transport carries tus state.
    """

    exchange: Exchange
    #: The request's log context (its lines carry the request ID and upload ID).
    log: RequestLog
    #: The request's ID (X-Request-ID, or one made up), echoed and logged.
    request_id: str
    #: Who made the request (access control), once authenticated.
    principal: Principal | None = None
    #: A hook's changes to the final response.
    hook_response: HTTPResponse | None = None
    #: Whether this request created an upload (a failure then still leaves one).
    upload_created: bool = False
    #: The offset the last post-receive event of this request reported.
    reported_offset: int = -1
    #: The status of a response the handler streamed itself (downloads).
    sent_status: int = 0
    #: An InternalServerError line with the details was written already.
    internal_error_logged: bool = False

    @property
    def request(self) -> Request:
        return self.exchange.request

    @property
    def remote_addr(self) -> str:
        return self.exchange.remote_addr

    @property
    def received(self) -> int:
        """Body bytes received so far."""
        return self.exchange.received
