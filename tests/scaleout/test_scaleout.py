"""Several tusd-trio instances behind no load balancer at all: the clients here
send every request to whichever instance they like (round robin, or on purpose
to another one than the previous request), as a plain load balancer without
sticky sessions would.

Every daemon is a real subprocess; they share one store (a moto S3 bucket, or
one upload directory with the file store) and one real Redis (-locker redis).
What must hold: an upload never has two writers, a dead instance's lock never
blocks an upload for longer than its lease, acknowledged bytes are never lost,
and a Redis outage costs 503s (with Retry-After) but no data.
"""

from __future__ import annotations

import itertools
import json
import random
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial

import httpx
import pytest

from tests._support.daemon import upload_id_of, wait_for
from tests._support.raw_http import RawPatch
from tests._support.sync_http import assert_same_bytes

from .scaleout_support import Cluster, MiB, RedisServer

TUS = {"Tus-Resumable": "1.0.0"}
OCTET = {"Content-Type": "application/offset+octet-stream"}
KiB = 1024
DEADLINE = 60.0  # seconds a client thread may take before the test gives up on it


# --- helpers -----------------------------------------------------------------------------------


def _answers_200(client: httpx.Client, url: str) -> bool:
    return client.get(url).status_code == 200


def new_client() -> httpx.Client:
    return httpx.Client(timeout=httpx.Timeout(60.0), headers=TUS)


