"""``-workers N``: several worker processes serving one listening socket.

The parent process binds the socket once (TCP, port 0 included, or
``-unix-sock``), starts ``N`` copies of the daemon (``python -m tusd_trio`` with
the same flags) and hands the socket down as an inherited file descriptor
(``TUSD_TRIO_WORKER_FD``).  The kernel spreads the connections over the
processes that accept on it.  An inherited socket (rather than ``SO_REUSEPORT``
with one socket per worker) lets port 0 and UNIX sockets work, keeps the
connections queued while a worker restarts (a ``SO_REUSEPORT`` socket's queue
dies with its process) and binds exactly once, so the banner shows the real
address.

The parent serves no request.  It is a plain loop (no event loop, no threads)
around ``select`` on a self-pipe written by the signal handlers:

* it prints the start-up lines and the banner once, when every worker serves
  (a worker announces itself by writing its first metrics snapshot);
* a worker that dies (a signal or a non-zero exit) while not shutting down is
  restarted after a growing delay; a worker that crashes ``CRASH_LIMIT`` times
  within ``CRASH_WINDOW`` seconds stops the whole daemon (exit code 1); a
  worker that fails during the first start stops it at once;
* SIGTERM or SIGINT is forwarded to every worker, which drains its requests
  (``-shutdown-timeout``); the parent exits (code 0) once all have exited.  A
  second signal kills the workers at once (code 1).  Workers run in their own
  process group (a terminal's Ctrl-C reaches only the parent, which forwards
  it once) and get SIGTERM when the parent dies (Linux ``PR_SET_PDEATHSIG``).

Metrics: each worker writes its counters to ``<metrics dir>/<pid>.json``; the
parent folds the files of exited workers into ``retired.json``.  See
:mod:`tusd_trio.server._metrics`.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from ._listening import LISTENING_MESSAGE, remove_stale_socket, tls_enabled
from ._snapshots import retire_snapshot, snapshot_path
from ._startup import startup_lines
from .config import Config
from .stores.config import store_capabilities

log = logging.getLogger("tusd_trio")

ENV_FD = "TUSD_TRIO_WORKER_FD"
ENV_METRICS_DIR = "TUSD_TRIO_METRICS_DIR"
ENV_PARENT = "TUSD_TRIO_WORKER_PARENT"
#: A worker that crashes this often within CRASH_WINDOW seconds stops the daemon.
CRASH_LIMIT = 5
CRASH_WINDOW = 60.0
#: Restart delay after a crash: BACKOFF_FIRST, doubled per recent crash, at most BACKOFF_MAX.
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 5.0
#: Beyond -shutdown-timeout, how long the parent waits before killing workers.
SHUTDOWN_GRACE = 5.0


def worker_config(config: Config, fd: int) -> Config:
    """The configuration of a worker process serving the inherited socket ``fd``."""
    return config.for_worker(fd, os.environ.get(ENV_METRICS_DIR, ""))


def setup_worker() -> bool:
    """Prepare this process as a worker (it ends with its parent).

    Returns False when the parent is already gone (the worker should exit).
    """
    parent = os.environ.get(ENV_PARENT, "")
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            pr_set_pdeathsig = 1
            libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - exotic libc
            pass
    return not (parent.isdigit() and os.getppid() != int(parent))


def _bind(config: Config) -> tuple[socket.socket, str]:
    """The listening socket and the banner URL ("" for a UNIX socket)."""
    if config.unix_sock:
        path = config.unix_sock
        remove_stale_socket(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
            sock.listen(1024)
        except OSError:
            sock.close()
            raise
        return sock, ""
    host = config.host or None
    infos = socket.getaddrinfo(host, config.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    if not infos:  # pragma: no cover - getaddrinfo raises instead
        raise OSError(errno.EADDRNOTAVAIL, f"no address for {config.host!r}")
    family, kind, proto, _name, address = infos[0]
    dual_stack = host is None and socket.has_ipv6
    if dual_stack:
        # All interfaces: one IPv6 socket that also accepts IPv4 (one fd to pass down).
        family, address = socket.AF_INET6, ("::", config.port)
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if dual_stack:
            try:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            except OSError:  # pragma: no cover - IPv6-only kernels
                pass
        try:
            sock.bind(address)
        except OSError:
            if not dual_stack:
                raise
            # No IPv6 on this host after all: IPv4 only.
            sock.close()
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("0.0.0.0", config.port))
        sock.listen(1024)
    except OSError:
        sock.close()
        raise
    name: Any = sock.getsockname()
    shown = str(name[0])
    if ":" in shown:
        shown = f"[{shown}]"
    # The workers serve TLS themselves when it is configured: the banner says so.
    scheme = "https" if tls_enabled(config.tls_certificate, config.tls_key) else "http"
    return sock, f"{scheme}://{shown}:{name[1]}{config.protocol.base_path}"


def _extensions(config: Config) -> str:
    """The Tus-Extension list the workers advertise (from the store's capabilities)."""
    return ",".join(
        config.served_protocol(store_capabilities(config.store_settings())).extensions()
    )


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


@dataclass
class _Slot:
    number: int
    proc: subprocess.Popen[bytes] | None = None
    ready: bool = False
    restart_at: float | None = None
    crashes: list[float] = field(default_factory=list)


class _Parent:
    def __init__(
        self, config: Config, argv: Sequence[str], sock: socket.socket, url: str, metrics_dir: str
    ) -> None:
        self.config = config
        self.argv = [*argv, "-show-startup-logs=false"]
        self.sock = sock
        self.url = url
        self.metrics_dir = metrics_dir
        self.slots = [_Slot(number) for number in range(1, config.workers + 1)]
        self.announced = False
        self.stopping = False
        self.killed = False
        self.deadline = 0.0
        self.exit_code = 0
        self._signals: list[int] = []
        self._wakeup_r = -1

    # --- the loop -------------------------------------------------------------------

    def run(self) -> int:
        wakeup_r, wakeup_w = os.pipe()  # not inheritable
        os.set_blocking(wakeup_r, False)
        os.set_blocking(wakeup_w, False)
        self._wakeup_r = wakeup_r
        previous_fd = signal.set_wakeup_fd(wakeup_w, warn_on_full_buffer=False)
        handled = (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD)
        previous = {signum: signal.signal(signum, self._on_signal) for signum in handled}
        try:
            for slot in self.slots:
                self._spawn(slot)
            while True:
                self._handle_signals()
                self._reap()
                if self.stopping and not self._live():
                    break
                now = time.monotonic()
                if not self.stopping:
                    for slot in self.slots:
                        due = slot.restart_at is not None and slot.restart_at <= now
                        if slot.proc is None and due:
                            self._spawn(slot)
                self._check_ready()
                if self.stopping and not self.killed and now >= self.deadline:
                    log.warning("Worker processes did not stop in time: killing them.")
                    self._kill_all()
                    self.exit_code = 1
                self._wait(self._timeout(now))
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            signal.set_wakeup_fd(previous_fd)
            os.close(wakeup_r)
            os.close(wakeup_w)
            self._kill_all()  # only after an unexpected error: normally none is left
            for slot in self.slots:
                if slot.proc is not None:
                    slot.proc.wait()
        if self.exit_code == 0:
            log.info("Shutdown completed. Goodbye!")
        return self.exit_code

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signals.append(signum)

    def _wait(self, timeout: float) -> None:
        try:
            readable, _, _ = select.select([self._wakeup_r], [], [], max(timeout, 0.0))
        except InterruptedError:  # pragma: no cover - PEP 475 retries select
            return
        if readable:
            try:
                while os.read(self._wakeup_r, 512):
                    pass
            except BlockingIOError:
                pass

    def _timeout(self, now: float) -> float:
        timeout = 1.0
        if any(slot.proc is not None and not slot.ready for slot in self.slots):
            timeout = 0.05  # waiting for a worker's first snapshot
        for slot in self.slots:
            if slot.proc is None and slot.restart_at is not None and not self.stopping:
                timeout = min(timeout, slot.restart_at - now)
        if self.stopping and not self.killed:
            timeout = min(timeout, self.deadline - now)
        return timeout

    def _live(self) -> list[subprocess.Popen[bytes]]:
        return [slot.proc for slot in self.slots if slot.proc is not None]

    # --- events ---------------------------------------------------------------------

    def _handle_signals(self) -> None:
        while self._signals:
            signum = self._signals.pop(0)
            if signum == signal.SIGCHLD:
                continue
            if not self.stopping:
                log.info("Received interrupt signal. Stopping the worker processes...")
                self._stop(signum)
            elif not self.killed:
                log.warning("Second signal received: killing the worker processes at once.")
                self._kill_all()
                self.exit_code = 1

    def _stop(self, signum: int = signal.SIGTERM) -> None:
        self.stopping = True
        self.deadline = time.monotonic() + self.config.shutdown_timeout + SHUTDOWN_GRACE
        for proc in self._live():
            try:
                proc.send_signal(signum)
            except OSError:  # pragma: no cover - it exited just now
                pass

    def _kill_all(self) -> None:
        self.killed = True
        for proc in self._live():
            try:
                proc.kill()
            except OSError:  # pragma: no cover - it exited just now
                pass

    def _reap(self) -> None:
        for slot in self.slots:
            proc = slot.proc
            if proc is None:
                continue
            code = proc.poll()
            if code is None:
                continue
            slot.proc = None
            was_ready, slot.ready = slot.ready, False
            try:
                retire_snapshot(self.metrics_dir, proc.pid)
            except OSError as exc:
                log.warning("cannot keep the metrics of worker %d: %s", slot.number, exc)
            what = f"Worker process {slot.number} (pid {proc.pid}) {_describe_exit(code)}"
            if self.stopping:
                if code != 0 and not self.killed:
                    log.warning("%s while stopping.", what)
                    self.exit_code = 1
                continue
            if not self.announced and not was_ready:
                log.error("%s during start-up; stopping.", what)
                self.exit_code = code if code > 0 else 1
                self._stop()
                continue
            now = time.monotonic()
            if code == 0:
                log.warning("%s; restarting it.", what)
                slot.restart_at = now
                continue
            slot.crashes = [t for t in slot.crashes if t > now - CRASH_WINDOW] + [now]
            if len(slot.crashes) >= CRASH_LIMIT:
                log.error(
                    "%s: it crashed %d times within %gs; giving up (crash loop). Stopping.",
                    what,
                    len(slot.crashes),
                    CRASH_WINDOW,
                )
                self.exit_code = 1
                self._stop()
                continue
            delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (len(slot.crashes) - 1))
            log.warning("%s; restarting it in %gs.", what, delay)
            slot.restart_at = now + delay

    def _spawn(self, slot: _Slot) -> None:
        slot.restart_at = None
        slot.ready = False
        fd = self.sock.fileno()
        env = dict(os.environ)
        env[ENV_FD] = str(fd)
        env[ENV_METRICS_DIR] = self.metrics_dir
        env[ENV_PARENT] = str(os.getpid())
        slot.proc = subprocess.Popen(
            [sys.executable, "-m", "tusd_trio", *self.argv],
            env=env,
            pass_fds=(fd,),
            stdin=subprocess.DEVNULL,
            process_group=0,  # Ctrl-C in a terminal reaches the parent only
        )

    def _check_ready(self) -> None:
        for slot in self.slots:
            if slot.proc is None or slot.ready:
                continue
            if os.path.exists(snapshot_path(self.metrics_dir, slot.proc.pid)):
                slot.ready = True
                if self.announced:
                    log.info("Worker process %d restarted (pid %d).", slot.number, slot.proc.pid)
        if not self.announced and not self.stopping and all(slot.ready for slot in self.slots):
            self.announced = True
            self._announce()

    def _announce(self) -> None:
        config = self.config
        pids = ", ".join(str(slot.proc.pid) for slot in self.slots if slot.proc is not None)
        if config.show_startup_logs:
            for line in startup_lines(config, extensions=_extensions(config)):
                log.info("%s", line)
        log.info("Started %d worker processes (pids %s).", len(self.slots), pids)
        if config.metrics_listen:
            # Each worker binds it (SO_REUSEPORT); any of them reports the totals.
            log.info(LISTENING_MESSAGE, config.metrics_listen)
        if self.url:
            log.info("You can now upload files to: %s", self.url)


def run_workers(config: Config, argv: Sequence[str]) -> int:
    """Run ``config.workers`` worker processes on one socket; returns the exit code."""
    # Config refuses a locker that does not work across processes (_check_workers).
    try:
        sock, url = _bind(config)
    except OSError as exc:
        where = (
            f"-unix-sock {config.unix_sock}"
            if config.unix_sock
            else f"-host {config.host} -port {config.port}"
        )
        sys.stderr.write(f"tusd-trio: cannot listen on {where}: {exc}\n")
        return 1
    metrics_dir = tempfile.mkdtemp(prefix="tusd-trio-metrics-")
    try:
        return _Parent(config, argv, sock, url, metrics_dir).run()
    finally:
        sock.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)
        if config.unix_sock:
            try:
                os.unlink(config.unix_sock)
            except OSError:
                pass
