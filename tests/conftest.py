import os

import hypothesis

hypothesis.settings.register_profile("ci", deadline=None, max_examples=200)
hypothesis.settings.register_profile("dev", deadline=None, max_examples=50)
hypothesis.settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev")
)


# --- real object-store servers (see tests/_support/services.py) --------------------------

import uuid  # noqa: E402
from collections.abc import AsyncIterator, Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import trio  # noqa: E402

from tests._support.daemon import DaemonFactory  # noqa: E402
from tests._support.redis import RedisServers  # noqa: E402
from tests._support.redis_stream import fresh_stream  # noqa: E402
from tests._support.server import Running, ServerFactory, server_pool  # noqa: E402
from tests._support.services import (  # noqa: E402
    AZURE_ACCOUNT,
    AZURE_KEY,
    ENV_NAMES,
    S3_ENV,
    Service,
    create_gcs_bucket,
    create_s3_bucket,
    running,
)


def _service(kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    given = os.environ.get(ENV_NAMES[kind])
    if given:
        yield Service(kind, given)
        return
    with running(kind, Path(tmp_path_factory.mktemp(f"{kind}-server"))) as service:
        yield service


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A real moto S3 server; its endpoint is ``s3_server.endpoint``."""
    yield from _service("s3", tmp_path_factory)


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A real gcp-storage-emulator server."""
    yield from _service("gcs", tmp_path_factory)


@pytest.fixture(scope="session")
def azure_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A real Azurite blob server; endpoint ends with /devstoreaccount1."""
    yield from _service("azure", tmp_path_factory)


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Dummy AWS credentials in the environment (moto accepts any)."""
    for name, value in S3_ENV.items():
        monkeypatch.setenv(name, value)
    return dict(S3_ENV)


@pytest.fixture
def azure_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Azurite's account and key in AZURE_STORAGE_ACCOUNT / AZURE_STORAGE_KEY."""
    env = {"AZURE_STORAGE_ACCOUNT": AZURE_ACCOUNT, "AZURE_STORAGE_KEY": AZURE_KEY}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def bucket_name() -> str:
    """A fresh bucket/container name for one test (valid on S3, GCS and Azure)."""
    return "t" + uuid.uuid4().hex[:20]


# --- object stores on those servers, one fresh bucket/container per test ---------------------


@pytest.fixture
def s3_store(s3_server: Service, s3_env: dict[str, str], bucket_name: str) -> Iterator[object]:
    """An S3Store on a fresh bucket of the moto server (default tusd part sizes)."""
    from tusd_trio.stores.config import S3Config
    from tusd_trio.stores.s3 import S3Store

    create_s3_bucket(s3_server.endpoint, bucket_name)
    yield S3Store(S3Config(bucket=bucket_name, endpoint=s3_server.endpoint))


@pytest.fixture
def gcs_store(gcs_server: Service, bucket_name: str) -> Iterator[object]:
    """A GCSStore on a fresh bucket of the emulator."""
    from tusd_trio.stores.config import GCSConfig
    from tusd_trio.stores.gcs import GCSStore

    create_gcs_bucket(gcs_server.endpoint, bucket_name)
    yield GCSStore(GCSConfig(bucket=bucket_name, endpoint=gcs_server.endpoint))


@pytest.fixture
def azure_store(
    azure_server: Service, azure_env: dict[str, str], bucket_name: str
) -> Iterator[object]:
    """An AzureStore on a fresh container of Azurite (the store creates the container)."""
    from tusd_trio.stores.azure import AzureStore
    from tusd_trio.stores.config import AzureConfig

    yield AzureStore(
        AzureConfig(
            container=bucket_name,
            account=AZURE_ACCOUNT,
            key=AZURE_KEY,
            endpoint=azure_server.endpoint,
        )
    )


# --- a tusd-trio server in the test's Trio loop (tests/_support/server.py) ------------------


@pytest.fixture
async def make_server(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[ServerFactory]:
    """``await make_server(protocol={...}, store=..., **config)`` starts a server on a free
    port (upload directory ``tmp_path/data``); all are shut down after the test."""
    async with server_pool(nursery, tmp_path / "data") as pool:
        yield pool.start


@pytest.fixture
async def srv(make_server: ServerFactory) -> Running:
    """A server with the default configuration."""
    return await make_server()


# --- tusd-trio daemon subprocesses (tests/_support/daemon.py) ------------------------------


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[DaemonFactory]:
    """Makes daemons under ``tmp_path`` (``.new(...)``, or ``.start(*args)`` for a started
    one) and kills every one of them after the test, whatever it did."""
    factory = DaemonFactory(tmp_path)
    try:
        yield factory
    finally:
        factory.kill_all()


@pytest.fixture
def redis_servers(tmp_path: Path) -> Iterator[RedisServers]:
    """redis-server processes of the test's own (stopped, restarted, killed at will)."""
    servers = RedisServers(tmp_path)
    yield servers
    servers.close()


@pytest.fixture
async def stream() -> AsyncIterator[str]:
    """A stream name on the shared Redis, deleted after the test."""
    async with fresh_stream() as name:
        yield name
