#!/usr/bin/env python3
"""Load soak for tusd-trio: steady load for a while, watching the daemon's fds and memory.

    .venv/bin/python benchmarks/soak.py                  # 2 phases of 60 s, 32 connections
    .venv/bin/python benchmarks/soak.py --seconds 10     # quicker look

Phase A (`head`): C keep-alive connections doing HEAD on ONE upload (all on the same lock).
Phase B (`create`): C keep-alive connections doing 4 KiB creation-with-upload POSTs.

One request in flight per connection (no pipelining), driven by `selectors` over
non-blocking sockets (the request bytes and response parser come from loadgen.py). Every
second the daemon's open fds (`/proc/PID/fd`) and VmRSS are sampled, and per second the
requests done, 5xx, p50/p99 latency are kept; per connection the number of requests it got
answered and its longest wait. Prints a Markdown table per 5 s and one verdict line per
criterion; writes everything as JSON. It reports, it does not judge: the exit code is 0
unless the daemon could not be started.

The daemon is started here (in its own process group, killed at the end) with
`--server-cmd` (default: tusd-trio with `-verbose=false`), or `--url URL --pid PID` attaches
to one that runs already. See benchmarks/README.md, section "Soak".
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import resource
import selectors
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from array import array
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from loadgen import OCTET, TUS, parse_response, prepare, split_url  # noqa: E402

URL_RE = re.compile(r"You can now upload files to: (https?://\S+)")
DEFAULT_CMD = (
    "{python} -m tusd_trio -host 127.0.0.1 -port 0 -upload-dir {upload_dir} -verbose=false"
)
MiB = 1 << 20
PHASES = {"head": "A: HEAD on one upload", "create": "B: 4 KiB creation-with-upload"}


def default_python() -> str:
    venv = REPO / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


# -- the daemon's process -------------------------------------------------------------------


def proc_fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def proc_rss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def proc_cpu_s(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def settle_fds(pid: int, target: int | None, timeout: float = 5.0, slack: int = 2) -> int | None:
    """The daemon's fd count once it is back within `slack` of `target` (or after `timeout`).

    Closing connections on the client side takes the daemon a moment to notice."""
    deadline = time.monotonic() + timeout
    n = proc_fds(pid)
    while n is not None and target is not None and abs(n - target) > slack:
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
        n = proc_fds(pid)
    return n


def stable_fds(pid: int, timeout: float = 3.0) -> int | None:
    """The daemon's fd count once it stops changing (100 ms apart), e.g. after a close."""
    deadline = time.monotonic() + timeout
    n = proc_fds(pid)
    while time.monotonic() < deadline:
        time.sleep(0.1)
        m = proc_fds(pid)
        if m == n:
            break
        n = m
    return n


class Daemon:
    """The server under test, in its own process group; `stop()` kills the whole group."""

    def __init__(self, template: str, work: Path, log_path: Path, start_timeout: float = 30.0):
        self.upload_dir = Path(tempfile.mkdtemp(prefix="soak-", dir=work))
        cmd = template.format(
            python=shlex.quote(default_python()),
            upload_dir=shlex.quote(str(self.upload_dir)),
            repo=shlex.quote(str(REPO)),
        )
        self.cmd = cmd
        self.log_path = log_path
        self.log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            shlex.split(cmd),
            cwd=REPO,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.pid = self.proc.pid
        self.url: str | None = None
        deadline = time.monotonic() + start_timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            m = URL_RE.search(log_path.read_text(errors="replace"))
            if m:
                self.url = m.group(1)
                break
            time.sleep(0.02)
        if not self.url:
            code = self.proc.poll()
            self.stop()
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
            raise RuntimeError(f"daemon did not start (exit code {code}; {cmd}):\n{tail}")

    def stop(self) -> None:
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        try:
            os.killpg(self.pid, signal.SIGKILL)  # nothing of the group may linger
        except ProcessLookupError:
            pass
        self.log.close()
        shutil.rmtree(self.upload_dir, ignore_errors=True)


# -- one phase ------------------------------------------------------------------------------


def _pct(sorted_ms: list[float], q: float) -> float | None:
    if not sorted_ms:
        return None
    return sorted_ms[min(len(sorted_ms) - 1, int(q * len(sorted_ms)))]


