"""Pre-signed creation URLs: valid, tampered, expired, reused; upload grants."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

from tusd_trio.auth import (
    OWNER_METADATA_KEY,
    AuthConfig,
    Authenticator,
    AuthError,
    Principal,
    sign_upload_url,
)

from .helpers import NOW, SIGNING_SECRET


def target_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def with_param(url: str, name: str, value: str | None) -> str:
    parts = urlsplit(url)
    pairs = [(k, v) for k, v in parse_qsl(parts.query) if k != name]
    if value is not None:
        pairs.append((name, value))
    return f"{parts.path}?{urlencode(pairs)}"


@pytest.fixture
def auth() -> Authenticator:
    return Authenticator(AuthConfig(signing_secret=SIGNING_SECRET))


def sign(**kwargs: object) -> str:
    options: dict[str, object] = {"expires_in": 3600.0, "now": NOW}
    options.update(kwargs)
    return sign_upload_url("http://host/files/", SIGNING_SECRET, **options)  # type: ignore[arg-type]


def forbidden(auth: Authenticator, method: str, target: str, now: float = NOW) -> AuthError:
    with pytest.raises(AuthError) as info:
        auth.authenticate(method, target, {}, now)
    assert (info.value.status, info.value.code) == (403, "ERR_FORBIDDEN")
    return info.value


def test_url_shape() -> None:
    url = sign(max_size=1000, metadata={"filename": "a.txt", "tag": ""}, nonce="n0nce")
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("http", "host", "/files/")
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    assert params["tus-expires"] == str(int(NOW + 3600))
    assert params["tus-max-size"] == "1000"
    assert params["tus-metadata"] == "filename YS50eHQ=,tag"
    assert params["tus-nonce"] == "n0nce"
    assert len(params["tus-signature"]) == 43


def test_valid(auth: Authenticator) -> None:
    url = sign(max_size=1000, metadata={"filename": "a.txt"})
    principal = auth.authenticate("POST", target_of(url), {}, NOW + 10)
    assert principal is not None
    assert principal.via == "presigned" and not principal.admin
    assert principal.limits == {
        "max_size": 1000,
        "metadata": {"filename": "a.txt"},
        "expires": NOW + 3600,
    }


def test_base_url_query_kept_and_path_without_slash(auth: Authenticator) -> None:
    url = sign_upload_url("https://h/files?x=1", SIGNING_SECRET, expires_in=60, now=NOW)
    assert dict(parse_qsl(urlsplit(url).query))["x"] == "1"
    assert auth.authenticate("POST", target_of(url), {}, NOW) is not None


def test_absolute_form_target(auth: Authenticator) -> None:
    url = sign()
    assert auth.authenticate("POST", url, {}, NOW) is not None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("tus-max-size", "1000000"),  # raised
        ("tus-max-size", None),  # removed
        ("tus-metadata", "filename ZXZpbC5leGU="),
        ("tus-metadata", None),
        ("tus-expires", str(int(NOW + 999999))),
        ("tus-nonce", "other"),
        ("tus-signature", "A" * 43),
        ("tus-signature", ""),
        ("tus-signature", "é"),
        ("tus-expires", "soon"),
    ],
)
def test_tampered(auth: Authenticator, name: str, value: str | None) -> None:
    url = sign(max_size=1000, metadata={"filename": "a.txt"})
    forbidden(auth, "POST", with_param(url, name, value))


def test_added_max_size_is_tampering(auth: Authenticator) -> None:
    forbidden(auth, "POST", with_param(sign(), "tus-max-size", "5"))


def test_repeated_parameter(auth: Authenticator) -> None:
    url = sign(max_size=1000)
    forbidden(auth, "POST", target_of(url) + "&tus-max-size=99999")


def test_other_secret(auth: Authenticator) -> None:
    url = sign_upload_url("http://host/files/", "another-secret-0123456789", expires_in=60, now=NOW)
    forbidden(auth, "POST", target_of(url))


def test_expired(auth: Authenticator) -> None:
    url = sign(expires_in=60)
    error = forbidden(auth, "POST", target_of(url), now=NOW + 60)
    assert "expired" in error.message
    assert auth.authenticate("POST", target_of(url), {}, NOW + 59) is not None


def test_reused(auth: Authenticator) -> None:
    url = sign()
    assert auth.authenticate("POST", target_of(url), {}, NOW) is not None
    error = forbidden(auth, "POST", target_of(url), now=NOW + 1)
    assert "already used" in error.message


def test_used_nonces_forgotten_after_expiry(auth: Authenticator) -> None:
    for index in range(5):
        auth.authenticate("POST", target_of(sign(expires_in=10 + index)), {}, NOW)
    assert auth._presign is not None
    assert auth._presign.used_count() == 5
    auth.authenticate("POST", target_of(sign(now=NOW + 100)), {}, NOW + 100)
    assert auth._presign.used_count() == 1


@pytest.mark.parametrize(
    ("method", "path"),
    [("PATCH", "/files/"), ("GET", "/files/"), ("POST", "/files/abc"), ("POST", "/other/")],
)
def test_only_creation_at_base_path(auth: Authenticator, method: str, path: str) -> None:
    query = urlsplit(sign()).query
    forbidden(auth, method, f"{path}?{query}")


def test_options_passes_unauthenticated(auth: Authenticator) -> None:
    assert auth.authenticate("OPTIONS", "/files/", {}, NOW) is None


def test_without_credentials(auth: Authenticator) -> None:
    with pytest.raises(AuthError) as info:
        auth.authenticate("POST", "/files/", {}, NOW)
    assert info.value.status == 401


def test_sign_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        sign_upload_url("http://h/files/", "short", expires_in=60)
    with pytest.raises(ValueError):
        sign_upload_url("/files/", SIGNING_SECRET, expires_in=60)
    with pytest.raises(ValueError):
        sign_upload_url("http://h/files/", SIGNING_SECRET, expires_in=0)
    with pytest.raises(ValueError):
        sign_upload_url("http://h/files/?tus-nonce=x", SIGNING_SECRET, expires_in=60)
    with pytest.raises(ValueError):
        sign_upload_url("http://h/files/", SIGNING_SECRET, expires_in=60, metadata={"a b": "x"})


# --- creation metadata and the grant to resume the upload ------------------------------


def test_creation_metadata_and_grant(auth: Authenticator) -> None:
    url = sign(max_size=100, metadata={"filename": "forced.txt", OWNER_METADATA_KEY: "x"})
    principal = auth.authenticate("POST", target_of(url), {}, NOW)
    assert principal is not None
    client = {"filename": "evil.exe", "type": "text/plain", OWNER_METADATA_KEY: "jwt:root"}
    stored = auth.creation_metadata(principal, client, 100)
    assert stored == {
        "filename": "forced.txt",
        "type": "text/plain",
        OWNER_METADATA_KEY: principal.owner_id,
    }
    with pytest.raises(AuthError) as info:
        auth.creation_metadata(principal, {}, 101)
    assert info.value.status == 403
    with pytest.raises(AuthError):
        auth.creation_metadata(principal, {}, None)  # deferred length under a size cap

    query = auth.location_query(principal, "upload1", NOW)
    assert query.startswith("tus-access=")
    resumed = auth.authenticate("PATCH", f"/files/upload1?{query}", {}, NOW + 50)
    assert resumed is not None
    assert resumed.owner_id == principal.owner_id
    auth.check_owner(resumed, stored)
    # the grant is bound to its upload, and expires (default 24 h)
    forbidden(auth, "PATCH", f"/files/upload2?{query}", NOW + 50)
    forbidden(auth, "POST", f"/files/?{query}", NOW + 50)
    forbidden(auth, "HEAD", f"/files/upload1?{query}", NOW + 24 * 3600 + 1)
    nonce, expires, signature = query.split("=", 1)[1].split(".")
    forbidden(auth, "HEAD", f"/files/upload1?tus-access={nonce}.{int(expires) + 9}.{signature}")
    forbidden(auth, "HEAD", f"/files/upload1?tus-access=x{nonce}.{expires}.{signature}")
    forbidden(auth, "HEAD", f"/files/upload1?tus-access={nonce}")


def test_location_query_only_for_presigned(auth: Authenticator) -> None:
    principal = Principal(subject="alice", admin=False, via="jwt")
    assert auth.location_query(principal, "u", NOW) == ""
    assert auth.location_query(None, "u", NOW) == ""


def test_redact_url_hides_every_credential_parameter() -> None:
    from tusd_trio.auth import redact_url

    url = sign_upload_url(
        "http://h/files/?keep=1", SIGNING_SECRET, expires_in=60, max_size=5, now=NOW
    )
    redacted = redact_url(url)
    assert "keep=1" in redacted and "tus-max-size=5" in redacted
    for name in ("tus-signature", "tus-nonce", "tus-expires"):
        assert f"{name}=REDACTED" in redacted
    query = url.split("?", 1)[1]
    for part in query.split("&"):
        name, _, value = part.partition("=")
        if name in ("tus-signature", "tus-nonce", "tus-expires"):
            assert value not in redacted
    assert redact_url("/files/x?tus-access=n.1.sig") == "/files/x?tus-access=REDACTED"
    # Encoded names are what the authenticator decodes, so they are redacted too.
    assert redact_url("/files/x?tus%2Daccess=n.1.sig") == "/files/x?tus%2Daccess=REDACTED"
    assert redact_url("/files/x") == "/files/x"
    assert redact_url("/files/x?a=b") == "/files/x?a=b"
