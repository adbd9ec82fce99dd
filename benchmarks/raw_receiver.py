"""Raw socket-to-file receiver: the physical limit for the tusd-trio benchmarks.

One process, one thread, one `selectors` loop. Request bodies go from the socket into a
preallocated 64 KiB buffer with `recv_into` and from there into the upload's file with
`os.write`: nothing else happens per chunk. It speaks just enough HTTP/1.1 (keep-alive,
Content-Length bodies, no chunked requests, no pipelining needed) and just enough tus for the
benchmark client: POST creates a file (creation-with-upload when a body is sent), PATCH appends
at Upload-Offset, HEAD reports the offset. There is no validation, no .info file, no locking.

Usage (same flags as tusd):
    python raw_receiver.py -host 127.0.0.1 -port 0 -upload-dir DIR
Prints "You can now upload files to: http://HOST:PORT/files/" once listening; SIGTERM/SIGINT
stop it.
"""

from __future__ import annotations

import argparse
import os
import selectors
import signal
import socket
import sys

# Same receive size as tusd-trio uses for a fast upload (it grows 64 KiB -> 256 KiB),
# so that the "physical limit" is measured with the same syscall size.
CHUNK = 256 * 1024
HEADER_LIMIT = 64 * 1024


class Upload:
    __slots__ = ("length", "offset", "path")

    def __init__(self, path: str, length: int) -> None:
        self.path = path
        self.length = length
        self.offset = 0


class Conn:
    __slots__ = (
        "close_after",
        "fd",
        "head",
        "host",
        "method",
        "out",
        "remaining",
        "sock",
        "target",
        "upload",
    )

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.head = bytearray()
        self.method = b""
        self.target = b""
        self.host = b""
        self.remaining = -1  # -1: reading the head; >= 0: body bytes still to read
        self.fd = -1
        self.upload: Upload | None = None
        self.close_after = False
        self.out = b""


