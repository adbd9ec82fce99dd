from __future__ import annotations

import pytest
import trio

from tusd_trio.hooks import HookEvent
from tusd_trio.protocol.core import Headers, Request
from tusd_trio.protocol.info import UploadInfo

from .hookserver import HookServer

UPLOAD_ID = "0123456789abcdef0123456789abcdef"


def make_event(
    hook_type: str = "post-finish",
    *,
    upload: UploadInfo | None = None,
    headers: list[tuple[str, str]] | None = None,
    method: str = "PATCH",
    target: str | None = None,
    request: bool = True,
) -> HookEvent:
    if upload is None:
        upload = UploadInfo(
            id=UPLOAD_ID,
            size=11,
            offset=11,
            metadata={"filename": "hello.txt"},
            storage={"Type": "filestore", "Path": f"/data/{UPLOAD_ID}"},
        )
    if headers is None:
        headers = [
            ("host", "localhost:8080"),
            ("tus-resumable", "1.0.0"),
            ("x-request-id", "abc"),
            ("authorization", "Bearer t0ken"),
        ]
    req = (
        Request(method, target or f"/files/{UPLOAD_ID}?x=1", Headers(headers)) if request else None
    )
    return HookEvent(hook_type, upload, req, "127.0.0.1:59395" if request else "")


@pytest.fixture
async def hook_server(nursery: trio.Nursery) -> HookServer:
    server = HookServer()
    await nursery.start(server.serve)
    return server
