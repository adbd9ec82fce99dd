"""Quotas across two daemons that share one upload directory and one Redis (-locker
redis; the real Redis on 127.0.0.1:6379 with a key prefix of the test's own): real
HS256 tokens, creations and bodies raced over both instances, and space freed on one
instance by DELETE or expiry usable on the other."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tests._support.daemon import Daemon, DaemonFactory, wait_for
from tests._support.redis import redis_cli

TUS = {"Tus-Resumable": "1.0.0"}
OCTET = {"Content-Type": "application/offset+octet-stream"}
SECRET = "z" * 40


def bearer(sub: str = "alice", **claims: Any) -> dict[str, str]:
    payload = {"sub": sub, "exp": int(time.time()) + 600, **claims}
    return {**TUS, "Authorization": f"Bearer {jwt.encode(payload, SECRET, algorithm='HS256')}"}


@pytest.fixture
def prefix() -> Iterator[str]:
    prefix = f"tqs-{uuid.uuid4().hex[:10]}:"
    yield prefix
    for key in redis_cli("--scan", "--pattern", f"{prefix}*").split():
        redis_cli("DEL", key)


def pair(factory: DaemonFactory, root: Path, prefix: str, *extra: str) -> tuple[Daemon, Daemon]:
    """Two started daemons on one upload directory and one Redis."""
    shared = root / "shared"
    args = [
        "-locker",
        "redis",
        "-redis-url",
        "redis://127.0.0.1:6379/0",
        "-redis-key-prefix",
        prefix,
        "-auth-jwt-secret",
        SECRET,
        *extra,
    ]
    daemons = []
    for _ in range(2):
        daemon = Daemon(shared, args, log_dir=root)
        factory.daemons.append(daemon)  # killed at teardown whatever happens
        daemons.append(daemon.start())
    return daemons[0], daemons[1]


def usage(prefix: str, owner: str) -> dict[str, int]:
    fields = redis_cli("HGETALL", f"{prefix}quota:{owner}").split()
    return {name: int(value) for name, value in zip(fields[::2], fields[1::2], strict=True)}


def test_racing_creations_never_exceed_the_quota(
    daemon_factory: DaemonFactory, tmp_path: Path, prefix: str
) -> None:
    a, b = pair(daemon_factory, tmp_path, prefix, "-auth-quota-bytes", "1000")
    targets = [a.base_url, b.base_url] * 15

    def create(url: str) -> int:
        with httpx.Client(timeout=30) as client:
            r = client.post(url, headers={**bearer(), "Upload-Length": "100"})
            return r.status_code

    with ThreadPoolExecutor(max_workers=12) as pool:
        statuses = list(pool.map(create, targets))
    assert statuses.count(201) == 10
    assert statuses.count(413) == 20
    assert usage(prefix, "jwt:alice") == {"bytes": 1000, "uploads": 10}
    infos = [p for p in (tmp_path / "shared").iterdir() if p.suffix == ".info"]
    assert len(infos) == 10


def test_racing_deferred_bodies_stop_at_the_quota(
    daemon_factory: DaemonFactory, tmp_path: Path, prefix: str
) -> None:
    a, b = pair(daemon_factory, tmp_path, prefix, "-auth-quota-bytes", "1000")
    with httpx.Client(timeout=30) as client:
        locations = []
        for daemon in (a, b):
            r = client.post(daemon.base_url, headers={**bearer(), "Upload-Defer-Length": "1"})
            assert r.status_code == 201
            locations.append(r.headers["location"])

    def send(location: str) -> int:
        with httpx.Client(timeout=30) as client:
            headers = {**bearer(), **OCTET, "Upload-Offset": "0"}
            return client.patch(location, headers=headers, content=b"x" * 700).status_code

    with ThreadPoolExecutor(max_workers=2) as pool:
        statuses = sorted(pool.map(send, locations))
    assert statuses == [204, 413]
    with httpx.Client(timeout=30) as client:
        offsets = [
            int(client.head(loc, headers=bearer()).headers["upload-offset"]) for loc in locations
        ]
    assert sorted(offsets) == [300, 700]
    assert usage(prefix, "jwt:alice") == {"bytes": 1000, "uploads": 2}


def test_delete_on_one_instance_frees_space_for_the_other(
    daemon_factory: DaemonFactory, tmp_path: Path, prefix: str
) -> None:
    a, b = pair(daemon_factory, tmp_path, prefix, "-auth-quota-bytes", "1000")
    with httpx.Client(timeout=30) as client:
        r = client.post(a.base_url, headers={**bearer(), "Upload-Length": "1000"})
        assert r.status_code == 201
        assert r.headers["tusd-trio-quota"] == "bytes=1000, bytes-limit=1000, uploads=1"
        assert (
            client.post(b.base_url, headers={**bearer(), "Upload-Length": "1"}).status_code == 413
        )
        assert client.delete(r.headers["location"], headers=bearer()).status_code == 204
        assert usage(prefix, "jwt:alice") == {}
        r = client.post(b.base_url, headers={**bearer(), "Upload-Length": "1000"})
        assert r.status_code == 201


def test_expiry_frees_space_for_every_instance(
    daemon_factory: DaemonFactory, tmp_path: Path, prefix: str
) -> None:
    a, b = pair(
        daemon_factory,
        tmp_path,
        prefix,
        "-auth-quota-bytes",
        "1000",
        "-expiration",
        "1s",
        "-expiration-interval",
        "200ms",
    )
    with httpx.Client(timeout=30) as client:
        r = client.post(a.base_url, headers={**bearer(), "Upload-Length": "1000"})
        assert r.status_code == 201
        assert r.headers["tusd-trio-quota"].startswith("bytes=1000,")
        # Left unfinished, it expires; a janitor removes it and frees the quota.
        wait_for(
            lambda: usage(prefix, "jwt:alice") == {},
            timeout=30,
            what="the expired upload's quota to be freed",
        )
        r = client.post(b.base_url, headers={**bearer(), "Upload-Length": "1000"})
        assert r.status_code == 201
