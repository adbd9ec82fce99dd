"""Hostile HTTP: malformed, oversized, slow and tricky requests on a real socket.

Every case checks three things:

* the exact answer (status, and the ``ERR_*`` code when the body carries one);
* the daemon stays up: a normal create / PATCH / HEAD / GET afterwards succeeds;
* nothing outside the upload directory is touched (a canary file lives beside
  it) and the upload directory holds only ``<id>`` / ``<id>.info`` pairs, and
  exactly as many uploads as the test expects.

The server runs in the test's Trio loop (``tests/_support/server.py``); hostile bytes go
through raw sockets and a small response parser so that every byte the server sends is
seen.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from tests._support.server import Running, ServerFactory, server_pool
from tests._support.tus import TUS, is_live_owner_file

CANARY = b"canary: nothing may touch this file\n"
ID_FILE = re.compile(r"[0-9a-f]{32}(\.info)?")
H = b"Host: x\r\nTus-Resumable: 1.0.0\r\n"


# --- the server ------------------------------------------------------------------------------


@pytest.fixture
async def make_server(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[ServerFactory]:
    """Servers on ``tmp_path/data`` (tests/_support/server.py), with a canary file beside
    that directory that must be untouched when they have stopped."""
    canary = tmp_path / "canary.txt"
    canary.write_bytes(CANARY)
    os.utime(canary, (1_000_000_000, 1_000_000_000))
    async with server_pool(nursery, tmp_path / "data") as pool:
        yield pool.start
    # Nothing outside the upload directory was touched.
    assert canary.read_bytes() == CANARY
    assert canary.stat().st_mtime == 1_000_000_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["canary.txt", "data"]


@pytest.fixture
async def srv(make_server: ServerFactory) -> Running:
    return await make_server()


def upload_ids(srv: Running) -> set[str]:
    """The uploads in the upload directory; fails on any other file or directory."""
    # The running server's file-locker owner file is expected; nothing else is.
    names = [n for n in os.listdir(srv.upload_dir) if not is_live_owner_file(n)]
    strange = [n for n in names if not ID_FILE.fullmatch(n)]
    assert not strange, f"unexpected files in the upload directory: {strange}"
    ids = {n.removesuffix(".info") for n in names}
    for upload_id in ids:
        assert upload_id in names and upload_id + ".info" in names, upload_id
    return ids


async def assert_alive(srv: Running) -> str:
    """A normal upload from start to end still works; returns its ID."""
    with trio.fail_after(10):
        loc = await srv.create(5, Upload_Metadata="filename " + base64.b64encode(b"ok").decode())
        r = await srv.patch(loc, 0, b"hello")
        assert r.status_code == 204, r.text
        assert r.headers["upload-offset"] == "5"
        r = await srv.head(loc)
        assert r.status_code == 200
        assert r.headers["upload-offset"] == "5"
        r = await srv.client.get(loc)
        assert r.status_code == 200
        assert r.content == b"hello"
    return loc.rsplit("/", 1)[1]


# --- raw HTTP ----------------------------------------------------------------------------------


@dataclasses.dataclass
class RawResponse:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    head_block: bytes

    def header(self, name: str) -> bytes | None:
        wanted = name.lower().encode()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None

    @property
    def code(self) -> str:
        """The ``ERR_*`` code our error bodies start with."""
        text = self.body.decode("utf-8", "replace")
        return text.split(":", 1)[0] if text.startswith("ERR_") else ""


class RawConn:
    """A client socket that sends arbitrary bytes and parses what comes back."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buf = bytearray()
        self.eof = False

    @classmethod
    async def open(cls, port: int) -> RawConn:
        return cls(await trio.open_tcp_stream("127.0.0.1", port))

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def _fill(self) -> None:
        if self.eof:
            raise EOFError("connection closed by the server")
        try:
            chunk = await self.stream.receive_some(65536)
        except trio.BrokenResourceError:
            chunk = b""
        if not chunk:
            self.eof = True
            raise EOFError("connection closed by the server")
        self.buf += chunk

    async def _read_until(self, marker: bytes) -> bytes:
        while (index := self.buf.find(marker)) < 0:
            await self._fill()
        data = bytes(self.buf[:index])
        del self.buf[: index + len(marker)]
        return data

    async def _read_exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            await self._fill()
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    async def response(self, *, head: bool = False, timeout: float = 10) -> RawResponse:
        with trio.fail_after(timeout):
            block = await self._read_until(b"\r\n\r\n")
            lines = block.split(b"\r\n")
            assert re.fullmatch(rb"HTTP/1\.1 \d{3} [ -~]*", lines[0]), lines[0]
            status = int(lines[0].split(b" ")[1])
            headers = []
            for line in lines[1:]:
                assert b":" in line, f"broken header line: {line!r}"
                name, value = line.split(b":", 1)
                assert re.fullmatch(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name), line
                # Never a control character (other than tab) in a header value.
                assert not re.search(rb"[\x00-\x08\x0a-\x1f\x7f]", value), line
                headers.append((name, value.strip(b" \t")))
            response = RawResponse(status, headers, b"", block)
            if head or status in (204, 304) or 100 <= status < 200:
                return response
            length = response.header("content-length")
            if length is not None:
                response.body = await self._read_exactly(int(length))
            elif (response.header("transfer-encoding") or b"").lower() == b"chunked":
                body = bytearray()
                while True:
                    size = int((await self._read_until(b"\r\n")).split(b";")[0], 16)
                    if size == 0:
                        await self._read_until(b"\r\n")
                        break
                    body += await self._read_exactly(size)
                    assert await self._read_exactly(2) == b"\r\n"
                response.body = bytes(body)
            else:
                while not self.eof:
                    try:
                        await self._fill()
                    except EOFError:
                        break
                response.body = bytes(self.buf)
                self.buf.clear()
            return response

    async def closed(self, timeout: float = 5) -> bool:
        """True if the server closes the connection (no further bytes) in time."""
        with trio.move_on_after(timeout):
            while True:
                try:
                    await self._fill()
                except EOFError:
                    return not self.buf
        return False

    async def aclose(self) -> None:
        await self.stream.aclose()


