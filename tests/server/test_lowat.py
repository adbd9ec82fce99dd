"""LowWaterSocket: after a short read, a body read wakes only once what it asks for is
queued; a sender that stops short is still read after ``patience``; the mark is one
byte again after every read (so the next request head is read as usual)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from tusd_trio.server._lowat import LowWaterSocket
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
