"""The one harness for a tusd-trio daemon subprocess.

``Daemon(upload_dir, args).start()`` runs ``python -m tusd_trio -host 127.0.0.1 -port 0
-upload-dir DIR ARGS`` in its own session (so its process group, workers included, can
be signalled and killed as a whole), takes the URL from the ``You can now upload files
to:`` line it prints, keeps reading its stdout (so it never blocks on a full pipe) into
``stdout_lines`` and writes its stderr to a file under ``log_dir``.  ``stop()`` signals
it and waits for its exit code, ``kill()`` SIGKILLs the group; a :class:`DaemonFactory`
kills every daemon it made at teardown, whatever the test did.  ``start()`` may be called
again after a stop or a kill (a restart on the same upload directory, on a new port).

``TUSD_TRIO_E2E_CMD`` may hold a command (shell syntax) that replaces ``python -m
tusd_trio``, e.g. to run the tests against another build.
"""

from __future__ import annotations

import os
import re
import resource
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Literal, Self, TypeVar, overload
from urllib.parse import urlsplit

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
BANNER = "You can now upload files to: "
BANNER_RE = re.compile(re.escape(BANNER) + r"(https?://\S+)")
START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0
#: stdout lines kept per start (the first ones: start-up lines and the banner come first).
MAX_LINES = 100_000

#: The HTTP/1.1 parser of every test server, in process (tests/_support/server.py) or
#: a daemon (-http1-parser): scripts/test runs the HTTP/1.1 suites once with the
#: default (auto: httptools) and once more with ``TUSD_TRIO_TEST_HTTP1_PARSER=h11``.
TEST_HTTP1_PARSER = os.environ.get("TUSD_TRIO_TEST_HTTP1_PARSER", "auto")

T = TypeVar("T")


def daemon_command() -> list[str]:
    """``python -m tusd_trio``, or the command in ``TUSD_TRIO_E2E_CMD``."""
    override = os.environ.get("TUSD_TRIO_E2E_CMD")
    if override:
        return shlex.split(override)
    return [sys.executable, "-m", "tusd_trio"]


