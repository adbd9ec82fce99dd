"""The IETF resumable upload draft, every interop version, over real sockets.

The client here is written from the draft texts: send the request head, read
the ``104 (Upload Resumption Supported)`` before sending any content, resume an
interrupted upload at the URL the 104 gave, using HEAD for the offset.
"""

from __future__ import annotations

import json
import os
from urllib.parse import urlsplit

import pytest
import trio

from tests._support.server import Running, ServerFactory
from tusd_trio.protocol.interop import VERSIONS, InteropVersion

ALL = sorted(VERSIONS)


class RawClient:
    """One HTTP/1.1 connection, spoken by hand."""

    def __init__(self, stream: trio.SocketStream, port: int) -> None:
        self.stream = stream
        self.port = port
        self.buffer = b""

    @classmethod
    async def connect(cls, port: int) -> RawClient:
        return cls(await trio.open_tcp_stream("127.0.0.1", port), port)

    async def send_head(self, method: str, path: str, headers: dict[str, str]) -> None:
        lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{self.port}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        await self.stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def _fill(self) -> None:
        with trio.fail_after(10):
            chunk = await self.stream.receive_some(65536)
        if not chunk:
            raise EOFError("connection closed")
        self.buffer += chunk

    async def read_message(self, method: str = "POST") -> tuple[int, dict[str, str], bytes]:
        """The next response (interim or final): status, headers, body."""
        while b"\r\n\r\n" not in self.buffer:
            await self._fill()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = b""
        if status >= 200 and method != "HEAD" and status not in (204, 304):
            length = int(headers.get("content-length", "0"))
            while len(self.buffer) < length:
                await self._fill()
            body, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, headers, body

    async def aclose(self) -> None:
        await self.stream.aclose()


def _complete(version: InteropVersion, complete: bool) -> dict[str, str]:
    name, value = version.complete_header(complete)
    return {name: value}


def _is_complete(version: InteropVersion, headers: dict[str, str]) -> bool:
    value = headers[version.complete_field.lower()]
    assert value in ("?0", "?1")
    return (value == "?1") != version.inverted


def _draft(version: InteropVersion, **extra: str) -> dict[str, str]:
    headers = {"Upload-Draft-Interop-Version": str(version.number)}
    headers.update({k.replace("_", "-"): v for k, v in extra.items()})
    return headers


def _path(url: str) -> str:
    return urlsplit(url).path


async def _request(
    port: int, method: str, path: str, headers: dict[str, str], body: bytes = b""
) -> tuple[int, dict[str, str], bytes]:
    client = await RawClient.connect(port)
    try:
        if body or method in ("POST", "PATCH"):
            headers = {**headers, "Content-Length": str(len(body))}
        await client.send_head(method, path, headers)
        await client.send(body)
        status, response_headers, content = await client.read_message(method)
        while 100 <= status < 200:
            status, response_headers, content = await client.read_message(method)
        return status, response_headers, content
    finally:
        await client.aclose()


async def _create_and_drop(
    srv: Running, version: InteropVersion, data: bytes, sent: int, **extra: str
) -> str:
    """A creation carrying all of ``data`` that loses its connection after ``sent`` bytes;
    returns the upload URL from the 104."""
    headers = _draft(version, Content_Length=str(len(data)), Content_Type="image/png", **extra)
    headers.update(_complete(version, True))
    if version.upload_length:
        headers["Upload-Length"] = str(len(data))
    client = await RawClient.connect(srv.port)
    await client.send_head("POST", "/files/", headers)
    status, interim, _ = await client.read_message()  # before any content is sent
    assert status == 104
    assert interim["upload-draft-interop-version"] == str(version.number)
    assert "location" in interim
    if version.upload_limit:
        assert interim["upload-limit"].startswith("min-size=0")
    await client.send(data[:sent])
    await client.aclose()  # the connection drops mid-body
    return interim["location"]


async def _head(srv: Running, version: InteropVersion, url: str) -> dict[str, str]:
    status, headers, _ = await _request(srv.port, "HEAD", _path(url), _draft(version))
    assert status == 204, headers
    assert headers["cache-control"] == "no-store"
    assert "tus-resumable" not in headers
    return headers


