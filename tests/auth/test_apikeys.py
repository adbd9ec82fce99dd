"""Static API keys: hashed at rest, sent in a header, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from types import SimpleNamespace

import pytest

from tusd_trio.auth import (
    AuthConfig,
    AuthConfigError,
    Authenticator,
    AuthError,
    apikeys,
    hash_api_key,
)

from .helpers import NOW, write

KEY_A = "k-alpha-0123456789abcdefghijklmnop"
KEY_B = "k-beta-0123456789abcdefghijklmnopq"


@pytest.fixture
def keys_file(tmp_path: Path) -> str:
    lines = [
        "# issued 2025-01-01",
        hash_api_key(KEY_A, "uploader"),
        "",
        hash_api_key(KEY_B, "ops", admin=True),
    ]
    return write(tmp_path, "keys", "\n".join(lines) + "\n")


def test_hash_api_key_format() -> None:
    line = hash_api_key("secret-key", "svc")
    assert line == "svc:sha256:" + hashlib.sha256(b"secret-key").hexdigest()
    assert hash_api_key("secret-key", "svc", admin=True) == line + ":admin"
    assert "secret-key" not in line
    assert hash_api_key("x").startswith("default:sha256:")
    with pytest.raises(ValueError):
        hash_api_key("", "svc")
    with pytest.raises(ValueError):
        hash_api_key("k", "bad name")
    with pytest.raises(ValueError):
        hash_api_key("k", "a:b")


def test_right_key(keys_file: str) -> None:
    auth = Authenticator(AuthConfig(api_keys_file=keys_file))
    principal = auth.authenticate("HEAD", "/files/x", {"x-api-key": KEY_A}, NOW)
    assert principal is not None
    assert (principal.subject, principal.admin, principal.via) == ("uploader", False, "api-key")
    assert principal.owner_id == "api-key:uploader"
    admin = auth.authenticate("HEAD", "/files/x", {"x-api-key": KEY_B}, NOW)
    assert admin is not None
    assert (admin.subject, admin.admin) == ("ops", True)


@pytest.mark.parametrize("key", ["wrong", "", KEY_A + "x", KEY_A[:-1], KEY_A.upper()])
def test_wrong_key(keys_file: str, key: str) -> None:
    auth = Authenticator(AuthConfig(api_keys_file=keys_file))
    with pytest.raises(AuthError) as info:
        auth.authenticate("HEAD", "/files/x", {"x-api-key": key}, NOW)
    assert (info.value.status, info.value.code) == (401, "ERR_UNAUTHORIZED")
    assert info.value.headers["WWW-Authenticate"].startswith("Bearer")


def test_missing_key(keys_file: str) -> None:
    auth = Authenticator(AuthConfig(api_keys_file=keys_file))
    with pytest.raises(AuthError) as info:
        auth.authenticate("POST", "/files/", {}, NOW)
    assert info.value.status == 401


def test_custom_header(keys_file: str) -> None:
    auth = Authenticator(AuthConfig(api_keys_file=keys_file, api_key_header="X-Upload-Token"))
    principal = auth.authenticate("HEAD", "/files/x", {"x-upload-token": KEY_A}, NOW)
    assert principal is not None and principal.subject == "uploader"
    with pytest.raises(AuthError):
        auth.authenticate("HEAD", "/files/x", {"x-api-key": KEY_A}, NOW)


def test_constant_time_compare_against_every_entry(
    keys_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    auth = Authenticator(AuthConfig(api_keys_file=keys_file))
    calls: list[tuple[bytes, bytes]] = []

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return hmac.compare_digest(a, b)

    monkeypatch.setattr(apikeys, "hmac", SimpleNamespace(compare_digest=spy))
    auth.authenticate("HEAD", "/files/x", {"x-api-key": KEY_A}, NOW)  # the first entry
    assert len(calls) == 2  # no early exit after the match
    calls.clear()
    with pytest.raises(AuthError):
        auth.authenticate("HEAD", "/files/x", {"x-api-key": "nope"}, NOW)
    assert len(calls) == 2
    assert all(a == hashlib.sha256(b"nope").digest() for a, _ in calls)


@pytest.mark.parametrize(
    "content",
    [
        "",
        "# only a comment\n",
        "name:plain-key\n",
        "name:sha256:abcd\n",
        "bad name:sha256:" + "0" * 64 + "\n",
        "a:sha256:" + "0" * 64 + "\na:sha256:" + "1" * 64 + "\n",
        "a:sha256:" + "0" * 64 + ":root\n",
    ],
)
def test_bad_key_file(tmp_path: Path, content: str) -> None:
    with pytest.raises(AuthConfigError):
        Authenticator(AuthConfig(api_keys_file=write(tmp_path, "keys", content)))


def test_missing_key_file(tmp_path: Path) -> None:
    with pytest.raises(AuthConfigError):
        Authenticator(AuthConfig(api_keys_file=str(tmp_path / "nope")))
