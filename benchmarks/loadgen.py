"""Load generator for the tusd-trio benchmarks (standard library only).

Run by benchmarks/run.py in a separate process, one scenario per call:

    python loadgen.py '{"mode": "bulk", "url": "http://127.0.0.1:PORT/files/", ...}'

and prints one JSON object with the measurement and the client's own CPU time (user + system,
including its worker processes), so the harness can show that the generator is not the
bottleneck. Modes:

  bulk   N parallel uploads of SIZE bytes each, in PATCHes of PATCH bytes (one connection per
         upload, keep-alive). Bodies come from a preallocated memoryview (`sendall`) or from a
         pre-made file in the page cache (`os.sendfile`); the clock runs from the first PATCH
         byte to the last response. Threads: sending releases the GIL.
  rate   C keep-alive connections, each with exactly one request in flight (no pipelining),
         driven by `selectors` (epoll) over non-blocking sockets with prebuilt request bytes,
         optionally spread over P processes. Kinds: create (creation-with-upload), head,
         post-patch (POST then PATCH per upload).
  slow   N uploads that each send CHUNK bytes every INTERVAL seconds for SECONDS seconds in one
         PATCH, all at once (the memory scenario).
  prepare  create N uploads of SIZE bytes (creation-with-upload) and print their paths.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import resource
import select
import selectors
import socket
import sys
import tempfile
import threading
import time
from array import array
from urllib.parse import urlsplit

TUS = b"Tus-Resumable: 1.0.0\r\n"
OCTET = b"Content-Type: application/offset+octet-stream\r\n"


# -- small HTTP/1.1 helpers -----------------------------------------------------------------


def split_url(url: str) -> tuple[str, int, str]:
    u = urlsplit(url)
    return u.hostname or "127.0.0.1", u.port or 80, u.path or "/"


def location_path(loc: str) -> str:
    if loc.startswith(("http://", "https://")):
        u = urlsplit(loc)
        return u.path + (("?" + u.query) if u.query else "")
    return loc


def parse_response(buf: bytearray, head_request: bool):
    """Return (status, header_block_lowercase, header_block, consumed) or None if incomplete.

    Handles Content-Length, chunked bodies (no trailers), and bodiless responses."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    raw = bytes(buf[: end + 2])
    low = raw.lower()
    status = int(raw[9:12])
    pos = end + 4
    if head_request or status in (204, 304) or status < 200:
        return status, low, raw, pos
    i = low.find(b"\r\ncontent-length:")
    if i >= 0:
        j = low.index(b"\r\n", i + 2)
        consumed = pos + int(low[i + 17 : j])
        if len(buf) < consumed:
            return None
        return status, low, raw, consumed
    if b"chunked" in low:
        while True:
            j = buf.find(b"\r\n", pos)
            if j < 0:
                return None
            size = int(bytes(buf[pos:j]).split(b";")[0], 16)
            if size == 0:
                # no trailers expected: the last chunk is "0\r\n\r\n"
                if len(buf) < j + 4:
                    return None
                return status, low, raw, j + 4
            pos = j + 2 + size + 2
            if len(buf) < pos:
                return None
    return status, low, raw, pos  # no body framing: assume no body


def header(raw: bytes, low: bytes, name: bytes) -> str | None:
    i = low.find(b"\r\n" + name + b":")
    if i < 0:
        return None
    j = low.index(b"\r\n", i + 2)
    return raw[i + 3 + len(name) : j].strip().decode("latin-1")


class Conn:
    """A blocking keep-alive client connection (setup, bulk and slow modes)."""

    def __init__(self, host: str, port: int, timeout: float = 60.0) -> None:
        self.host, self.port = host, port
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.hosthdr = f"Host: {host}:{port}\r\n".encode()

    def read_response(self, head_request: bool = False):
        while True:
            r = parse_response(self.buf, head_request)
            if r is not None:
                status, low, raw, consumed = r
                del self.buf[:consumed]
                return status, low, raw
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("server closed the connection")
            self.buf += data

    def create(self, path: str, length: int, body: bytes = b"") -> tuple[int, str | None]:
        req = (
            f"POST {path} HTTP/1.1\r\n".encode()
            + self.hosthdr
            + TUS
            + b"Upload-Length: %d\r\n" % length
        )
        if body:
            req += OCTET + b"Content-Length: %d\r\n\r\n" % len(body) + body
        else:
            req += b"Content-Length: 0\r\n\r\n"
        self.sock.sendall(req)
        status, low, raw = self.read_response()
        loc = header(raw, low, b"location")
        return status, (location_path(loc) if loc else None)

    def patch_head(self, path: str, offset: int, length: int) -> bytes:
        return (
            f"PATCH {path} HTTP/1.1\r\n".encode()
            + self.hosthdr
            + TUS
            + OCTET
            + b"Upload-Offset: %d\r\nContent-Length: %d\r\n\r\n" % (offset, length)
        )

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def self_cpu() -> float:
    s = resource.getrusage(resource.RUSAGE_SELF)
    return s.ru_utime + s.ru_stime