async def exchange(
    port: int, data: bytes, *, head: bool = False, wait_close: float = 3
) -> tuple[RawResponse, bool]:
    """Send ``data``, read one response; also whether the server then closed."""
    conn = await RawConn.open(port)
    try:
        await conn.send(data)
        response = await conn.response(head=head)
        return response, await conn.closed(timeout=wait_close)
    finally:
        await conn.aclose()


def post(headers: bytes, body: bytes = b"", target: bytes = b"/files/") -> bytes:
    return b"POST " + target + b" HTTP/1.1\r\n" + H + headers + b"\r\n" + body


# --- oversized and never-ending heads ------------------------------------------------------


async def test_oversized_request_line_gets_431(srv: Running) -> None:
    conn = await RawConn.open(srv.port)
    async with conn.stream:
        await conn.send(b"GET /files/" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        r = await conn.response()
        assert r.status == 431
        assert r.code == "ERR_REQUEST_HEADER_FIELDS_TOO_LARGE"
        assert await conn.closed()
    assert upload_ids(srv) == set()
    await assert_alive(srv)


@pytest.mark.parametrize("size", [65_600, 70_000, 100_000, 200_000])
async def test_oversized_headers_get_431(srv: Running, size: int) -> None:
    # Request line plus headers beyond -max-header-size (64 KiB) must get 431 however
    # the bytes are split into TCP segments (sent here in one go).
    for _ in range(3):
        r, closed = await exchange(
            srv.port, b"OPTIONS /files/ HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * size + b"\r\n\r\n"
        )
        assert r.status == 431, f"{size}-byte header block answered {r.status}"
        assert r.code == "ERR_REQUEST_HEADER_FIELDS_TOO_LARGE"
        assert closed
    await assert_alive(srv)


async def test_header_size_limit_is_configurable(make_server: ServerFactory) -> None:
    srv = await make_server(max_header_size=4096)
    r, closed = await exchange(
        srv.port, b"OPTIONS /files/ HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 5000 + b"\r\n\r\n"
    )
    assert (r.status, r.code, closed) == (431, "ERR_REQUEST_HEADER_FIELDS_TOO_LARGE", True)
    await assert_alive(srv)


async def test_header_block_that_never_ends_gets_408(make_server: ServerFactory) -> None:
    srv = await make_server(network_timeout=0.5)
    conn = await RawConn.open(srv.port)
    async with conn.stream:
        start = trio.current_time()
        await conn.send(b"POST /files/ HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nX-Slow: ")
        r = await conn.response(timeout=5)
        assert r.status == 408
        assert r.code == "ERR_REQUEST_TIMEOUT"
        assert await conn.closed()
        assert 0.4 < trio.current_time() - start < 5
    assert upload_ids(srv) == set()
    await assert_alive(srv)


async def test_slowloris_head_is_cut(make_server: ServerFactory) -> None:
    # One byte every 0.2 s never trips a per-read timeout of 1 s; the head as a whole
    # must still be cut (the lead adds a total deadline for the request head).
    srv = await make_server(network_timeout=1)
    conn = await RawConn.open(srv.port)
    start = trio.current_time()
    result: dict[str, Any] = {}

    async def trickle(cancel: trio.CancelScope) -> None:
        head = b"POST /files/ HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nX-Slow: " + b"a" * 1000
        with trio.move_on_after(12):
            for byte in head:
                try:
                    await conn.send(bytes([byte]))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
                await trio.sleep(0.2)
        cancel.cancel()

    async with conn.stream, trio.open_nursery() as nursery:
        nursery.start_soon(trickle, nursery.cancel_scope)
        try:
            result["response"] = await conn.response(timeout=12)
            result["closed"] = await conn.closed(timeout=3)
            result["elapsed"] = trio.current_time() - start
        except (EOFError, trio.TooSlowError) as exc:
            result["error"] = repr(exc)
        nursery.cancel_scope.cancel()
    assert "error" not in result, f"slowloris head never cut: {result}"
    assert result["response"].status == 408
    assert result["response"].code == "ERR_REQUEST_TIMEOUT"
    assert result["closed"]
    assert result["elapsed"] < 10
    assert upload_ids(srv) == set()
    await assert_alive(srv)


# --- message framing -------------------------------------------------------------------------


async def test_content_length_and_transfer_encoding_is_refused(srv: Running) -> None:
    # RFC 9112 6.1: reject, or use Transfer-Encoding and close the connection.  README:
    # malformed HTTP gets a 400 and the connection is closed.
    conn = await RawConn.open(srv.port)
    async with conn.stream:
        await conn.send(
            post(
                b"Upload-Length: 5\r\nContent-Type: application/offset+octet-stream\r\n"
                b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
                b"5\r\nabcde\r\n0\r\n\r\n",
            )
        )
        r = await conn.response()
        closed = await conn.closed(timeout=3)
    assert (r.status, r.code, closed) == (400, "ERR_BAD_REQUEST", True), (r.head_block, closed)
    assert upload_ids(srv) == set()
    await assert_alive(srv)


async def test_conflicting_content_length_is_refused(srv: Running) -> None:
    for headers in (
        b"Content-Length: 3\r\nContent-Length: 4\r\n",
        b"Content-Length: 3, 4\r\n",
        b"Content-Length: 3\r\nContent-Length: 3, 4\r\n",
    ):
        r, closed = await exchange(srv.port, post(b"Upload-Length: 5\r\n" + headers, b"abcd"))
        assert (r.status, r.code, closed) == (400, "ERR_BAD_REQUEST", True), headers
    for value in (b"-1", b"0x3", b"1e3", b"+3", b"99999999999999999999999"):
        r, closed = await exchange(
            srv.port, post(b"Upload-Length: 5\r\nContent-Length: " + value + b"\r\n", b"abc")
        )
        assert (r.status, r.code, closed) == (400, "ERR_BAD_REQUEST", True), value
    assert upload_ids(srv) == set()
    # Identical duplicates may be folded into one (RFC 9112 6.3): h11 does.
    r, _ = await exchange(
        srv.port,
        post(
            b"Upload-Length: 3\r\nContent-Type: application/offset+octet-stream\r\n"
            b"Content-Length: 3\r\nContent-Length: 3\r\nConnection: close\r\n",
            b"abc",
        ),
    )
    assert (r.status, r.header("upload-offset")) == (201, b"3")
    assert len(upload_ids(srv)) == 1
    await assert_alive(srv)


async def test_unknown_transfer_coding_gets_501(srv: Running) -> None:
    r, closed = await exchange(srv.port, post(b"Upload-Length: 5\r\nTransfer-Encoding: gzip\r\n"))
    assert (r.status, closed) == (501, True)
    assert upload_ids(srv) == set()
    await assert_alive(srv)


@pytest.mark.parametrize(
    ("body", "kept"),
    [
        (b"zz\r\nabcde\r\n0\r\n\r\n", b""),  # size is not hex
        (b"-5\r\nabcde\r\n0\r\n\r\n", b""),  # negative size
        (b"3\r\nabcXX0\r\n\r\n", b"abc"),  # no CRLF after the chunk data
        (b"3\nabc\r\n0\r\n\r\n", b""),  # bare LF after the size
        (b"f" * 21 + b"\r\nabc", b""),  # chunk size beyond h11's 20 hex digits
    ],
)
async def test_malformed_chunked_patch_gets_400(srv: Running, body: bytes, kept: bytes) -> None:
    loc = await srv.create(10)
    conn = await RawConn.open(srv.port)
    async with conn.stream:
        await conn.send(
            b"PATCH " + srv.path_of(loc).encode() + b" HTTP/1.1\r\n" + H + b"Upload-Offset: 0\r\n"
            b"Content-Type: application/offset+octet-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + body
        )
        r = await conn.response()
        closed = await conn.closed()
    assert (r.status, r.code, closed) == (400, "ERR_BAD_REQUEST", True), r.body
    head = await srv.head(loc)
    assert head.headers["upload-offset"] == str(len(kept))
    assert (await srv.client.get(loc)).content == kept
    assert len(upload_ids(srv)) == 1
    await assert_alive(srv)


async def test_malformed_chunked_creation_gets_400_with_location(srv: Running) -> None:
    r, closed = await exchange(
        srv.port,
        post(
            b"Upload-Length: 5\r\nContent-Type: application/offset+octet-stream\r\n"
            b"Transfer-Encoding: chunked\r\n",
            b"zz\r\nabcde\r\n0\r\n\r\n",
        ),
    )
    assert (r.status, r.code, closed) == (400, "ERR_BAD_REQUEST", True)
    # The upload was created before the body went wrong: the client can resume it.
    location = r.header("location")
    assert location is not None
    head = await srv.head(
        location.decode().replace("http://x/", srv.url.rsplit("/files/")[0] + "/")
    )
    assert (head.status_code, head.headers["upload-offset"]) == (200, "0")
    assert len(upload_ids(srv)) == 1
    await assert_alive(srv)


async def test_pipelined_garbage_after_valid_requests(srv: Running) -> None:
    loc = await srv.create(3)
    path = srv.path_of(loc).encode()
    conn = await RawConn.open(srv.port)
    async with conn.stream:
        await conn.send(
            b"OPTIONS /files/ HTTP/1.1\r\nHost: x\r\n\r\n"
            b"PATCH " + path + b" HTTP/1.1\r\n" + H + b"Upload-Offset: 0\r\n"
            b"Content-Type: application/offset+octet-stream\r\nContent-Length: 3\r\n\r\nabc"
            b"\x00\x01\xff garbage \r\n\r\n"
            b"HEAD " + path + b" HTTP/1.1\r\n" + H + b"\r\n"
        )
        first = await conn.response()
        second = await conn.response()
        third = await conn.response()
        assert await conn.closed()
    assert first.status == 200
    assert (second.status, second.header("upload-offset")) == (204, b"3")
    assert (third.status, third.code) == (400, "ERR_BAD_REQUEST")
    assert (await srv.head(loc)).headers["upload-offset"] == "3"
    assert upload_ids(srv) == {loc.rsplit("/", 1)[1]}
    await assert_alive(srv)


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(40)) + b"\r\n\r\n",  # TLS
        b"GET\r\n\r\n",
        b"POST /files/ HTTP/1.1\r\n" + H + b"No-Colon\r\n\r\n",
        b"POST /files/ HTTP/1.1\r\n" + H + b"Bad Name: x\r\n\r\n",
        b"POST /files/ HTTP/1.1\r\nTus-Resumable: 1.0.0\r\nUpload-Length: 1\r\n\r\n",  # no Host
        b"POST /files/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n" + H + b"\r\n",
    ],
)
async def test_garbage_gets_400(srv: Running, garbage: bytes) -> None:
    r, closed = await exchange(srv.port, garbage)
    assert (r.status, r.code, closed) == (400, "ERR_BAD_REQUEST", True), r.head_block
    assert upload_ids(srv) == set()
    await assert_alive(srv)


