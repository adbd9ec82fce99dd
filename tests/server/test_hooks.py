"""Hooks wired into the request handler: every hook type and its effect on requests."""

from __future__ import annotations

import logging
import os
from typing import Any

import trio

from tests._support.raw_http import raw_request
from tests._support.server import Running
from tests._support.tus import OCTET, TUS
from tusd_trio.hooks.dispatcher import HookDispatcher
from tusd_trio.hooks.model import HOOK_TYPES, TUSD_HOOK_TYPES, parse_enabled_events
from tusd_trio.hooks.plugin import PluginHookBackend


class Recorder:
    """A hook plugin that records every event and answers from a table."""

    def __init__(self, answers: dict[str, Any] | None = None, delay: float = 0.0) -> None:
        self.events: list[dict[str, Any]] = []
        self.answers = answers or {}
        self.delay = delay
        for hook in HOOK_TYPES:
            setattr(self, hook.replace("-", "_"), self._make(hook))

    def _make(self, hook: str) -> Any:
        async def method(request: dict[str, Any]) -> Any:
            self.events.append(request)
            if self.delay:
                await trio.sleep(self.delay)
            return self.answers.get(hook)

        return method

    def types(self) -> list[str]:
        return [event["Type"] for event in self.events]

    def of(self, hook: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event["Type"] == hook]


def dispatcher(plugin: Recorder, enabled: set[str] | None = None) -> HookDispatcher:
    return HookDispatcher(
        [PluginHookBackend(plugin=plugin)],
        frozenset(enabled if enabled is not None else HOOK_TYPES),
        blocking_timeout=2.0,
    )


async def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)


async def test_lifecycle_events_in_order(make_server: Any) -> None:
    rec = Recorder()
    srv: Running = await make_server(hooks=dispatcher(rec))
    loc = await srv.create(3, Upload_Metadata="filename YS50eHQ=")
    await srv.patch(loc, 0, b"abc")
    await srv.client.delete(loc, headers=TUS)
    await wait_for(lambda: "post-terminate" in rec.types())
    types = rec.types()
    assert types[0] == "pre-create"
    for hook in ("post-create", "pre-access", "pre-finish", "post-finish", "pre-terminate"):
        assert hook in types
    assert types.index("pre-finish") < types.index("post-finish")
    pre_create = rec.of("pre-create")[0]
    assert pre_create["Event"]["Upload"]["ID"] == ""
    assert pre_create["Event"]["Upload"]["MetaData"] == {"filename": "a.txt"}
    assert pre_create["Event"]["HTTPRequest"]["Method"] == "POST"
    assert pre_create["Event"]["HTTPRequest"]["Header"]["Tus-Resumable"] == ["1.0.0"]
    finished = rec.of("post-finish")[0]["Event"]["Upload"]
    assert finished["Offset"] == 3 and finished["Size"] == 3
    assert finished["Storage"]["Type"] == "filestore"
    assert all(event["IdempotencyKey"] for event in rec.events)


async def test_pre_create_rejects_with_its_response(make_server: Any) -> None:
    rec = Recorder(
        {
            "pre-create": {
                "RejectUpload": True,
                "HTTPResponse": {
                    "StatusCode": 422,
                    "Body": "no thanks",
                    "Header": {"X-Why": "quota"},
                },
            }
        }
    )
    srv: Running = await make_server(hooks=dispatcher(rec))
    r = await srv.client.post(srv.url, headers={**TUS, "Upload-Length": "3"})
    assert r.status_code == 422
    assert r.text == "no thanks"
    assert r.headers["x-why"] == "quota"
    assert os.listdir(srv.server.config.upload_dir) == []


async def test_pre_create_changes_id_metadata_and_response(make_server: Any) -> None:
    rec = Recorder(
        {
            "pre-create": {
                "ChangeFileInfo": {"ID": "proj/custom-1", "MetaData": {"k": "v"}},
                "HTTPResponse": {"Header": {"X-Extra": "1"}},
            }
        }
    )
    srv: Running = await make_server(hooks=dispatcher(rec))
    r = await srv.client.post(srv.url, headers={**TUS, "Upload-Length": "2"})
    assert r.status_code == 201
    assert r.headers["location"].endswith("/files/proj/custom-1")
    assert r.headers["x-extra"] == "1"
    h = await srv.head(r.headers["location"])
    assert h.headers["upload-metadata"] == "k dg=="
    assert os.path.exists(os.path.join(srv.server.config.upload_dir, "proj", "custom-1.info"))