class Receiver:
    def __init__(self, host: str, port: int, upload_dir: str) -> None:
        self.upload_dir = upload_dir
        os.makedirs(upload_dir, exist_ok=True)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, port))
        self.listener.listen(1024)
        self.listener.setblocking(False)
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.listener, selectors.EVENT_READ, None)
        self.buf = bytearray(CHUNK)
        self.mv = memoryview(self.buf)
        self.uploads: dict[bytes, Upload] = {}
        self.next_id = 0
        self.running = True

    # -- responses -------------------------------------------------------------------------
    def respond(self, c: Conn, status: bytes, headers: list[bytes]) -> None:
        lines = [b"HTTP/1.1 " + status, b"Tus-Resumable: 1.0.0", *headers]
        if c.close_after:
            lines.append(b"Connection: close")
        data = b"\r\n".join(lines) + b"\r\n\r\n"
        try:
            n = c.sock.send(data)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError:
            self.close(c)
            return
        if n < len(data):
            c.out = data[n:]
            self.sel.modify(c.sock, selectors.EVENT_WRITE, c)
        elif c.close_after:
            self.close(c)

    def close(self, c: Conn) -> None:
        if c.fd >= 0:
            os.close(c.fd)
            c.fd = -1
        try:
            self.sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        c.sock.close()

    # -- request handling ------------------------------------------------------------------
    def on_head(self, c: Conn, head: bytes) -> bool:
        """Parse one request head. Returns False when the connection was closed."""
        lines = head.split(b"\r\n")
        try:
            c.method, c.target, version = lines[0].split(b" ", 2)
        except ValueError:
            c.close_after = True
            self.respond(c, b"400 Bad Request", [b"Content-Length: 0"])
            return False
        length = 0
        offset = -1
        upload_length = -1
        c.host = b"127.0.0.1"
        c.close_after = version != b"HTTP/1.1"
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"upload-offset":
                offset = int(value)
            elif name == b"upload-length":
                upload_length = int(value)
            elif name == b"host":
                c.host = value.strip()
            elif name == b"connection":
                v = value.strip().lower()
                if v == b"close":
                    c.close_after = True
                elif v == b"keep-alive":
                    c.close_after = False
        m = c.method
        if m == b"POST":
            self.next_id += 1
            uid = b"%x" % self.next_id
            up = Upload(os.path.join(self.upload_dir, uid.decode()), max(upload_length, 0))
            self.uploads[uid] = up
            c.upload = up
            c.fd = os.open(up.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            c.target = b"/files/" + uid
        elif m == b"PATCH":
            uid = c.target.rsplit(b"/", 1)[-1]
            up = self.uploads.get(uid)
            if up is None:  # be lenient: accept a PATCH to an upload we never saw
                up = Upload(os.path.join(self.upload_dir, uid.decode(errors="replace")), -1)
                self.uploads[uid] = up
            c.upload = up
            c.fd = os.open(up.path, os.O_WRONLY | os.O_CREAT, 0o644)
            if offset >= 0:
                up.offset = offset
            os.lseek(c.fd, up.offset, os.SEEK_SET)
        else:
            c.upload = self.uploads.get(c.target.rsplit(b"/", 1)[-1])
        c.remaining = length
        return True

    def on_body_done(self, c: Conn) -> None:
        if c.fd >= 0:
            os.close(c.fd)
            c.fd = -1
        up = c.upload
        m = c.method
        c.remaining = -1
        c.upload = None
        if m == b"POST":
            self.respond(
                c,
                b"201 Created",
                [
                    b"Location: http://" + c.host + c.target,
                    b"Upload-Offset: %d" % up.offset,
                    b"Content-Length: 0",
                ],
            )
        elif m == b"PATCH":
            self.respond(c, b"204 No Content", [b"Upload-Offset: %d" % up.offset])
        elif m == b"HEAD":
            if up is None:
                self.respond(c, b"404 Not Found", [b"Content-Length: 0"])
            else:
                self.respond(
                    c,
                    b"200 OK",
                    [
                        b"Upload-Offset: %d" % up.offset,
                        b"Upload-Length: %d" % up.length,
                        b"Cache-Control: no-store",
                        b"Content-Length: 0",
                    ],
                )
        elif m == b"OPTIONS":
            self.respond(
                c,
                b"204 No Content",
                [
                    b"Tus-Version: 1.0.0",
                    b"Tus-Extension: creation,creation-with-upload",
                ],
            )
        else:
            self.respond(c, b"405 Method Not Allowed", [b"Content-Length: 0"])

    def write_body(self, c: Conn, data) -> None:
        """Write body bytes (a memoryview) to the upload's file."""
        if c.fd >= 0:
            n = len(data)
            done = os.write(c.fd, data)
            while done < n:
                done += os.write(c.fd, data[done:])
            c.upload.offset += n
        elif c.upload is not None:
            c.upload.offset += len(data)

    def on_readable(self, c: Conn) -> None:
        sock = c.sock
        buf = self.buf
        mv = self.mv
        while True:
            if c.remaining > 0:
                # The hot loop: recv_into a 64 KiB buffer, os.write it to the file.
                try:
                    n = sock.recv_into(buf, c.remaining if c.remaining < CHUNK else CHUNK)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError:
                    self.close(c)
                    return
                if n == 0:
                    self.close(c)
                    return
                self.write_body(c, mv[:n])
                c.remaining -= n
                if c.remaining == 0:
                    self.on_body_done(c)
                    if sock.fileno() < 0:
                        return
                continue
            # Reading a request head.
            try:
                n = sock.recv_into(buf)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.close(c)
                return
            if n == 0:
                self.close(c)
                return
            c.head += mv[:n]
            while True:
                end = c.head.find(b"\r\n\r\n")
                if end < 0:
                    if len(c.head) > HEADER_LIMIT:
                        self.close(c)
                        return
                    break
                head = bytes(c.head[:end])
                rest = c.head[end + 4 :]
                c.head = bytearray()
                if not self.on_head(c, head):
                    return
                if c.remaining > 0 and rest:
                    take = min(len(rest), c.remaining)
                    self.write_body(c, memoryview(rest)[:take])
                    c.remaining -= take
                    rest = rest[take:]
                if c.remaining == 0:
                    self.on_body_done(c)
                    if c.sock.fileno() < 0:
                        return
                c.head = bytearray(rest)
                if not c.head or c.remaining > 0:
                    break
            if c.sock.fileno() < 0:
                return

    def on_writable(self, c: Conn) -> None:
        try:
            n = c.sock.send(c.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close(c)
            return
        c.out = c.out[n:]
        if not c.out:
            if c.close_after:
                self.close(c)
            else:
                self.sel.modify(c.sock, selectors.EVENT_READ, c)

    def serve(self) -> None:
        host, port = self.listener.getsockname()[:2]
        print(f"You can now upload files to: http://{host}:{port}/files/", flush=True)
        while self.running:
            for key, events in self.sel.select(timeout=0.5):
                c = key.data
                if c is None:
                    for _ in range(64):
                        try:
                            s, _addr = self.listener.accept()
                        except (BlockingIOError, InterruptedError):
                            break
                        s.setblocking(False)
                        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                        self.sel.register(s, selectors.EVENT_READ, Conn(s))
                elif events & selectors.EVENT_WRITE:
                    self.on_writable(c)
                else:
                    self.on_readable(c)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], prefix_chars="-")
    p.add_argument("-host", "--host", default="127.0.0.1")
    p.add_argument("-port", "--port", type=int, default=0)
    p.add_argument("-upload-dir", "--upload-dir", default="./data")
    p.add_argument(
        "-chunk", "--chunk", type=int, default=CHUNK, help="bytes per recv_into (default 256 KiB)"
    )
    args = p.parse_args(argv)
    globals()["CHUNK"] = args.chunk
    r = Receiver(args.host, args.port, args.upload_dir)

    def stop(_sig, _frm):
        r.running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    r.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