async def test_huge_chunk_size_is_cut_at_the_upload_length(srv: Running) -> None:
    # 20 hex digits (2**80 - 1) is the most h11 reads; the upload's length still limits.
    loc = await srv.create(10)
    r, closed = await exchange(
        srv.port,
        b"PATCH " + srv.path_of(loc).encode() + b" HTTP/1.1\r\n" + H + b"Upload-Offset: 0\r\n"
        b"Content-Type: application/offset+octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"f" * 20
        + b"\r\n"
        + b"x" * 11,
    )
    assert (r.status, r.code, closed) == (413, "ERR_UPLOAD_SIZE_EXCEEDED", True)
    assert (await srv.head(loc)).headers["upload-offset"] == "10"
    await assert_alive(srv)


async def test_obs_fold_is_unfolded(srv: Running) -> None:
    # RFC 9112 5.2: reject with 400 or replace obs-fold with SP; h11 replaces, so the
    # folded line becomes part of Tus-Resumable, which then is not "1.0.0".
    r, _ = await exchange(srv.port, post(b" folded: header\r\nUpload-Length: 1\r\n"), wait_close=0)
    assert (r.status, r.code) == (412, "ERR_UNSUPPORTED_VERSION")
    assert upload_ids(srv) == set()
    await assert_alive(srv)


async def test_unknown_http_version(srv: Running) -> None:
    # h11 accepts any HTTP/<digit>.<digit> and answers as HTTP/1.1.
    r, closed = await exchange(srv.port, b"GET / HTTP/9.9\r\nHost: x\r\n\r\n", wait_close=0)
    assert r.status == 200
    r, closed = await exchange(
        srv.port, b"OPTIONS /files/ HTTP/1.0\r\nTus-Resumable: 1.0.0\r\n\r\n"
    )
    assert (r.status, closed) == (200, True)  # HTTP/1.0 without keep-alive: closed
    await assert_alive(srv)


# --- odd bytes in header values and in Upload-Metadata ----------------------------------


@pytest.mark.parametrize(
    "value",
    [b"a\x00b", b"a\x0bb", b"a\x0cb", b"a\rb", b"a\nb"],
    ids=["NUL", "VT", "FF", "CR", "LF"],
)
async def test_forbidden_bytes_in_header_values_get_400(srv: Running, value: bytes) -> None:
    r, closed = await exchange(srv.port, post(b"Upload-Length: 1\r\nX-Odd: " + value + b"\r\n"))
    assert (r.status, r.code, closed) == (400, "ERR_BAD_REQUEST", True)
    assert upload_ids(srv) == set()
    await assert_alive(srv)


@pytest.mark.parametrize(
    "value",
    ["é漢字".encode(), "café".encode("latin-1"), b"a\x01b\x1bc\x7f", b"\xff\xfe"],
    ids=["utf8", "latin1", "controls", "invalid-utf8"],
)
async def test_odd_bytes_in_header_values_are_harmless(srv: Running, value: bytes) -> None:
    # Bytes h11 lets through (obs-text, C0 controls other than NUL/CR/LF/VT/FF, DEL):
    # the daemon must not care about unknown headers, nor break on them in tus headers.
    r, _ = await exchange(
        srv.port,
        post(
            b"Upload-Length: 2\r\nX-Odd: " + value + b"\r\nX-Request-ID: " + value + b"\r\n"
            b"Connection: close\r\n"
        ),
    )
    assert r.status == 201
    r, _ = await exchange(
        srv.port, post(b"Upload-Length: 2" + value + b"\r\nConnection: close\r\n")
    )
    assert (r.status, r.code) == (400, "ERR_INVALID_UPLOAD_LENGTH")
    r, _ = await exchange(
        srv.port,
        post(b"Upload-Length: 2\r\nUpload-Concat: " + value + b"\r\nConnection: close\r\n"),
    )
    assert (r.status, r.code) == (400, "ERR_INVALID_CONCAT")
    r, _ = await exchange(
        srv.port,
        post(b"Upload-Length: 2\r\nUpload-Checksum: " + value + b"\r\nConnection: close\r\n"),
    )
    assert r.status == 201  # a checksum on a creation without body is ignored, as tusd
    r, _ = await exchange(
        srv.port,
        post(b"Upload-Length: 2\r\nTus-Resumable: " + value + b"\r\nConnection: close\r\n"),
    )
    assert r.status == 201  # the first Tus-Resumable counts (1.0.0), as in tusd
    r, _ = await exchange(
        srv.port,
        b"POST /files/ HTTP/1.1\r\nHost: x\r\nTus-Resumable: "
        + value
        + b"\r\nUpload-Length: 2\r\nConnection: close\r\n\r\n",
    )
    assert (r.status, r.code) == (412, "ERR_UNSUPPORTED_VERSION")
    r, _ = await exchange(
        srv.port, post(b"Upload-Length: 2\r\nOrigin: " + value + b"\r\nConnection: close\r\n")
    )
    assert r.status == 201
    assert len(upload_ids(srv)) == 4
    await assert_alive(srv)


