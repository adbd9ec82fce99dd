"""LowWaterSocket: after a short read, a body read wakes only once what it asks for is
queued; a sender that stops short is still read after ``patience``; the mark is one
byte again after every read (so the next request head is read as usual)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from tusd_trio.server._direct_body import pump_direct_body
from tusd_trio.server._lowat import LowWaterSocket
from tusd_trio.server._state import ServerState
from tusd_trio.server._streams import direct_reader

KIB = 1024


@asynccontextmanager
async def tcp_pair() -> AsyncIterator[tuple[trio.SocketStream, trio.SocketStream]]:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    client = await trio.open_tcp_stream("127.0.0.1", port)
    server = await listeners[0].accept()
    try:
        yield server, client
    finally:
        await client.aclose()
        await server.aclose()
        for listener in listeners:
            await listener.aclose()


def _mark(stream: trio.SocketStream) -> int:
    value: int = stream.socket.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT)
    return value


async def _short_read(reader: LowWaterSocket, client: trio.SocketStream, view: memoryview) -> None:
    """A first read that gets less than it asked for: the reader turns to the mark."""
    await client.send_all(b"x" * 1000)
    assert await reader.recv_into(view, 64 * KIB) == 1000


async def test_marked_read_waits_for_what_it_asks() -> None:
    async with tcp_pair() as (server, client):
        reader = LowWaterSocket(server.socket, patience=30)
        view = memoryview(bytearray(64 * KIB))
        with trio.fail_after(20):
            await _short_read(reader, client, view)

            async def trickle() -> None:
                for _ in range(7):  # 70 KiB in 10 KiB pieces
                    await client.send_all(b"y" * (10 * KIB))
                    await trio.sleep(0.02)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(trickle)
                # Not one 10 KiB piece at a time: the whole 64 KiB in one read.
                assert await reader.recv_into(view, 64 * KIB) == 64 * KIB
            assert bytes(view[:10]) == b"y" * 10
            assert _mark(server) == 1
            assert await reader.recv_into(view, 64 * KIB) == 6 * KIB


async def test_sender_stopping_short_is_read_after_patience() -> None:
    async with tcp_pair() as (server, client):
        reader = LowWaterSocket(server.socket, patience=0.2)
        view = memoryview(bytearray(64 * KIB))
        with trio.fail_after(20):
            await _short_read(reader, client, view)
            await client.send_all(b"z" * 3000)
            assert await reader.recv_into(view, 64 * KIB) == 3000
            assert bytes(view[:3000]) == b"z" * 3000
            assert _mark(server) == 1


async def test_end_of_stream_while_waiting_for_the_mark() -> None:
    async with tcp_pair() as (server, client):
        reader = LowWaterSocket(server.socket, patience=30)
        view = memoryview(bytearray(64 * KIB))
        with trio.fail_after(20):
            await _short_read(reader, client, view)
            await client.send_all(b"w" * 500)
            await client.send_eof()
            assert await reader.recv_into(view, 64 * KIB) == 500
            assert await reader.recv_into(view, 64 * KIB) == 0
        assert _mark(server) == 1


async def test_small_reads_and_plain_sockets() -> None:
    async with tcp_pair() as (server, client):
        reader = direct_reader(server, 60)
        assert isinstance(reader, LowWaterSocket)
        view = memoryview(bytearray(64 * KIB))
        with trio.fail_after(20):
            await client.send_all(b"abc")
            assert await reader.recv_into(view, 8 * KIB) == 3  # below the mark's minimum
            assert bytes(view[:3]) == b"abc"


class _Progress:
    def __init__(self, remaining: int) -> None:
        self.received = 0
        self.remaining = remaining


async def test_a_stopped_body_pump_stores_what_the_kernel_holds() -> None:
    """A pump cancelled from outside (another request took the upload over) while its
    read waits for a fuller buffer still hands the sink every byte already queued."""
    async with tcp_pair() as (server, client):
        reader = LowWaterSocket(server.socket, patience=30)
        got = bytearray()
        progress = _Progress(remaining=1024 * KIB)
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                stop = trio.CancelScope()

                async def pump() -> None:
                    with stop:
                        await pump_direct_body(
                            reader,
                            bytearray(64 * KIB),
                            progress,
                            state=ServerState(request_completion_timeout=1),
                            read_timeout=30,
                            sink=got.extend,
                            limit=None,
                        )

                nursery.start_soon(pump)
                await client.send_all(b"a" * 1000)
                while len(got) < 1000:  # a short read: the next one waits for the mark
                    await trio.sleep(0.01)
                await client.send_all(b"b" * 3000)
                await trio.sleep(0.1)
                assert len(got) == 1000  # still waiting for 64 KiB
                stop.cancel()
        assert bytes(got) == b"a" * 1000 + b"b" * 3000
        assert (progress.received, progress.remaining) == (4000, 1024 * KIB - 4000)