def payload(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def url_on(base_url: str, upload_id: str) -> str:
    return base_url.rstrip("/") + "/" + upload_id


def create(client: httpx.Client, base_url: str, size: int) -> str:
    """POST an upload of ``size`` bytes; return its id."""
    resp = client.post(base_url, headers={"Upload-Length": str(size)})
    assert resp.status_code == 201, f"POST -> {resp.status_code}: {resp.text[:300]}"
    return upload_id_of(resp.headers["location"])


def patch(client: httpx.Client, url: str, offset: int, data: bytes) -> httpx.Response:
    return client.patch(url, headers={**OCTET, "Upload-Offset": str(offset)}, content=data)


def error_code(resp: httpx.Response) -> str:
    """The ERR_* code of an error answer (tusd puts it in the text body; an answer
    to HEAD has no body, so there it is ``HEAD-<status>``)."""
    if resp.request.method == "HEAD":
        return f"HEAD-{resp.status_code}"
    text = resp.text
    for word in text.replace('"', " ").replace(":", " ").split():
        if word.startswith("ERR_"):
            return word
    return text[:80]


def read_raw_response(
    sock: socket.socket, timeout: float = 30.0
) -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP/1.1 response (Content-Length framed) from a raw socket."""
    sock.settimeout(timeout)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {buf!r}"
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body


def with_lock_retries(
    request: Callable[[], httpx.Response], seen: list[str], attempts: int = 200
) -> httpx.Response:
    """Send ``request`` again while the lock is busy (500 ERR_LOCK_TIMEOUT) or the lock
    service is unavailable (503, after its Retry-After), as a real client would."""
    for _ in range(attempts):
        resp = request()
        if resp.status_code == 500 and error_code(resp) in ("ERR_LOCK_TIMEOUT", "HEAD-500"):
            seen.append(error_code(resp))
            continue
        if resp.status_code == 503:
            seen.append(error_code(resp))
            time.sleep(min(float(resp.headers.get("retry-after", "1")), 1.0))
            continue
        return resp
    pytest.fail(f"still failing after {attempts} attempts: {seen[-5:]}", pytrace=False)


def redis_command(url: str, *args: str) -> bytes:
    """One raw RESP command against a redis:// URL (host:port/db 0); returns the raw answer."""
    hostport = url.split("//", 1)[1].split("/", 1)[0]
    host, _, port = hostport.partition(":")
    request = f"*{len(args)}\r\n".encode()
    for arg in args:
        encoded = arg.encode()
        request += b"$%d\r\n%s\r\n" % (len(encoded), encoded)
    with socket.create_connection((host, int(port or 6379)), timeout=5) as sock:
        sock.sendall(request)
        return sock.recv(65536)


def lock_pttl(cluster: Cluster, upload_id: str) -> int:
    answer = redis_command(cluster.redis_url, "PTTL", f"{cluster.prefix}lock:{upload_id}")
    assert answer.startswith(b":"), answer
    return int(answer[1:].strip())


# --- 1. round robin over three instances ------------------------------------------------------


def test_round_robin_over_three_instances(cluster: Cluster, store_kind: str) -> None:
    """50 uploads, every PATCH on another instance than the one before, HEAD on the
    third one after each PATCH, GET from any: all bytes exact."""
    daemons = cluster.start(3)
    bases = [d.base_url for d in daemons]
    rng = random.Random(5)
    plans: list[tuple[int, int]] = []  # (size, patch size)
    for i in range(50):
        if i % 6 == 0:  # 9 uploads above one 5 MiB S3 part
            plans.append((rng.randint(5 * MiB + 1, 8 * MiB), rng.randint(1 * MiB, 2 * MiB)))
        else:
            plans.append((rng.randint(1, 700 * KiB), rng.randint(48 * KiB, 256 * KiB)))

    def one(i: int) -> int:
        size, step = plans[i]
        data = payload(i, size)
        with new_client() as client:
            upload_id = create(client, bases[i % 3], size)
            offset, turn = 0, i
            while offset < size:
                turn += 1
                chunk = data[offset : offset + step]
                resp = patch(client, url_on(bases[turn % 3], upload_id), offset, chunk)
                assert resp.status_code == 204, f"PATCH -> {resp.status_code}: {resp.text[:300]}"
                offset += len(chunk)
                assert int(resp.headers["upload-offset"]) == offset
                head = client.head(url_on(bases[(turn + 1) % 3], upload_id))
                assert head.status_code == 200, head.status_code
                assert int(head.headers["upload-offset"]) == offset
                assert int(head.headers["upload-length"]) == size
            got = client.get(url_on(bases[(turn + 2) % 3], upload_id))
            assert got.status_code == 200, got.status_code
            assert_same_bytes(got.content, data)
        return turn - i  # PATCHes sent

    with ThreadPoolExecutor(6) as pool:
        patches = list(pool.map(one, range(len(plans))))
    assert sum(patches) >= 100  # many cross-instance hand-overs happened
    for daemon in daemons:
        assert daemon.running(), cluster.diagnostics()


# --- 2. a request on instance B interrupts a PATCH in flight on instance A ---------------------


@pytest.mark.parametrize("second", ["head", "patch"])
def test_request_on_other_instance_interrupts_patch_in_flight(
    cluster: Cluster, store_kind: str, second: str
) -> None:
    a, b, c = cluster.start(3)
    size = 1 * MiB + 123
    data = payload(2, size)
    with new_client() as client:
        upload_id = create(client, a.base_url, size)
        raw = RawPatch(url_on(a.base_url, upload_id), offset=0, content_length=size)
        sent = 0
        for _ in range(4):  # slowly: 4 x 48 KiB, then nothing more
            raw.send(data[sent : sent + 48 * KiB])
            sent += 48 * KiB
            time.sleep(0.05)
        # Let A read all of it (it is far faster than this) before B asks for the lock.
        wait_for(lambda: lock_pttl(cluster, upload_id) > 0, 10, what="A's lease in Redis")
        time.sleep(0.3)
        url_b = url_on(b.base_url, upload_id)
        if second == "head":
            resp = client.head(url_b)
            assert resp.status_code == 200, resp.status_code
            offset = int(resp.headers["upload-offset"])
        else:
            rest = data[sent:]
            resp = patch(client, url_b, sent, rest)
            assert resp.status_code == 204, f"PATCH on B -> {resp.status_code}: {resp.text}"
            assert int(resp.headers["upload-offset"]) == size
            offset = sent
        # A was told to let go: it answered the interrupted PATCH with 400.
        status, _, body = read_raw_response(raw.sock)
        raw.close()
        assert status == 400, (status, body)
        assert b"ERR_UPLOAD_INTERRUPTED" in body, body
        # B saw exactly what A stored: every byte A received.
        assert offset == sent
        if second == "head":
            resp = patch(client, url_b, offset, data[offset:])
            assert resp.status_code == 204, f"PATCH on B -> {resp.status_code}: {resp.text}"
            assert int(resp.headers["upload-offset"]) == size
        got = client.get(url_on(c.base_url, upload_id))
        assert got.status_code == 200
        assert_same_bytes(got.content, data)
        assert lock_pttl(cluster, upload_id) == -2  # every lease was given back


# --- 3. SIGKILL of the instance that holds the lease -------------------------------------------


def test_killed_holder_lease_expires_and_other_instance_continues(
    cluster: Cluster, store_kind: str
) -> None:
    a, b = cluster.start(2, "-redis-lock-ttl", "2s", "-acquire-lock-timeout", "500ms")
    size = 3 * MiB + 777
    data = payload(3, size)
    first = 1 * MiB
    with new_client() as client:
        upload_id = create(client, a.base_url, size)
        resp = patch(client, url_on(a.base_url, upload_id), 0, data[:first])
        assert resp.status_code == 204
        raw = RawPatch(url_on(a.base_url, upload_id), offset=first, content_length=size - first)
        sent = 0
        for _ in range(8):
            raw.send(data[first + sent : first + sent + 64 * KiB])
            sent += 64 * KiB
            time.sleep(0.02)
        wait_for(lambda: lock_pttl(cluster, upload_id) > 0, 10, what="A's lease in Redis")
        time.sleep(0.2)
        a.kill()  # SIGKILL: no release, no clean-up; the lease stays until it expires
        assert not a.running()
        assert lock_pttl(cluster, upload_id) > 0, "the dead instance's lease is still there"
        raw.close()

        url_b = url_on(b.base_url, upload_id)
        seen: list[str] = []
        head = with_lock_retries(lambda: client.head(url_b), seen)
        assert head.status_code == 200, f"{head.status_code} {head.text}\n{cluster.diagnostics()}"
        offset = int(head.headers["upload-offset"])
        # Acknowledged bytes are kept; bytes A received but never acknowledged may be
        # kept (file store) or not (S3: the incomplete part was not written yet).
        assert first <= offset <= first + sent
        resp = with_lock_retries(lambda: patch(client, url_b, offset, data[offset:]), seen)
        assert resp.status_code == 204, f"PATCH on B -> {resp.status_code}: {resp.text}"
        assert int(resp.headers["upload-offset"]) == size
        assert set(seen) <= {"ERR_LOCK_TIMEOUT", "HEAD-500"}, seen
        got = client.get(url_b)
        assert got.status_code == 200
        assert_same_bytes(got.content, data)
        assert lock_pttl(cluster, upload_id) == -2
    assert b.running(), cluster.diagnostics()


# --- 4. Redis goes away and comes back ---------------------------------------------------------


@dataclass
class ResumableUploader:
    """A client thread that uploads in small PATCHes, each on another instance,
    resuming from HEAD after any failure (honouring Retry-After)."""

    bases: list[str]
    upload_id: str
    data: bytes
    index: int
    step: int = 64 * KiB
    pause: float = 0.05
    #: When set: halfway through, wait for this before going on.
    gate: threading.Event | None = None
    halfway: threading.Event = field(default_factory=threading.Event)
    codes: list[str] = field(default_factory=list)
    retry_after: set[str] = field(default_factory=set)
    error: BaseException | None = None
    done: bool = False

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:
            self.error = exc

    def _note(self, resp: httpx.Response) -> None:
        self.codes.append(error_code(resp))
        if "retry-after" in resp.headers:
            self.retry_after.add(resp.headers["retry-after"])

    def _run(self) -> None:
        turn = self.index
        size = len(self.data)
        with new_client() as client:
            offset: int | None = None
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                turn += 1
                url = url_on(self.bases[turn % len(self.bases)], self.upload_id)
                if offset is None:
                    resp = client.head(url)
                    if resp.status_code != 200:
                        self._note(resp)
                        time.sleep(float(resp.headers.get("retry-after", "0.2")))
                        continue
                    offset = int(resp.headers["upload-offset"])
                if offset == size:
                    self.done = True
                    return
                if offset >= size // 2 and not self.halfway.is_set():
                    self.halfway.set()
                    if self.gate is not None:
                        assert self.gate.wait(60)
                resp = patch(client, url, offset, self.data[offset : offset + self.step])
                if resp.status_code == 204:
                    offset = int(resp.headers["upload-offset"])
                    time.sleep(self.pause)
                    continue
                self._note(resp)
                offset = None  # ask a HEAD where to go on
                time.sleep(float(resp.headers.get("retry-after", "0.2")))
            raise AssertionError(f"upload {self.upload_id} did not finish: {self.codes[-5:]}")


@pytest.mark.parametrize("store_kind", ["shared-dir", "s3"])
def test_redis_outage_gives_503_then_recovers(
    own_redis_cluster: Cluster, own_redis: RedisServer
) -> None:
    cluster = own_redis_cluster
    daemons = cluster.start(2, "-redis-lock-ttl", "2s", "-acquire-lock-timeout", "5s")
    bases = [d.base_url for d in daemons]
    health = [b.replace("/files/", "/health/ready") for b in bases]
    with new_client() as client:
        for url in health:
            assert client.get(url).status_code == 200
        # Half the uploads stop halfway until Redis is down (so their next requests
        # meet the outage); the others go on all along, slowly, so that some PATCHes
        # are in flight when Redis goes away.
        gate = threading.Event()
        uploaders = []
        for i in range(6):
            size = 1 * MiB + i * 1000
            data = payload(40 + i, size)
            uploader = ResumableUploader(bases, create(client, bases[i % 2], size), data, i)
            if i % 2:
                uploader.gate = gate
            else:
                uploader.pause = 0.15
            uploaders.append(uploader)
        spare_id = create(client, bases[0], 10)
        threads = [threading.Thread(target=u.run, daemon=True) for u in uploaders]
        for t in threads:
            t.start()
        for u in uploaders:
            if u.gate is not None:
                assert u.halfway.wait(60), u.error

        own_redis.stop()

        # Requests that need a lock: 503 ERR_LOCKER_UNAVAILABLE with Retry-After.
        def locker_unavailable() -> httpx.Response | None:
            resp = client.head(url_on(bases[1], spare_id))
            return resp if resp.status_code == 503 else None

        resp = wait_for(locker_unavailable, 30, what="HEAD answering 503 while Redis is down")
        assert int(resp.headers["retry-after"]) >= 1
        resp = patch(client, url_on(bases[0], spare_id), 0, b"0123456789")
        assert resp.status_code == 503, resp.status_code
        assert error_code(resp) == "ERR_LOCKER_UNAVAILABLE"
        assert "retry-after" in resp.headers
        # Readiness fails on the locker check, on every instance.
        for url in health:
            ready = client.get(url)
            assert ready.status_code == 503, ready.text
            checks = json.loads(ready.text)["checks"]
            assert checks["locker"].startswith("failing"), checks
            assert checks["store"] == "ok", checks
        gate.set()  # the gated uploads go on, into the outage
        time.sleep(2.5)  # longer than the lease: every lease held at the outage is gone

        own_redis.start()  # a fresh, empty Redis on the same port
        for url in health:
            wait_for(partial(_answers_200, client, url), 60, what=f"{url} ready")
        resp = patch(client, url_on(bases[1], spare_id), 0, b"0123456789")
        assert resp.status_code == 204, resp.text

        for t in threads:
            t.join(150)
        for u in uploaders:
            assert u.error is None, f"{u.upload_id}: {u.error!r}\n{cluster.diagnostics()}"
            assert u.done
            got = client.get(url_on(bases[u.index % 2], u.upload_id))
            assert got.status_code == 200
            assert_same_bytes(got.content, u.data)
        codes = {c for u in uploaders for c in u.codes}
        # Only the outage's errors (and interrupted writes: ERR_LOCK_LOST) were seen.
        assert codes <= {"ERR_LOCKER_UNAVAILABLE", "ERR_LOCK_LOST", "HEAD-503"}, codes
        assert codes & {"ERR_LOCKER_UNAVAILABLE", "HEAD-503"}, codes
        assert all(u.codes for u in uploaders if u.gate is not None)
        assert all(u.retry_after for u in uploaders if u.codes)
    for daemon in daemons:
        assert daemon.running(), cluster.diagnostics()


# --- 5. never two writers ---------------------------------------------------------------------


def test_never_two_writers_under_contention(cluster: Cluster, store_kind: str) -> None:
    """Many clients on three instances race for the same three uploads, each PATCHing
    at the offset the server reported.  Two writers at once would duplicate or interleave
    bytes; the final uploads must be exact, and the byte ranges acknowledged with 204
    must never overlap."""
    daemons = cluster.start(3)
    bases = [d.base_url for d in daemons]
    scale = 1 if store_kind == "shared-dir" else 2  # moto is slower
    sizes = [2 * MiB // scale + 11, 2 * MiB // scale - 5, 1 * MiB // scale + 3]
    datas = [payload(70 + i, s) for i, s in enumerate(sizes)]
    with new_client() as client:
        ids = [create(client, bases[i], s) for i, s in enumerate(sizes)]
    acked: list[list[tuple[int, int]]] = [[] for _ in ids]
    outcomes: dict[str, int] = {}
    lock = threading.Lock()
    per_upload = 4

    def hammer(worker: int) -> None:
        # A client that PATCHes at the offset the server reported (the previous 204's
        # Upload-Offset, or a HEAD after a failure), each request on another instance,
        # and backs off (exponentially, with jitter) after a 409 or an interrupted
        # PATCH: every request interrupts the PATCH in flight (tus semantics), so
        # clients that retry at once can keep interrupting each other.
        u = worker % len(ids)
        rng = random.Random(worker)
        data, size = datas[u], sizes[u]
        turn, failures = worker, 0
        offset: int | None = None
        with new_client() as client:
            deadline = time.monotonic() + DEADLINE
            while time.monotonic() < deadline:
                turn += 1
                if offset is None:
                    head = client.head(url_on(bases[turn % 3], ids[u]))
                    if head.status_code != 200:
                        with lock:
                            key = f"HEAD {head.status_code}"
                            outcomes[key] = outcomes.get(key, 0) + 1
                        continue
                    offset = int(head.headers["upload-offset"])
                    turn += 1
                assert offset <= size, f"upload {u} grew past its length: {offset} > {size}"
                if offset == size:
                    return
                chunk = data[offset : offset + rng.randint(32 * KiB, 256 * KiB)]
                resp = patch(client, url_on(bases[turn % 3], ids[u]), offset, chunk)
                code = error_code(resp) if resp.status_code >= 400 else ""
                key = f"PATCH {resp.status_code} {code}".strip()
                with lock:
                    outcomes[key] = outcomes.get(key, 0) + 1
                    if resp.status_code == 204:
                        end = int(resp.headers["upload-offset"])
                        acked[u].append((offset, end))
                if resp.status_code == 204:
                    # 204: the whole body was taken, no more, no less.
                    assert end == offset + len(chunk), (offset, len(chunk), end)
                    offset, failures = end, 0
                    continue
                offset = None
                failures += 1
                time.sleep(rng.uniform(0, 0.02) * 2 ** min(failures, 5))  # up to 0.64 s
            raise AssertionError(f"upload {u} did not finish: {outcomes}, acked {acked[u][-5:]}")

    with ThreadPoolExecutor(per_upload * len(ids)) as pool:
        list(pool.map(hammer, range(per_upload * len(ids))))

    allowed = {"PATCH 204", "PATCH 409 ERR_MISMATCHED_OFFSET", "PATCH 400 ERR_UPLOAD_INTERRUPTED"}
    assert set(outcomes) <= allowed, outcomes
    with new_client() as client:
        for u, upload_id in enumerate(ids):
            got = client.get(url_on(bases[(u + 2) % 3], upload_id))
            assert got.status_code == 200
            assert_same_bytes(got.content, datas[u])
            ranges = sorted(acked[u])
            for (s1, e1), (s2, _) in itertools.pairwise(ranges):
                assert e1 <= s2, f"two acknowledged PATCHes overlap: {(s1, e1)} and {s2}"
            for start, end in ranges:
                assert 0 <= start < end <= sizes[u]
            assert sum(e - s for s, e in ranges) <= sizes[u]
    assert outcomes.get("PATCH 204", 0) >= len(ids)
    # The clients did get in each other's way (otherwise this tested nothing).
    assert outcomes.get("PATCH 409 ERR_MISMATCHED_OFFSET", 0) > 0, outcomes
    for daemon in daemons:
        assert daemon.running(), cluster.diagnostics()
