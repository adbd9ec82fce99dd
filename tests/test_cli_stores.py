"""Object-store flags: tusd's names, precedence, validation, and a daemon started
from the command line against each real emulator."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import pytest

from tests._support.daemon import Daemon, daemon_env
from tests._support.services import (
    AZURE_ACCOUNT,
    AZURE_KEY,
    S3_ENV,
    Service,
    create_gcs_bucket,
    create_s3_bucket,
)
from tusd_trio.cli.build import build_config
from tusd_trio.cli.flags import UsageError, parse_args
from tusd_trio.stores.config import MiB, store_description


def config_for(argv: list[str]):  # type: ignore[no-untyped-def]
    return build_config(parse_args(argv))


def test_no_object_store_flags_means_the_file_store() -> None:
    config = config_for([])
    assert (config.s3, config.gcs, config.azure) == (None, None, None)
    assert "as directory storage" in store_description(config.store_settings())


def test_s3_flags_map_to_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    config = config_for(
        [
            "-s3-bucket=b",
            "-s3-object-prefix=uploads/",
            "-s3-endpoint=http://127.0.0.1:9000",
            "-s3-part-size=8388608",
            "-s3-min-part-size=5242880",
            "-s3-max-parts=1000",
            "-s3-equal-parts",
            "-s3-max-buffered-parts=4",
            "-s3-concurrent-part-uploads=2",
            "-s3-disable-content-hashes",
            "-s3-disable-ssl",
        ]
    )
    s3 = config.s3
    assert s3 is not None
    assert (s3.bucket, s3.object_prefix, s3.endpoint, s3.region) == (
        "b",
        "uploads/",
        "http://127.0.0.1:9000",
        "eu-west-3",
    )
    assert (s3.part_size, s3.min_part_size, s3.max_parts) == (8 * MiB, 5 * MiB, 1000)
    assert s3.equal_parts and s3.disable_content_hashes and s3.disable_ssl
    assert (s3.max_buffered_parts, s3.concurrent_part_uploads) == (4, 2)
    assert store_description(config.store_settings()).startswith("Using 's3://b/uploads/'")


def test_s3_defaults() -> None:
    s3 = config_for(["-s3-bucket=b"]).s3
    assert s3 is not None
    assert (s3.part_size, s3.min_part_size, s3.max_parts) == (50 * MiB, 5 * MiB, 10_000)
    assert s3.concurrent_part_uploads == 10
    # tusd buffers 20 parts on disk; ours are in memory: 4 parts (200 MiB) per upload at most.
    assert s3.max_buffered_parts == 4
    assert not s3.equal_parts


def test_first_configured_store_wins_as_in_tusd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT", "acct")
    config = config_for(["-azure-storage=c", "-gcs-bucket=g", "-s3-bucket=s"])
    assert config.s3 is not None and config.gcs is None and config.azure is None
    config = config_for(["-azure-storage=c", "-gcs-bucket=g"])
    assert config.gcs is not None and config.azure is None
    config = config_for(["-azure-storage=c"])
    assert config.azure is not None and config.azure.account == "acct"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-s3-bucket=b", "-s3-endpoint=127.0.0.1:9000"], "-s3-endpoint"),
        (["-s3-bucket=b", "-s3-part-size=1000", "-s3-min-part-size=2000"], "-s3-part-size"),
        (["-s3-bucket=b", "-s3-max-parts=0"], "-s3-max-parts"),
        (["-s3-bucket=b", "-s3-concurrent-part-uploads=0"], "-s3-concurrent-part-uploads"),
        (["-gcs-bucket=g", "-gcs-object-prefix=a_b"], "-gcs-object-prefix"),
    ],
)
def test_invalid_object_store_flags(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        config_for(argv)


def test_azure_needs_an_account(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURE_STORAGE_ACCOUNT", raising=False)
    with pytest.raises(UsageError, match="AZURE_STORAGE_ACCOUNT"):
        config_for(["-azure-storage=c"])
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT", "a")
    for flag in ("-azure-container-access-type=public", "-azure-blob-access-tier=frozen"):
        with pytest.raises(UsageError, match=flag.split("=")[0]):
            config_for(["-azure-storage=c", flag])


def test_help_lists_the_object_store_flags(capsys: pytest.CaptureFixture[str]) -> None:
    from tusd_trio.cli.main import main

    assert main(["-help"]) == 0
    out = capsys.readouterr().out
    for flag in (
        "-s3-bucket",
        "-s3-part-size",
        "-s3-max-parts",
        "-s3-equal-parts",
        "-gcs-bucket",
        "-gcs-endpoint",
        "-azure-storage",
        "-azure-endpoint",
    ):
        assert f"  {flag} " in out or f"  {flag}\n" in out


# --- the daemon from the command line, against each real emulator ----------------------------


def _run_daemon(args: list[str], env: dict[str, str], cwd: Path) -> Daemon:
    """The daemon with ``args`` and ``env``, from ``cwd`` (its default ./data there)."""
    daemon = Daemon(
        None,
        args,
        host=None,  # the default host
        env={**daemon_env(), **env},
        cwd=cwd,
        log_dir=cwd,
        merge_stderr=True,
    )
    return daemon.start()


def _stop(daemon: Daemon) -> str:
    daemon.stop(signal.SIGTERM, timeout=20, group=False)
    return daemon.output()


def _upload_and_read_back(url: str) -> None:
    tus = {"Tus-Resumable": "1.0.0"}
    data = os.urandom(200_000)
    r = httpx.post(url, headers={**tus, "Upload-Length": str(len(data))})
    assert r.status_code == 201, r.text
    location = r.headers["location"]
    r = httpx.patch(
        location,
        headers={
            **tus,
            "Upload-Offset": "0",
            "Content-Type": "application/offset+octet-stream",
        },
        content=data,
    )
    assert r.status_code == 204, r.text
    assert httpx.get(location).content == data


def test_daemon_on_s3(s3_server: Service, bucket_name: str, tmp_path: Path) -> None:
    create_s3_bucket(s3_server.endpoint, bucket_name)
    daemon = _run_daemon(
        ["-s3-bucket", bucket_name, "-s3-endpoint", s3_server.endpoint], S3_ENV, tmp_path
    )
    try:
        _upload_and_read_back(daemon.base_url)
    finally:
        out = _stop(daemon)
    assert f"Using 's3://{bucket_name}/' as S3 bucket for storage." in out
    assert f"Endpoint: {s3_server.endpoint}" in out
    assert not (tmp_path / "data").exists()  # nothing on local disk


def test_daemon_on_gcs(gcs_server: Service, bucket_name: str, tmp_path: Path) -> None:
    create_gcs_bucket(gcs_server.endpoint, bucket_name)
    daemon = _run_daemon(
        ["-gcs-bucket", bucket_name, "-gcs-endpoint", gcs_server.endpoint], {}, tmp_path
    )
    try:
        _upload_and_read_back(daemon.base_url)
    finally:
        out = _stop(daemon)
    assert f"Using 'gcs://{bucket_name}/'" in out


def test_daemon_on_azure(azure_server: Service, bucket_name: str, tmp_path: Path) -> None:
    env = {"AZURE_STORAGE_ACCOUNT": AZURE_ACCOUNT, "AZURE_STORAGE_KEY": AZURE_KEY}
    daemon = _run_daemon(
        ["-azure-storage", bucket_name, "-azure-endpoint", azure_server.endpoint], env, tmp_path
    )
    try:
        _upload_and_read_back(daemon.base_url)
    finally:
        out = _stop(daemon)
    assert f"Using Azure endpoint {azure_server.endpoint}" in out