def daemon_env() -> dict[str, str]:
    """This process's environment with the checkout first on ``PYTHONPATH``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


class Daemon:
    """One daemon subprocess (not started until :meth:`start`).

    ``host``/``port`` add ``-host``/``-port`` unless None (a Unix socket), ``upload_dir``
    adds ``-upload-dir`` unless None; ``command``, ``env`` and ``cwd`` replace
    :func:`daemon_command`, :func:`daemon_env` and the checkout; ``merge_stderr`` sends
    stderr to ``stdout_lines`` too; ``nofile_soft`` lowers the child's RLIMIT_NOFILE.
    """

    def __init__(
        self,
        upload_dir: Path | None,
        args: Sequence[str] = (),
        *,
        log_dir: Path | None = None,
        host: str | None = "127.0.0.1",
        port: int | None = 0,
        command: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        merge_stderr: bool = False,
        nofile_soft: int | None = None,
    ) -> None:
        self._upload_dir = Path(upload_dir) if upload_dir is not None else None
        self.args = tuple(args)
        if log_dir is None:
            assert upload_dir is not None, "a daemon without -upload-dir needs a log_dir"
            log_dir = Path(upload_dir).parent
        self.log_dir = Path(log_dir)
        self.host = host
        self.port_arg = port
        self.command = list(command) if command is not None else daemon_command()
        self.env = dict(env) if env is not None else daemon_env()
        self.cwd = cwd if cwd is not None else REPO_ROOT
        self.merge_stderr = merge_stderr
        self.nofile_soft = nofile_soft
        self.proc: subprocess.Popen[bytes] | None = None
        self.stdout_lines: list[str] = []
        self._base_url: str | None = None
        self._banner = threading.Event()
        self._reader: threading.Thread | None = None
        self._stderr_path: Path | None = None
        self._starts = 0

    # -- lifecycle -------------------------------------------------------------------------
    def argv(self) -> list[str]:
        argv = list(self.command)
        if self.host is not None:
            argv += ["-host", self.host]
        if self.port_arg is not None:
            argv += ["-port", str(self.port_arg)]
        if self._upload_dir is not None:
            argv += ["-upload-dir", str(self._upload_dir)]
        if self.command == daemon_command() and TEST_HTTP1_PARSER != "auto":
            # Our daemon (not tusd, nor another command given): the suite's parser.
            argv += ["-http1-parser", TEST_HTTP1_PARSER]
        return argv + list(self.args)

    @property
    def upload_dir(self) -> Path:
        """The ``-upload-dir`` the daemon was given."""
        assert self._upload_dir is not None, "this daemon runs without -upload-dir"
        return self._upload_dir

    def start(self, *, wait_for_banner: bool = True) -> Self:
        """Start the process; by default wait for its banner (fail the test without one)."""
        assert not self.running(), "daemon already running"
        if self._upload_dir is not None:
            self._upload_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._starts += 1
        self._stderr_path = self.log_dir / f"daemon-stderr-{id(self)}-{self._starts}.log"
        self.stdout_lines = []
        self._banner = threading.Event()
        self._base_url = None
        soft_limit = self.nofile_soft

        def lower_nofile() -> None:  # runs in the child, before exec
            if soft_limit is not None:
                _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
                resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft_limit, hard), hard))

        with open(self._stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                self.argv(),
                cwd=str(self.cwd),
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT if self.merge_stderr else err,
                start_new_session=True,  # own session => own process group
                preexec_fn=lower_nofile if soft_limit is not None else None,
            )
        self._reader = threading.Thread(target=self._read_stdout, args=(self.proc,), daemon=True)
        self._reader.start()
        if wait_for_banner:
            self.wait_for_banner()
        return self

    def _read_stdout(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:  # keep draining so the daemon never blocks on stdout
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if len(self.stdout_lines) < MAX_LINES:
                self.stdout_lines.append(line)
            if self._base_url is None:
                m = BANNER_RE.search(line)
                if m:
                    self._base_url = m.group(1)
                    self._banner.set()
        self._banner.set()  # EOF: unblock wait_for_banner(); base_url stays None

    def wait_for_banner(self, timeout: float = START_TIMEOUT) -> str:
        """The URL of the banner line; fails the test (killing the daemon) without one."""
        assert self.proc is not None, "daemon not started"
        if not self._banner.wait(timeout) or self._base_url is None:
            rc = self.proc.poll()
            self.kill()
            pytest.fail(
                f"daemon did not print its banner (waited up to {timeout:g} s) "
                f"(exit code {rc}; is stdout flushed when it is a pipe?)\n"
                f"command: {shlex.join(self.argv())}\n{self.diagnostics()}",
                pytrace=False,
            )
        return self._base_url

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` to the daemon process only (not to the processes it started)."""
        assert self.proc is not None
        self.proc.send_signal(sig)

    def signal_group(self, sig: int) -> None:
        """Send ``sig`` to the daemon's process group (the daemon and its workers)."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        """Wait for the exit (and the end of its output); return the exit code, or fail
        the test (after SIGKILLing the group) when it does not exit in time."""
        assert self.proc is not None
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(
                f"daemon did not exit within {timeout:g} s\n{self.diagnostics()}", pytrace=False
            )
        self._join_reader()
        return rc

    def stop(
        self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT, *, group: bool = True
    ) -> int:
        """Send ``sig`` to the process group (or with ``group=False`` to the daemon alone),
        wait for the exit and return the exit code (see :meth:`wait`)."""
        assert self.proc is not None
        if group:
            self.signal_group(sig)
        else:
            self.send_signal(sig)
        return self.wait(timeout)

    def kill(self) -> None:
        """SIGKILL the whole process group (idempotent)."""
        if self.proc is None:
            return
        self.signal_group(signal.SIGKILL)
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL does not fail
            pass
        self._join_reader()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def _join_reader(self) -> None:
        if self._reader is not None:
            self._reader.join(5)

    # -- what it printed -------------------------------------------------------------------
    def output(self) -> str:
        """Everything read from stdout so far (with ``merge_stderr``, stderr too)."""
        return "\n".join(self.stdout_lines)

    def wait_line(self, needle: str, timeout: float = START_TIMEOUT) -> str:
        """The first output line containing ``needle``; fails the test if the daemon
        exits or ``timeout`` passes first."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while True:
            for line in list(self.stdout_lines):
                if needle in line:
                    return line
            if self.proc.poll() is not None:
                self._join_reader()
                if any(needle in line for line in self.stdout_lines):
                    continue
                pytest.fail(f"daemon exited ({self.proc.returncode}):\n{self.diagnostics()}")
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {needle!r} in the output\n{self.diagnostics()}")
            time.sleep(0.05)

    def stderr_text(self) -> str:
        if self._stderr_path is None or not self._stderr_path.exists():
            return ""
        return self._stderr_path.read_text("utf-8", "replace")

    def stderr_tail(self, n: int = 20) -> str:
        return "\n".join(self.stderr_text().splitlines()[-n:])

    def diagnostics(self) -> str:
        out = "\n".join(self.stdout_lines[-40:])
        err = self.stderr_text()[-4000:]
        return f"--- daemon stdout (tail) ---\n{out}\n--- daemon stderr (tail) ---\n{err}"

    # -- where it listens ------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """The creation endpoint of the banner, e.g. ``http://127.0.0.1:PORT/files/``."""
        assert self._base_url is not None, "daemon not started"
        return self._base_url

    @property
    def bound_host(self) -> str:
        return urlsplit(self.base_url).hostname or ""

    @property
    def port(self) -> int:
        port = urlsplit(self.base_url).port
        assert port is not None, self.base_url
        return port

    @property
    def base_path(self) -> str:
        return urlsplit(self.base_url).path

    def url_for(self, upload_url: str) -> str:
        """Map an upload URL (possibly from an earlier run on another port) onto this run."""
        return self.base_url.rstrip("/") + "/" + upload_id_of(upload_url)

    # -- the process as /proc shows it -----------------------------------------------------
    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def stable_fds(self, timeout: float = 3.0) -> int:
        """The fd count once it stops changing for 200 ms."""
        deadline = time.monotonic() + timeout
        n = self.fds()
        while time.monotonic() < deadline:
            time.sleep(0.2)
            m = self.fds()
            if m == n:
                break
            n = m
        return n

    def fds_back_to(self, target: int, slack: int = 2, timeout: float = 5.0) -> int:
        """Wait (bounded) until the fd count is within `slack` of `target`; return it."""
        deadline = time.monotonic() + timeout
        n = self.fds()
        while abs(n - target) > slack and time.monotonic() < deadline:
            time.sleep(0.05)
            n = self.fds()
        return n

    def nofile_limits(self) -> tuple[int, int]:
        with open(f"/proc/{self.pid}/limits") as f:
            for line in f:
                if line.startswith("Max open files"):
                    parts = line.split()
                    return _limit(parts[3]), _limit(parts[4])
        raise AssertionError("no 'Max open files' in /proc/PID/limits")

    def children(self) -> set[int]:
        """The live (not zombie) child processes of the daemon."""
        return child_pids(self.pid)


