"""File-system helpers shared by the file store and the hook outbox (standard library only)."""

from __future__ import annotations

import os


def fsync_directory(path: str) -> None:
    """Make the directory's entries durable (a created or renamed file inside it).

    Blocking: call it from a worker thread.
    """
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
