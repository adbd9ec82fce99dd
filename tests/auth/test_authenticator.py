"""Authenticator as a whole: enabling, precedence, OPTIONS, ownership."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tusd_trio.auth import (
    OWNER_METADATA_KEY,
    AuthConfig,
    AuthConfigError,
    Authenticator,
    AuthError,
    Principal,
    hash_api_key,
    sign_upload_url,
)
from tusd_trio.protocol.errors import TusError

from .helpers import NOW, SECRET, SIGNING_SECRET, token, write

API_KEY = "k-0123456789abcdefghijklmnopqrstuv"


@pytest.fixture
def auth(tmp_path: Path) -> Authenticator:
    keys = write(tmp_path, "keys", hash_api_key(API_KEY, "svc") + "\n")
    return Authenticator(
        AuthConfig(
            jwt_secret=SECRET,
            jwt_admin_claim="roles=admin",
            api_keys_file=keys,
            signing_secret=SIGNING_SECRET,
        )
    )


def test_disabled_by_default() -> None:
    auth = Authenticator(AuthConfig())
    assert not auth.enabled and not AuthConfig().enabled
    assert auth.authenticate("DELETE", "/files/x", {}, NOW) is None
    auth.check_owner(None, {})
    assert auth.creation_metadata(None, {"a": "1", OWNER_METADATA_KEY: "x"}, None) == {"a": "1"}


@pytest.mark.parametrize(
    "config",
    [
        AuthConfig(jwt_secret=SECRET),
        AuthConfig(jwt_jwks_file="x"),
        AuthConfig(api_keys_file="x"),
        AuthConfig(signing_secret_file="x"),
    ],
)
def test_enabled(config: AuthConfig) -> None:
    assert config.enabled


def test_options_always_passes(auth: Authenticator) -> None:
    assert auth.authenticate("OPTIONS", "/files/x", {}, NOW) is None
    assert auth.authenticate("options", "/files/", {"authorization": "Bearer junk"}, NOW) is None


@pytest.mark.parametrize("method", ["POST", "HEAD", "PATCH", "GET", "DELETE"])
def test_missing_credentials(auth: Authenticator, method: str) -> None:
    with pytest.raises(AuthError) as info:
        auth.authenticate(method, "/files/x", {}, NOW)
    error = info.value
    assert isinstance(error, TusError)
    assert (error.status, error.code) == (401, "ERR_UNAUTHORIZED")
    assert error.headers == {"WWW-Authenticate": 'Bearer realm="tusd-trio"'}
    assert str(error).startswith("ERR_UNAUTHORIZED: ")


def test_unsupported_scheme(auth: Authenticator) -> None:
    with pytest.raises(AuthError) as info:
        auth.authenticate("HEAD", "/files/x", {"authorization": "Basic YTpi"}, NOW)
    assert info.value.status == 401


def test_basic_scheme_falls_back_to_api_key(auth: Authenticator) -> None:
    headers = {"authorization": "Basic YTpi", "x-api-key": API_KEY}
    principal = auth.authenticate("HEAD", "/files/x", headers, NOW)
    assert principal is not None and principal.via == "api-key"


def test_bearer_wins_over_api_key(auth: Authenticator) -> None:
    headers = {"authorization": "Bearer " + token(SECRET, "HS256"), "x-api-key": "wrong"}
    principal = auth.authenticate("HEAD", "/files/x", headers, NOW)
    assert principal is not None and principal.via == "jwt"
    with pytest.raises(AuthError):  # an invalid bearer token is not rescued by a good key
        auth.authenticate(
            "HEAD", "/files/x", {"authorization": "Bearer bad", "x-api-key": API_KEY}, NOW
        )


def test_bearer_scheme_case_insensitive(auth: Authenticator) -> None:
    principal = auth.authenticate(
        "HEAD", "/files/x", {"authorization": "bearer " + token(SECRET, "HS256")}, NOW
    )
    assert principal is not None


def test_presigned_ignored_when_not_configured(tmp_path: Path) -> None:
    auth = Authenticator(AuthConfig(jwt_secret=SECRET))
    url = sign_upload_url("http://h/files/", SIGNING_SECRET, expires_in=60, now=NOW)
    parts = urlsplit(url)
    with pytest.raises(AuthError) as info:
        auth.authenticate("POST", f"{parts.path}?{parts.query}", {}, NOW)
    assert info.value.status == 401


def test_unrelated_query_does_not_matter(auth: Authenticator) -> None:
    headers = {"x-api-key": API_KEY}
    assert auth.authenticate("GET", "/files/x?download=1", headers, NOW) is not None


# --- ownership -------------------------------------------------------------------------


def test_owner_check(auth: Authenticator) -> None:
    alice = auth.authenticate(
        "POST", "/files/", {"authorization": "Bearer " + token(SECRET, "HS256")}, NOW
    )
    assert alice is not None
    stored = auth.creation_metadata(alice, {"filename": "a"}, 10)
    assert stored[OWNER_METADATA_KEY] == "jwt:alice"
    auth.check_owner(alice, stored)

    bob = auth.authenticate(
        "HEAD", "/files/x", {"authorization": "Bearer " + token(SECRET, "HS256", sub="bob")}, NOW
    )
    with pytest.raises(AuthError) as info:
        auth.check_owner(bob, stored)
    assert (info.value.status, info.value.code) == (403, "ERR_FORBIDDEN")

    admin = auth.authenticate(
        "HEAD",
        "/files/x",
        {"authorization": "Bearer " + token(SECRET, "HS256", sub="root", roles=["admin"])},
        NOW,
    )
    assert admin is not None and admin.admin
    auth.check_owner(admin, stored)
    auth.check_owner(admin, {})  # ownerless upload: admins only


def test_same_name_other_credential_kind_is_another_owner(auth: Authenticator) -> None:
    stored = {OWNER_METADATA_KEY: "jwt:svc"}
    key_user = auth.authenticate("HEAD", "/files/x", {"x-api-key": API_KEY}, NOW)
    assert key_user is not None and key_user.subject == "svc"
    with pytest.raises(AuthError):
        auth.check_owner(key_user, stored)


def test_ownerless_upload_forbidden_for_non_admin(auth: Authenticator) -> None:
    with pytest.raises(AuthError) as info:
        auth.check_owner(Principal("alice", False, "jwt"), {})
    assert info.value.status == 403


def test_check_owner_without_principal_when_enabled(auth: Authenticator) -> None:
    with pytest.raises(AuthError) as info:
        auth.check_owner(None, {OWNER_METADATA_KEY: "jwt:alice"})
    assert info.value.status == 401


def test_conflicting_settings(tmp_path: Path) -> None:
    with pytest.raises(AuthConfigError):
        Authenticator(AuthConfig(jwt_secret=SECRET, jwt_secret_file=write(tmp_path, "s", SECRET)))
    with pytest.raises(AuthConfigError):
        Authenticator(AuthConfig(signing_secret="short"))
    with pytest.raises(AuthConfigError):
        Authenticator(AuthConfig(signing_secret_file=write(tmp_path, "e", "\n")))
    with pytest.raises(AuthConfigError):
        Authenticator(AuthConfig(jwt_secret=SECRET, jwt_admin_claim="a..b"))


def test_signing_secret_file(tmp_path: Path) -> None:
    auth = Authenticator(
        AuthConfig(signing_secret_file=write(tmp_path, "s", SIGNING_SECRET + "\n"))
    )
    url = sign_upload_url("http://h/files/", SIGNING_SECRET, expires_in=60, now=NOW)
    parts = urlsplit(url)
    assert auth.authenticate("POST", f"{parts.path}?{parts.query}", {}, NOW) is not None


def test_custom_base_path() -> None:
    auth = Authenticator(AuthConfig(signing_secret=SIGNING_SECRET, base_path="/api/uploads"))
    url = sign_upload_url("http://h/api/uploads/", SIGNING_SECRET, expires_in=60, now=NOW)
    parts = urlsplit(url)
    principal = auth.authenticate("POST", f"{parts.path}?{parts.query}", {}, NOW)
    assert principal is not None
    query = auth.location_query(principal, "u1", NOW)
    assert auth.authenticate("HEAD", f"/api/uploads/u1?{query}", {}, NOW) is not None