def _limit(value: str) -> int:
    return resource.RLIM_INFINITY if value == "unlimited" else int(value)


def proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, or None when it does not exist."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1])


def child_pids(parent: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = proc_stat(int(entry))
            if stat is not None and stat[1] == parent and stat[0] != "Z":
                found.add(int(entry))
    return found


def upload_id_of(upload_url: str) -> str:
    return urlsplit(upload_url).path.rstrip("/").rsplit("/", 1)[-1]


class DaemonFactory:
    """Makes daemons under ``root`` (upload directory ``root/NAME-N``, logs in ``root``)
    and kills them all in :meth:`kill_all` (the fixtures' teardown)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.daemons: list[Daemon] = []

    def new(
        self,
        name: str = "store",
        extra_args: Sequence[str] = (),
        *,
        nofile_soft: int | None = None,
        merge_stderr: bool = False,
    ) -> Daemon:
        """A daemon, not started."""
        upload_dir = self.root / f"{name}-{len(self.daemons)}"
        daemon = Daemon(
            upload_dir,
            extra_args,
            log_dir=self.root,
            nofile_soft=nofile_soft,
            merge_stderr=merge_stderr,
        )
        self.daemons.append(daemon)
        return daemon

    def start(self, *args: str, nofile_soft: int | None = None) -> Daemon:
        """A started daemon with ``args``."""
        return self.new(extra_args=args, nofile_soft=nofile_soft).start()

    def kill_all(self) -> None:
        for daemon in self.daemons:
            daemon.kill()


def raise_nofile(needed: int) -> tuple[int, int]:
    """Raise this process's RLIMIT_NOFILE soft limit to the hard limit; fail if below `needed`."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.fail(
            f"this test needs {needed} open files but the hard RLIMIT_NOFILE is {hard}; "
            f"raise it (e.g. `ulimit -Hn {needed * 2}` as root, or LimitNOFILE= in systemd, "
            f"or `docker run --ulimit nofile={needed * 2}`)",
            pytrace=False,
        )
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


@overload
def wait_for(
    predicate: Callable[[], T | None],
    timeout: float,
    interval: float = ...,
    what: str | Callable[[], str] = ...,
    required: Literal[True] = ...,
) -> T: ...
@overload
def wait_for(
    predicate: Callable[[], T | None],
    timeout: float,
    interval: float = ...,
    what: str | Callable[[], str] = ...,
    *,
    required: Literal[False],
) -> T | None: ...
def wait_for(
    predicate: Callable[[], T | None],
    timeout: float,
    interval: float = 0.05,
    what: str | Callable[[], str] = "condition",
    required: bool = True,
) -> T | None:
    """Poll ``predicate`` until it returns a truthy value and return it; after
    ``timeout`` seconds fail the test (or, with ``required=False``, return None).
    ``what`` (or what it returns) names the condition."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            if not required:
                return None
            desc = what() if callable(what) else what
            pytest.fail(f"timed out after {timeout}s waiting for {desc}", pytrace=False)
        time.sleep(interval)