def _request(kind: str, host: str, port: int, base: str, path: str | None, body: int) -> bytes:
    hosthdr = f"Host: {host}:{port}\r\n".encode()
    if kind == "head":
        assert path
        return f"HEAD {path} HTTP/1.1\r\n".encode() + hosthdr + TUS + b"\r\n"
    data = (bytes(range(256)) * (body // 256 + 1))[:body]
    return (
        f"POST {base} HTTP/1.1\r\n".encode()
        + hosthdr
        + TUS
        + OCTET
        + b"Upload-Length: %d\r\nContent-Length: %d\r\n\r\n" % (body, body)
        + data
    )


def run_phase(
    kind: str,
    url: str,
    pid: int | None,
    seconds: float,
    connections: int,
    warmup: float = 10.0,
    body: int = 4096,
    drain: float = 10.0,
    progress=None,
) -> dict:
    """Drive `connections` keep-alive connections for `seconds`; sample the daemon every second.

    kind: "head" (HEAD on one upload made here first) or "create" (creation-with-upload of
    `body` bytes). `pid` is the daemon's process (None: no fd/RSS samples). Returns a dict
    (see `summarize`)."""
    host, port, base = split_url(url)
    path = None
    if kind == "head":
        path = prepare(url, 1, body)[0]
        expect, is_head = 200, True
        check = b"\r\nupload-offset: %d\r\n" % body
    elif kind == "create":
        expect, is_head, check = 201, False, b"\r\nlocation:"
    else:
        raise ValueError(kind)
    req = _request(kind, host, port, base, path, body)

    fds_before = stable_fds(pid) if pid else None
    rss_before = proc_rss_kib(pid) if pid else None
    cpu_before = proc_cpu_s(pid) if pid else None

    sel = selectors.DefaultSelector()
    perf = time.perf_counter
    nsec = max(1, round(seconds))
    lat_s: list[array] = [array("d") for _ in range(nsec + 1)]  # per second, ms
    done_s = [0] * (nsec + 1)
    err5_s = [0] * (nsec + 1)
    bad_s = [0] * (nsec + 1)  # answered, but not the expected status/header (not 5xx)
    statuses: dict[str, int] = {}
    errors: list[str] = []
    conns: list[dict] = []
    counters = {"disconnects": 0, "dropped": 0, "connect_errors": 0}

    def open_conn(st: dict) -> bool:
        try:
            s = socket.create_connection((host, port), timeout=10)
        except OSError as e:
            counters["connect_errors"] += 1
            if len(errors) < 10:
                errors.append(f"connect: {type(e).__name__}: {e}")
            st["sock"] = None
            st["retry_at"] = perf() + 0.2
            return False
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        st["sock"], st["buf"], st["t"] = s, bytearray(), None
        sel.register(s, selectors.EVENT_READ, st)
        return True

    def close_conn(st: dict) -> None:
        s = st.get("sock")
        if s is None:
            return
        try:
            sel.unregister(s)
        except (KeyError, ValueError):
            pass
        s.close()
        st["sock"] = None

    def send(st: dict) -> None:
        st["t"] = perf()
        s = st["sock"]
        try:
            n = s.send(req)
        except BlockingIOError:
            n = 0
        except OSError as e:
            lost(st, f"send: {type(e).__name__}: {e}")
            return
        if n < len(req):  # rare: the socket buffer is full; finish it blocking
            try:
                s.setblocking(True)
                s.settimeout(10)
                s.sendall(req[n:])
                s.setblocking(False)
            except OSError as e:
                lost(st, f"send: {type(e).__name__}: {e}")

    def lost(st: dict, why: str) -> None:
        """The server closed (or broke) the connection: count it, reconnect, carry on."""
        counters["disconnects"] += 1
        if st["t"] is not None:
            counters["dropped"] += 1
            st["max_wait"] = max(st["max_wait"], perf() - st["t"])
            if len(errors) < 10:
                errors.append(f"conn {st['cid']}: request lost ({why})")
        close_conn(st)
        st["t"] = None
        if sending and open_conn(st):
            send(st)

    for cid in range(connections):
        st = {"cid": cid, "n": 0, "max_wait": 0.0, "sock": None, "t": None, "retry_at": 0.0}
        open_conn(st)
        conns.append(st)

    samples: list[dict] = []
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = perf()
    t_end = t0 + seconds
    next_sample = t0
    sending = True
    for st in conns:
        if st["sock"] is not None:
            send(st)

    def sample(now: float) -> None:
        samples.append(
            {
                "t": round(now - t0, 3),
                "fds": proc_fds(pid) if pid else None,
                "rss_kib": proc_rss_kib(pid) if pid else None,
            }
        )

    drain_end = None
    while True:
        now = perf()
        if sending and now >= t_end:
            sending = False
            drain_end = now + drain
        if now >= next_sample and next_sample <= t_end:
            sample(now)
            next_sample += 1.0
            t_s = round(samples[-1]["t"])
            if progress and t_s > 0 and t_s % 10 == 0:
                progress(kind, t_s, sum(done_s), sum(err5_s))
        inflight = [st for st in conns if st["t"] is not None]
        if not sending and (not inflight or now >= drain_end):
            break
        if sending:
            for st in conns:
                if st["sock"] is None and now >= st["retry_at"] and open_conn(st):
                    send(st)
        wait = (t_end if sending else drain_end) - now
        if next_sample <= t_end:
            wait = min(wait, next_sample - now)
        for key, _ev in sel.select(max(0.0, min(wait, 0.2))):
            st = key.data
            try:
                data = st["sock"].recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as e:
                lost(st, f"recv: {type(e).__name__}: {e}")
                continue
            if not data:
                lost(st, "closed by the server")
                continue
            buf = st["buf"]
            buf += data
            while st["t"] is not None:
                r = parse_response(buf, is_head)
                if r is None:
                    break
                status, low, _raw, consumed = r
                del buf[:consumed]
                t = perf()
                ms = (t - st["t"]) * 1000
                st["max_wait"] = max(st["max_wait"], t - st["t"])
                st["t"] = None
                sec = min(nsec, int(t - t0))
                st["n"] += 1
                statuses[str(status)] = statuses.get(str(status), 0) + 1
                lat_s[sec].append(ms)
                done_s[sec] += 1
                if status >= 500:
                    err5_s[sec] += 1
                elif status != expect or check not in low:
                    bad_s[sec] += 1
                    if len(errors) < 10:
                        errors.append(f"conn {st['cid']}: unexpected {status}: {low[:200]!r}")
                if b"\r\nconnection: close" in low:
                    close_conn(st)
                    counters["disconnects"] += 1
                    if sending and open_conn(st):
                        send(st)
                elif sending:
                    send(st)
    t_stop = perf()
    unanswered = [st for st in conns if st["t"] is not None]
    for st in unanswered:
        st["max_wait"] = max(st["max_wait"], t_stop - st["t"])
    for st in conns:
        close_conn(st)
    sel.close()
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    client_cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)

    fds_after = settle_fds(pid, fds_before) if pid else None
    rss_after = proc_rss_kib(pid) if pid else None
    cpu_after = proc_cpu_s(pid) if pid else None

    per_second = []
    for i in range(nsec):
        srt = sorted(lat_s[i])
        per_second.append(
            {
                "second": i,
                "done": done_s[i],
                "5xx": err5_s[i],
                "bad": bad_s[i],
                "p50_ms": _pct(srt, 0.50),
                "p99_ms": _pct(srt, 0.99),
                "max_ms": srt[-1] if srt else None,
            }
        )
    all_ms = sorted(x for a in lat_s for x in a)
    per_conn = [st["n"] for st in conns]
    waits = [st["max_wait"] for st in conns]
    worst = max(range(len(conns)), key=lambda i: waits[i]) if conns else None
    server_cpu = (
        cpu_after - cpu_before if cpu_after is not None and cpu_before is not None else None
    )
    return {
        "phase": kind,
        "title": PHASES[kind],
        "seconds": seconds,
        "elapsed_s": t_stop - t0,
        "connections": connections,
        "warmup_s": warmup,
        "requests": sum(done_s),
        "req_per_s": sum(done_s[:nsec]) / nsec,
        "statuses": statuses,
        "5xx": sum(err5_s),
        "bad": sum(bad_s),
        "unanswered": len(unanswered),
        **counters,
        "errors": errors,
        "p50_ms": _pct(all_ms, 0.50),
        "p99_ms": _pct(all_ms, 0.99),
        "max_wait_ms": waits[worst] * 1000 if worst is not None else None,
        "max_wait_conn": worst,
        "per_conn_min": min(per_conn) if per_conn else 0,
        "per_conn_max": max(per_conn) if per_conn else 0,
        "per_conn": per_conn,
        "per_conn_max_wait_ms": [round(w * 1000, 3) for w in waits],
        "per_second": per_second,
        "samples": samples,
        "fds_before": fds_before,
        "fds_after": fds_after,
        "rss_before_kib": rss_before,
        "rss_after_kib": rss_after,
        "server_cpu_s": server_cpu,
        "client_cpu_s": client_cpu,
    }


# -- judging (for the report only) ----------------------------------------------------------


def verdicts(res: dict, fd_slack: int, rss_slack_mib: float, wait_limit_ms: float) -> list[dict]:
    """One line per criterion: (name, ok, text). ok is None when it cannot be told."""
    warm = min(res["warmup_s"], res["seconds"] / 2)
    after = [s for s in res["samples"] if s["t"] >= warm - 0.5]
    fds = [s["fds"] for s in after if s["fds"] is not None]
    rss = [s["rss_kib"] for s in after if s["rss_kib"] is not None]
    out = []

    def add(name: str, ok: bool | None, text: str) -> None:
        out.append({"criterion": name, "ok": ok, "text": text})

    n5 = res["5xx"]
    add(
        "zero 5xx",
        n5 == 0,
        f"{n5} 5xx of {res['requests']} responses"
        + (
            f"; also {res['bad']} other unexpected answers, {res['dropped']} requests lost"
            f" to closed connections, {res['unanswered']} unanswered at the end"
            if res["bad"] or res["dropped"] or res["unanswered"]
            else "; no other unexpected answer, none lost"
        ),
    )
    if fds:
        spread = max(fds) - min(fds)
        idle = ""
        idle_ok = True
        if res["fds_before"] is not None and res["fds_after"] is not None:
            d = res["fds_after"] - res["fds_before"]
            idle_ok = abs(d) <= 2
            idle = f"; idle before/after the phase {res['fds_before']} -> {res['fds_after']}"
        add(
            "fds flat",
            spread <= fd_slack and idle_ok,
            f"after {warm:g} s warm-up {min(fds)}..{max(fds)} (spread {spread}, allowed "
            f"{fd_slack}){idle}",
        )
    else:
        add("fds flat", None, "no samples")
    if rss:
        growth = (max(rss) - rss[0]) / 1024
        add(
            "RSS flat",
            growth <= rss_slack_mib,
            f"{rss[0] / 1024:.1f} MiB at {warm:g} s, max {max(rss) / 1024:.1f}, end "
            f"{rss[-1] / 1024:.1f} MiB (growth {growth:+.1f} MiB, allowed {rss_slack_mib:g})",
        )
    else:
        add("RSS flat", None, "no samples")
    add(
        "every connection served",
        res["per_conn_min"] > 0,
        f"requests per connection min {res['per_conn_min']}, max {res['per_conn_max']}",
    )
    mw = res["max_wait_ms"]
    add(
        "max wait",
        mw is not None and mw <= wait_limit_ms,
        f"{mw:.1f} ms (connection #{res['max_wait_conn']}; limit for the mark "
        f"{wait_limit_ms:g} ms); p50 {_f(res['p50_ms'])} ms, p99 {_f(res['p99_ms'])} ms"
        if mw is not None
        else "no request",
    )
    return out


def _f(v: float | None, nd: int = 1) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def table(res: dict, bucket: int = 5) -> str:
    lines = [
        f"### Phase {res['title']} ({res['connections']} connections, {res['seconds']:g} s)",
        "",
        "| seconds | req/s | p50 ms | p99 ms | 5xx | other errors | fds (min-max) | RSS MiB |",
        "|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    ps = res["per_second"]
    for b0 in range(0, len(ps), bucket):
        chunk = ps[b0 : b0 + bucket]
        b1 = b0 + len(chunk)
        done = sum(c["done"] for c in chunk)
        # p50/p99 of the bucket from the per-second values: the max of the seconds' figures
        p50 = [c["p50_ms"] for c in chunk if c["p50_ms"] is not None]
        p99 = [c["p99_ms"] for c in chunk if c["p99_ms"] is not None]
        smp = [s for s in res["samples"] if b0 <= s["t"] < b1 + (0.5 if b1 == len(ps) else 0)]
        fds = [s["fds"] for s in smp if s["fds"] is not None]
        rss = [s["rss_kib"] for s in smp if s["rss_kib"] is not None]
        lines.append(
            f"| {b0}-{b1} | {done / len(chunk):,.0f} | {_f(max(p50) if p50 else None)} "
            f"| {_f(max(p99) if p99 else None)} | {sum(c['5xx'] for c in chunk)} "
            f"| {sum(c['bad'] for c in chunk)} "
            f"| {f'{min(fds)}-{max(fds)}' if fds else '-'} "
            f"| {_f(rss[-1] / 1024) if rss else '-'} |"
        )
    lines.append("")
    lines.append(
        f"Total {res['requests']:,} requests, {res['req_per_s']:,.0f}/s; p50 "
        f"{_f(res['p50_ms'])} ms, p99 {_f(res['p99_ms'])} ms; statuses {res['statuses']}; "
        f"reconnects {res['disconnects']}, connect errors {res['connect_errors']}; server CPU "
        f"{_f(res['server_cpu_s'])} s, client CPU {_f(res['client_cpu_s'])} s."
    )
    if res["errors"]:
        lines.append("First errors: " + "; ".join(res["errors"][:5]))
    return "\n".join(lines)


# -- main -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0, help="length of each phase (60)")
    ap.add_argument("--connections", type=int, default=32, help="keep-alive connections (32)")
    ap.add_argument("--warmup", type=float, default=10.0, help="excluded from the flatness (10)")
    ap.add_argument("--phases", default="head,create", help="head,create (both)")
    ap.add_argument("--body", type=int, default=4096, help="upload size in bytes (4096)")
    ap.add_argument("--server-cmd", default=DEFAULT_CMD, help=f"daemon command ({DEFAULT_CMD})")
    ap.add_argument("--url", help="attach to a running daemon at this creation URL")
    ap.add_argument("--pid", type=int, help="with --url: the daemon's PID (for /proc samples)")
    ap.add_argument("--work-dir", help="where the upload dir is made (default: a temp dir)")
    ap.add_argument("--json", help="JSON path (default benchmarks/results/soak-<time>.json)")
    ap.add_argument("--fd-slack", type=int, default=4, help="allowed fd spread after warm-up")
    ap.add_argument("--rss-slack", type=float, default=5.0, help="allowed RSS growth, MiB (5)")
    ap.add_argument("--wait-limit", type=float, default=1000.0, help="max wait mark, ms (1000)")
    args = ap.parse_args(argv)

    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    for p in phases:
        if p not in PHASES:
            ap.error(f"unknown phase {p!r} (known: {', '.join(PHASES)})")
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    results_dir = BENCH / "results"
    results_dir.mkdir(exist_ok=True)
    json_path = Path(args.json) if args.json else results_dir / f"soak-{stamp}.json"

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.connections + 64
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(want, soft)), hard))

    daemon = None
    tmp = None
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        if args.url:
            url, pid, cmd = args.url, args.pid, None
        else:
            work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="soak-"))
            tmp = None if args.work_dir else work
            log_path = results_dir / f"soak-{stamp}.log"
            daemon = Daemon(args.server_cmd, work, log_path)
            url, pid, cmd = daemon.url, daemon.pid, daemon.cmd
            print(f"daemon: {cmd} (pid {pid}, log {log_path})", file=sys.stderr)

        def progress(kind: str, t: int, done: int, n5: int) -> None:
            print(f"  {kind}: {t:>4d} s, {done:,} requests, {n5} 5xx", file=sys.stderr)

        results = []
        for p in phases:
            print(f"phase {PHASES[p]}: {args.seconds:g} s ...", file=sys.stderr)
            results.append(
                run_phase(
                    p,
                    url,
                    pid,
                    args.seconds,
                    args.connections,
                    args.warmup,
                    args.body,
                    progress=progress,
                )
            )
        print(f"# tusd-trio soak ({dt.datetime.now().isoformat(timespec='seconds')})\n")
        if cmd:
            print(f"Daemon: `{cmd}`\n")
        all_ok = True
        for res in results:
            print(table(res))
            print()
            res["verdicts"] = verdicts(res, args.fd_slack, args.rss_slack, args.wait_limit)
            for v in res["verdicts"]:
                mark = {True: "PASS", False: "FAIL", None: "----"}[v["ok"]]
                all_ok = all_ok and v["ok"] is not False
                print(f"- **{mark}** {v['criterion']}: {v['text']}")
            print()
        print(f"Overall: {'every criterion passed' if all_ok else 'SOME CRITERIA FAILED'}.")
        meta = {
            "time": stamp,
            "cmd": cmd,
            "url": url,
            "pid": pid,
            "args": vars(args),
            "python": sys.version.split()[0],
            "cpus": os.cpu_count(),
        }
        json_path.write_text(json.dumps({"meta": meta, "phases": results}, indent=1))
        print(f"\nJSON: {json_path}", file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        if daemon:
            daemon.stop()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
