"""Process bookkeeping shared by the benchmark harnesses (standard library only).

Every server, proxy and client a harness starts runs in its own process group and is
registered in ``LIVE`` so that it is killed at the end, also on Ctrl-C, SIGTERM or an error.
A server's processes are its process group *and* its descendants: ``tusd-trio -workers N``
starts its workers in process groups of their own (so that a terminal's Ctrl-C reaches only
the parent), which group-based sampling would miss.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import threading
import time

LIVE: dict[int, subprocess.Popen] = {}  # pgid -> process (servers and clients we started)
LIVE_LOCK = threading.Lock()


def _stat_fields(pid: int | str) -> list[bytes] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rindex(b")") + 2 :].split()


def server_pids(pgid: int) -> list[int]:
    """The processes of group ``pgid`` and every descendant of them (in any group)."""
    children: dict[int, list[int]] = {}
    members: list[int] = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        fields = _stat_fields(d)
        if fields is None:
            continue
        children.setdefault(int(fields[1]), []).append(int(d))
        if int(fields[2]) == pgid:
            members.append(int(d))
    seen: set[int] = set()
    todo = members
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo.extend(children.get(pid, ()))
    return sorted(seen)


def proc_status_kib(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def machine_busy_s() -> float:
    """CPU seconds the whole machine has spent busy (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return (sum(v[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int, *, user: bool = True) -> float:
    """CPU seconds of ``pid`` (user + system, or only system with ``user=False``),
    children it waited for included."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    # utime, stime, cutime, cstime
    picked = fields[11:15] if user else (fields[12], fields[14])
    return sum(int(x) for x in picked) / os.sysconf("SC_CLK_TCK")


def kill_group(proc: subprocess.Popen, grace: float = 3.0) -> None:
    """SIGTERM the group of ``proc`` (then SIGKILL), and any descendant left in other groups."""
    pgid = proc.pid  # started with start_new_session=True: pid == pgid
    descendants = [p for p in server_pids(pgid) if p != pgid] if proc.poll() is None else []
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(wait)
            # the leader is gone; make sure no child of it lingers in the group
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            break
        except subprocess.TimeoutExpired:
            continue
    deadline = time.monotonic() + 5.0
    for pid in descendants:  # e.g. -workers N: each worker has a process group of its own
        while _stat_fields(pid) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        if _stat_fields(pid) is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    with LIVE_LOCK:
        LIVE.pop(pgid, None)


def kill_all() -> None:
    with LIVE_LOCK:
        procs = list(LIVE.values())
    for p in procs:
        kill_group(p, grace=1.0)


def on_sigterm(_sig, _frm):
    raise KeyboardInterrupt


def start(cmd: list[str], **kwargs) -> subprocess.Popen:
    """Start ``cmd`` in a new session (its own process group), registered in ``LIVE``."""
    proc = subprocess.Popen(cmd, start_new_session=True, **kwargs)
    with LIVE_LOCK:
        LIVE[proc.pid] = proc
    return proc


def run_client(cmd: list[str], timeout: float) -> tuple[str, str, float, float, float]:
    """Run one client process; (stdout, stderr, start epoch, wall s, its CPU s)."""
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    e0, t0 = time.time(), time.perf_counter()
    proc = start(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc, grace=0.5)
        raise RuntimeError(f"{cmd[0]} timed out after {timeout:.0f} s") from None
    finally:
        with LIVE_LOCK:
            LIVE.pop(proc.pid, None)
    wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)  # the client was reaped just now
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    out_s, err_s = out.decode(errors="replace"), err.decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} exited with {proc.returncode}: {err_s.strip()[-600:]}")
    return out_s, err_s, e0, wall, cpu
