"""Real object-store servers for the tests: moto (S3), gcp-storage-emulator (GCS)
and Azurite (Azure Blob), each on 127.0.0.1.

`.ci/run` starts all three once and exports their endpoints in
``TUSD_TRIO_TEST_S3_ENDPOINT``, ``TUSD_TRIO_TEST_GCS_ENDPOINT`` and
``TUSD_TRIO_TEST_AZURE_ENDPOINT``; without those variables the session
fixtures in ``tests/conftest.py`` start their own on free ports and stop them at
the end.  Every test gets a fresh bucket or container of its own.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
AZURITE = ROOT / "tests" / "services" / "node" / "node_modules" / ".bin" / "azurite-blob"

#: Azurite's well-known development account (public, documented by Microsoft).
AZURE_ACCOUNT = "devstoreaccount1"
AZURE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
#: Dummy credentials: moto accepts any.
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


@dataclass(frozen=True)
class Service:
    name: str
    endpoint: str  # scheme://127.0.0.1:port (for Azure: …/devstoreaccount1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _bin(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed (scripts/test installs it)")
    return found


def _wait_http(url: str, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return  # it answered
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def _command(kind: str, port: int, workdir: Path) -> tuple[list[str], dict[str, str], str]:
    env = dict(os.environ)
    if kind == "s3":
        env.update(S3_ENV)
        return (
            [_bin("moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            env,
            f"http://127.0.0.1:{port}/moto-api/",
        )
    if kind == "gcs":
        return (
            [
                _bin("gcp-storage-emulator"),
                "start",
                "-H",
                "127.0.0.1",
                "--port",
                str(port),
                "--in-memory",
            ],
            env,
            f"http://127.0.0.1:{port}/",
        )
    if kind == "azure":
        if not AZURITE.exists():
            raise RuntimeError(
                f"{AZURITE} is missing: run `npm ci` in tests/services/node (scripts/test does)"
            )
        return (
            [
                str(AZURITE),
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                str(port),
                "--inMemoryPersistence",
                "--skipApiVersionCheck",
                "--disableTelemetry",
                "--silent",
            ],
            env,
            f"http://127.0.0.1:{port}/{AZURE_ACCOUNT}?comp=list",
        )
    raise ValueError(kind)


def _endpoint(kind: str, port: int) -> str:
    if kind == "azure":
        return f"http://127.0.0.1:{port}/{AZURE_ACCOUNT}"
    return f"http://127.0.0.1:{port}"


@contextmanager
def running(kind: str, workdir: Path) -> Iterator[Service]:
    """Start one server of ``kind`` ("s3", "gcs", "azure"); stop it on exit."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    command, env, probe = _command(kind, port, workdir)
    log = open(workdir / f"{kind}.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        _wait_http(probe, process)
        yield Service(kind, _endpoint(kind, port))
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


ENV_NAMES = {
    "s3": "TUSD_TRIO_TEST_S3_ENDPOINT",
    "gcs": "TUSD_TRIO_TEST_GCS_ENDPOINT",
    "azure": "TUSD_TRIO_TEST_AZURE_ENDPOINT",
}


def azure_connection_string(endpoint: str) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURE_ACCOUNT};AccountKey={AZURE_KEY};"
        f"BlobEndpoint={endpoint};"
    )


def _s3_client(endpoint: str) -> Any:
    import boto3
    from botocore.config import Config as BotoConfig

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=BotoConfig(s3={"addressing_style": "path"}),
    )


def _gcs_client(endpoint: str) -> Any:
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage  # type: ignore[import-untyped]

    return storage.Client(
        project="test",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options=ClientOptions(api_endpoint=endpoint),
    )


def create_s3_bucket(endpoint: str, bucket: str) -> None:
    client = _s3_client(endpoint)
    client.create_bucket(Bucket=bucket)
    client.close()


def create_gcs_bucket(endpoint: str, bucket: str) -> None:
    client = _gcs_client(endpoint)
    client.create_bucket(bucket)
    client.close()


def stored_object_names(kind: str, endpoint: str, bucket: str) -> list[str]:
    """Everything in a bucket or container, as the service itself lists it: objects and
    unfinished multipart uploads (S3), blobs with only uncommitted blocks (Azure)."""
    if kind == "s3":
        client = _s3_client(endpoint)
        try:
            names = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
            uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
            names += [f"{u['Key']} (multipart upload {u['UploadId']})" for u in uploads]
        finally:
            client.close()
        return sorted(names)
    if kind == "gcs":
        gcs = _gcs_client(endpoint)
        try:
            return sorted(blob.name for blob in gcs.list_blobs(bucket))
        finally:
            gcs.close()
    if kind == "azure":
        from azure.storage.blob import ContainerClient

        container = ContainerClient.from_connection_string(
            azure_connection_string(endpoint), bucket
        )
        try:
            blobs = container.list_blobs(include=["uncommittedblobs"])
            return sorted(blob.name for blob in blobs)
        finally:
            container.close()
    raise ValueError(f"no object store named {kind!r}")


async def everything_stored(store: Any, request: Any) -> list[str]:
    """Every name a store under test holds: a memory store's uploads, the files under a
    file store's directory, or the raw listing of the test's bucket (``request`` is the
    pytest request, which knows the test's service and bucket)."""
    import trio

    if store.name == "memorystore":
        return sorted(await store.list_ids())
    if store.name == "filestore":
        return sorted(
            os.path.relpath(os.path.join(root, name), store.directory)
            for root, _dirs, files in os.walk(store.directory)
            for name in files
        )
    kind = {"s3store": "s3", "gcsstore": "gcs", "azurestore": "azure"}[store.name]
    endpoint = request.getfixturevalue(f"{kind}_server").endpoint
    bucket = request.getfixturevalue("bucket_name")
    return await trio.to_thread.run_sync(stored_object_names, kind, endpoint, bucket)


def main() -> None:
    """``python -m tests._support.services DIR``: start all three servers, print
    ``export NAME=endpoint`` lines, then wait until killed (used by .ci/run)."""
    workdir = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/tusd-trio-services")
    with (
        running("s3", workdir / "s3") as s3,
        running("gcs", workdir / "gcs") as gcs,
        running("azure", workdir / "azure") as azure,
    ):
        for service in (s3, gcs, azure):
            print(f"export {ENV_NAMES[service.name]}={service.endpoint}", flush=True)
        # Blocked only now: the servers started above must not inherit the mask.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        signal.sigwait({signal.SIGTERM, signal.SIGINT})


if __name__ == "__main__":
    main()
