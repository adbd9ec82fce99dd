"""Lockers: ``memory`` (one process) and ``file`` (processes on one host)."""

from .base import Locker as Locker
from .file import FileLocker as FileLocker
from .memory import MemoryLocker as MemoryLocker

__all__ = ["FileLocker", "Locker", "MemoryLocker"]