async def test_odd_metadata_never_breaks_head(srv: Running) -> None:
    def b64(raw: bytes) -> bytes:
        return base64.b64encode(raw)

    metadata = b",".join(
        [
            b"a\x01b " + b64(b"v"),  # control character in a key
            b"c\x7fd " + b64(b"x\r\ny\x00z\x1b"),  # controls in the value
            "ké".encode() + b" " + b64("é\u2028\x85".encode()),  # UTF-8 key
            "kè".encode("latin-1") + b" " + b64(b"\xff\xfe"),  # latin-1 key, bad UTF-8 value
            b"filename " + b64(b"a\r\nSet-Cookie: x=1\r\n\r\n"),
            b"filetype " + b64(b"text/html\r\nX-Injected: 1"),
            b"empty",
            b"bad !!!notbase64",
        ]
    )
    r, _ = await exchange(
        srv.port,
        post(b"Upload-Length: 4\r\nConnection: close\r\nUpload-Metadata: " + metadata + b"\r\n"),
    )
    assert r.status == 201
    path = r.header("location").decode().split("http://x", 1)[1]  # type: ignore[union-attr]
    # HEAD: every byte of the header block is checked by RawConn.response.
    head, _ = await exchange(
        srv.port,
        b"HEAD " + path.encode() + b" HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n",
        head=True,
    )
    assert head.status == 200
    echoed = head.header("upload-metadata")
    assert echoed is not None
    assert b"\r" not in echoed and b"\n" not in echoed and b"\x00" not in echoed
    assert not any(name.lower() in (b"set-cookie", b"x-injected") for name, _ in head.headers)
    pairs = dict([*p.split(b" ", 1), b""][:2] for p in echoed.split(b","))
    assert base64.b64decode(pairs[b"filename"]) == b"a\r\nSet-Cookie: x=1\r\n\r\n"
    assert pairs[b"empty"] == b""
    assert b"bad" not in pairs
    # GET: filename and filetype go into Content-Disposition / Content-Type.
    await srv.patch(srv.url + path.rsplit("/", 1)[1], 0, b"data")
    get, _ = await exchange(
        srv.port, b"GET " + path.encode() + b" HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n"
    )
    assert (get.status, get.body) == (200, b"data")
    assert get.header("content-type") == b"application/octet-stream"
    assert not any(name.lower() in (b"set-cookie", b"x-injected") for name, _ in get.headers)
    assert len(upload_ids(srv)) == 1
    await assert_alive(srv)


async def test_one_mib_of_metadata_gets_431(srv: Running) -> None:
    conn = await RawConn.open(srv.port)
    result: dict[str, Any] = {}

    async def send() -> None:
        try:
            await conn.send(
                post(b"Upload-Length: 1\r\nUpload-Metadata: k " + b"A" * (1 << 20) + b"\r\n")
            )
        except trio.BrokenResourceError:
            pass  # the server answered and closed before reading it all

    async with conn.stream, trio.open_nursery() as nursery:
        nursery.start_soon(send)
        result["r"] = await conn.response()
        result["closed"] = await conn.closed()
        nursery.cancel_scope.cancel()
    assert result["r"].status == 431
    assert result["r"].code == "ERR_REQUEST_HEADER_FIELDS_TOO_LARGE"
    assert result["closed"]
    assert upload_ids(srv) == set()
    await assert_alive(srv)


async def test_ten_thousand_metadata_keys(srv: Running) -> None:
    # 10,000 keys without values: 58,889 bytes, within the 64 KiB header limit.
    metadata = b",".join(b"k%d" % i for i in range(10_000))
    with trio.fail_after(10):
        r, _ = await exchange(
            srv.port,
            post(
                b"Upload-Length: 1\r\nConnection: close\r\nUpload-Metadata: " + metadata + b"\r\n"
            ),
        )
    assert r.status in (201, 431)
    if r.status == 201:
        path = r.header("location").decode().split("http://x", 1)[1]  # type: ignore[union-attr]
        with trio.fail_after(10):
            head, _ = await exchange(
                srv.port,
                b"HEAD " + path.encode() + b" HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n",
                head=True,
            )
        assert head.status == 200
        assert len(head.header("upload-metadata").split(b",")) == 10_000  # type: ignore[union-attr]
    await assert_alive(srv)


# --- numbers ---------------------------------------------------------------------------------

BAD_NUMBERS = [
    b"-1",
    b"+-5",
    b"--0",
    b"9223372036854775808",  # 2**63
    b"99999999999999999999999999",
    b"0x10",
    b"1e3",
    b"1.0",
    b"1_000",
    b"5 5",
    b"5,5",
    "١٢".encode(),  # Arabic-Indic digits
    "\uff15".encode(),  # full-width digit five
    b"\xb2",  # latin-1 superscript two
]


@pytest.mark.parametrize("value", BAD_NUMBERS)
async def test_bad_upload_length(srv: Running, value: bytes) -> None:
    r, _ = await exchange(srv.port, post(b"Upload-Length: " + value + b"\r\nConnection: close\r\n"))
    assert (r.status, r.code) == (400, "ERR_INVALID_UPLOAD_LENGTH")
    assert upload_ids(srv) == set()


@pytest.mark.parametrize("value", BAD_NUMBERS)
async def test_bad_upload_offset(srv: Running, value: bytes) -> None:
    loc = await srv.create(5)
    r, _ = await exchange(
        srv.port,
        b"PATCH "
        + srv.path_of(loc).encode()
        + b" HTTP/1.1\r\n"
        + H
        + b"Upload-Offset: "
        + value
        + b"\r\nContent-Type: application/offset+octet-stream\r\nContent-Length: 1\r\n"
        b"Connection: close\r\n\r\nx",
    )
    assert (r.status, r.code) == (400, "ERR_INVALID_OFFSET")
    assert (await srv.head(loc)).headers["upload-offset"] == "0"