async def test_pre_create_invalid_id_is_a_500(make_server: Any) -> None:
    rec = Recorder({"pre-create": {"ChangeFileInfo": {"ID": "../escape"}}})
    srv: Running = await make_server(hooks=dispatcher(rec))
    r = await srv.client.post(srv.url, headers={**TUS, "Upload-Length": "2"})
    assert r.status_code == 500
    assert r.text.startswith("ERR_INTERNAL_SERVER_ERROR")


async def test_pre_finish_shapes_the_final_response(make_server: Any) -> None:
    rec = Recorder({"pre-finish": {"HTTPResponse": {"Header": {"Link": "</x>; rel=next"}}}})
    srv: Running = await make_server(hooks=dispatcher(rec))
    loc = await srv.create(2)
    first = await srv.patch(loc, 0, b"a")
    assert "link" not in first.headers
    last = await srv.patch(loc, 1, b"b")
    assert last.status_code == 204
    assert last.headers["link"] == "</x>; rel=next"


async def test_pre_terminate_can_refuse(make_server: Any) -> None:
    rec = Recorder({"pre-terminate": {"RejectTermination": True}})
    srv: Running = await make_server(hooks=dispatcher(rec))
    loc = await srv.create(2)
    r = await srv.client.delete(loc, headers=TUS)
    assert r.status_code == 400
    assert r.text.startswith("ERR_UPLOAD_TERMINATION_REJECTED")
    assert (await srv.head(loc)).status_code == 200


async def test_pre_access_can_refuse_head_patch_get_delete(make_server: Any) -> None:
    rec = Recorder(
        {
            "pre-access": {
                "RejectAccess": True,
                "HTTPResponse": {"Header": {"WWW-Authenticate": "Bearer"}},
            }
        }
    )
    srv: Running = await make_server(hooks=dispatcher(rec))
    loc = await srv.create(2)
    for response in (
        await srv.head(loc),
        await srv.patch(loc, 0, b"ab"),
        await srv.client.get(loc),
        await srv.client.delete(loc, headers=TUS),
    ):
        assert response.status_code == 403
        assert response.headers["www-authenticate"] == "Bearer"
    assert {e["Event"]["HTTPRequest"]["Method"] for e in rec.of("pre-access")} == {
        "HEAD",
        "PATCH",
        "GET",
        "DELETE",
    }
    upload_id = loc.rsplit("/", 1)[1]
    assert os.path.getsize(os.path.join(srv.server.config.upload_dir, upload_id)) == 0


async def test_blocking_hook_failure_is_a_clear_500(make_server: Any) -> None:
    class Broken(Recorder):
        def __init__(self) -> None:
            super().__init__()

            async def pre_create(request: dict[str, Any]) -> Any:
                raise RuntimeError("database down")

            self.pre_create = pre_create

    srv: Running = await make_server(hooks=dispatcher(Broken()))
    r = await srv.client.post(srv.url, headers={**TUS, "Upload-Length": "2"})
    assert r.status_code == 500
    assert r.text.startswith("ERR_INTERNAL_SERVER_ERROR: hook failed")
    assert os.listdir(srv.server.config.upload_dir) == []


async def test_slow_blocking_hook_times_out(make_server: Any) -> None:
    rec = Recorder(delay=10)
    srv: Running = await make_server(hooks=dispatcher(rec, {"pre-create"}))
    with trio.fail_after(8):
        r = await srv.client.post(srv.url, headers={**TUS, "Upload-Length": "2"})
    assert r.status_code == 500


async def test_slow_notification_hooks_do_not_delay_uploads(make_server: Any) -> None:
    rec = Recorder(delay=30)
    srv: Running = await make_server(hooks=dispatcher(rec, {"post-create", "post-finish"}))
    with trio.fail_after(5):
        loc = await srv.create(2)
        r = await srv.patch(loc, 0, b"ab")
    assert r.status_code == 204


