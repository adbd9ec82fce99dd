"""JWT bearer tokens: HS256, RS256, ES256 (PEM and JWKS), claims, algorithm confusion."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, strategies as st
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from tusd_trio.auth import AuthConfig, AuthConfigError, Authenticator, AuthError, Principal

from .helpers import NOW, SECRET, KeyPair, b64, claims, raw_token, token, write


def bearer(value: str) -> dict[str, str]:
    return {"authorization": f"Bearer {value}"}


def auth_ok(auth: Authenticator, tok: str, now: float = NOW) -> Principal:
    principal = auth.authenticate("PATCH", "/files/abc", bearer(tok), now)
    assert principal is not None
    return principal


def auth_fails(auth: Authenticator, tok: str, now: float = NOW, status: int = 401) -> AuthError:
    with pytest.raises(AuthError) as info:
        auth.authenticate("PATCH", "/files/abc", bearer(tok), now)
    assert info.value.status == status
    assert info.value.code == ("ERR_UNAUTHORIZED" if status == 401 else "ERR_FORBIDDEN")
    if status == 401:
        assert info.value.headers["WWW-Authenticate"].startswith('Bearer realm="tusd-trio"')
    return info.value


@pytest.fixture
def hs_auth() -> Authenticator:
    return Authenticator(AuthConfig(jwt_secret=SECRET))


def jwks_file(tmp_path: Path, *entries: tuple[str, Any, str | None]) -> str:
    keys = []
    for kid, public, alg in entries:
        kind = RSAAlgorithm if isinstance(public, rsa.RSAPublicKey) else ECAlgorithm
        jwk: dict[str, Any] = kind.to_jwk(public, as_dict=True)
        jwk["kid"] = kid
        if alg:
            jwk["alg"] = alg
        keys.append(jwk)
    return write(tmp_path, "jwks.json", json.dumps({"keys": keys}))


# --- HS256 ---------------------------------------------------------------------------


def test_hs256_valid(hs_auth: Authenticator) -> None:
    principal = auth_ok(hs_auth, token(SECRET, "HS256"))
    assert principal == Principal(subject="alice", admin=False, via="jwt")
    assert principal.owner_id == "jwt:alice"


def test_hs256_secret_file(tmp_path: Path) -> None:
    path = write(tmp_path, "secret", SECRET + "\n")
    auth = Authenticator(AuthConfig(jwt_secret_file=path))
    assert auth_ok(auth, token(SECRET, "HS256")).subject == "alice"


def test_hs256_wrong_secret(hs_auth: Authenticator) -> None:
    error = auth_fails(hs_auth, token(SECRET + "x", "HS256"))
    assert 'error="invalid_token"' in error.headers["WWW-Authenticate"]


def test_short_hs256_secret_rejected_at_startup() -> None:
    with pytest.raises(AuthConfigError, match="at least 32 bytes"):
        Authenticator(AuthConfig(jwt_secret="short"))


def test_expired(hs_auth: Authenticator) -> None:
    tok = token(SECRET, "HS256", exp=NOW - 1)
    error = auth_fails(hs_auth, tok)
    assert "expired" in error.message
    # exactly at exp is expired too; just before is fine
    assert auth_ok(hs_auth, token(SECRET, "HS256", exp=NOW + 1)).subject == "alice"
    auth_fails(hs_auth, token(SECRET, "HS256", exp=NOW))


def test_leeway() -> None:
    auth = Authenticator(AuthConfig(jwt_secret=SECRET, jwt_leeway=30))
    assert auth_ok(auth, token(SECRET, "HS256", exp=NOW - 10)).subject == "alice"
    auth_fails(auth, token(SECRET, "HS256", exp=NOW - 31))
    assert auth_ok(auth, token(SECRET, "HS256", nbf=NOW + 10)).subject == "alice"


def test_exp_required(hs_auth: Authenticator) -> None:
    error = auth_fails(hs_auth, token(SECRET, "HS256", exp=None))
    assert "exp" in error.message


@pytest.mark.parametrize("exp", ["soon", True, None])
def test_exp_must_be_numeric(hs_auth: Authenticator, exp: object) -> None:
    tok = jwt.encode({"sub": "alice", "exp": exp}, SECRET, algorithm="HS256")
    auth_fails(hs_auth, tok)


def test_nbf_in_future(hs_auth: Authenticator) -> None:
    error = auth_fails(hs_auth, token(SECRET, "HS256", nbf=NOW + 60))
    assert "not valid yet" in error.message
    assert auth_ok(hs_auth, token(SECRET, "HS256", nbf=NOW - 60)).subject == "alice"
    assert auth_ok(hs_auth, token(SECRET, "HS256", nbf=NOW + 60), now=NOW + 61)


def test_sub_required(hs_auth: Authenticator) -> None:
    auth_fails(hs_auth, token(SECRET, "HS256", sub=None))
    auth_fails(hs_auth, jwt.encode({"sub": 5, "exp": NOW + 60}, SECRET, algorithm="HS256"))


def test_malformed(hs_auth: Authenticator) -> None:
    auth_fails(hs_auth, "not-a-jwt")
    auth_fails(hs_auth, "a.b.c")
    with pytest.raises(AuthError) as info:
        hs_auth.authenticate("GET", "/files/x", {"authorization": "Bearer "}, NOW)
    assert info.value.status == 401


def test_audience() -> None:
    auth = Authenticator(AuthConfig(jwt_secret=SECRET, jwt_audience="tus, other"))
    assert auth_ok(auth, token(SECRET, "HS256", aud="tus")).subject == "alice"
    assert auth_ok(auth, token(SECRET, "HS256", aud=["x", "other"])).subject == "alice"
    auth_fails(auth, token(SECRET, "HS256", aud="wrong"))
    auth_fails(auth, token(SECRET, "HS256"))  # missing aud


def test_audience_in_token_but_not_configured(hs_auth: Authenticator) -> None:
    auth_fails(hs_auth, token(SECRET, "HS256", aud="someone-else"))


def test_issuer() -> None:
    auth = Authenticator(AuthConfig(jwt_secret=SECRET, jwt_issuer="https://idp.example"))
    assert auth_ok(auth, token(SECRET, "HS256", iss="https://idp.example")).subject == "alice"
    auth_fails(auth, token(SECRET, "HS256", iss="https://evil.example"))
    auth_fails(auth, token(SECRET, "HS256"))  # missing iss


# --- admin claim ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "extra", "admin"),
    [
        ("admin", {"admin": True}, True),
        ("admin", {"admin": "true"}, False),  # bare name: the claim must be JSON true
        ("admin", {}, False),
        ("admin=true", {"admin": True}, True),
        ("roles=admin", {"roles": ["user", "admin"]}, True),
        ("roles=admin", {"roles": ["user"]}, False),
        ("roles=admin", {"roles": "admin"}, True),
        ("scope=tus:admin", {"scope": "read tus:admin write"}, True),
        ("scope=tus:admin", {"scope": "tus:administrator"}, False),
        ("realm_access.roles=admin", {"realm_access": {"roles": ["admin"]}}, True),
        ("realm_access.roles=admin", {"realm_access": ["admin"]}, False),
    ],
)
def test_admin_claim(setting: str, extra: dict[str, Any], admin: bool) -> None:
    auth = Authenticator(AuthConfig(jwt_secret=SECRET, jwt_admin_claim=setting))
    assert auth_ok(auth, token(SECRET, "HS256", **extra)).admin is admin


def test_no_admin_claim_configured(hs_auth: Authenticator) -> None:
    assert auth_ok(hs_auth, token(SECRET, "HS256", admin=True)).admin is False


# --- RS256 / ES256 from PEM ----------------------------------------------------------


def test_rs256_pem(tmp_path: Path, rsa_key: KeyPair, rsa_key2: KeyPair) -> None:
    auth = Authenticator(
        AuthConfig(jwt_public_key_file=write(tmp_path, "k.pem", rsa_key.public_pem))
    )
    assert auth_ok(auth, token(rsa_key.private, "RS256")).subject == "alice"
    auth_fails(auth, token(rsa_key2.private, "RS256"))  # another key
    auth_fails(auth, token(rsa_key.private, "RS256", exp=NOW - 5))
    auth_fails(auth, token(rsa_key.private, "PS256"))  # not the configured algorithm
    auth_fails(auth, token(rsa_key.private, "RS512"))


def test_es256_pem(tmp_path: Path, ec_key: KeyPair, rsa_key: KeyPair) -> None:
    auth = Authenticator(
        AuthConfig(jwt_public_key_file=write(tmp_path, "k.pem", ec_key.public_pem))
    )
    assert auth_ok(auth, token(ec_key.private, "ES256", sub="bob")).subject == "bob"
    auth_fails(auth, token(rsa_key.private, "RS256"))
    auth_fails(auth, token(SECRET, "HS256"))


def test_bad_pem(tmp_path: Path) -> None:
    with pytest.raises(AuthConfigError):
        Authenticator(AuthConfig(jwt_public_key_file=write(tmp_path, "k.pem", "garbage")))
    with pytest.raises(AuthConfigError):
        Authenticator(AuthConfig(jwt_public_key_file=str(tmp_path / "missing.pem")))


# --- JWKS ----------------------------------------------------------------------------


def test_jwks_kid_selects_key(
    tmp_path: Path, rsa_key: KeyPair, rsa_key2: KeyPair, ec_key: KeyPair
) -> None:
    path = jwks_file(
        tmp_path,
        ("r1", rsa_key.public, "RS256"),
        ("r2", rsa_key2.public, None),
        ("e1", ec_key.public, "ES256"),
    )
    auth = Authenticator(AuthConfig(jwt_jwks_file=path))
    assert auth_ok(auth, token(rsa_key.private, "RS256", kid="r1")).subject == "alice"
    assert auth_ok(auth, token(rsa_key2.private, "RS256", kid="r2")).subject == "alice"
    assert auth_ok(auth, token(ec_key.private, "ES256", kid="e1")).subject == "alice"
    auth_fails(auth, token(rsa_key.private, "RS256", kid="r2"))  # wrong key for kid
    auth_fails(auth, token(rsa_key.private, "RS256", kid="unknown"))
    auth_fails(auth, token(rsa_key.private, "RS256"))  # no kid, several keys
    auth_fails(auth, token(ec_key.private, "ES256", kid="r1"))  # kid of an RSA key


def test_jwks_single_key_without_kid(tmp_path: Path, ec_key: KeyPair) -> None:
    auth = Authenticator(AuthConfig(jwt_jwks_file=jwks_file(tmp_path, ("e1", ec_key.public, None))))
    assert auth_ok(auth, token(ec_key.private, "ES256")).subject == "alice"


def test_jwks_symmetric_keys_ignored(tmp_path: Path, rsa_key: KeyPair) -> None:
    oct_key = {"kty": "oct", "kid": "h", "k": b64(SECRET.encode())}
    rsa_jwk: dict[str, Any] = RSAAlgorithm.to_jwk(rsa_key.public, as_dict=True)
    rsa_jwk["kid"] = "r"
    path = write(tmp_path, "jwks.json", json.dumps({"keys": [oct_key, rsa_jwk]}))
    auth = Authenticator(AuthConfig(jwt_jwks_file=path))
    auth_fails(auth, token(SECRET, "HS256", kid="h"))
    assert auth_ok(auth, token(rsa_key.private, "RS256", kid="r")).subject == "alice"


def test_jwks_without_usable_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "jwks.json", json.dumps({"keys": [{"kty": "oct", "k": "AAAA"}]}))
    with pytest.raises(AuthConfigError, match="no usable"):
        Authenticator(AuthConfig(jwt_jwks_file=path))
    with pytest.raises(AuthConfigError):
        Authenticator(AuthConfig(jwt_jwks_file=write(tmp_path, "bad.json", "{")))


# --- algorithm confusion and "none" ---------------------------------------------------


def test_hs256_signed_with_rsa_public_key_fails(tmp_path: Path, rsa_key: KeyPair) -> None:
    """The classic attack: HMAC the token with the server's public key as secret."""
    auth = Authenticator(
        AuthConfig(jwt_public_key_file=write(tmp_path, "k.pem", rsa_key.public_pem))
    )
    forged = raw_token({"alg": "HS256", "typ": "JWT"}, claims(), rsa_key.public_pem)
    auth_fails(auth, forged)
    # also when HS256 is configured (with another secret) next to the public key
    both = Authenticator(
        AuthConfig(
            jwt_secret=SECRET, jwt_public_key_file=write(tmp_path, "k2.pem", rsa_key.public_pem)
        )
    )
    auth_fails(both, forged)
    assert auth_ok(both, token(SECRET, "HS256")).subject == "alice"
    assert auth_ok(both, token(rsa_key.private, "RS256")).subject == "alice"


def test_hs256_signed_with_jwks_public_key_fails(tmp_path: Path, rsa_key: KeyPair) -> None:
    path = jwks_file(tmp_path, ("r1", rsa_key.public, "RS256"))
    auth = Authenticator(AuthConfig(jwt_jwks_file=path))
    forged = raw_token({"alg": "HS256", "kid": "r1"}, claims(), rsa_key.public_pem)
    auth_fails(auth, forged)


@pytest.mark.parametrize("alg", ["none", "None", "NONE", ""])
def test_none_algorithm_fails(hs_auth: Authenticator, alg: str) -> None:
    auth_fails(hs_auth, raw_token({"alg": alg, "typ": "JWT"}, claims(), None))


def test_missing_alg_fails(hs_auth: Authenticator) -> None:
    auth_fails(hs_auth, raw_token({"typ": "JWT"}, claims(), SECRET.encode()))


def test_accepted_algorithms_follow_configuration(
    tmp_path: Path, rsa_key: KeyPair, ec_key: KeyPair
) -> None:
    auth = Authenticator(
        AuthConfig(
            jwt_secret=SECRET,
            jwt_jwks_file=jwks_file(tmp_path, ("e", ec_key.public, None)),
        )
    )
    assert auth._jwt is not None
    assert auth._jwt.algorithms == {"HS256", "ES256"}
    auth_fails(auth, token(rsa_key.private, "RS256"))


# --- garbage never escapes as anything but AuthError -----------------------------------

_SEGMENT = st.one_of(
    st.text(max_size=40),
    st.binary(max_size=60).map(b64),
    st.dictionaries(
        st.sampled_from(["alg", "kid", "typ", "crit", "b64", "sub", "exp"]),
        st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8), st.just("HS256")),
        max_size=4,
    ).map(lambda d: b64(json.dumps(d).encode())),
)


@given(st.lists(_SEGMENT, min_size=1, max_size=4).map(".".join))
def test_garbage_tokens(garbage: str) -> None:
    auth = Authenticator(AuthConfig(jwt_secret=SECRET))
    with pytest.raises(AuthError):
        auth.authenticate("GET", "/files/x", bearer(garbage), NOW)
