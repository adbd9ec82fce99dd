"""One client cannot hold the event loop: every request, pipelined ones included,
gives the other tasks a turn."""

from __future__ import annotations

import re
from typing import Any

import pytest
import trio

from tests._support.raw_http import raw_request

REQUESTS = 200


@pytest.mark.parametrize("parser", ["h11", "httptools"])
async def test_pipelined_requests_each_give_the_other_tasks_a_turn(
    make_server: Any, parser: str
) -> None:
    srv = await make_server(http1_parser=parser)
    location = await srv.create(6)
    path = location.split(str(srv.port), 1)[1].encode()
    head = b"HEAD " + path + b" HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n\r\n"
    close = b"OPTIONS /files/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    turns = 0

    async def other_task() -> None:
        nonlocal turns
        while True:
            await trio.lowlevel.checkpoint()
            turns += 1

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other_task)
        await trio.lowlevel.checkpoint()
        turns = 0
        # All the heads arrive in one or a few reads: a transport that yields only
        # when it reads would answer them all in a row.
        reply = await raw_request(srv.port, head * REQUESTS + close)
        nursery.cancel_scope.cancel()
    assert len(re.findall(rb"HTTP/1\.1 200 ", reply)) == REQUESTS + 1
    assert turns >= REQUESTS
