"""Fixtures for the locker tests: both lockers, and real foreign processes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tusd_trio.lockers.file import FileLocker
from tusd_trio.lockers.memory import MemoryLocker


@pytest.fixture(params=["memory", "file"])
def locker(request: pytest.FixtureRequest, tmp_path: Path) -> MemoryLocker | FileLocker:
    if request.param == "memory":
        return MemoryLocker()
    return FileLocker(tmp_path, holder_poll_interval=0.01, acquirer_poll_interval=0.01)


HOLD_SCRIPT = """
import os, sys, time
path = sys.argv[1]
with open(path + ".tmp", "w") as handle:
    handle.write(f"{os.getpid()}\\n")
os.link(path + ".tmp", path)
os.unlink(path + ".tmp")
print("ready", flush=True)
time.sleep(120)
"""


@pytest.fixture
def foreign_holder() -> Iterator[Callable[[Path], subprocess.Popen[str]]]:
    """Start another live process that holds a lock file, tusd style, and sleeps."""
    started: list[subprocess.Popen[str]] = []

    def start(lock_path: Path) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", HOLD_SCRIPT, str(lock_path)],
            stdout=subprocess.PIPE,
            text=True,
        )
        started.append(proc)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        return proc

    yield start
    for proc in started:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.fixture
def dead_pid() -> int:
    """The PID of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid
