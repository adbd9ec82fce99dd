"""A model-based fuzz test: random tus operations against a real server.

A hypothesis ``RuleBasedStateMachine`` creates uploads (fixed or deferred length,
with or without a body), PATCHes them (right offset, wrong offset, too long, wrong
content type, good and bad checksums, Content-Length or chunked bodies), and
HEADs, GETs and DELETEs them.  A model keeps what the server acknowledged.  After
every step, for every upload: HEAD's offset equals the model's (and never exceeds
the size), GET returns exactly the acknowledged bytes, and no answer is ever 5xx.

The server runs in a background thread (``trio.run``); the machine drives it with
httpx's synchronous client, so hypothesis' stateful runner stays synchronous.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from tests._support.server import ThreadedServer, make_config
from tests._support.tus import TUS

OCTET = "application/offset+octet-stream"
ALGORITHMS = ("sha1", "md5", "sha256", "sha512")
BAD_CONTENT_TYPES = (
    None,
    "",
    "text/plain",
    "application/octet-stream",
    "application/offset+octet-stream-x",
    "multipart/form-data; boundary=x",
)


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = ThreadedServer(
        make_config(tmp_path_factory.mktemp("fuzz-model") / "data", network_timeout=10)
    )
    url = server.start()
    try:
        yield url
    finally:
        server.stop()


@dataclasses.dataclass
class Upload:
    url: str
    size: int | None  # None: deferred
    data: bytearray = dataclasses.field(default_factory=bytearray)
    deleted: bool = False

    @property
    def offset(self) -> int:
        return len(self.data)

    @property
    def complete(self) -> bool:
        return self.size is not None and self.offset >= self.size

    @property
    def remaining(self) -> int | None:
        return None if self.size is None else self.size - self.offset


def digest(algorithm: str, data: bytes) -> str:
    return base64.b64encode(hashlib.new(algorithm, data).digest()).decode("ascii")


def chunked(data: bytes, pieces: int) -> Iterator[bytes]:
    step = max(1, -(-len(data) // max(1, pieces)))
    for start in range(0, len(data), step):
        yield data[start : start + step]


class TusModel(RuleBasedStateMachine):
    base_url = ""

    uploads = Bundle("uploads")

    def __init__(self) -> None:
        super().__init__()
        self.client = httpx.Client(timeout=20)
        self.model: list[Upload] = []
        self.log: list[str] = []

    def teardown(self) -> None:
        self.client.close()

    # --- helpers -----------------------------------------------------------------------

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        response = self.client.request(method, url, **kwargs)
        self.log.append(f"{method} {url.rsplit('/', 1)[1]} -> {response.status_code}")
        assert response.status_code < 500, (
            f"{method} {url}: {response.status_code} {response.text!r}\n" + "\n".join(self.log)
        )
        return response

    def expect(self, response: httpx.Response, status: int, code: str | None = None) -> None:
        assert response.status_code == status, (
            f"expected {status} {code or ''}, got {response.status_code} {response.text!r}\n"
            + "\n".join(self.log[-20:])
        )
        if code is not None:
            assert response.text.startswith(code + ":"), response.text

    # --- creation --------------------------------------------------------------------------

    @rule(
        target=uploads,
        size=st.one_of(st.none(), st.integers(0, 64)),
        body=st.one_of(st.none(), st.binary(max_size=80)),
        use_chunked=st.booleans(),
        metadata=st.dictionaries(
            st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8),
            st.text(max_size=12),
            max_size=3,
        ),
    )
    def create(
        self,
        size: int | None,
        body: bytes | None,
        use_chunked: bool,
        metadata: dict[str, str],
    ) -> Upload:
        headers = dict(TUS)
        if size is None:
            headers["Upload-Defer-Length"] = "1"
        else:
            headers["Upload-Length"] = str(size)
        if metadata:
            headers["Upload-Metadata"] = ",".join(
                f"{k} {base64.b64encode(v.encode()).decode()}" if v else k
                for k, v in metadata.items()
            )
        content: Any = None
        if body is not None:
            headers["Content-Type"] = OCTET
            content = chunked(body, 3) if use_chunked else body
        r = self.request("POST", self.base_url, headers=headers, content=content)
        too_long = body is not None and size is not None and len(body) > size
        if too_long:
            self.expect(r, 413, "ERR_UPLOAD_SIZE_EXCEEDED")
            location = r.headers.get("location")
            if location is None:
                # No Location: the client cannot reach the upload (an orphan when it was
                # created; test_hostile.py::test_failed_creation_with_upload_leaves_no_orphan
                # checks that).  Nothing to model.
                return Upload(url=self.base_url + "0" * 32, size=size, deleted=True)
            upload = Upload(location, size)
            if use_chunked:  # the bytes up to the length are kept
                upload.data += body[:size]  # type: ignore[index]
        else:
            self.expect(r, 201)
            upload = Upload(r.headers["location"], size)
            if body is not None:
                upload.data += body
                assert r.headers["upload-offset"] == str(len(body))
        self.model.append(upload)
        return upload

    # --- PATCH -----------------------------------------------------------------------------

    @rule(
        upload=uploads,
        data=st.binary(max_size=48),
        use_chunked=st.booleans(),
        checksum=st.sampled_from((None, *ALGORITHMS)),
        declare=st.booleans(),
    )
    def patch_ok(
        self,
        upload: Upload,
        data: bytes,
        use_chunked: bool,
        checksum: str | None,
        declare: bool,
    ) -> None:
        if upload.remaining is not None:
            data = data[: upload.remaining]
        headers = {**TUS, "Content-Type": OCTET, "Upload-Offset": str(upload.offset)}
        if checksum is not None:
            headers["Upload-Checksum"] = f"{checksum} {digest(checksum, data)}"
        declared = None
        if declare and upload.size is None:
            declared = upload.offset + len(data)
            headers["Upload-Length"] = str(declared)
        content = chunked(data, 2) if use_chunked else data
        r = self.request("PATCH", upload.url, headers=headers, content=content)
        if upload.deleted:
            self.expect(r, 404, "ERR_UPLOAD_NOT_FOUND")
            return
        self.expect(r, 204)
        if not upload.complete:  # a complete upload ignores the body
            upload.data += data
            if declared is not None:
                upload.size = declared
        assert r.headers["upload-offset"] == str(upload.offset)

    @rule(upload=uploads, delta=st.integers(-100, 100).filter(bool), data=st.binary(max_size=8))
    def patch_wrong_offset(self, upload: Upload, delta: int, data: bytes) -> None:
        offset = max(0, upload.offset + delta)
        if offset == upload.offset:
            offset += 1
        headers = {**TUS, "Content-Type": OCTET, "Upload-Offset": str(offset)}
        r = self.request("PATCH", upload.url, headers=headers, content=data)
        if upload.deleted:
            self.expect(r, 404, "ERR_UPLOAD_NOT_FOUND")
        else:
            self.expect(r, 409, "ERR_MISMATCHED_OFFSET")

    @rule(upload=uploads, extra=st.integers(1, 32), use_chunked=st.booleans())
    def patch_too_long(self, upload: Upload, extra: int, use_chunked: bool) -> None:
        if upload.size is None:
            return  # no length to exceed
        data = bytes(range(256))[: (upload.remaining or 0) + extra]
        headers = {**TUS, "Content-Type": OCTET, "Upload-Offset": str(upload.offset)}
        content = chunked(data, 3) if use_chunked else data
        r = self.request("PATCH", upload.url, headers=headers, content=content)
        if upload.deleted:
            self.expect(r, 404, "ERR_UPLOAD_NOT_FOUND")
        elif upload.complete:
            self.expect(r, 204)  # already complete: answered without reading the body
        else:
            self.expect(r, 413, "ERR_UPLOAD_SIZE_EXCEEDED")
            if use_chunked:  # read up to the length, which is kept
                upload.data += data[: upload.remaining]

    @rule(upload=uploads, content_type=st.sampled_from(BAD_CONTENT_TYPES), data=st.binary())
    def patch_bad_content_type(self, upload: Upload, content_type: str | None, data: bytes) -> None:
        headers = {**TUS, "Upload-Offset": str(upload.offset)}
        if content_type is not None:
            headers["Content-Type"] = content_type
        r = self.request("PATCH", upload.url, headers=headers, content=data)
        self.expect(r, 415, "ERR_INVALID_CONTENT_TYPE")

    @rule(
        upload=uploads,
        data=st.binary(min_size=1, max_size=16),
        algorithm=st.sampled_from(ALGORITHMS),
        fault=st.sampled_from(("mismatch", "malformed", "unsupported", "wrong-length")),
        use_chunked=st.booleans(),
    )
    def patch_bad_checksum(
        self, upload: Upload, data: bytes, algorithm: str, fault: str, use_chunked: bool
    ) -> None:
        if upload.remaining is not None:
            data = data[: upload.remaining]
        value = {
            "mismatch": f"{algorithm} {digest(algorithm, data + b'!')}",
            "malformed": f"{algorithm} not*base64",
            "unsupported": f"crc32 {digest(algorithm, data)}",
            "wrong-length": f"{algorithm} {base64.b64encode(b'short').decode()}",
        }[fault]
        headers = {
            **TUS,
            "Content-Type": OCTET,
            "Upload-Offset": str(upload.offset),
            "Upload-Checksum": value,
        }
        content = chunked(data, 2) if use_chunked else data
        r = self.request("PATCH", upload.url, headers=headers, content=content)
        if upload.deleted:
            self.expect(r, 404, "ERR_UPLOAD_NOT_FOUND")
        elif fault == "unsupported":
            self.expect(r, 400, "ERR_UNSUPPORTED_CHECKSUM_ALGORITHM")
        elif fault in ("malformed", "wrong-length"):
            self.expect(r, 400, "ERR_INVALID_CHECKSUM")
        elif upload.complete:
            self.expect(r, 204)  # nothing is written, so nothing is verified
        elif not data:
            self.expect(r, 204)
        else:
            self.expect(r, 460, "ERR_CHECKSUM_MISMATCH")

    # --- HEAD / GET / DELETE ------------------------------------------------------------------

    @rule(upload=uploads)
    def head(self, upload: Upload) -> None:
        self.check(upload)

    @rule(upload=uploads, start=st.integers(0, 80), length=st.integers(1, 80))
    def get_range(self, upload: Upload, start: int, length: int) -> None:
        end = start + length - 1
        r = self.request("GET", upload.url, headers={"Range": f"bytes={start}-{end}"})
        if upload.deleted:
            self.expect(r, 404, "ERR_UPLOAD_NOT_FOUND")
        elif start >= upload.offset:
            self.expect(r, 416, "ERR_RANGE_NOT_SATISFIABLE")
        else:
            self.expect(r, 206)
            assert r.content == bytes(upload.data[start : end + 1])

    @rule(upload=uploads, coin=st.integers(0, 2))
    def delete(self, upload: Upload, coin: int) -> None:
        if coin:  # rarer than the other operations, so uploads live long enough
            return
        r = self.request("DELETE", upload.url, headers=TUS)
        if upload.deleted:
            self.expect(r, 404, "ERR_UPLOAD_NOT_FOUND")
        else:
            self.expect(r, 204)
            upload.deleted = True

    # --- invariants -----------------------------------------------------------------------------

    def check(self, upload: Upload) -> None:
        r = self.request("HEAD", upload.url, headers=TUS)
        if upload.deleted:
            assert r.status_code == 404
            return
        self.expect(r, 200)
        offset = int(r.headers["upload-offset"])
        assert offset == upload.offset, (offset, upload.offset, "\n".join(self.log[-20:]))
        if upload.size is None:
            assert r.headers.get("upload-defer-length") == "1"
            assert "upload-length" not in r.headers
        else:
            assert int(r.headers["upload-length"]) == upload.size
            assert offset <= upload.size
        r = self.request("GET", upload.url)
        self.expect(r, 200)
        assert r.content == bytes(upload.data), "\n".join(self.log[-20:])

    @invariant()
    def every_upload_matches_the_model(self) -> None:
        for upload in self.model:
            self.check(upload)


def test_random_operations_match_the_model(server_url: str) -> None:
    TusModel.base_url = server_url
    run_state_machine_as_test(
        TusModel,
        settings=settings(
            max_examples=30,
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
