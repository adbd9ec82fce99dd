"""Per-principal quotas in a server (real HS256 tokens, the in-process ledger): refusals
before bytes move, deferred lengths stopped at the quota, concatenation counted from
its partials, space freed by DELETE, expiry and finishing, claims overriding the
flags, the Tusd-Trio-Quota header, and the ledger rebuilt from the store at start-up."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
import trio

from tests._support.server import Running, ServerFactory
from tests._support.tus import OCTET, TUS
from tusd_trio.auth import AuthConfig
from tusd_trio.config import Config, ConfigError
from tusd_trio.hooks.dispatcher import HookDispatcher
from tusd_trio.hooks.plugin import PluginHookBackend
from tusd_trio.lockers.redis import RedisLocker
from tusd_trio.protocol.errors import StoreError
from tusd_trio.protocol.interop import VERSIONS
from tusd_trio.quotas.policy import QuotaConfig
from tusd_trio.stores.file import FileStore

SECRET = "q" * 40
AUTH = AuthConfig(jwt_secret=SECRET)


def bearer(sub: str = "alice", **claims: Any) -> dict[str, str]:
    payload = {"sub": sub, "exp": int(time.time()) + 600, **claims}
    return {**TUS, "Authorization": f"Bearer {jwt.encode(payload, SECRET, algorithm='HS256')}"}


async def quota_server(make_server: ServerFactory, **limits: Any) -> Running:
    return await make_server(auth=AUTH, quota=QuotaConfig(enabled=True, **limits))


async def create(srv: Running, length: int | None, who: dict[str, str], **extra: str) -> Any:
    headers = {**who, **extra}
    if length is not None:
        headers["Upload-Length"] = str(length)
    return await srv.client.post(srv.url, headers=headers)


def header_fields(value: str) -> dict[str, int]:
    return {k.strip(): int(v) for k, v in (item.split("=") for item in value.split(","))}


async def test_creation_reserves_and_shows_the_state(make_server: ServerFactory) -> None:
    srv = await quota_server(make_server, bytes=1000, uploads=5, max_size=800)
    r = await create(srv, 600, bearer())
    assert r.status_code == 201
    assert header_fields(r.headers["tusd-trio-quota"]) == {
        "bytes": 600,
        "bytes-limit": 1000,
        "uploads": 1,
        "uploads-limit": 5,
        "max-size": 800,
    }
    r = await create(srv, 401, bearer())
    assert r.status_code == 413
    assert r.text.startswith("ERR_QUOTA_EXCEEDED")
    assert header_fields(r.headers["tusd-trio-quota"])["bytes"] == 600
    # Another principal has a quota of its own.
    assert (await create(srv, 800, bearer("bob"))).status_code == 201
    # One upload's size: refused whatever the room left.
    r = await create(srv, 801, bearer("carol"))
    assert r.status_code == 413
    assert "at most 800 bytes" in r.text
    r = await create(srv, 400, bearer())
    assert r.status_code == 201
    assert header_fields(r.headers["tusd-trio-quota"])["bytes"] == 1000
    # Nothing was created for the refused requests.
    assert len([p for p in srv.upload_dir.iterdir() if p.suffix == ".info"]) == 3


async def test_unfinished_uploads_limit_and_finishing_frees_a_slot(
    make_server: ServerFactory,
) -> None:
    srv = await quota_server(make_server, uploads=2)
    first = (await create(srv, 3, bearer())).headers["location"]
    assert (await create(srv, 3, bearer())).status_code == 201
    r = await create(srv, 3, bearer())
    assert r.status_code == 403
    assert r.text.startswith("ERR_QUOTA_UPLOADS_EXCEEDED")
    r = await srv.client.patch(
        first, headers={**bearer(), **OCTET, "Upload-Offset": "0"}, content=b"abc"
    )
    assert r.status_code == 204
    r = await create(srv, 3, bearer())
    assert r.status_code == 201
    assert header_fields(r.headers["tusd-trio-quota"])["uploads"] == 2


async def test_delete_and_expiry_free_the_space(make_server: ServerFactory) -> None:
    srv = await make_server(
        protocol={"expiration": 3600.0},
        expiration_interval=3600.0,
        auth=AUTH,
        quota=QuotaConfig(enabled=True, bytes=1000),
    )
    loc = (await create(srv, 1000, bearer())).headers["location"]
    assert (await create(srv, 1, bearer())).status_code == 413
    assert (await srv.client.delete(loc, headers=bearer())).status_code == 204
    r = await create(srv, 1000, bearer())
    assert r.status_code == 201
    assert (await create(srv, 1, bearer())).status_code == 413
    removed = await srv.server.runtime.janitor.sweep(now=time.time() + 7200)
    assert removed == 1
    r = await create(srv, 1000, bearer())
    assert r.status_code == 201
    assert header_fields(r.headers["tusd-trio-quota"])["bytes"] == 1000


async def test_deferred_length_is_stopped_at_the_quota(make_server: ServerFactory) -> None:
    srv = await quota_server(make_server, bytes=1000)
    assert (await create(srv, 300, bearer())).status_code == 201
    r = await create(srv, None, bearer(), **{"Upload-Defer-Length": "1"})
    assert r.status_code == 201
    loc = r.headers["location"]
    patch = {**bearer(), **OCTET}
    r = await srv.client.patch(loc, headers={**patch, "Upload-Offset": "0"}, content=b"a" * 500)
    assert r.status_code == 204
    # 200 bytes are left: a body of 300 gets 200 of them stored, then a 413.
    r = await srv.client.patch(loc, headers={**patch, "Upload-Offset": "500"}, content=b"b" * 300)
    assert r.status_code == 413
    assert r.text.startswith("ERR_QUOTA_EXCEEDED")
    head = await srv.client.head(loc, headers=bearer())
    assert head.headers["upload-offset"] == "700"
    # Full: even a body without Content-Length (chunked) gets nothing more in.

    async def chunks() -> AsyncIterator[bytes]:
        yield b"c" * 10

    r = await srv.client.patch(loc, headers={**patch, "Upload-Offset": "700"}, content=chunks())
    assert r.status_code == 413
    assert (await srv.client.head(loc, headers=bearer())).headers["upload-offset"] == "700"
    # Declaring a length beyond the quota is refused; declaring what is there is not.
    r = await srv.client.patch(
        loc, headers={**patch, "Upload-Offset": "700", "Upload-Length": "701"}, content=b""
    )
    assert r.status_code == 413
    r = await srv.client.patch(
        loc, headers={**patch, "Upload-Offset": "700", "Upload-Length": "700"}, content=b""
    )
    assert r.status_code == 204
    # The deleted upload gives back exactly what it held.
    assert (await srv.client.delete(loc, headers=bearer())).status_code == 204
    r = await create(srv, 700, bearer())
    assert r.status_code == 201
    assert header_fields(r.headers["tusd-trio-quota"])["bytes"] == 1000


async def test_deferred_length_respects_the_max_size(make_server: ServerFactory) -> None:
    srv = await quota_server(make_server, max_size=100)
    r = await create(srv, None, bearer(), **{"Upload-Defer-Length": "1"})
    loc = r.headers["location"]
    r = await srv.client.patch(
        loc, headers={**bearer(), **OCTET, "Upload-Offset": "0"}, content=b"x" * 150
    )
    assert r.status_code == 413
    assert "at most 100 bytes" in r.text
    assert (await srv.client.head(loc, headers=bearer())).headers["upload-offset"] == "100"


async def test_concatenation_counts_the_summed_partials(make_server: ServerFactory) -> None:
    srv = await quota_server(make_server, bytes=1000)
    partials = []
    for _ in range(2):
        r = await create(srv, 300, bearer(), **{"Upload-Concat": "partial"})
        loc = r.headers["location"]
        r = await srv.client.patch(
            loc, headers={**bearer(), **OCTET, "Upload-Offset": "0"}, content=b"p" * 300
        )
        assert r.status_code == 204
        partials.append(loc)
    final = {"Upload-Concat": "final;" + " ".join(partials)}
    r = await create(srv, None, bearer(), **final)
    assert r.status_code == 413  # 600 held + 600 for the copy
    assert (await srv.client.delete(partials[0], headers=bearer())).status_code == 204
    r = await create(srv, 300, bearer(), **{"Upload-Concat": "partial"})
    # 300 (partial 2) + 300 (new partial) held: a final of partial 2 alone (300) fits.
    r = await create(srv, None, bearer(), **{"Upload-Concat": f"final;{partials[1]}"})
    assert r.status_code == 201
    assert header_fields(r.headers["tusd-trio-quota"])["bytes"] == 900


async def test_claims_override_the_flags(make_server: ServerFactory) -> None:
    srv = await quota_server(make_server, bytes=1000)
    assert (await create(srv, 51, bearer(tus_quota_bytes=50))).status_code == 413
    r = await create(srv, 5000, bearer("big", tus_quota_bytes=0))  # 0: no limit
    assert r.status_code == 201
    assert "bytes-limit" not in r.headers["tusd-trio-quota"]
    assert (await create(srv, 11, bearer("s", tus_max_size=10))).status_code == 413
    assert (await create(srv, 1, bearer("u", tus_max_uploads=1))).status_code == 201
    assert (await create(srv, 1, bearer("u", tus_max_uploads=1))).status_code == 403
    r = await create(srv, 1, bearer("odd", tus_quota_bytes="lots"))
    assert r.status_code == 401
    assert "tus_quota_bytes" in r.headers["www-authenticate"]


async def test_in_process_ledger_is_rebuilt_at_start_up(
    make_server: ServerFactory, tmp_path: Any
) -> None:
    settings: dict[str, Any] = {
        "auth": AUTH,
        "quota": QuotaConfig(enabled=True, bytes=1000, uploads=3),
    }
    first = await make_server(**settings)
    done = (await create(first, 100, bearer())).headers["location"]
    r = await first.client.patch(
        done, headers={**bearer(), **OCTET, "Upload-Offset": "0"}, content=b"d" * 100
    )
    assert r.status_code == 204
    assert (await create(first, 200, bearer())).status_code == 201
    deferred = (await create(first, None, bearer(), **{"Upload-Defer-Length": "1"})).headers[
        "location"
    ]
    r = await first.client.patch(
        deferred, headers={**bearer(), **OCTET, "Upload-Offset": "0"}, content=b"e" * 50
    )
    assert r.status_code == 204
    # A new server on the same directory counts what is there: 350 bytes, 2 unfinished.
    second = await make_server(upload_dir=str(first.upload_dir), **settings)
    r = await create(second, 650, bearer())
    assert r.status_code == 201
    assert header_fields(r.headers["tusd-trio-quota"])["bytes"] == 1000
    assert header_fields(r.headers["tusd-trio-quota"])["uploads"] == 3


async def test_quotas_need_access_control(tmp_path: Any) -> None:
    with pytest.raises(ConfigError, match="need access control"):
        Config(upload_dir=str(tmp_path), quota=QuotaConfig(enabled=True, bytes=10))
    with pytest.raises(ConfigError, match="-locker redis"):
        Config(upload_dir=str(tmp_path), auth=AUTH, quota=QuotaConfig(enabled=True), workers=2)


async def test_unreachable_redis_refuses_creations_with_503(
    make_server: ServerFactory, tmp_path: Any
) -> None:
    with trio.socket.socket() as sock:  # a port nobody listens on
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    locker = RedisLocker(f"redis://127.0.0.1:{port}/0", ttl=5, timeout=0.5)
    srv = await make_server(
        store=FileStore(str(tmp_path / "up")),
        locker=locker,
        auth=AUTH,
        quota=QuotaConfig(enabled=True, bytes=1000),
    )
    r = await create(srv, 5, bearer())
    # The quota cannot be checked: the upload is not created (fail closed).
    assert r.status_code == 503
    assert r.text.startswith("ERR_LOCKER_UNAVAILABLE")
    assert r.headers["retry-after"].isdigit()
    assert list((tmp_path / "up").glob("*.info")) == []


async def test_ietf_draft_creations_are_counted_too(make_server: ServerFactory) -> None:
    srv = await make_server(
        auth=AUTH, quota=QuotaConfig(enabled=True, bytes=1000), enable_experimental_protocol=True
    )
    version = VERSIONS[max(VERSIONS)]
    name, value = version.complete_header(True)
    draft = {**bearer(), "Upload-Draft-Interop-Version": str(version.number)}
    del draft["Tus-Resumable"]
    r = await srv.client.post(srv.url, headers={**draft, name: value}, content=b"d" * 100)
    assert r.status_code == 201
    assert header_fields(r.headers["tusd-trio-quota"])["bytes"] == 100
    # Complete, so its length is known: refused before any byte is read.
    r = await srv.client.post(srv.url, headers={**draft, name: value}, content=b"d" * 901)
    assert r.status_code == 413
    # Incomplete (a deferred length): the bytes within the quota are kept.
    name, value = version.complete_header(False)
    r = await srv.client.post(srv.url, headers={**draft, name: value}, content=b"e" * 1000)
    assert r.status_code == 413
    head = await srv.client.head(r.headers["location"], headers=draft)
    assert head.headers["upload-offset"] == "900"


class StopEveryUpload:
    """A hook plugin whose post-receive answer stops the upload (it is then terminated)."""

    async def post_receive(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"StopUpload": True}


async def test_an_upload_stopped_by_a_hook_frees_its_space(make_server: ServerFactory) -> None:
    hooks = HookDispatcher(
        [PluginHookBackend(plugin=StopEveryUpload())], frozenset({"post-receive"})
    )
    srv = await make_server(
        auth=AUTH,
        quota=QuotaConfig(enabled=True, bytes=100_000),
        hooks=hooks,
        progress_hooks_interval=0.05,
    )
    loc = (await create(srv, 100_000, bearer())).headers["location"]
    assert (await create(srv, 1, bearer())).status_code == 413

    async def trickle() -> AsyncIterator[bytes]:
        for _ in range(200):  # until the hook's answer ends the request
            yield b"x" * 100
            await trio.sleep(0.02)

    r = await srv.client.patch(
        loc, headers={**bearer(), **OCTET, "Upload-Offset": "0"}, content=trickle()
    )
    assert r.status_code == 400
    assert r.text.startswith("ERR_UPLOAD_STOPPED")
    assert (await srv.client.head(loc, headers=bearer())).status_code == 404
    r = await create(srv, 100_000, bearer())
    assert r.status_code == 201


async def test_an_admin_writing_to_an_upload_counts_for_its_owner(
    make_server: ServerFactory,
) -> None:
    srv = await make_server(
        auth=AuthConfig(jwt_secret=SECRET, jwt_admin_claim="admin"),
        quota=QuotaConfig(enabled=True, bytes=1000),
    )
    r = await create(srv, None, bearer(), **{"Upload-Defer-Length": "1"})
    loc = r.headers["location"]
    # The admin's own claim limits its own uploads, not alice's: hers has the defaults.
    admin = bearer("root", admin=True, tus_quota_bytes=10)
    r = await srv.client.patch(
        loc, headers={**admin, **OCTET, "Upload-Offset": "0"}, content=b"a" * 500
    )
    assert r.status_code == 204
    r = await create(srv, 100, bearer())
    assert header_fields(r.headers["tusd-trio-quota"])["bytes"] == 600
    assert (await create(srv, 5, admin)).status_code == 201
    assert (await create(srv, 6, admin)).status_code == 413


class _DeclareFails(FileStore):
    """A store that cannot record a declared length (a full disk, say): a fault this
    test cannot cause for real at exactly that step."""

    async def declare_length(self, info: Any, length: int) -> Any:
        raise StoreError("the disk is full")


async def test_a_declared_length_the_store_cannot_record_is_given_back(
    make_server: ServerFactory, tmp_path: Any
) -> None:
    srv = await make_server(
        store=_DeclareFails(str(tmp_path / "up")),
        auth=AUTH,
        quota=QuotaConfig(enabled=True, bytes=1000),
    )
    loc = (await create(srv, None, bearer(), **{"Upload-Defer-Length": "1"})).headers["location"]
    r = await srv.client.patch(
        loc, headers={**bearer(), **OCTET, "Upload-Offset": "0", "Upload-Length": "900"}
    )
    assert r.status_code == 500
    # The 900 bytes reserved for the declaration are free again.
    r = await create(srv, 1000, bearer())
    assert r.status_code == 201, r.text
