"""Fixtures shared by the store tests: both stores, and a real, tiny tmpfs."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from tusd_trio.stores.base import Store
from tusd_trio.stores.file import FileStore
from tusd_trio.stores.memory import MemoryStore


@pytest.fixture(params=["memory", "file", "s3", "gcs", "azure"])
def store(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> Store:
    """Every store, the object stores on their real servers (tests/_support/services.py)."""
    if request.param == "memory":
        return MemoryStore()
    if request.param == "file":
        return FileStore(os.path.join(tmp_path, "uploads"))
    found: Store = request.getfixturevalue(f"{request.param}_store")
    return found


@pytest.fixture
def umask0() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def _try(cmd: list[str]) -> bool:
    return subprocess.run(cmd, capture_output=True).returncode == 0


@pytest.fixture
def small_fs(tmp_path: os.PathLike[str]) -> Iterator[str]:
    """A real 1 MiB file system, so ENOSPC happens for real.

    tmpfs first; a loop-mounted ext2 image if tmpfs cannot be mounted.
    """
    mountpoint = os.path.join(tmp_path, "small")
    os.mkdir(mountpoint)
    if _try(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mountpoint]):
        try:
            yield mountpoint
        finally:
            subprocess.run(["umount", "-l", mountpoint], check=False)
        return
    image = os.path.join(tmp_path, "small.img")
    with open(image, "wb") as handle:
        handle.truncate(2 * 1024 * 1024)
    if _try(["mkfs.ext2", "-q", "-F", image]) and _try(["mount", "-o", "loop", image, mountpoint]):
        try:
            yield mountpoint
        finally:
            subprocess.run(["umount", "-l", mountpoint], check=False)
        return
    # A skip would count as nothing tested: fail, saying what this machine lacks.
    pytest.fail("cannot mount a small file system (tmpfs and loop device both failed); run as root")