@pytest.mark.parametrize(("value", "number"), [(b"+5", 5), (b"-0", 0), (b"0005", 5)])
async def test_numbers_are_read_as_go_reads_them(srv: Running, value: bytes, number: int) -> None:
    # tusd parses Upload-Length and Upload-Offset with strconv.ParseInt and refuses
    # negatives: "Upload-Length: +10" got 201 from tusd, "Upload-Offset: +0" 204.
    r, _ = await exchange(srv.port, post(b"Upload-Length: " + value + b"\r\nConnection: close\r\n"))
    assert r.status == 201
    location = r.header("location")
    assert location is not None
    upload_id = location.decode().rsplit("/", 1)[1]
    assert (await srv.head(srv.url + upload_id)).headers["upload-length"] == str(number)
    loc = await srv.create(5)
    await srv.patch(loc, 0, b"x" * number)
    r, _ = await exchange(
        srv.port,
        b"PATCH "
        + srv.path_of(loc).encode()
        + b" HTTP/1.1\r\n"
        + H
        + b"Upload-Offset: "
        + value
        + b"\r\nContent-Type: application/offset+octet-stream\r\nContent-Length: 0\r\n"
        b"Connection: close\r\n\r\n",
    )
    assert (r.status, r.header("upload-offset")) == (204, str(number).encode())


async def test_number_edge_cases(srv: Running) -> None:
    # Surrounding whitespace is not part of a field value (h11 strips it): accepted.
    r, _ = await exchange(srv.port, post(b"Upload-Length:  12 \r\nConnection: close\r\n"))
    assert r.status == 201
    # The largest int64 is a valid length.
    r, _ = await exchange(
        srv.port, post(b"Upload-Length: 9223372036854775807\r\nConnection: close\r\n")
    )
    assert r.status == 201
    # Upload-Offset given twice: the first counts, as in tusd (Go's Header.Get).
    loc = await srv.create(5)
    r, _ = await exchange(
        srv.port,
        b"PATCH "
        + srv.path_of(loc).encode()
        + b" HTTP/1.1\r\n"
        + H
        + b"Upload-Offset: 0\r\nUpload-Offset: 3\r\n"
        b"Content-Type: application/offset+octet-stream\r\nContent-Length: 1\r\n"
        b"Connection: close\r\n\r\nx",
    )
    assert (r.status, r.header("upload-offset")) == (204, b"1")
    # A deferred length declared as a bad number on PATCH.
    loc = await srv.create(None, Upload_Defer_Length="1")
    for value in (b"-1", b"0x10", b"9223372036854775808"):
        r, _ = await exchange(
            srv.port,
            b"PATCH "
            + srv.path_of(loc).encode()
            + b" HTTP/1.1\r\n"
            + H
            + b"Upload-Offset: 0\r\nUpload-Length: "
            + value
            + b"\r\n"
            b"Content-Type: application/offset+octet-stream\r\nContent-Length: 1\r\n"
            b"Connection: close\r\n\r\nx",
        )
        assert (r.status, r.code) == (400, "ERR_INVALID_UPLOAD_LENGTH"), value
    for value in (b"2", b"0", b"yes", b"-1"):
        r, _ = await exchange(
            srv.port, post(b"Upload-Defer-Length: " + value + b"\r\nConnection: close\r\n")
        )
        assert (r.status, r.code) == (400, "ERR_INVALID_UPLOAD_LENGTH_DEFER"), value
    assert len(upload_ids(srv)) == 4
    await assert_alive(srv)


# --- upload IDs ----------------------------------------------------------------------------

TRAVERSALS = [
    b"/files/..",
    b"/files/../canary.txt",
    b"/files/../../etc/passwd",
    b"/files/%2e%2e",
    b"/files/%2e%2e/canary.txt",
    b"/files/%2E%2E%2Fcanary.txt",
    b"/files/%252e%252e",
    b"/files/%252e%252e%252fcanary.txt",
    b"/files/.",
    b"/files/./x",
    b"/files/x/../../canary.txt",
    b"/files/abc%00",
    b"/files/abc%00.info",
    b"/files//etc/passwd",
    b"/files/..%5ccanary.txt",
    b"/files/..\\canary.txt",
    b"/files/%5c%5cserver%5cshare",
    b"/files/" + b"a" * 2000,
    b"/files/" + b"a" * 60_000,
    b"/files/%ff%fe",
    b"/files/%zz",
    b"/files/x.info",
    b"/files/x.lock",
    b"/files/canary.txt%20",
    b"/files/a%0d%0aSet-Cookie:%20x",
    b"/files/a%09b",
    b"http://x/files/../canary.txt",
]


@pytest.mark.parametrize("target", TRAVERSALS, ids=lambda t: t[:40].decode("latin-1"))
@pytest.mark.parametrize("method", [b"HEAD", b"GET", b"PATCH", b"DELETE"])
async def test_path_traversal_is_404(srv: Running, target: bytes, method: bytes) -> None:
    body = b""
    extra = b""
    if method == b"PATCH":
        extra = b"Upload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\n"
        extra += b"Content-Length: 5\r\n"
        body = b"owned"
    r, _ = await exchange(
        srv.port,
        method + b" " + target + b" HTTP/1.1\r\n" + H + extra + b"Connection: close\r\n\r\n" + body,
        head=method == b"HEAD",
    )
    assert r.status == 404, r.head_block
    if method != b"HEAD":
        assert r.code == "ERR_UPLOAD_NOT_FOUND"
    assert upload_ids(srv) == set()


