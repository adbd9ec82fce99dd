"""Config: immutable, checked when made (so embedders get the command line's checks),
and derived from without being changed."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from tusd_trio.auth import AuthConfig
from tusd_trio.cli.build import build_config
from tusd_trio.cli.flags import UsageError, parse_args
from tusd_trio.config import Config, ConfigError
from tusd_trio.protocol.config import CorsConfig, ProtocolConfig, StoreCapabilities
from tusd_trio.server import Server
from tusd_trio.stores.config import AzureConfig, GCSConfig, S3Config
from tusd_trio.stores.memory import MemoryStore


def test_config_is_frozen() -> None:
    config = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.port = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.protocol = ProtocolConfig()  # type: ignore[misc]


def test_values_are_normalised_when_made() -> None:
    config = Config(network_timeout=9.0, hooks_enabled_events=["post-finish"])
    assert config.idle_timeout == 9.0
    assert config.hooks_enabled_events == ("post-finish",)
    assert Config(idle_timeout=3.0).idle_timeout == 3.0


@pytest.mark.parametrize(
    ("changes", "flag"),
    [
        ({"port": 70000}, "-port"),
        ({"port": -1}, "-port"),
        ({"tls_mode": "ssl3"}, "-tls-mode"),
        ({"log_format": "xml"}, "-log-format"),
        ({"network_timeout": 0.0}, "-network-timeout"),
        ({"locker": "zookeeper"}, "-locker"),
        ({"locker": "redis"}, "-redis-url"),
        ({"locker": "redis", "redis_url": "redis://h", "redis_lock_ttl": 0.5}, "-redis-lock-ttl"),
        ({"locker": "redis", "redis_url": "http://h"}, "-redis-url"),
        ({"protocol": ProtocolConfig(cors=CorsConfig(allow_origin="["))}, "-cors-allow-origin"),
        ({"protocol": ProtocolConfig(checksum_algorithms=("md4",))}, "-checksum-algorithms"),
        ({"hooks_enabled_events": ("pre-create", "on-lunch")}, "-hooks-enabled-events"),
        ({"hooks_http": "ftp://hooks"}, "-hooks-http"),
        ({"hooks_grpc_client_tls_key": "/k.pem"}, "-hooks-grpc-client-tls-key"),
        ({"metrics_listen": "9180"}, "-metrics-listen"),
        ({"s3": S3Config(bucket="b", endpoint="minio:9000")}, "-s3-endpoint"),
        ({"s3": S3Config(bucket="b", part_size=1, min_part_size=2)}, "-s3-part-size"),
        ({"s3": S3Config(bucket="b", max_parts=0)}, "-s3-max-parts"),
        ({"s3": S3Config(bucket="b", concurrent_part_uploads=0)}, "-s3-concurrent-part-uploads"),
        ({"gcs": GCSConfig(bucket="g", object_prefix="a_b")}, "-gcs-object-prefix"),
        ({"azure": AzureConfig(container="c")}, "AZURE_STORAGE_ACCOUNT"),
        (
            {"azure": AzureConfig(container="c", account="a", container_access_type="x")},
            "-azure-container-access-type",
        ),
        (
            {"azure": AzureConfig(container="c", account="a", blob_access_tier="frozen")},
            "-azure-blob-access-tier",
        ),
        ({"workers": 0}, "-workers"),
        ({"workers": 2, "locker": "memory"}, "-workers"),
        ({"workers": 2, "s3": S3Config(bucket="b")}, "-workers"),
    ],
)
def test_an_embedder_gets_the_command_line_checks(changes: dict[str, object], flag: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(flag)):
        Config(**changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("argv", "changes"),
    [
        (["-workers=0"], {"workers": 0}),
        (["-log-format=xml"], {"log_format": "xml"}),
        (["-network-timeout=0s"], {"network_timeout": 0.0}),
        (["-metrics-listen=9180"], {"metrics_listen": "9180"}),
    ],
)
def test_the_cli_reports_the_config_check_word_for_word(
    argv: list[str], changes: dict[str, object]
) -> None:
    with pytest.raises(ConfigError) as from_config:
        Config(**changes)  # type: ignore[arg-type]
    with pytest.raises(UsageError) as from_cli:
        build_config(parse_args(argv))
    assert str(from_cli.value) == str(from_config.value)


def test_a_valid_object_store_configuration_is_accepted() -> None:
    Config(
        s3=S3Config(bucket="b", endpoint="http://127.0.0.1:9000"),
        locker="redis",
        redis_url="redis://127.0.0.1:6379/0",
    )
    Config(azure=AzureConfig(container="c", account="a", blob_access_tier="Hot"))
    Config(workers=4, locker="file")


def test_check_files_reads_what_the_settings_name(tmp_path: Path) -> None:
    Config().check_files()
    with pytest.raises(ConfigError, match="-hooks-dir"):
        Config(hooks_dir=str(tmp_path / "missing")).check_files()
    with pytest.raises(ConfigError, match="-hooks-plugin"):
        Config(hooks_plugin="no_such_module_here:hooks").check_files()
    with pytest.raises(ConfigError, match="-hooks-grpc-server-tls-certificate"):
        Config(
            hooks_grpc_secure=True, hooks_grpc_server_tls_certificate=str(tmp_path / "ca.pem")
        ).check_files()
    with pytest.raises(ConfigError, match="-auth-"):
        Config(auth=AuthConfig(api_keys_file=str(tmp_path / "keys"))).check_files()
    short = tmp_path / "token"
    short.write_text("too short\n")
    with pytest.raises(ConfigError, match="-metrics-token-file"):
        Config(metrics_token_file=str(short)).check_files()


def test_served_protocol_derives_a_new_protocol() -> None:
    config = Config(
        auth=AuthConfig(api_keys_file="keys", api_key_header="X-Api-Key"),
        protocol=ProtocolConfig(metrics_path="/metrics"),
        metrics_listen="127.0.0.1:9180",
    )
    before = config.protocol
    capabilities = StoreCapabilities(terminate=False, serve_incomplete=False)
    served = config.served_protocol(capabilities)
    assert served.capabilities == capabilities
    assert "termination" not in served.extensions()
    assert served.cors is not None and served.cors.allow_headers.endswith(", X-Api-Key")
    assert served.metrics_path == ""
    # Derived, not changed: the configuration is as it was made.
    assert config.protocol is before
    assert config.protocol.metrics_path == "/metrics"
    # Already allowed: not added twice.
    again = dataclasses.replace(config, protocol=served).served_protocol(capabilities)
    assert again.cors is not None and again.cors.allow_headers.count("X-Api-Key") == 1


def test_served_protocol_without_api_keys_or_metrics_listener_keeps_the_settings() -> None:
    config = Config(protocol=ProtocolConfig(metrics_path="/metrics"))
    served = config.served_protocol(StoreCapabilities())
    assert served == config.protocol
    assert (
        Config(protocol=ProtocolConfig(cors=None)).served_protocol(StoreCapabilities()).cors is None
    )


def test_for_worker_is_a_new_config() -> None:
    config = Config(workers=3, unix_sock="/run/t.sock")
    worker = config.for_worker(7, "/tmp/metrics")
    assert (worker.listen_fd, worker.workers, worker.metrics_dir, worker.unix_sock) == (
        7,
        1,
        "/tmp/metrics",
        "",
    )
    assert (config.listen_fd, config.workers, config.unix_sock) == (-1, 3, "/run/t.sock")


async def test_the_server_leaves_the_callers_config_as_it_was() -> None:
    config = Config(
        auth=AuthConfig(signing_secret="s" * 32),
        protocol=ProtocolConfig(metrics_path="/metrics"),
        metrics_listen="127.0.0.1:0",
    )
    before = dataclasses.replace(config)
    store = MemoryStore()
    server = Server(config, store=store)
    assert config == before
    assert server.runtime.protocol.capabilities == store.capabilities
    # With -metrics-listen the upload port serves no metrics; the listener keeps the path.
    assert server.runtime.protocol.metrics_path == ""
    assert server.config.protocol.metrics_path == "/metrics"
