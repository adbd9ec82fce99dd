"""Small helpers for the store tests."""

from __future__ import annotations

from tusd_trio.protocol.info import UploadInfo
from tusd_trio.stores.base import Store


def new_info(upload_id: str, size: int = 0, **fields: object) -> UploadInfo:
    return UploadInfo(id=upload_id, size=size, **fields)  # type: ignore[arg-type]


async def write_chunk(store: Store, info: UploadInfo, data: bytes, *, staged: bool = False) -> int:
    writer = await store.open_writer(info, staged=staged)
    try:
        await writer.write(data)
        await writer.commit()
        return writer.written
    finally:
        await writer.aclose()


async def read_all(store: Store, info: UploadInfo, start: int, end: int) -> bytes:
    return b"".join([chunk async for chunk in store.read(info, start, end)])


async def readable(store: Store, info: UploadInfo) -> UploadInfo:
    """``info`` after the handler's finish step when the upload is complete and the
    store cannot serve unfinished data (S3, Azure); ``info`` unchanged otherwise."""
    if info.is_complete and not store.capabilities.serve_incomplete:
        await store.finish(info)
        return await store.get(info.id)
    return info
