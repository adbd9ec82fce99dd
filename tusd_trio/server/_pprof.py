"""The profiling endpoints of ``-expose-pprof``, under ``-pprof-path`` (``/debug/pprof/``).

tusd serves Go's pprof there; a Python daemon has no Go runtime to ask, so these are
what answers the same questions here:

* ``<path>`` - an index of the endpoints;
* ``<path>tasks`` - the stack of every Trio task and thread, as text
  (:mod:`._task_dump`): what a hung daemon is waiting on;
* ``<path>profile?seconds=N`` - a CPU profile of this process taken by the sampling
  profiler py-spy (the ``pprof`` extra), as speedscope JSON (``format=speedscope``,
  the default), collapsed stacks (``format=collapsed``) or a flame graph SVG
  (``format=flamegraph``).

Who may read them is the operator endpoints' rule (:class:`._operator.OperatorAccess`),
checked by the caller.  py-spy runs as a child process against our own pid, awaited
with Trio (the loop keeps serving meanwhile); one profile runs at a time per process.
"""

from __future__ import annotations

import ctypes
import html
import logging
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs

import trio

from ..protocol import errors
from ..protocol.messages import Response
from ..protocol.routing import request_path
from . import _task_dump

log = logging.getLogger("tusd_trio")

#: Go's pprof default duration of a CPU profile.
DEFAULT_PROFILE_SECONDS = 30
#: The longest profile asked for in one request (the client waits for all of it).
MAX_PROFILE_SECONDS = 120
DEFAULT_SAMPLE_RATE = 100
MAX_SAMPLE_RATE = 1000
#: How long py-spy may take beyond the profile's duration to attach and write.
PROFILER_GRACE_SECONDS = 30


@dataclass(frozen=True, slots=True)
class ProfileFormat:
    #: py-spy's --format value.
    py_spy: str
    content_type: str
    extension: str


#: The ``format`` query values.
PROFILE_FORMATS: Mapping[str, ProfileFormat] = {
    "speedscope": ProfileFormat("speedscope", "application/json", "speedscope.json"),
    "collapsed": ProfileFormat("raw", "text/plain; charset=utf-8", "collapsed.txt"),
    "flamegraph": ProfileFormat("flamegraph", "image/svg+xml", "svg"),
}

_NO_STORE = ("Cache-Control", "no-store")
_NOSNIFF = ("X-Content-Type-Options", "nosniff")


class PprofEndpoints:
    """The answers under ``-pprof-path``."""

    async def respond(self, target: str, pprof_path: str) -> Response:
        """The answer to ``target``, a path under ``pprof_path`` (which ends with "/")."""
        subpath = request_path(target)[len(pprof_path) :]
        if subpath == "":
            return await self.index(pprof_path)
        if subpath == "tasks":
            return await self.tasks()
        if subpath == "profile":
            return await self.profile(_query(target))
        raise errors.UploadNotFoundError("not found")

    async def index(self, pprof_path: str) -> Response:
        profiler = await trio.to_thread.run_sync(find_py_spy)
        state = (
            f"py-spy at {html.escape(profiler)}"
            if profiler
            else "not available: py-spy is not installed (pip install 'tusd-trio[pprof]')"
        )
        path = html.escape(pprof_path)
        page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>tusd-trio profiling, process {os.getpid()}</title>
</head><body>
<h1>tusd-trio profiling, process {os.getpid()}</h1>
<p>Every answer describes the process that received the request.</p>
<ul>
<li><a href="{path}tasks">tasks</a>: the stack of every Trio task and thread, as
text (what the daemon is waiting on).</li>
<li><a href="{path}profile?seconds=10">profile</a>: a CPU profile of this process.
<code>seconds</code> (default {DEFAULT_PROFILE_SECONDS}, at most {MAX_PROFILE_SECONDS}),
<code>rate</code> (samples a second, default {DEFAULT_SAMPLE_RATE}, at most
{MAX_SAMPLE_RATE}), <code>format</code>: speedscope (JSON, the default; open it at
speedscope.app), collapsed (folded stacks for flamegraph.pl, inferno or speedscope)
or flamegraph (SVG). One profile runs at a time. Profiler: {state}.</li>
</ul>
</body></html>
"""
        return Response(
            200, [("Content-Type", "text/html; charset=utf-8"), _NO_STORE, _NOSNIFF], page.encode()
        )

    async def tasks(self) -> Response:
        taken = _task_dump.snapshot()
        text = await trio.to_thread.run_sync(_task_dump.render, taken)
        return Response(
            200, [("Content-Type", "text/plain; charset=utf-8"), _NO_STORE, _NOSNIFF], text.encode()
        )

    async def profile(self, query: Mapping[str, str]) -> Response:
        seconds = _bounded(query, "seconds", DEFAULT_PROFILE_SECONDS, MAX_PROFILE_SECONDS)
        rate = _bounded(query, "rate", DEFAULT_SAMPLE_RATE, MAX_SAMPLE_RATE)
        name = query.get("format", "speedscope")
        kind = PROFILE_FORMATS.get(name)
        if kind is None:
            raise errors.InvalidProfileRequestError(
                f"format must be one of {', '.join(PROFILE_FORMATS)}, not {name!r}"
            )
        profiler = await trio.to_thread.run_sync(find_py_spy)
        if profiler is None:
            raise errors.ProfilerUnavailableError()
        with _PROFILE_SLOT.taken():
            body = await _record(profiler, seconds, rate, kind)
        filename = f"tusd-trio-{os.getpid()}.{kind.extension}"
        return Response(
            200,
            [
                ("Content-Type", kind.content_type),
                ("Content-Disposition", f'attachment; filename="{filename}"'),
                _NO_STORE,
                _NOSNIFF,
            ],
            body,
        )


class _ProfileSlot:
    """One CPU profile per process at a time (two samplers would distort each other)."""

    def __init__(self) -> None:
        self._busy = False

    def taken(self) -> _ProfileSlot:
        if self._busy:
            raise errors.ProfileInProgressError()
        return self

    def __enter__(self) -> None:
        self._busy = True

    def __exit__(self, *exc_info: object) -> None:
        self._busy = False


_PROFILE_SLOT = _ProfileSlot()


def find_py_spy() -> str | None:
    """py-spy's executable: beside this interpreter (its venv), else on ``PATH``."""
    for directory in (sysconfig.get_path("scripts"), os.path.dirname(sys.executable)):
        candidate = os.path.join(directory, "py-spy")
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("py-spy")


#: Started instead of py-spy itself: it waits for a line on stdin, then becomes py-spy
#: (same pid).  In between this process allows that pid to read its memory: with Yama's
#: ptrace_scope=1 a process may otherwise not be read by its own children.
_WAIT_THEN_EXEC = "import os, sys; sys.stdin.readline(); os.execv(sys.argv[1], sys.argv[1:])"
_PR_SET_PTRACER = 0x59616D61  # Yama's prctl option


def _allow_reader(pid: int) -> None:
    """Let ``pid`` read this process's memory (Yama); without Yama nothing to do."""
    if sys.platform != "linux":
        return
    libc = ctypes.CDLL(None, use_errno=True)
    # EINVAL without Yama: then same-user reading is allowed anyway.
    libc.prctl(_PR_SET_PTRACER, ctypes.c_ulong(pid), 0, 0, 0)


async def _record(profiler: str, seconds: int, rate: int, kind: ProfileFormat) -> bytes:
    """Run ``py-spy record`` on this process; its output, or :class:`ProfilerFailedError`."""
    directory = await trio.to_thread.run_sync(lambda: tempfile.mkdtemp(prefix="tusd-trio-profile-"))
    try:
        output = trio.Path(directory) / "profile"
        messages = await _run_py_spy(
            [
                sys.executable,
                "-c",
                _WAIT_THEN_EXEC,
                profiler,
                "record",
                "--pid",
                str(os.getpid()),
                "--duration",
                str(seconds),
                "--rate",
                str(rate),
                "--format",
                kind.py_spy,
                "--output",
                str(output),
                # Sample without stopping the daemon: a torn stack now and then is a
                # better price than pausing every request at each sample.
                "--nonblocking",
            ],
            seconds + PROFILER_GRACE_SECONDS,
        )
        if await output.exists():
            data = await output.read_bytes()
            return _without_empty_stacks(data) if kind.py_spy == "raw" else data
        raise _failure(messages or b"it wrote no profile")
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(shutil.rmtree, directory, True)


def _without_empty_stacks(collapsed: bytes) -> bytes:
    """Collapsed stacks without the lines of samples that caught no frame at all.

    Non-blocking sampling sometimes reads a thread between frames; py-spy then writes a
    line with an empty stack (`` 2``), which folded-stack tools take for a malformed line.
    """
    lines = [line for line in collapsed.splitlines() if line and not line.startswith(b" ")]
    return b"".join(line + b"\n" for line in lines)


async def _run_py_spy(command: list[str], time_limit: float) -> bytes:
    """Run ``command`` (the waiting shim), let it read this process and wait for it;
    its output when it exits with 0, else :class:`ProfilerFailedError`."""
    # Its messages go into an answer: without Rust's backtraces.
    env = {**os.environ, "RUST_BACKTRACE": "0", "RUST_LIB_BACKTRACE": "0"}
    process = await trio.lowlevel.open_process(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
    )
    assert process.stdin is not None and process.stdout is not None
    chunks: list[bytes] = []
    try:
        _allow_reader(process.pid)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_collect, process.stdout, chunks)
            await process.stdin.send_all(b"start\n")
            await process.stdin.aclose()
            with trio.move_on_after(time_limit):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
                chunks.append(f" (stopped after {time_limit:g} s)".encode())
    finally:
        _allow_reader(0)
        if process.returncode is None:
            process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()
    output = b"".join(chunks)
    # Without samples (an idle daemon) py-spy still writes its flame graph, saying so,
    # and exits with 1: an answer, not a failure.
    if process.returncode != 0 and b"No stack counts found" not in output:
        raise _failure(output)
    return output


async def _collect(stream: trio.abc.ReceiveStream, chunks: list[bytes]) -> None:
    """Keep the first 64 KiB of py-spy's messages (and read the rest, so it never blocks)."""
    while chunk := await stream.receive_some():
        if sum(map(len, chunks)) < 64 * 1024:
            chunks.append(bytes(chunk))


def _failure(output: bytes) -> errors.ProfilerFailedError:
    """The answer when py-spy failed: its explanation, on one line (and in the log)."""
    lines = [line.strip() for line in output.decode("utf-8", "replace").splitlines()]
    useful = [line for line in lines if line and not line.startswith("py-spy> Sampling")]
    text = " ".join(useful)[:500] or "no explanation given"
    log.warning("ProfileFailed: %s", text)
    return errors.ProfilerFailedError(f"py-spy could not profile this process: {text}")


def _query(target: str) -> dict[str, str]:
    _, _, query = target.partition("?")
    return {name: values[-1] for name, values in parse_qs(query).items()}


def _bounded(query: Mapping[str, str], name: str, default: int, maximum: int) -> int:
    text = query.get(name)
    if text is None or text == "":
        return default
    if not text.isdigit() or not 1 <= int(text) <= maximum:
        raise errors.InvalidProfileRequestError(
            f"{name} must be a whole number from 1 to {maximum}, not {text!r}"
        )
    return int(text)