async def test_absolute_paths_outside_the_base_path(srv: Running) -> None:
    # Outside the base path: greeting for GET/HEAD (tusd), 404 for anything else.
    for method, status in ((b"GET", 200), (b"PATCH", 404), (b"DELETE", 404), (b"POST", 404)):
        r, _ = await exchange(
            srv.port, method + b" //etc/passwd HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n"
        )
        assert r.status == status, method
        assert b"root:" not in r.body
    assert upload_ids(srv) == set()
    await assert_alive(srv)


async def test_percent_encoded_slash_in_a_real_id(srv: Running) -> None:
    # IDs with "/" (set by tusd's pre-create hooks) live in sub-directories; an
    # encoded slash must not reach them (README: percent-encoded slashes are 404).
    alive = await assert_alive(srv)
    sub = srv.upload_dir / "sub"
    sub.mkdir()
    info = (srv.upload_dir / f"{alive}.info").read_text().replace(alive, f"sub/{alive}")
    (sub / alive).write_bytes(b"hello")
    (sub / f"{alive}.info").write_text(info)
    r = await srv.head(srv.url + f"sub/{alive}")
    assert r.status_code == 200
    for target in (f"sub%2F{alive}", f"sub%2f{alive}", f"sub%252F{alive}"):
        r = await srv.client.get(srv.url + target, headers=TUS)
        assert r.status_code == 404, target


# --- X-HTTP-Method-Override ---------------------------------------------------------------


@pytest.mark.parametrize(
    "override", [b"FOO", b"TRACE", b"CONNECT", b"PUT", b"POST", b"", b"P\xe4TCH"]
)
async def test_unknown_method_override_is_405(srv: Running, override: bytes) -> None:
    loc = await srv.create(1)
    r, _ = await exchange(
        srv.port,
        b"POST "
        + srv.path_of(loc).encode()
        + b" HTTP/1.1\r\n"
        + H
        + b"X-HTTP-Method-Override: "
        + override
        + b"\r\nUpload-Offset: 0\r\n"
        b"Content-Type: application/offset+octet-stream\r\nContent-Length: 1\r\n"
        b"Connection: close\r\n\r\nx",
    )
    assert (r.status, r.code) == (405, "ERR_METHOD_NOT_ALLOWED")
    assert r.header("allow") == b"GET, HEAD, PATCH, DELETE"
    assert (await srv.head(loc)).headers["upload-offset"] == "0"
    await assert_alive(srv)


