"""What the handler knows about one request beyond its bytes."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

from .._logging import RequestLog
from ..auth import Principal
from ..hooks.model import HTTPResponse
from ..protocol.messages import Request
from ._exchange import Exchange


class _RequestIds:
    """Request IDs of 16 hex digits: a random per-process prefix (10 digits) and a
    counter (6 digits).  One ``getrandom`` per 16.7 million requests instead of one
    per request; a forked worker draws its own prefix, so processes never share one."""

    __slots__ = ("_counter", "_prefix")

    def __init__(self) -> None:
        self._prefix = ""
        self._counter: Iterator[int] = iter(range(0))
        self.reset()

    def reset(self) -> None:
        self._prefix = secrets.token_hex(5)
        self._counter = iter(range(1 << 24))

    def next(self) -> str:
        for n in self._counter:
            return f"{self._prefix}{n:06x}"
        self.reset()
        return self.next()


_request_ids = _RequestIds()
os.register_at_fork(after_in_child=_request_ids.reset)

#: A new request ID (16 hex digits), for requests without an ``X-Request-ID``.
new_request_id = _request_ids.next


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
