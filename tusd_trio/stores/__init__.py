"""Stores: ``memory`` (tests, embedding) and ``file`` (tusd's on-disk layout)."""

from .base import ChunkWriter as ChunkWriter, Store as Store
from .file import FileStore as FileStore
from .memory import MemoryStore as MemoryStore

__all__ = ["ChunkWriter", "FileStore", "MemoryStore", "Store"]