@pytest.mark.parametrize("number", ALL)
async def test_interrupted_creation_is_resumed_with_the_url_from_the_104(
    make_server: ServerFactory, number: int
) -> None:
    version = VERSIONS[number]
    srv = await make_server()
    data = os.urandom(300_000)
    url = await _create_and_drop(srv, version, data, 100_000)

    # Offset retrieval: the server kept what it received (the read lock waits
    # for the interrupted request to settle).
    state = await _head(srv, version, url)
    assert int(state["upload-offset"]) == 100_000
    assert not _is_complete(version, state)
    assert ("upload-length" in state) == version.upload_length
    if version.upload_length:
        assert state["upload-length"] == str(len(data))
    assert ("upload-limit" in state) == version.upload_limit

    append = _draft(version, Upload_Offset="100000")
    append.update(_complete(version, True))
    if version.append_media_type:
        append["Content-Type"] = version.append_media_type

    # A wrong offset: 409 with the correct one.
    status, headers, body = await _request(
        srv.port, "PATCH", _path(url), {**append, "Upload-Offset": "5"}, data[5:9]
    )
    assert status == 409
    assert headers["upload-offset"] == "100000"
    if version.problem_details:
        assert headers["content-type"] == "application/problem+json"
        problem = json.loads(body)
        assert problem["type"].endswith("#mismatching-upload-offset")
        assert problem["expected-offset"] == 100_000
        assert problem["provided-offset"] == 5
    else:
        assert body.startswith(b"ERR_MISMATCHED_OFFSET")
    if version.errors_say_incomplete:
        assert not _is_complete(version, headers)

    # Appending the rest completes the upload.
    status, headers, _ = await _request(srv.port, "PATCH", _path(url), append, data[100_000:])
    assert status == 204, headers
    assert headers["upload-offset"] == str(len(data))
    assert _is_complete(version, headers)

    state = await _head(srv, version, url)
    assert _is_complete(version, state)
    # A draft upload is an ordinary upload: tus GET serves it.
    response = await srv.client.get(url)
    assert response.content == data
    assert response.headers["content-type"] == "image/png"

    # A further append is refused: the upload is complete.
    status, headers, body = await _request(
        srv.port, "PATCH", _path(url), {**append, "Upload-Offset": str(len(data))}, b"more"
    )
    assert status == 400
    if version.problem_details:
        expected = "completed-upload" if number < 9 else "about:blank"
        assert json.loads(body)["type"].endswith(expected)


@pytest.mark.parametrize("number", ALL)
async def test_incomplete_creation_appends_and_cancellation(
    make_server: ServerFactory, number: int
) -> None:
    version = VERSIONS[number]
    srv = await make_server()
    headers = _draft(version)
    headers.update(_complete(version, False))
    client = await RawClient.connect(srv.port)
    await client.send_head("POST", "/files/", {**headers, "Content-Length": "10"})
    status, interim, _ = await client.read_message()
    assert status == 104
    await client.send(b"0123456789")
    status, final, _ = await client.read_message()
    await client.aclose()
    assert status == 201
    assert final["location"] == interim["location"]
    assert final["upload-offset"] == "10"
    assert not _is_complete(version, final)
    assert "tus-resumable" not in final
    url = final["location"]

    append = _draft(version, Upload_Offset="10")
    append.update(_complete(version, False))
    if version.append_media_type:
        append["Content-Type"] = version.append_media_type
    status, answer, _ = await _request(srv.port, "PATCH", _path(url), append, b"abc")
    assert status == 204
    assert answer["upload-offset"] == "13"
    assert not _is_complete(version, answer)

    status, _, _ = await _request(srv.port, "DELETE", _path(url), _draft(version))
    assert status == 204
    status, _, _ = await _request(srv.port, "HEAD", _path(url), _draft(version))
    assert status == 404


@pytest.mark.parametrize("number", ALL)
async def test_deferred_length_is_declared_by_the_completing_append(
    make_server: ServerFactory, number: int
) -> None:
    version = VERSIONS[number]
    srv = await make_server()
    headers = _draft(version)
    headers.update(_complete(version, False))
    status, created, _ = await _request(srv.port, "POST", "/files/", headers, b"hello ")
    assert status == 201
    url = created["location"]
    state = await _head(srv, version, url)
    assert "upload-length" not in state

    append = _draft(version, Upload_Offset="6")
    append.update(_complete(version, True))
    if version.append_media_type:
        append["Content-Type"] = version.append_media_type
    status, answer, _ = await _request(srv.port, "PATCH", _path(url), append, b"world")
    assert status == 204
    assert _is_complete(version, answer)
    # To tus it is an ordinary finished upload of 11 bytes.
    tus_head = await srv.head(url)
    assert tus_head.headers["upload-length"] == "11"
    assert srv.server.runtime.metrics.uploads_finished == 1
    assert (await srv.client.get(url)).content == b"hello world"


@pytest.mark.parametrize("number", ALL)
async def test_completed_in_one_request(make_server: ServerFactory, number: int) -> None:
    version = VERSIONS[number]
    srv = await make_server()
    headers = _draft(version, Content_Disposition='inline; filename="a b.txt"')
    headers.update(_complete(version, True))
    status, created, _ = await _request(srv.port, "POST", "/files/", headers, b"x" * 1000)
    assert status == 201
    assert created["upload-offset"] == "1000"
    assert _is_complete(version, created)
    response = await srv.client.get(created["location"])
    assert response.content == b"x" * 1000
    assert 'filename="a b.txt"' in response.headers["content-disposition"]


@pytest.mark.parametrize("number", ALL)
async def test_options_discovery(make_server: ServerFactory, number: int) -> None:
    version = VERSIONS[number]
    srv = await make_server(protocol={"max_size": 5000})
    status, headers, _ = await _request(srv.port, "OPTIONS", "/files/", _draft(version))
    assert status == 200
    if version.options_limits:
        assert headers["upload-limit"] == "min-size=0,max-size=5000"
    else:
        assert "upload-limit" not in headers
    assert (headers.get("accept-patch") == "application/partial-upload") == version.accept_patch