async def test_lowercase_method_override_is_405(srv: Running) -> None:
    # Methods are case-sensitive: tusd answered "X-HTTP-Method-Override: patch" with 405.
    loc = await srv.create(3)
    path = srv.path_of(loc).encode()

    def overridden(method: bytes, extra: bytes = b"", body: bytes = b"") -> bytes:
        return (
            b"POST "
            + path
            + b" HTTP/1.1\r\n"
            + H
            + b"X-HTTP-Method-Override: "
            + method
            + b"\r\n"
            + extra
            + b"Content-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )

    patch_headers = b"Upload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\n"
    conn = await RawConn.open(srv.port)
    async with conn.stream:
        for method in (b"patch", b"get", b"head", b"delete", b"Patch"):
            body = b"abc" if method.lower() == b"patch" else b""
            await conn.send(overridden(method, patch_headers if body else b"", body))
            r = await conn.response()
            assert (r.status, r.code) == (405, "ERR_METHOD_NOT_ALLOWED"), method
            assert r.header("allow") == b"GET, HEAD, PATCH, DELETE"
        assert (await srv.head(loc)).headers["upload-offset"] == "0"
        await conn.send(overridden(b"PATCH", patch_headers, b"abc"))
        r = await conn.response()
        assert (r.status, r.header("upload-offset")) == (204, b"3")
        await conn.send(overridden(b" DELETE "))
        r = await conn.response()
        assert r.status == 204
    assert (await srv.head(loc)).status_code == 404
    assert upload_ids(srv) == set()
    await assert_alive(srv)


async def test_head_method_override_keeps_the_connection_usable(srv: Running) -> None:
    # The real method is POST: the answer is framed as a POST response.  A HEAD
    # answer's Content-Length (the upload's length) without the body would leave
    # the client waiting for bytes that never come.
    loc = await srv.create(10)
    path = srv.path_of(loc).encode()
    conn = await RawConn.open(srv.port)
    async with conn.stream:
        await conn.send(
            b"POST "
            + path
            + b" HTTP/1.1\r\n"
            + H
            + b"X-HTTP-Method-Override: HEAD\r\nContent-Length: 0\r\n\r\n"
        )
        r = await conn.response(timeout=3)
        assert (r.status, r.header("upload-offset")) == (200, b"0")
        assert r.header("upload-length") == b"10"
        # tusd sends "Content-Length: 10" and no body (README, Differences from tusd).
        assert (r.header("content-length"), r.body) == (b"0", b"")
        await conn.send(b"OPTIONS /files/ HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await conn.response(timeout=3)).status == 200
    await assert_alive(srv)


# --- a client that stops reading ---------------------------------------------------------


async def test_stalled_download_does_not_hold_the_lock(make_server: ServerFactory) -> None:
    srv = await make_server(network_timeout=30, acquire_lock_timeout=1)
    size = 20 * 1024 * 1024
    data = os.urandom(size)
    loc = await srv.create(size + 1024 * 1024)
    r = await srv.patch(loc, 0, data)
    assert r.status_code == 204
    path = srv.path_of(loc).encode()
    stalled = []
    try:
        # Unfinished upload: GET reads the offset under the lock, then streams.
        for _ in range(2):
            conn = await RawConn.open(srv.port)
            stalled.append(conn)
            await conn.send(b"GET " + path + b" HTTP/1.1\r\n" + H + b"\r\n")
        await trio.sleep(0.5)  # the server fills the socket buffers and blocks
        with trio.fail_after(5):
            r = await srv.head(loc)
            assert (r.status_code, r.headers["upload-offset"]) == (200, str(size))
            r = await srv.patch(loc, size, b"z" * (1024 * 1024))
            assert (r.status_code, r.text) == (204, "")
        # Finished upload: a stalled GET, then DELETE from another connection.
        conn = await RawConn.open(srv.port)
        stalled.append(conn)
        await conn.send(b"GET " + path + b" HTTP/1.1\r\n" + H + b"\r\n")
        await trio.sleep(0.5)
        with trio.fail_after(5):
            r = await srv.client.delete(loc, headers=TUS)
            assert r.status_code == 204
            assert (await srv.head(loc)).status_code == 404
        # The stalled clients still get consistent bytes if they read now.
        first = stalled[0]
        response = await first.response(timeout=20)
        assert response.status == 200
        assert response.body == data
    finally:
        for conn in stalled:
            await conn.aclose()
    assert upload_ids(srv) == set()
    await assert_alive(srv)


# --- creation-with-upload errors -------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "body", "status", "code"),
    [
        (b"Content-Length: 5\r\n", b"abcde", 413, "ERR_UPLOAD_SIZE_EXCEEDED"),
        (b"Content-Length: 3\r\nUpload-Checksum: sha1 !!\r\n", b"abc", 400, "ERR_INVALID_CHECKSUM"),
        (
            b"Content-Length: 3\r\nUpload-Checksum: crc32 AAAA\r\n",
            b"abc",
            400,
            "ERR_UNSUPPORTED_CHECKSUM_ALGORITHM",
        ),
        (
            b"Content-Length: 3\r\nUpload-Checksum: sha1 AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n",
            b"abc",
            460,
            "ERR_CHECKSUM_MISMATCH",
        ),
    ],
    ids=["too-long", "bad-checksum", "unsupported-algorithm", "checksum-mismatch"],
)
async def test_failed_creation_with_upload_leaves_no_orphan(
    srv: Running, headers: bytes, body: bytes, status: int, code: str
) -> None:
    # Either the upload is not created, or the answer carries its Location (README:
    # "error after the upload was created: Location included so the client can resume").
    r, _ = await exchange(
        srv.port,
        post(
            b"Upload-Length: 3\r\nContent-Type: application/offset+octet-stream\r\n"
            b"Connection: close\r\n" + headers,
            body,
        ),
    )
    assert (r.status, r.code) == (status, code)
    created = upload_ids(srv)
    location = r.header("location")
    if created:
        assert location is not None, f"upload {created} created but no Location in the answer"
        assert {location.decode().rsplit("/", 1)[1]} == created
    await assert_alive(srv)


# --- hostile .info files -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "document",
    [
        b"[" * 100_000,  # json.loads recursion
        b'{"ID":"%s","Size":' + b"9" * 5000 + b"}",  # beyond int() digit limit
        b'{"ID":"%s","Size":-1}',
        b"\xff\xfe not json",
    ],
    ids=["deep-nesting", "huge-int", "negative", "binary"],
)
async def test_hostile_info_file_is_an_unknown_upload(
    make_server: ServerFactory, tmp_path: Path, document: bytes
) -> None:
    # An .info file the daemon cannot read (written by hand, a bug or a disk error)
    # makes that upload unknown (404); it must neither stop the daemon from starting
    # (start-up reads .info files next to leftover .part files) nor cause a 500.
    upload_id = "0123456789abcdef0123456789abcdef"
    data = tmp_path / "data"
    data.mkdir()
    (data / upload_id).write_bytes(b"abc")
    (data / f"{upload_id}.info").write_bytes(document.replace(b"%s", upload_id.encode()))
    (data / f"{upload_id}.part").write_bytes(b"")
    os.utime(data / f"{upload_id}.part", (1_000_000_000, 1_000_000_000))
    with trio.fail_after(10):
        srv = await make_server()
    r = await srv.head(srv.url + upload_id)
    assert r.status_code == 404
    r = await srv.client.get(srv.url + upload_id)
    assert (r.status_code, r.text.split(":")[0]) == (404, "ERR_UPLOAD_NOT_FOUND")
    await assert_alive(srv)
    (data / f"{upload_id}.part").unlink(missing_ok=True)


async def test_absurd_created_at_is_ignored_not_fatal(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    # CreatedAt is tusd-trio's own optional field: a value float() cannot hold is
    # ignored (the upload stays usable) and never stops the daemon from starting.
    upload_id = "0123456789abcdef0123456789abcdef"
    data = tmp_path / "data"
    data.mkdir()
    (data / upload_id).write_bytes(b"abc")
    document = b'{"ID":"%s","Size":3,"Offset":0,"CreatedAt":' + b"9" * 400 + b"}"
    (data / f"{upload_id}.info").write_bytes(document.replace(b"%s", upload_id.encode()))
    with trio.fail_after(10):
        srv = await make_server()
    r = await srv.head(srv.url + upload_id)
    assert r.status_code == 200
    assert r.headers["upload-offset"] == "3"
