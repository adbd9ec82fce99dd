#!/usr/bin/env python3
"""Instructions per small request of a tusd-trio server, counted by valgrind's callgrind.

    .venv/bin/python benchmarks/request_instructions.py --kind head --requests 400
    .venv/bin/python benchmarks/request_instructions.py --repo ../other-checkout --kind create
    .venv/bin/python benchmarks/request_instructions.py --kind create --http1-parser h11

CPU time per request moves by 1.5x on a shared machine; the count of instructions the
server's process executes for a fixed number of requests moves by about 1 %, whatever
else runs, so an A/B of two checkouts (``--repo``) can be read from one run of each.
The server runs from ``--repo`` (``python -m tusd_trio``, default flags: every request
logged) under ``valgrind --tool=callgrind --instr-atstart=no`` with its upload dir in
``--work-dir`` (tmpfs by default); K keep-alive connections (``--connections``) each get
one request, then all the answers are read, round after round; a fifth of the rounds
warms the server up, then ``callgrind_control -i on`` starts counting and a dump ends it.
Counted: the server's user-space instructions (system calls count as their entry only).
Kinds: ``create`` (creation-with-upload of 4 KiB), ``post-patch`` (POST, then a 4 KiB
PATCH; one operation is both), ``head`` (HEAD, each connection on its own upload).
Needs valgrind (``apt-get install valgrind``); about a minute per kind. ``--keep DIR`` keeps
callgrind's output for ``callgrind_annotate --inclusive=yes`` (interpreter-level functions).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BODY = b"x" * 4096
CREATE_WITH_BODY = (
    b"POST /files/ HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nUpload-Length: 4096\r\n"
    b"Content-Type: application/offset+octet-stream\r\nContent-Length: 4096\r\n\r\n" + BODY
)
CREATE_EMPTY = (
    b"POST /files/ HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nUpload-Length: 4096\r\n"
    b"Content-Length: 0\r\n\r\n"
)


class Connection:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = bytearray()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def response(self, *, head: bool = False) -> bytes:
        """The next response's head (its body, by Content-Length, is dropped)."""
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end >= 0:
                block = bytes(self.buffer[:end])
                match = re.search(rb"(?i)\r\ncontent-length: *(\d+)", block)
                length = int(match.group(1)) if match and not head else 0
                if len(self.buffer) >= end + 4 + length:
                    del self.buffer[: end + 4 + length]
                    return block
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("the server closed the connection")
            self.buffer += data


def upload_path(block: bytes) -> bytes:
    match = re.search(rb"(?i)\r\nlocation: *(\S+)", block)
    assert match, block
    return b"/" + match.group(1).split(b"//", 1)[-1].split(b"/", 1)[1]


def expect(block: bytes, status: bytes) -> None:
    if block.split(b" ", 2)[1] != status:
        raise AssertionError(f"expected {status!r}: {block[:200]!r}")


def one_round(kind: str, conns: list[Connection], uploads: list[bytes]) -> None:
    if kind == "create":
        for c in conns:
            c.send(CREATE_WITH_BODY)
        for c in conns:
            expect(c.response(), b"201")
    elif kind == "head":
        for c, path in zip(conns, uploads, strict=True):
            c.send(b"HEAD " + path + b" HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n\r\n")
        for c in conns:
            expect(c.response(head=True), b"200")
    else:
        for c in conns:
            c.send(CREATE_EMPTY)
        paths = [upload_path(c.response()) for c in conns]
        for c, path in zip(conns, paths, strict=True):
            c.send(
                b"PATCH " + path + b" HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
                b"Upload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\n"
                b"Content-Length: 4096\r\n\r\n" + BODY
            )
        for c in conns:
            expect(c.response(), b"204")


def measure(args: argparse.Namespace) -> float:
    repo = Path(args.repo).resolve()
    upload_dir = tempfile.mkdtemp(dir=args.work_dir, prefix="tusd-trio-instr-")
    out_dir = Path(tempfile.mkdtemp(prefix="tusd-trio-callgrind-"))
    out = out_dir / "callgrind.out"
    log_path = out_dir / "server.log"
    cmd = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out}",
        args.python,
        "-m",
        "tusd_trio",
        "-host",
        "127.0.0.1",
        "-port",
        "0",
        "-upload-dir",
        upload_dir,
    ]
    if args.http1_parser:
        cmd += ["-http1-parser", args.http1_parser]
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            cmd, cwd=repo, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        port = None
        deadline = time.monotonic() + 300
        while port is None and time.monotonic() < deadline and server.poll() is None:
            time.sleep(0.1)
            found = re.search(rb"upload files to: http://[^:]+:(\d+)/", log_path.read_bytes())
            port = int(found.group(1)) if found else None
        if port is None:
            raise RuntimeError(f"the server did not start: {log_path.read_bytes()[-2000:]!r}")
        conns = [Connection(port) for _ in range(args.connections)]
        uploads: list[bytes] = []
        if args.kind == "head":
            for c in conns:
                c.send(CREATE_WITH_BODY)
                uploads.append(upload_path(c.response()))
        rounds = max(1, args.requests // args.connections)
        for _ in range(max(2, rounds // 5)):
            one_round(args.kind, conns, uploads)
        pid = str(server.pid)
        subprocess.run(["callgrind_control", "-i", "on", pid], check=True, capture_output=True)
        for _ in range(rounds):
            one_round(args.kind, conns, uploads)
        subprocess.run(["callgrind_control", "-d", pid], check=True, capture_output=True)
        total = 0
        for dump in out_dir.glob("callgrind.out*"):
            for line in dump.read_text(errors="replace").splitlines():
                if line.startswith(("summary:", "totals:")):
                    total = max(total, int(line.split()[1]))
        return total / (rounds * args.connections)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        shutil.rmtree(upload_dir, ignore_errors=True)
        if args.keep:
            keep = Path(args.keep)
            keep.mkdir(parents=True, exist_ok=True)
            for dump in out_dir.glob("callgrind.out*"):
                shutil.copy(dump, keep / f"{args.kind}.{dump.name}")
        shutil.rmtree(out_dir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", choices=("create", "post-patch", "head"), default="create")
    parser.add_argument("--requests", type=int, default=400, help="operations counted (400)")
    parser.add_argument("--connections", type=int, default=8, help="keep-alive connections (8)")
    parser.add_argument("--repo", default=str(Path(__file__).resolve().parent.parent))
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--work-dir", default="/dev/shm", help="where the upload dir goes")
    parser.add_argument(
        "--keep",
        metavar="DIR",
        help="copy callgrind's output files to DIR as KIND.callgrind.out* (for callgrind_annotate)",
    )
    parser.add_argument(
        "--http1-parser",
        choices=("auto", "httptools", "h11"),
        help="the server's -http1-parser (not given: the server's default)",
    )
    args = parser.parse_args()
    per_op = measure(args)
    parser_note = f", -http1-parser {args.http1_parser}" if args.http1_parser else ""
    print(f"{args.kind}: {per_op:,.0f} instructions per operation ({args.repo}{parser_note})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