def cpu_seconds() -> float:
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


# -- bulk uploads ---------------------------------------------------------------------------


def make_source(nbytes: int, send_mode: str):
    """A preallocated body source: a memoryview, or a page-cached file for os.sendfile."""
    block = bytes(range(256)) * 4096  # 1 MiB pattern
    if send_mode == "sendfile":
        f = tempfile.TemporaryFile(prefix="tusd-bench-src-")  # noqa: SIM115 - returned
        left = nbytes
        while left > 0:
            n = min(left, len(block))
            f.write(block[:n])
            left -= n
        f.flush()
        os.lseek(f.fileno(), 0, os.SEEK_SET)
        while os.read(f.fileno(), 1 << 20):  # warm the page cache
            pass
        return f
    buf = bytearray(nbytes)
    for off in range(0, nbytes, len(block)):
        buf[off : off + len(block)] = block[: nbytes - off]
    return memoryview(buf)


def send_body(sock: socket.socket, source, nbytes: int) -> None:
    if isinstance(source, memoryview):
        size = len(source)
        while nbytes > 0:
            n = min(nbytes, size)
            sock.sendall(source[:n])
            nbytes -= n
        return
    fd = source.fileno()
    size = os.fstat(fd).st_size
    out = sock.fileno()
    off = 0
    while nbytes > 0:
        if off >= size:
            off = 0
        try:
            n = os.sendfile(out, fd, off, min(nbytes, size - off))
        except BlockingIOError:  # the socket has a timeout, so it is non-blocking inside
            if not select.select([], [out], [], sock.gettimeout())[1]:
                raise TimeoutError("sendfile: socket not writable") from None
            continue
        if n == 0:
            raise ConnectionError("sendfile sent 0 bytes")
        off += n
        nbytes -= n


def run_bulk(p: dict) -> dict:
    host, port, base = split_url(p["url"])
    size, patch, parallel = int(p["size"]), int(p["patch"]), int(p["parallel"])
    send_mode = p.get("send_mode", "sendfile")
    source = make_source(min(patch, int(p.get("source_max", 64 << 20))), send_mode)
    timeout = float(p.get("timeout", 120))
    marks: dict = {}

    def mark_start() -> None:
        marks["cpu0"] = self_cpu()

    barrier = threading.Barrier(parallel, action=mark_start)
    results: list[dict | None] = [None] * parallel

    def worker(i: int) -> None:
        r: dict = {"ok": False}
        results[i] = r
        conn = None
        try:
            conn = Conn(host, port, timeout)
            status, path = conn.create(base, size)
            if status != 201 or not path:
                r["error"] = f"POST -> {status}"
                barrier.abort()
                return
            barrier.wait(timeout)
            t0 = time.perf_counter()
            r["e0"] = time.time()
            off = 0
            while off < size:
                n = min(patch, size - off)
                conn.sock.sendall(conn.patch_head(path, off, n))
                send_body(conn.sock, source, n)
                status, low, raw = conn.read_response()
                if status != 204:
                    r["error"] = f"PATCH at {off} -> {status}"
                    return
                got = header(raw, low, b"upload-offset")
                off += n
                if got is None or int(got) != off:
                    r["error"] = f"PATCH Upload-Offset {got} != {off}"
                    return
            t1 = time.perf_counter()
            r.update(ok=True, t0=t0, t1=t1, e1=time.time())
        except threading.BrokenBarrierError:
            r.setdefault("error", "another upload failed to start")
        except Exception as e:
            r["error"] = f"{type(e).__name__}: {e}"
        finally:
            if conn:
                conn.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(parallel)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 30)
    cpu1 = self_cpu()
    ok = [r for r in results if r and r.get("ok")]
    errors = [
        r.get("error", "timeout") if r else "timeout" for r in results if not (r and r.get("ok"))
    ]
    out: dict = {"uploads": parallel, "ok": len(ok), "errors": errors[:5], "n_errors": len(errors)}
    if ok and not errors:
        start = min(r["t0"] for r in ok)
        end = max(r["t1"] for r in ok)
        total = size * len(ok)
        out.update(seconds=end - start, bytes=total, value=total / (1 << 20) / (end - start))
        out["window_s"] = end - start
        out["window_epoch"] = [min(r["e0"] for r in ok), max(r["e1"] for r in ok)]
        out["window_cpu_s"] = cpu1 - marks.get("cpu0", cpu1)
    return out


