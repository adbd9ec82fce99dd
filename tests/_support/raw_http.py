"""HTTP written and read by hand on plain sockets, so that a test controls (and sees)
every byte: a PATCH that stops in the middle of its body, a blocking keep-alive client
with a tiny response parser, and one-shot raw requests from Trio."""

from __future__ import annotations

import re
import socket
from typing import Any
from urllib.parse import urlsplit

import trio


async def raw_request(
    port: int, data: bytes, *, read_timeout: float = 10.0, half_close: bool = False
) -> bytes:
    """Send raw bytes, return everything the server sends until it closes
    (``half_close``: send EOF after the bytes, so a keep-alive server ends too)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(data)
        if half_close:
            await stream.send_eof()
        chunks = []
        with trio.move_on_after(read_timeout):
            while True:
                try:
                    chunk = await stream.receive_some(65536)
                except trio.BrokenResourceError:
                    break
                if not chunk:
                    break
                chunks.append(chunk)
        return b"".join(chunks)


class RawPatch:
    """A PATCH request written by hand on a plain socket, so a test can stop
    sending in the middle of the body (and then close or simply abandon it)."""

    def __init__(self, upload_url: str, offset: int, content_length: int, timeout: float = 60.0):
        parts = urlsplit(upload_url)
        assert parts.scheme == "http", "RawPatch only speaks plain HTTP"
        self.sock = socket.create_connection((parts.hostname, parts.port or 80), timeout=timeout)
        self.sent = 0
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        head = (
            f"PATCH {path} HTTP/1.1\r\n"
            f"Host: {parts.netloc}\r\n"
            "Tus-Resumable: 1.0.0\r\n"
            f"Upload-Offset: {offset}\r\n"
            "Content-Type: application/offset+octet-stream\r\n"
            f"Content-Length: {content_length}\r\n"
            "\r\n"
        )
        self.sock.sendall(head.encode("ascii"))

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)
        self.sent += len(data)

    def end_early(self, timeout: float = 30.0) -> bytes:
        """Half-close (FIN) before the announced body is complete, then read
        whatever the server answers until it closes the connection.

        Once this returns, the server has finished with the request, so the
        bytes it kept are settled (no racing HEAD needed)."""
        self.sock.shutdown(socket.SHUT_WR)
        self.sock.settimeout(timeout)
        response = b""
        try:
            while chunk := self.sock.recv(65536):
                response += chunk
        except ConnectionResetError:
            pass
        self.close()
        return response

    def close(self) -> None:
        """Close (FIN): everything sent so far reaches the server, then EOF."""
        try:
            self.sock.close()
        except OSError:
            pass


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes, raw_head: bytes):
        self.status, self.headers, self.body, self.raw_head = status, headers, body, raw_head

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.headers} {self.body[:200]!r}>"


class Client:
    """One blocking keep-alive connection; requests are bytes built by `request()`."""

    def __init__(self, host: str, port: int, timeout: float = 10.0) -> None:
        self.host, self.port = host, port
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()

    def request_bytes(
        self, method: str, path: str, headers: dict[str, Any] | None = None, body: bytes = b""
    ) -> bytes:
        hdrs = {"Host": f"{self.host}:{self.port}", "Tus-Resumable": "1.0.0"}
        hdrs.update({k: str(v) for k, v in (headers or {}).items()})
        if body and "Content-Length" not in hdrs:
            hdrs["Content-Length"] = str(len(body))
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
        return head.encode("latin-1") + b"\r\n" + body

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(
        self, method: str, path: str, headers: dict[str, Any] | None = None, body: bytes = b""
    ) -> Response:
        self.send(self.request_bytes(method, path, headers, body))
        return self.read_response(head=method == "HEAD")

    def read_response(self, head: bool = False) -> Response:
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        end = self.buf.index(b"\r\n\r\n")
        raw = bytes(self.buf[:end])
        del self.buf[: end + 4]
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        n = (
            0
            if head or status in (204, 304) or status < 200
            else int(headers.get("content-length", 0))
        )
        while len(self.buf) < n:
            self._fill()
        body = bytes(self.buf[:n])
        del self.buf[:n]
        return Response(status, headers, body, raw)

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("server closed the connection")
        self.buf += data

    def read_until_closed(self) -> tuple[bytes, str]:
        """Everything until the server closes, and how: "eof" (FIN) or "reset" (RST).

        Raises TimeoutError when the server keeps the connection open."""
        out = bytes(self.buf)
        self.buf.clear()
        while True:
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                return out, "reset"
            if not data:
                return out, "eof"
            out += data

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def location_path(loc: str) -> str:
    m = re.match(r"https?://[^/]+(/.*)$", loc)
    return m.group(1) if m else loc