def _patch_head(path: str, offset: int, length: int) -> bytes:
    return (
        f"PATCH {path} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
        f"Content-Type: application/offset+octet-stream\r\nUpload-Offset: {offset}\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


async def test_post_receive_progress_and_stop_upload(make_server: Any) -> None:
    rec = Recorder(
        {"post-receive": {"StopUpload": True, "HTTPResponse": {"Body": "stopped: quota"}}}
    )
    srv: Running = await make_server(
        hooks=dispatcher(rec, {"post-receive", "post-terminate"}), progress_hooks_interval=0.1
    )
    loc = await srv.create(100_000)
    path = loc.split(str(srv.port), 1)[1]
    stream = await trio.open_tcp_stream("127.0.0.1", srv.port)
    async with stream:
        await stream.send_all(_patch_head(path, 0, 100_000) + b"x" * 5000)
        reply = b""
        with trio.fail_after(10):
            while chunk := await stream.receive_some(4096):
                reply += chunk
    assert reply.startswith(b"HTTP/1.1 400"), reply
    assert reply.endswith(b"stopped: quota")
    progress = rec.of("post-receive")[0]["Event"]["Upload"]
    assert progress["Offset"] == 5000
    await wait_for(lambda: "post-terminate" in rec.types())
    assert (await srv.head(loc)).status_code == 404


async def test_post_receive_reports_progress_while_data_arrives(make_server: Any) -> None:
    rec = Recorder()
    srv: Running = await make_server(
        hooks=dispatcher(rec, {"post-receive"}), progress_hooks_interval=0.05
    )
    loc = await srv.create(30)
    path = loc.split(str(srv.port), 1)[1]
    stream = await trio.open_tcp_stream("127.0.0.1", srv.port)
    async with stream:
        await stream.send_all(_patch_head(path, 0, 30))
        for _ in range(3):
            await stream.send_all(b"0123456789")
            await trio.sleep(0.3)
        await stream.receive_some(4096)
    await wait_for(
        lambda: any(e["Event"]["Upload"]["Offset"] == 30 for e in rec.of("post-receive"))
    )
    offsets = [e["Event"]["Upload"]["Offset"] for e in rec.of("post-receive")]
    assert offsets[:2] == [10, 20]  # one event per interval in which the offset moved
    assert offsets == sorted(offsets)


async def test_http_hook_end_to_end(make_server: Any, nursery: trio.Nursery) -> None:
    from tests._support.hookserver import Answer, HookServer

    hook_server = HookServer()
    await nursery.start(hook_server.serve)
    hook_server.answer(Answer(body=b'{"httpresponse": {"header": {"X-Hook": "yes"}}}'))
    from tusd_trio.hooks.http import HTTPHookBackend

    backend = HTTPHookBackend(hook_server.url, retry=2, backoff=0.05, timeout=5)
    hooks = HookDispatcher([backend], frozenset({"pre-create", "post-create"}))
    srv: Running = await make_server(hooks=hooks)
    r = await srv.client.post(srv.url, headers={**TUS, "Upload-Length": "1"})
    assert r.status_code == 201
    assert r.headers["x-hook"] == "yes"
    await wait_for(lambda: len(hook_server.requests) >= 2)
    kinds = [req.json["Type"] for req in hook_server.requests]
    assert kinds[:2] == ["pre-create", "post-create"]
    assert (
        hook_server.requests[1].json["Event"]["Upload"]["ID"]
        == r.headers["location"].rsplit("/", 1)[1]
    )


async def test_creation_with_upload_uses_the_hook_id(make_server: Any) -> None:
    rec = Recorder({"pre-create": {"ChangeFileInfo": {"ID": "fixed-id"}}})
    srv: Running = await make_server(hooks=dispatcher(rec))
    r = await srv.client.post(srv.url, headers={**OCTET, "Upload-Length": "3"}, content=b"abc")
    assert r.status_code == 201
    assert r.headers["location"].endswith("/files/fixed-id")
    out = await raw_request(
        srv.port, b"GET /files/fixed-id HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert out.endswith(b"abc")


async def test_grpc_hook_from_configuration(make_server: Any) -> None:
    # The daemon builds its gRPC backend from the -hooks-grpc settings.
    from tests.hooks.test_grpc import HookServer as GRPCServer, Reply
    from tusd_trio.hooks.proto import hook_pb2

    grpc_server = GRPCServer()
    try:
        reject = hook_pb2.HookResponse(rejectUpload=True)
        reject.httpResponse.statusCode = 418
        reject.httpResponse.body = "teapot"
        grpc_server.answer(Reply(response=reject))
        srv: Running = await make_server(
            hooks_grpc=grpc_server.target,
            hooks_enabled_events=frozenset({"pre-create"}),
            hooks_grpc_backoff=0.05,
        )
        r = await srv.client.post(srv.url, headers={**TUS, "Upload-Length": "3"})
        assert r.status_code == 418
        assert r.text == "teapot"
        call = grpc_server.calls[0]
        assert call.request.type == "pre-create"
        assert call.request.event.httpRequest.method == "POST"
        assert call.request.event.httpRequest.header["Upload-Length"] == "3"
    finally:
        grpc_server.stop()


def _script(path: Any, body: str, mode: int = 0o755) -> None:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(mode)


async def test_file_hook_that_is_not_executable_fails(
    make_server: Any, tmp_path: Any, caplog: Any
) -> None:
    caplog.set_level(logging.INFO, logger="tusd_trio")
    hooks_dir = tmp_path / "hooks"
    hooks_dir.mkdir()
    _script(hooks_dir / "pre-create", "echo '{}'\n", mode=0o644)
    srv: Running = await make_server(
        hooks_dir=str(hooks_dir), hooks_enabled_events=frozenset({"pre-create"})
    )
    r = await srv.client.post(srv.url, headers={**TUS, "Upload-Length": "1"})
    assert r.status_code == 500
    # The client learns that a hook failed; the why (with the path) is in the log.
    assert r.text.startswith("ERR_INTERNAL_SERVER_ERROR: hook failed")
    assert str(hooks_dir) not in r.text
    assert "not an executable file" in caplog.text


async def test_slow_notification_file_hook_is_not_cut(make_server: Any, tmp_path: Any) -> None:
    hooks_dir = tmp_path / "hooks"
    hooks_dir.mkdir()
    marker = tmp_path / "marker"
    _script(hooks_dir / "post-create", f"sleep 1\necho done > {marker}\n")
    srv: Running = await make_server(
        hooks_dir=str(hooks_dir),
        hooks_enabled_events=frozenset({"post-create"}),
        hooks_blocking_timeout=0.3,
    )
    assert (
        await srv.client.post(srv.url, headers={**TUS, "Upload-Length": "1"})
    ).status_code == 201
    await wait_for(marker.exists, timeout=10)


async def test_hook_status_outside_final_range_is_a_clean_500(make_server: Any) -> None:
    for status in (99999, 150, 101):
        rec = Recorder({"pre-create": {"HTTPResponse": {"StatusCode": status}}})
        srv: Running = await make_server(hooks=dispatcher(rec))
        r = await srv.client.post(srv.url, headers={**TUS, "Upload-Length": "1"})
        assert r.status_code == 500
        assert r.text.startswith("ERR_INTERNAL_SERVER_ERROR: hook failed")


async def test_hook_cannot_break_response_framing(make_server: Any) -> None:
    rec = Recorder(
        {
            "pre-create": {
                "HTTPResponse": {
                    "StatusCode": 204,
                    "Body": "ignored",
                    "Header": {"Content-Length": "1000", "X-Ok": "1"},
                }
            }
        }
    )
    srv: Running = await make_server(hooks=dispatcher(rec))
    r = await srv.client.post(srv.url, headers={**TUS, "Upload-Length": "1"})
    assert r.status_code == 204
    assert r.content == b""
    assert r.headers["x-ok"] == "1"
    # The connection is still usable.
    assert (await srv.client.options(srv.url)).status_code == 200


async def test_repeated_headers_reach_hooks_as_separate_values(make_server: Any) -> None:
    rec = Recorder()
    srv: Running = await make_server(hooks=dispatcher(rec, {"pre-create"}))
    raw = (
        "POST /files/ HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nUpload-Length: 1\r\n"
        "X-Dup: a\r\nX-Dup: b,c\r\nX-Name: \u00e9\r\nConnection: close\r\n\r\n"
    ).encode("utf-8")
    out = await raw_request(srv.port, raw)
    assert out.startswith(b"HTTP/1.1 201")
    header = rec.of("pre-create")[0]["Event"]["HTTPRequest"]["Header"]
    assert header["X-Dup"] == ["a", "b,c"]
    assert header["X-Name"] == ["\u00e9"]


async def test_pre_access_guards_partials_of_a_final_upload(make_server: Any) -> None:
    class Guard(Recorder):
        def __init__(self) -> None:
            super().__init__()
            self.secret = ""

            async def pre_access(request: dict[str, Any]) -> Any:
                self.events.append(request)
                if request["Event"]["Upload"]["ID"] == self.secret:
                    return {"RejectAccess": True}
                return None

            self.pre_access = pre_access

    guard = Guard()
    srv: Running = await make_server(hooks=dispatcher(guard, {"pre-access"}))
    secret = await srv.create(1, Upload_Concat="partial")
    await srv.patch(secret, 0, b"s")
    guard.secret = secret.rsplit("/", 1)[1]
    r = await srv.client.post(srv.url, headers={**TUS, "Upload-Concat": f"final;{secret}"})
    assert r.status_code == 403
    assert r.text.startswith("ERR_ACCESS_DENIED")


def _tusd_era_receiver(hook_server: Any) -> None:
    """Answer tusd's hook types; refuse any other (as a tusd-era receiver may)."""
    from tests._support.hookserver import Answer

    def respond(received: Any) -> Answer:
        if received.json["Type"] in TUSD_HOOK_TYPES:
            return Answer()
        return Answer(status=404, body=b"unknown hook type", content_type="text/plain")

    hook_server.respond = respond


async def test_empty_enabled_events_leave_pre_access_off(
    make_server: Any, nursery: trio.Nursery
) -> None:
    # tusd: "-hooks-enabled-events=" enables its seven hook types.  Ours also enabled
    # pre-access, and a receiver refusing unknown types failed every HEAD/PATCH/GET.
    from tests._support.hookserver import HookServer

    hook_server = HookServer()
    await nursery.start(hook_server.serve)
    _tusd_era_receiver(hook_server)
    srv: Running = await make_server(
        hooks_http=hook_server.url, hooks_enabled_events=parse_enabled_events("")
    )
    loc = await srv.create(3)
    assert (await srv.head(loc)).status_code == 200
    assert (await srv.patch(loc, 0, b"abc")).status_code == 204
    assert (await srv.client.get(loc)).status_code == 200
    # post-finish comes from the outbox, post-receive from memory: either may be last.
    await wait_for(
        lambda: {"post-receive", "post-finish"} <= {r.json["Type"] for r in hook_server.requests}
    )
    kinds = {r.json["Type"] for r in hook_server.requests}
    assert "pre-access" not in kinds
    assert {"pre-create", "post-create", "pre-finish", "post-finish"} <= kinds


async def test_last_post_receive_comes_after_post_finish(
    make_server: Any, nursery: trio.Nursery
) -> None:
    # tusd sends a request's last post-receive when the request ends: after its
    # post-finish (6 of 6 observed sequences).  Notifications of one upload reach the
    # endpoint one after the other, so receivers see that order every time (post-finish
    # comes from the outbox, post-receive from memory: they still wait for each other).
    from tests._support.hookserver import HookServer

    hook_server = HookServer()
    await nursery.start(hook_server.serve)
    srv: Running = await make_server(
        hooks_http=hook_server.url,
        hooks_enabled_events=parse_enabled_events(""),
    )

    def sequence(upload_id: str) -> list[str]:
        return [
            r.json["Type"]
            for r in hook_server.requests
            if r.json["Event"]["Upload"]["ID"] in (upload_id, "") and r.json["Type"] != "pre-create"
        ]

    for _ in range(3):
        loc = await srv.create(5)
        upload_id = loc.rsplit("/", 1)[1]
        await wait_for(lambda: "post-create" in sequence(upload_id))  # noqa: B023
        assert (await srv.patch(loc, 0, b"hello")).status_code == 204
        await wait_for(lambda: len(sequence(upload_id)) >= 4)  # noqa: B023
        assert sequence(upload_id) == ["post-create", "pre-finish", "post-finish", "post-receive"]
    # Creation with upload: the same order after the upload's creation.
    r = await srv.client.post(srv.url, headers={**OCTET, "Upload-Length": "3"}, content=b"abc")
    upload_id = r.headers["location"].rsplit("/", 1)[1]
    await wait_for(lambda: "post-receive" in sequence(upload_id))
    kinds = sequence(upload_id)
    assert kinds.index("post-create") < kinds.index("post-finish") < kinds.index("post-receive")
    assert kinds.index("pre-finish") < kinds.index("post-finish")
    assert kinds[-1] == "post-receive"


async def test_slow_notification_holds_back_the_uploads_later_ones(
    make_server: Any, nursery: trio.Nursery
) -> None:
    from tests._support.hookserver import Answer, HookServer

    hook_server = HookServer()
    await nursery.start(hook_server.serve)
    arrived: list[str] = []

    def respond(received: Any) -> Answer:
        arrived.append(received.json["Type"])
        return Answer(delay=0.5 if received.json["Type"] == "post-create" else 0.0)

    hook_server.respond = respond
    srv: Running = await make_server(
        hooks_http=hook_server.url, hooks_enabled_events=("post-create", "post-finish")
    )
    with trio.fail_after(5):
        loc = await srv.create(2)
        assert (await srv.patch(loc, 0, b"ab")).status_code == 204  # not delayed
    # post-finish waits for post-create's answer (the outbox may not have sent either yet)
    assert arrived in ([], ["post-create"])
    await wait_for(lambda: arrived == ["post-create", "post-finish"])
