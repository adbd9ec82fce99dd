"""Fixtures for the scale-out tests: several real daemon subprocesses that share
one store (a moto S3 bucket or one upload directory) and one Redis.

The daemons are :class:`tests._support.daemon.Daemon`; the shared Redis is the one on
127.0.0.1:6379 (each test uses a key prefix of its own and never flushes anything), and
the tests that stop Redis start a ``redis-server`` of their own (:class:`RedisServer`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._support.redis import SHARED_REDIS
from tests._support.services import S3_ENV, Service, create_s3_bucket

from .scaleout_support import Cluster, MiB, RedisServer


@pytest.fixture
def scaleout_root(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    return tmp_path_factory.mktemp(re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name)[:60])


@pytest.fixture(params=["s3", "shared-dir"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _store_args(
    kind: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, ...]:
    if kind == "shared-dir":
        return ()
    server: Service = request.getfixturevalue("s3_server")
    bucket: str = request.getfixturevalue("bucket_name")
    for name, value in S3_ENV.items():
        monkeypatch.setenv(name, value)  # the daemons inherit the environment
    create_s3_bucket(server.endpoint, bucket)
    return (
        "-s3-bucket",
        bucket,
        "-s3-endpoint",
        server.endpoint,
        "-s3-part-size",
        str(5 * MiB),
        "-s3-min-part-size",
        str(5 * MiB),
    )


@pytest.fixture
def cluster(
    store_kind: str,
    scaleout_root: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Cluster]:
    """A (not yet started) cluster on the shared Redis and the parametrised store."""
    c = Cluster(scaleout_root, SHARED_REDIS, _store_args(store_kind, request, monkeypatch))
    try:
        yield c
    finally:
        c.kill_all()


@pytest.fixture
def own_redis(scaleout_root: Path) -> Iterator[RedisServer]:
    """A started redis-server of this test's own, stopped at teardown."""
    server = RedisServer(scaleout_root / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_redis_cluster(
    store_kind: str,
    own_redis: RedisServer,
    scaleout_root: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Cluster]:
    """A (not yet started) cluster on this test's own Redis."""
    c = Cluster(scaleout_root, own_redis.url, _store_args(store_kind, request, monkeypatch))
    try:
        yield c
    finally:
        c.kill_all()
