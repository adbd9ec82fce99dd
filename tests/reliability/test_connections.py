"""Reliability under load: many connections, connection limits, idle timeouts, a short soak.

Every test runs a real daemon subprocess (see ``tests/_support/daemon.py``) and talks raw
HTTP/1.1 over sockets. The assertions are about correctness (every request answered right,
every connection served, no descriptor leaked), never about how fast: the timeouts below
only bound a hang.
"""

from __future__ import annotations

import importlib.util
import re
import select
import sys
import threading
import time
from pathlib import Path
from types import ModuleType

import pytest

from tests._support.daemon import Daemon, DaemonFactory, raise_nofile
from tests._support.raw_http import Client, location_path

REPO_ROOT = Path(__file__).resolve().parents[2]
QUIET = ("-verbose=false", "-show-startup-logs=false")
OCTET = {"Content-Type": "application/offset+octet-stream"}


def load_soak() -> ModuleType:
    """benchmarks/soak.py (the soak harness), imported by path."""
    name = "tusd_trio_bench_soak"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "benchmarks" / "soak.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def options_ok(d: Daemon, c: Client) -> None:
    r = c.request("OPTIONS", d.base_path)
    assert r.status in (200, 204), r
    assert r.headers.get("tus-version") == "1.0.0", r


# -- (a) a short soak -----------------------------------------------------------------------


def test_short_soak_no_5xx_every_connection_served_no_fd_leak(
    daemon_factory: DaemonFactory,
) -> None:
    soak = load_soak()
    d = daemon_factory.start(*QUIET)
    before = d.stable_fds()
    for kind in ("head", "create"):
        res = soak.run_phase(kind, d.base_url, d.pid, seconds=5, connections=32, warmup=1)
        summary = {k: res[k] for k in ("statuses", "errors", "dropped", "unanswered", "bad")}
        assert res["requests"] > 0, summary
        assert res["5xx"] == 0, summary
        assert res["bad"] == 0, summary  # every answer had the expected status and header
        assert res["dropped"] == 0 and res["unanswered"] == 0, summary
        assert res["connect_errors"] == 0, summary
        assert res["per_conn_min"] > 0, res["per_conn"]
        assert d.running()
    after = d.fds_back_to(before)
    assert abs(after - before) <= 2, f"daemon fds before {before}, after the soak {after}"


# -- (b) 2,000 idle connections + 200 slow uploads, new requests still answered ------------

IDLE = 2000
SLOW = 200
SLOW_CHUNK = 8
SLOW_INTERVAL = 0.2
SLOW_ROUNDS = 15  # 3 s


def test_2000_idle_connections_and_200_slow_uploads_do_not_block_new_requests(
    daemon_factory: DaemonFactory,
) -> None:
    needed = IDLE + SLOW + 300
    raise_nofile(needed)
    # Start the daemon with a low soft limit, as a login shell would give it: it must raise
    # its own RLIMIT_NOFILE (towards the hard limit) to hold this many connections.
    d = daemon_factory.start(*QUIET, nofile_soft=1024)
    soft, hard = d.nofile_limits()
    assert soft >= needed, f"the daemon kept a soft RLIMIT_NOFILE of {soft} (hard {hard})"
    before = d.stable_fds()
    idle: list[Client] = []
    slow: list[Client] = []
    try:
        # 2,000 keep-alive connections, each answered once, then left idle.
        for start in range(0, IDLE, 250):
            batch = [Client(d.bound_host, d.port) for _ in range(min(250, IDLE - start))]
            idle += batch
            for c in batch:
                c.send(c.request_bytes("OPTIONS", d.base_path))
            for c in batch:
                r = c.read_response()
                assert r.status in (200, 204), r

        # 200 uploads, each one PATCH that trickles SLOW_CHUNK bytes every 200 ms.
        length = SLOW_CHUNK * SLOW_ROUNDS
        paths = []
        for _ in range(SLOW):
            c = Client(d.bound_host, d.port)
            slow.append(c)
            r = c.request("POST", d.base_path, {"Upload-Length": length, "Content-Length": 0})
            assert r.status == 201, r
            paths.append(location_path(r.headers["location"]))
        for c, path in zip(slow, paths, strict=True):
            c.send(
                c.request_bytes(
                    "PATCH",
                    path,
                    {**OCTET, "Upload-Offset": 0, "Content-Length": length},
                )
            )
        send_errors: list[str] = []
        done = threading.Event()

        def trickle() -> None:
            t0 = time.monotonic()
            try:
                for i in range(SLOW_ROUNDS):
                    time.sleep(max(0.0, t0 + i * SLOW_INTERVAL - time.monotonic()))
                    for c in slow:
                        try:
                            c.send(b"x" * SLOW_CHUNK)
                        except OSError as e:
                            send_errors.append(f"{type(e).__name__}: {e}")
            finally:
                done.set()

        sender = threading.Thread(target=trickle, daemon=True)
        sender.start()

        # Meanwhile: new connections with OPTIONS, POST and HEAD are answered.
        def probe() -> None:
            c = Client(d.bound_host, d.port)
            try:
                options_ok(d, c)
            finally:
                c.close()
            c = Client(d.bound_host, d.port)
            try:
                r = c.request("POST", d.base_path, {"Upload-Length": 4, "Content-Length": 0})
                assert r.status == 201, r
                loc = location_path(r.headers["location"])
            finally:
                c.close()
            c = Client(d.bound_host, d.port)
            try:
                r = c.request("HEAD", loc)
                assert r.status == 200 and r.headers.get("upload-offset") == "0", r
            finally:
                c.close()

        probes = 0
        while not done.is_set():
            probe()
            probes += 1
        sender.join(30)
        assert probes >= 1, "no probe ran while the slow uploads were under way"
        assert d.running()
        assert not send_errors, send_errors[:5]

        # Every slow upload completes with all its bytes.
        for c, path in zip(slow, paths, strict=True):
            r = c.read_response()
            assert r.status == 204 and r.headers.get("upload-offset") == str(length), (path, r)

        # Every idle connection is still open and served.
        for c in idle:
            c.send(c.request_bytes("OPTIONS", d.base_path))
        for c in idle:
            r = c.read_response()
            assert r.status in (200, 204), r
        assert d.running()
    finally:
        for c in idle + slow:
            c.close()
    after = d.fds_back_to(before, timeout=10)
    assert abs(after - before) <= 2, f"daemon fds before {before}, after closing all {after}"


