"""The Redis every test may share (127.0.0.1:6379, started by CI), and redis-cli against it.

Tests keep apart on it by key prefix or stream name; tests that stop or restart Redis
start servers of their own.
"""

from __future__ import annotations

import subprocess

SHARED_REDIS = "redis://127.0.0.1:6379/0"


def redis_cli(*args: str) -> str:
    """Run one redis-cli command against the shared Redis; its output, stripped."""
    done = subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", "6379", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()
