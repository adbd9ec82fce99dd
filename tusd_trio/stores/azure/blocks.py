"""Blocks of the Azure store: tusd's block IDs, the offset rule, and the sizes a body
(or a concatenation) is cut into within Azure's limits."""

from __future__ import annotations

import base64
import struct
import time

from ..config import MiB

#: Azure: committed blocks per blob.
MAX_BLOCKS = 50_000
#: Azure: largest block (service version 2019-12-12 and later).
MAX_STAGE_BLOCK = 4000 * MiB
#: Index of tusd's sentinel block (math.MaxInt32).
SENTINEL_INDEX = 2**31 - 1
#: Default size of the blocks a PATCH body is cut into.
DEFAULT_BLOCK_SIZE = 8 * MiB
#: Largest block size chosen for big uploads (bounds the memory per upload).
MAX_ADAPTIVE_BLOCK = 100 * MiB
#: Blocks planned for the data of an upload of known size; the rest of the 50,000
#: are left for the partly filled blocks that end PATCH requests.
DATA_BLOCK_BUDGET = 45_000
#: Largest upload accepted (45,000 blocks of 100 MiB, about 4.29 TiB).
MAX_UPLOAD_SIZE = DATA_BLOCK_BUDGET * MAX_ADAPTIVE_BLOCK
#: Pieces copied server-side (Put Block From URL) are at least this large.
SERVER_COPY_PIECE = 256 * MiB


def block_id(index: int) -> str:
    """tusd's block ID: base64 of the index as a little-endian uint32."""
    return base64.b64encode(struct.pack("<I", index)).decode("ascii")


SENTINEL_ID = block_id(SENTINEL_INDEX)


def block_index(name: str) -> int | None:
    """The index of a tusd block ID, or None for a foreign one."""
    try:
        raw = base64.b64decode(name, validate=True)
    except ValueError:
        return None
    if len(raw) != 4:
        return None
    index: int = struct.unpack("<I", raw)[0]
    return index


def offset_of(
    committed: list[tuple[str, int]], uncommitted: list[tuple[str, int]]
) -> tuple[int, list[int]]:
    """tusd's offset rule, and the data block indices in order."""
    if not uncommitted:
        return sum(size for _, size in committed), []
    offset = 0
    indices: list[int] = []
    for name, size in uncommitted:
        if name == SENTINEL_ID:
            continue
        offset += size
        index = block_index(name)
        if index is not None:
            indices.append(index)
    indices.sort()
    return offset, indices


def block_size_for(size: int | None, block_size: int, max_block_size: int) -> int:
    """The block size for an upload of ``size`` bytes (None: deferred): the default,
    larger when the size would need more than 45,000 blocks (whole MiB, at most
    ``max_block_size``)."""
    if size is None or size <= block_size * DATA_BLOCK_BUDGET:
        return block_size
    wanted = -(-size // DATA_BLOCK_BUDGET)
    wanted = -(-wanted // MiB) * MiB
    return min(max(block_size, wanted), max_block_size)


def concat_piece_size(total: int, base: int, cap: int) -> int:
    """The size of the blocks a concatenation of ``total`` bytes is copied in: at
    least ``base``, large enough for the block budget, at most ``cap``."""
    return min(max(base, -(-total // DATA_BLOCK_BUDGET)), cap)


class BlockIndexHints:
    """Per upload: the offset and next block index that ``get`` learned, so that the
    ``open_writer`` right after it (same locked request) needs no second block list.
    A hint is trusted for ``ttl`` seconds and only for the same offset."""

    def __init__(self, *, ttl: float = 30.0, most: int = 4096) -> None:
        self._ttl = ttl
        self._most = most
        #: upload ID -> (offset, next block index, time learned)
        self._hints: dict[str, tuple[int, int, float]] = {}

    def remember(self, upload_id: str, offset: int, next_index: int) -> None:
        if len(self._hints) >= self._most:
            self._hints.pop(next(iter(self._hints)))
        self._hints[upload_id] = (offset, next_index, time.monotonic())

    def next_index(self, upload_id: str, offset: int) -> int | None:
        """The next block index, if a fresh hint for this offset is known."""
        hint = self._hints.get(upload_id)
        if hint is None or hint[0] != offset or time.monotonic() - hint[2] >= self._ttl:
            return None
        return hint[1]

    def forget(self, upload_id: str) -> None:
        self._hints.pop(upload_id, None)

    def clear(self) -> None:
        self._hints.clear()
