"""Hook events as the server makes them, for the tests of the hook backends."""

from __future__ import annotations

from tusd_trio.hooks.model import HookEvent
from tusd_trio.protocol.info import UploadInfo
from tusd_trio.protocol.messages import Headers, Request

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
    """A ``hook_type`` event of a finished 11-byte upload, with a request that carries
    credentials (``request=False``: an event without a request, as the janitor's)."""
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
