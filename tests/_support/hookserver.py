"""A small HTTP hook endpoint for the tests: records requests, answers from a script."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import h11
import trio


@dataclass
class Answer:
    """One scripted answer (the default is tusd's happy path: 200, JSON, ``{}``)."""

    status: int = 200
    body: bytes = b"{}"
    content_type: str | None = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)
    #: seconds to wait before answering
    delay: float = 0.0
    #: close the connection without answering (a network error for the client)
    drop: bool = False


@dataclass
class Received:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class HookServer:
    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.script: deque[Answer] = deque()
        self.default = Answer()
        #: Answers by request when set (after the script is used up), e.g. by hook type.
        self.respond: Callable[[Received], Answer] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def answer(self, *answers: Answer) -> None:
        self.script.extend(answers)

    async def serve(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request: h11.Request | None = None
                body = b""
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        conn.receive_data(await stream.receive_some(65536))
                    elif isinstance(event, h11.Request):
                        request = event
                    elif isinstance(event, h11.Data):
                        body += event.data
                    elif isinstance(event, h11.EndOfMessage):
                        break
                    else:  # ConnectionClosed or PAUSED
                        return
                assert request is not None
                self.requests.append(
                    Received(
                        request.method.decode(),
                        request.target.decode(),
                        [(k.decode(), v.decode()) for k, v in request.headers.raw_items()],
                        body,
                    )
                )
                if self.script:
                    answer = self.script.popleft()
                elif self.respond is not None:
                    answer = self.respond(self.requests[-1])
                else:
                    answer = self.default
                if answer.delay:
                    await trio.sleep(answer.delay)
                if answer.drop:
                    return
                headers = [("Content-Length", str(len(answer.body))), *answer.headers]
                if answer.content_type is not None:
                    headers.append(("Content-Type", answer.content_type))
                await stream.send_all(
                    conn.send(h11.Response(status_code=answer.status, headers=headers))
                )
                await stream.send_all(conn.send(h11.Data(data=answer.body)))
                await stream.send_all(conn.send(h11.EndOfMessage()))
                if conn.our_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            return
        finally:
            await stream.aclose()
