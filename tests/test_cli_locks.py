"""Lock and worker flags: -locker redis, -redis-*, -workers, -enable-experimental-protocol."""

from __future__ import annotations

import os

import pytest

from tusd_trio.cli.build import build_config
from tusd_trio.cli.flags import UsageError, parse_args
from tusd_trio.config import Config


def config_for(argv: list[str]) -> Config:
    return build_config(parse_args(argv))


def test_redis_locker_flags() -> None:
    config = config_for(
        [
            "-locker=redis",
            "-redis-url=redis://127.0.0.1:6379/2",
            "-redis-lock-ttl=45s",
            "-redis-key-prefix=up:",
        ]
    )
    assert (config.locker, config.redis_url) == ("redis", "redis://127.0.0.1:6379/2")
    assert (config.redis_lock_ttl, config.redis_key_prefix) == (45.0, "up:")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-locker=redis"], "-redis-url"),
        (["-locker=redis", "-redis-url=http://x"], "-redis-url"),
        (["-locker=redis", "-redis-url=redis://x", "-redis-lock-ttl=100ms"], "-redis-lock-ttl"),
        (["-locker=zookeeper"], "-locker"),
        (["-workers=2", "-locker=memory"], "-workers"),
        (["-workers=2", "-s3-bucket=b"], "-workers"),
        (["-workers=0"], "-workers"),
        (["-workers=all"], "-workers"),
        (["-workers=-1"], "-workers"),
    ],
)
def test_invalid_lock_and_worker_flags(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        config_for(argv)


def test_workers_auto_is_one_per_usable_core_with_a_shared_locker() -> None:
    cores = len(os.sched_getaffinity(0))
    assert config_for(["-workers=auto"]).workers == cores  # file store + file locker
    config = config_for(["-workers=auto", "-s3-bucket=b", "-locker=redis", "-redis-url=redis://h"])
    assert config.workers == cores
    # No lock across processes: auto means this one process (no refusal, unlike -workers 2).
    assert config_for(["-workers=auto", "-locker=memory"]).workers == 1
    assert config_for(["-workers=auto", "-s3-bucket=b"]).workers == 1
    # Quotas kept in the process count one process: auto means one unless Redis holds them.
    quotas = ["-auth-jwt-secret=0123456789abcdef0123456789abcdef", "-auth-quota-bytes=1000"]
    assert config_for(["-workers=auto", *quotas]).workers == 1
    redis = ["-locker=redis", "-redis-url=redis://h"]
    assert config_for(["-workers=auto", *quotas, *redis]).workers == cores


def test_workers_with_a_shared_locker_are_accepted() -> None:
    assert config_for(["-workers=3"]).workers == 3  # file store + file locker
    config = config_for(["-workers=2", "-s3-bucket=b", "-locker=redis", "-redis-url=redis://h"])
    assert config.workers == 2


def test_experimental_protocol_is_on_by_default_and_can_be_turned_off() -> None:
    assert config_for([]).enable_experimental_protocol
    assert not config_for(["-enable-experimental-protocol=false"]).enable_experimental_protocol