# -- request rates --------------------------------------------------------------------------


def extra_headers(p: dict) -> bytes:
    """Header lines every request of the scenario carries (``"headers": {name: value}``),
    e.g. an ``Authorization`` bearer token."""
    return b"".join(f"{k}: {v}\r\n".encode() for k, v in p.get("headers", {}).items())


def build_requests(p: dict, host: str, port: int, base: str) -> tuple[list[bytes], bool]:
    hosthdr = f"Host: {host}:{port}\r\n".encode()
    kind = p["kind"]
    if kind == "create":
        n = int(p.get("body", 4096))
        body = (bytes(range(256)) * (n // 256 + 1))[:n]
        req = (
            f"POST {base} HTTP/1.1\r\n".encode()
            + hosthdr
            + TUS
            + OCTET
            + extra_headers(p)
            + b"Upload-Length: %d\r\nContent-Length: %d\r\n\r\n" % (n, n)
            + body
        )
        return [req], False
    if kind == "head":
        return [
            f"HEAD {path} HTTP/1.1\r\n".encode() + hosthdr + TUS + b"\r\n" for path in p["paths"]
        ], True
    raise ValueError(kind)


def rate_worker(p: dict, conn_ids: list[int], start_at: float, out_q) -> None:
    host, port, base = split_url(p["url"])
    kind = p["kind"]
    duration, warmup = float(p["duration"]), float(p.get("warmup", 0.5))
    expect = int(p.get("expect", 201 if kind in ("create", "post-patch") else 200))
    hosthdr = f"Host: {host}:{port}\r\n".encode()
    if kind == "post-patch":
        n = int(p.get("body", 4096))
        body = (bytes(range(256)) * (n // 256 + 1))[:n]
        post = (
            f"POST {base} HTTP/1.1\r\n".encode()
            + hosthdr
            + TUS
            + b"Upload-Length: %d\r\nContent-Length: 0\r\n\r\n" % n
        )
        patch_tail = (
            hosthdr + TUS + OCTET + b"Upload-Offset: 0\r\nContent-Length: %d\r\n\r\n" % n + body
        )
        reqs, is_head = [post], False
    else:
        reqs, is_head = build_requests(p, host, port, base)

    sel = selectors.DefaultSelector()
    states = []
    for cid in conn_ids:
        s = socket.create_connection((host, port), timeout=10)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        st = {
            "sock": s,
            "buf": bytearray(),
            "req": reqs[cid % len(reqs)],
            "t": 0.0,
            "stage": 0,
            "cid": cid,
        }
        sel.register(s, selectors.EVENT_READ, st)
        states.append(st)

    lat = array("d")
    statuses: dict[int, int] = {}
    done = 0  # requests (or uploads for post-patch) completed in the window
    done_all = 0  # the same, warm-up included (for per-request counts of a tracer)
    requests = 0  # HTTP requests completed in the window
    reconnects = 0
    errors: list[str] = []
    while time.time() < start_at:
        time.sleep(min(0.01, max(0.0, start_at - time.time())))
    perf = time.perf_counter
    t_begin = perf()
    t_count = t_begin + warmup
    t_end = t_count + duration
    cpu_at_count = None
    epoch0 = None

    def send(st, data: bytes) -> None:
        st["t"] = perf()
        s = st["sock"]
        try:
            n = s.send(data)
        except BlockingIOError:
            n = 0
        if n < len(data):  # rare: the socket buffer is full; finish it blocking
            s.setblocking(True)
            s.settimeout(10)
            s.sendall(data[n:])
            s.setblocking(False)

    def reopen(st) -> None:
        nonlocal reconnects
        reconnects += 1
        try:
            sel.unregister(st["sock"])
        except (KeyError, ValueError):
            pass
        st["sock"].close()
        s = socket.create_connection((host, port), timeout=10)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        st["sock"], st["buf"], st["stage"] = s, bytearray(), 0
        sel.register(s, selectors.EVENT_READ, st)
        send(st, st["req"])

    for st in states:
        send(st, st["req"])
    while True:
        now = perf()
        if now >= t_end:
            break
        for key, _ev in sel.select(t_end - now):
            st = key.data
            try:
                data = st["sock"].recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as e:
                if len(errors) < 5:
                    errors.append(f"recv: {e}")
                reopen(st)
                continue
            if not data:
                reopen(st)
                continue
            buf = st["buf"]
            buf += data
            r = parse_response(buf, is_head)
            if r is None:
                continue
            status, low, raw, consumed = r
            del buf[:consumed]
            t = perf()
            counting = t >= t_count
            if counting and cpu_at_count is None:
                cpu_at_count = self_cpu()
                epoch0 = time.time()
            if counting:
                requests += 1
                statuses[status] = statuses.get(status, 0) + 1
            if kind == "post-patch" and st["stage"] == 0 and status == 201:
                loc = header(raw, low, b"location")
                path = location_path(loc) if loc else base
                st["stage"] = 1
                st["t0"] = st["t"]
                send(st, f"PATCH {path} HTTP/1.1\r\n".encode() + patch_tail)
                continue
            if kind == "post-patch":
                ok = st["stage"] == 1 and status == 204
                start = st.get("t0", st["t"])
                st["stage"] = 0
            else:
                ok = status == expect
                start = st["t"]
            done_all += ok
            if counting and ok:
                done += 1
                lat.append(t - start)
            if b"connection: close" in low:
                reopen(st)
            else:
                send(st, st["req"])
    elapsed = perf() - t_count
    epoch1 = time.time()
    window_cpu = self_cpu() - (cpu_at_count if cpu_at_count is not None else self_cpu())
    for st in states:
        st["sock"].close()
    out_q.put(
        {
            "done": done,
            "done_all": done_all,
            "requests": requests,
            "statuses": statuses,
            "elapsed": elapsed,
            "reconnects": reconnects,
            "errors": errors,
            "lat": lat.tobytes(),
            "window_cpu_s": window_cpu,
            "epoch": [epoch0 or epoch1 - elapsed, epoch1],
        }
    )


def run_rate(p: dict) -> dict:
    conns, procs = int(p["connections"]), max(1, int(p.get("procs", 1)))
    start_at = time.time() + 0.3 + 0.05 * conns / procs
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    groups = [list(range(i, conns, procs)) for i in range(procs)]
    workers = [
        ctx.Process(target=rate_worker, args=(p, g, start_at, q), daemon=True) for g in groups[1:]
    ]
    for w in workers:
        w.start()
    try:
        rate_worker(p, groups[0], start_at, q)
        outs = [q.get(timeout=float(p["duration"]) + 60) for _ in range(procs)]
    finally:
        for w in workers:
            w.join(10)
            if w.is_alive():
                w.kill()
    lat = array("d")
    statuses: dict[str, int] = {}
    for o in outs:
        lat.frombytes(o["lat"])
        for k, v in o["statuses"].items():
            statuses[str(k)] = statuses.get(str(k), 0) + v
    done = sum(o["done"] for o in outs)
    requests = sum(o["requests"] for o in outs)
    elapsed = max(o["elapsed"] for o in outs)
    srt = sorted(lat)

    def pct(q: float) -> float | None:
        return srt[min(len(srt) - 1, int(q * len(srt)))] * 1000 if srt else None

    bad = requests - sum(v for k, v in statuses.items() if k in ("200", "201", "204"))
    return {
        "value": done / elapsed,
        "done": done,
        "done_all": sum(o["done_all"] for o in outs),
        "requests": requests,
        "requests_per_s": requests / elapsed,
        "seconds": elapsed,
        "statuses": statuses,
        "n_errors": bad + sum(len(o["errors"]) for o in outs),
        "errors": [e for o in outs for e in o["errors"]][:5],
        "reconnects": sum(o["reconnects"] for o in outs),
        "p50_ms": pct(0.5),
        "p99_ms": pct(0.99),
        "window_s": elapsed,
        "window_cpu_s": sum(o["window_cpu_s"] for o in outs),
        "window_epoch": [min(o["epoch"][0] for o in outs), max(o["epoch"][1] for o in outs)],
    }


# -- slow uploads ---------------------------------------------------------------------------


def run_slow(p: dict) -> dict:
    host, port, base = split_url(p["url"])
    n, chunk = int(p["uploads"]), int(p.get("chunk", 4096))
    interval, seconds = float(p.get("interval", 0.1)), float(p["seconds"])
    rounds = max(1, round(seconds / interval))
    length = rounds * chunk
    data = (bytes(range(256)) * (chunk // 256 + 1))[:chunk]
    conns: list[Conn] = []
    errors: list[str] = []
    t_setup = time.perf_counter()
    try:
        paths = []
        for _ in range(n):
            c = Conn(host, port, timeout=30)
            conns.append(c)
            status, path = c.create(base, length)
            if status != 201 or not path:
                raise RuntimeError(f"POST -> {status}")
            paths.append(path)
        for c, path in zip(conns, paths, strict=True):
            c.sock.sendall(c.patch_head(path, 0, length))
        t0 = time.perf_counter()
        cpu0 = self_cpu()
        e0 = time.time()
        deadline = t0 + seconds * 3 + 30
        alive = list(conns)
        for c in alive:
            c.sock.settimeout(2.0)  # a server that stops reading costs at most 2 s per upload
        for i in range(rounds):
            target = t0 + i * interval
            delay = target - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            for c in list(alive):
                try:
                    c.sock.sendall(data)
                except OSError as e:
                    alive.remove(c)
                    if len(errors) < 5:
                        errors.append(f"send: {type(e).__name__}: {e}")
            if time.perf_counter() > deadline:
                raise RuntimeError("sending fell too far behind")
        t_sent = time.perf_counter()
        ok = 0
        for c in alive:
            try:
                c.sock.settimeout(max(1.0, deadline - time.perf_counter()))
                status, low, raw = c.read_response()
            except OSError as e:
                if len(errors) < 5:
                    errors.append(f"response: {type(e).__name__}: {e}")
                continue
            got = header(raw, low, b"upload-offset")
            if status == 204 and got is not None and int(got) == length:
                ok += 1
            elif len(errors) < 5:
                errors.append(f"PATCH -> {status}, Upload-Offset {got}")
        t1 = time.perf_counter()
        cpu1 = self_cpu()
        e1 = time.time()
    except Exception as e:
        errors.append(f"{type(e).__name__}: {e}")
        return {"ok": 0, "uploads": n, "n_errors": n, "errors": errors}
    finally:
        for c in conns:
            c.close()
    return {
        "ok": ok,
        "uploads": n,
        "n_errors": n - ok,
        "errors": errors,
        "bytes_each": length,
        "send_seconds": t_sent - t0,
        "seconds": t1 - t0,
        "setup_seconds": t0 - t_setup,
        "window_s": t1 - t0,
        "window_cpu_s": cpu1 - cpu0,
        "window_epoch": [e0, e1],
    }


# -- preparing uploads for HEAD -------------------------------------------------------------


def prepare(url: str, count: int, size: int = 4096) -> list[str]:
    host, port, base = split_url(url)
    c = Conn(host, port, timeout=30)
    body = (bytes(range(256)) * (size // 256 + 1))[:size]
    paths = []
    try:
        for _ in range(count):
            status, path = c.create(base, size, body)
            if status != 201 or not path:
                raise RuntimeError(f"creation-with-upload POST -> {status}")
            paths.append(path)
    finally:
        c.close()
    return paths


def main() -> int:
    p = json.loads(sys.argv[1])
    cpu0 = cpu_seconds()
    t0 = time.perf_counter()
    mode = p["mode"]
    if mode == "bulk":
        out = run_bulk(p)
    elif mode == "rate":
        out = run_rate(p)
    elif mode == "slow":
        out = run_slow(p)
    elif mode == "prepare":
        out = {"paths": prepare(p["url"], int(p["count"]), int(p.get("size", 4096)))}
    else:
        raise SystemExit(f"unknown mode {mode}")
    out["client_cpu_s"] = cpu_seconds() - cpu0
    out["client_wall_s"] = time.perf_counter() - t0
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