# -- (c) -max-connections -------------------------------------------------------------------

LIMIT = 50


def expect_refused(d: Daemon, send_request: bool) -> bytes:
    c = Client(d.bound_host, d.port)
    try:
        if send_request:
            c.send(c.request_bytes("OPTIONS", d.base_path))
        # It must end: the server closes a refused connection. When the client's request is
        # still unread, Linux ends it with a RST instead of a FIN, after the response; the
        # whole response must have arrived before that.
        data, _how = c.read_until_closed()
    finally:
        c.close()
    head, sep, body = data.partition(b"\r\n\r\n")
    assert sep and head.startswith(b"HTTP/1.1 503 "), data
    m = re.search(rb"\r\ncontent-length: *(\d+)", head.lower())
    assert m and len(body) == int(m.group(1)), f"incomplete 503: {data!r}"
    assert b"ERR_TOO_MANY_CONNECTIONS" in body, data
    return data


def try_served(d: Daemon) -> Client | None:
    """A new connection that gets its OPTIONS answered, or None when it was refused."""
    c = Client(d.bound_host, d.port)
    c.send(c.request_bytes("OPTIONS", d.base_path))
    try:
        r = c.read_response()
    except ConnectionError:
        c.close()
        return None
    if r.status == 503:
        assert b"ERR_TOO_MANY_CONNECTIONS" in r.body, r
        c.close()
        return None
    assert r.status in (200, 204), r
    return c


def test_max_connections_refuses_with_503_and_recovers(daemon_factory: DaemonFactory) -> None:
    d = daemon_factory.start(*QUIET, "-max-connections", str(LIMIT))
    conns = []
    try:
        for _ in range(LIMIT):
            c = Client(d.bound_host, d.port)
            options_ok(d, c)  # answered: the server holds it now
            conns.append(c)
        # The 51st: a raw 503 with the error code, then the server closes it; both for a
        # client that waits and for one that sends its request at once.
        expect_refused(d, send_request=False)
        expect_refused(d, send_request=True)
        for c in conns:  # refusing did not disturb the connections in use
            options_ok(d, c)

        # Close 5: exactly 5 new connections are served again (once the server has seen the
        # closes), and the one after them is refused.
        for c in conns[:5]:
            c.close()
        conns = conns[5:]
        deadline = time.monotonic() + 10
        while len(conns) < LIMIT:
            served = try_served(d)
            if served is not None:
                conns.append(served)
            else:
                assert time.monotonic() < deadline, (
                    f"only {len(conns)} of {LIMIT} connections served after closing 5"
                )
                time.sleep(0.05)
        expect_refused(d, send_request=True)
        for c in conns:
            options_ok(d, c)
    finally:
        for c in conns:
            c.close()
    # All closed: a new connection is served at once... once the server has seen the closes.
    deadline = time.monotonic() + 10
    while (last := try_served(d)) is None:
        assert time.monotonic() < deadline, "no connection served after closing all"
        time.sleep(0.05)
    last.close()


# -- (d) -idle-timeout ----------------------------------------------------------------------


def test_idle_timeout_closes_idle_connections(daemon_factory: DaemonFactory) -> None:
    d = daemon_factory.start(*QUIET, "-idle-timeout", "1s")
    # A keep-alive connection after one request.
    used = Client(d.bound_host, d.port)
    # A connection that never sends a byte.
    fresh = Client(d.bound_host, d.port)
    # A connection that keeps sending requests, 0.3 s apart: it is never idle for 1 s.
    busy = Client(d.bound_host, d.port)
    try:
        options_ok(d, used)
        # Not closed right after the request (the idle timer starts then; a lower bound
        # that a slow machine cannot break).
        assert not select.select([used.sock, fresh.sock], [], [], 0)[0]
        for c in (used, fresh):
            c.sock.settimeout(15)
        for _ in range(6):  # 1.8 s in all, longer than the idle timeout
            options_ok(d, busy)
            time.sleep(0.3)
        for name, c in (("used", used), ("fresh", fresh)):
            try:
                data = c.sock.recv(1024)
            except TimeoutError:
                pytest.fail(f"the {name} idle connection was not closed within 15 s")
            except ConnectionResetError:
                data = b""
            assert data == b"", f"{name}: unexpected bytes from the server: {data!r}"
        options_ok(d, busy)  # still open
    finally:
        for c in (used, fresh, busy):
            c.close()
