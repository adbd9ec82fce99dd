"""The start-up lines: tusd's words and order (see also tests/test_log_session.py)."""

from __future__ import annotations

import os

from tusd_trio._startup import startup_lines
from tusd_trio.config import Config
from tusd_trio.hooks.model import parse_enabled_events
from tusd_trio.protocol.config import ProtocolConfig


def test_tusd_order_with_a_hook_endpoint() -> None:
    config = Config(
        host="0.0.0.0",
        port=8080,
        hooks_http="http://hooks.internal:8000/tus",
        protocol=ProtocolConfig(metrics_path="/metrics"),
    )
    assert startup_lines(config, extensions="creation,termination") == [
        "Using 'http://hooks.internal:8000/tus' as the endpoint for hooks",
        "Enabled hook events: pre-create, post-create, post-receive, post-terminate, post-finish",
        "Supported tus extensions: creation,termination",
        "Using 0.0.0.0:8080 as address to listen.",
        "Using /files/ as the base path.",
        "Using /metrics as the metrics path.",
    ]


def test_every_hook_backend_and_all_events() -> None:
    config = Config(
        hooks_dir="hooks",
        hooks_http="https://user:s3cret@hooks.internal/tus",
        hooks_grpc="grpc.internal:50051",
        hooks_plugin="mypkg.hooks:Handler",
        redis_url="redis://:r3dispw@redis.internal:6379/2",
        hooks_redis_stream="uploads",
        hooks_enabled_events=parse_enabled_events(""),
    )
    lines = startup_lines(config, extensions="")
    assert lines[:6] == [
        f"Using '{os.path.abspath('hooks')}' for hooks",
        "Using 'https://user:[redacted]@hooks.internal/tus' as the endpoint for hooks",
        "Using 'grpc.internal:50051' as the endpoint for gRPC hooks",
        "Using 'mypkg.hooks:Handler' to load plugin for hooks",
        "Adding notification hook events to the Redis stream 'uploads' at "
        "redis://redis.internal:6379/2",
        "Enabled hook events: pre-create, post-create, post-receive, pre-terminate,"
        " post-terminate, post-finish, pre-finish",
    ]
    assert "s3cret" not in "\n".join(lines)
    assert "r3dispw" not in "\n".join(lines)


def test_unix_socket_and_no_hooks_no_metrics() -> None:
    config = Config(unix_sock="/run/tusd.sock", protocol=ProtocolConfig(base_path="/up/"))
    assert startup_lines(config, extensions="creation") == [
        "Supported tus extensions: creation",
        "Using /run/tusd.sock as socket to listen.",
        "Using /up/ as the base path.",
    ]