@pytest.mark.parametrize("number", [3, 6, 9])
async def test_state_fields_on_head_and_delete(make_server: ServerFactory, number: int) -> None:
    version = VERSIONS[number]
    srv = await make_server()
    headers = _draft(version)
    headers.update(_complete(version, False))
    _, created, _ = await _request(srv.port, "POST", "/files/", headers, b"abc")
    path = _path(created["location"])
    status, _, _ = await _request(srv.port, "HEAD", path, _draft(version, Upload_Offset="3"))
    assert status == (400 if version.state_fields_forbidden else 204)
    status, _, _ = await _request(srv.port, "DELETE", path, _draft(version, Upload_Offset="3"))
    assert status == (400 if version.state_fields_forbidden else 204)


async def test_104_then_100_continue(srv: Running) -> None:
    version = VERSIONS[9]
    client = await RawClient.connect(srv.port)
    headers = _draft(version, Content_Length="4", Expect="100-continue", Upload_Length="4")
    headers.update(_complete(version, True))
    await client.send_head("POST", "/files/", headers)
    first, interim, _ = await client.read_message()
    second, _, _ = await client.read_message()
    assert (first, second) == (104, 100)
    assert interim["upload-limit"] == "min-size=0,max-size=4"
    await client.send(b"data")
    status, final, _ = await client.read_message()
    await client.aclose()
    assert status == 201
    assert final["location"] == interim["location"]


async def test_get_reports_state_in_version_9(srv: Running) -> None:
    version = VERSIONS[9]
    headers = _draft(version)
    headers.update(_complete(version, False))
    _, created, _ = await _request(srv.port, "POST", "/files/", headers, b"abc")
    status, answer, body = await _request(srv.port, "GET", _path(created["location"]), headers)
    assert status == 200
    assert answer["upload-offset"] == "3"
    assert answer["upload-complete"] == "?0"
    assert body == b"abc"


async def test_errors(make_server: ServerFactory) -> None:
    srv = await make_server(protocol={"max_size": 10})
    v9 = VERSIONS[9]
    # No completion field: not a valid draft creation.
    status, headers, body = await _request(srv.port, "POST", "/files/", _draft(v9), b"x")
    assert status == 400
    assert headers["content-type"] == "application/problem+json"
    assert json.loads(body)["code"] == "ERR_INVALID_UPLOAD_COMPLETE"
    # Inconsistent lengths.
    bad = _draft(v9, Upload_Length="3", Upload_Complete="?1")
    status, headers, body = await _request(srv.port, "POST", "/files/", bad, b"xx")
    assert status == 400
    assert json.loads(body)["type"].endswith("#inconsistent-upload-length")
    assert headers["upload-complete"] == "?0"
    # Larger than -max-size.
    big = _draft(v9, Upload_Length="11", Upload_Complete="?0")
    status, _, _ = await _request(srv.port, "POST", "/files/", big, b"")
    assert status == 413
    # An append without application/partial-upload.
    created_headers = _draft(v9, Upload_Complete="?0")
    _, created, _ = await _request(srv.port, "POST", "/files/", created_headers, b"ab")
    append = _draft(v9, Upload_Offset="2", Upload_Complete="?1")
    status, _, _ = await _request(srv.port, "PATCH", _path(created["location"]), append, b"c")
    assert status == 415
    # An old version answers in tusd's text format.
    v4 = VERSIONS[4]
    status, headers, body = await _request(srv.port, "POST", "/files/", _draft(v4), b"x")
    assert status == 400
    assert body.startswith(b"ERR_INVALID_UPLOAD_COMPLETE")


async def test_tus_requests_are_unaffected(srv: Running) -> None:
    location = await srv.create(5)
    response = await srv.patch(location, 0, b"12345")
    assert response.status_code == 204
    assert response.headers["tus-resumable"] == "1.0.0"
    assert "upload-complete" not in response.headers
    head = await srv.head(location)
    assert head.headers["upload-offset"] == "5"
    # An unknown interop version is a tus request (412 without Tus-Resumable).
    status, _, _ = await _request(
        srv.port, "POST", "/files/", {"Upload-Draft-Interop-Version": "2", "Upload-Complete": "?1"}
    )
    assert status == 412
    # A tus request to an upload made with the draft.
    status, created, _ = await _request(
        srv.port, "POST", "/files/", {**_draft(VERSIONS[9]), "Upload-Complete": "?0"}, b"ab"
    )
    head = await srv.head(created["location"])
    assert head.headers["upload-offset"] == "2"
    assert head.headers["tus-resumable"] == "1.0.0"


async def test_experimental_protocol_off(make_server: ServerFactory) -> None:
    srv = await make_server(enable_experimental_protocol=False)
    headers = {**_draft(VERSIONS[9]), "Upload-Complete": "?1"}
    status, answer, _ = await _request(srv.port, "POST", "/files/", headers, b"x")
    assert status == 412
    assert answer["tus-resumable"] == "1.0.0"
