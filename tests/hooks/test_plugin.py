"""Python plugins: real modules written to tmp_path and imported from sys.path."""

from __future__ import annotations

import sys
import textwrap
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests._support.hook_events import make_event
from tusd_trio.hooks.model import HookError, HookResponse, HTTPResponse, build_request
from tusd_trio.hooks.plugin import PluginHookBackend, load_plugin

PLUGIN = """
import threading
import trio
from tusd_trio.hooks import HookResponse

calls = []

class Plugin:
    def __init__(self):
        self.closed = False

    def pre_create(self, request):
        calls.append(("pre_create", threading.get_ident(), request))
        request["Type"] = "mutated"  # must not leak to other backends
        meta = request["Event"]["Upload"]["MetaData"]
        if meta.get("filename") == "evil.exe":
            return {"rejectupload": True, "HTTPResponse": {"StatusCode": 403}}
        return {"ChangeFileInfo": {"ID": "users/7/" + meta["filename"]}}

    async def post_finish(self, request):
        await trio.sleep(0)
        calls.append(("post_finish", threading.get_ident(), request))
        return HookResponse(stop_upload=False)

    async def pre_finish(self, request):
        return None

    def pre_terminate(self, request):
        raise RuntimeError("database down")

    def post_receive(self, request):
        return "not a response"

    def close(self):
        self.closed = True


def make():
    return Plugin()

instance = Plugin()
"""

MODULE_LEVEL = """
def post_create(request):
    return {"HTTPResponse": {"Header": {"X-Module": request["Event"]["Upload"]["ID"]}}}
"""


@pytest.fixture
def plugin_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[str], str]]:
    names: list[str] = []
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(text: str) -> str:
        name = f"hookplugin_{uuid.uuid4().hex}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(text))
        names.append(name)
        return name

    yield write
    for name in names:
        sys.modules.pop(name, None)


@pytest.mark.parametrize("attr", [":Plugin", ":make", ":instance"])
def test_load_class_factory_or_instance(plugin_module: Callable[[str], str], attr: str) -> None:
    name = plugin_module(PLUGIN)
    plugin = load_plugin(name + attr)
    assert type(plugin).__name__ == "Plugin"
    assert load_plugin(name + attr) is not plugin or attr == ":instance"


def test_load_errors(plugin_module: Callable[[str], str]) -> None:
    name = plugin_module(PLUGIN)
    with pytest.raises(ValueError, match="cannot import"):
        load_plugin("no_such_module_hopefully:x")
    with pytest.raises(ValueError, match="'Nope' not found"):
        load_plugin(f"{name}:Nope")
    with pytest.raises(ValueError, match="expected 'module:object'"):
        load_plugin(":x")


async def test_sync_method_runs_in_a_thread(plugin_module: Callable[[str], str]) -> None:
    name = plugin_module(PLUGIN)
    backend = PluginHookBackend(f"{name}:Plugin")
    payload = build_request(make_event("pre-create"), idempotency_key="k")
    resp = await backend.invoke("pre-create", payload)
    assert resp.change_file_info is not None
    assert resp.change_file_info.id == "users/7/hello.txt"
    module = sys.modules[name]
    [(method, thread, seen)] = module.calls
    assert method == "pre_create"
    assert thread != threading.get_ident()
    assert seen["IdempotencyKey"] == "k"
    # The plugin got a copy.
    assert payload["Type"] == "pre-create"


async def test_sync_method_rejects(plugin_module: Callable[[str], str]) -> None:
    backend = PluginHookBackend(f"{plugin_module(PLUGIN)}:make")
    event = make_event("pre-create")
    event.upload.metadata["filename"] = "evil.exe"
    resp = await backend.invoke("pre-create", build_request(event, idempotency_key="k"))
    assert resp.reject_upload is True
    assert resp.http_response == HTTPResponse(403, None, {})


async def test_async_method_is_awaited_in_the_loop(plugin_module: Callable[[str], str]) -> None:
    name = plugin_module(PLUGIN)
    backend = PluginHookBackend(f"{name}:instance")
    resp = await backend.invoke("post-finish", build_request(make_event(), idempotency_key="k"))
    assert resp == HookResponse()
    [(method, thread, _)] = sys.modules[name].calls
    assert method == "post_finish"
    assert thread == threading.get_ident()
    assert await backend.invoke("pre-finish", build_request(make_event(), idempotency_key="k")) == (
        HookResponse()
    )


async def test_missing_method_is_empty(plugin_module: Callable[[str], str]) -> None:
    backend = PluginHookBackend(f"{plugin_module(PLUGIN)}:Plugin")
    payload = build_request(make_event("post-terminate"), idempotency_key="k")
    assert await backend.invoke("post-terminate", payload) == HookResponse()


async def test_plugin_errors(plugin_module: Callable[[str], str]) -> None:
    backend = PluginHookBackend(f"{plugin_module(PLUGIN)}:Plugin")
    with pytest.raises(HookError, match="database down"):
        await backend.invoke(
            "pre-terminate", build_request(make_event("pre-terminate"), idempotency_key="k")
        )
    with pytest.raises(HookError, match="returned str"):
        await backend.invoke(
            "post-receive", build_request(make_event("post-receive"), idempotency_key="k")
        )


async def test_whole_module_as_plugin(plugin_module: Callable[[str], str]) -> None:
    backend = PluginHookBackend(plugin_module(MODULE_LEVEL))
    resp = await backend.invoke("post-create", build_request(make_event(), idempotency_key="k"))
    assert resp.http_response is not None
    assert resp.http_response.headers == {"X-Module": "0123456789abcdef0123456789abcdef"}


async def test_aclose_calls_close(plugin_module: Callable[[str], str]) -> None:
    backend = PluginHookBackend(f"{plugin_module(PLUGIN)}:Plugin")
    await backend.aclose()
    assert backend.plugin.closed is True


async def test_plugin_object_directly() -> None:
    class Inline:
        async def pre_access(self, request: dict[str, object]) -> dict[str, object]:
            return {"RejectAccess": request["Type"] == "pre-access"}

    backend = PluginHookBackend(plugin=Inline())
    resp = await backend.invoke(
        "pre-access", build_request(make_event("pre-access"), idempotency_key="k")
    )
    assert resp.reject_access is True
    with pytest.raises(TypeError):
        PluginHookBackend()
