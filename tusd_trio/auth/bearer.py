"""JWT bearer tokens (``Authorization: Bearer <JWT>``), verified with PyJWT.

Algorithm confusion is impossible by construction: every configured key is bound
to exactly one algorithm when it is loaded (the shared secret to HS256, an RSA key
to RS256, an EC P-256 key to ES256), the token's ``alg`` only *selects* among the
configured keys, and PyJWT is then told to accept that single algorithm.  ``none``
and every other algorithm are never accepted.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from ._model import (
    QUOTA_CLAIMS,
    AuthConfig,
    AuthConfigError,
    Principal,
    read_secret_file,
    unauthorized,
)

log = logging.getLogger("tusd_trio")

HMAC_MIN_SECRET_BYTES = 32  # RFC 7518 section 3.2: at least the hash size
RSA_MIN_BITS = 2048

#: Asymmetric algorithms a public key may be bound to.
ASYMMETRIC_ALGORITHMS = ("RS256", "ES256")


def _algorithm_for_public_key(key: object) -> str | None:
    if isinstance(key, rsa.RSAPublicKey):
        return "RS256" if key.key_size >= RSA_MIN_BITS else None
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return "ES256"
    return None


@dataclass(frozen=True)
class _Key:
    algorithm: str
    key: Any  # bytes for HS256, a cryptography public key otherwise
    kid: str | None = None


@dataclass(frozen=True)
class AdminClaim:
    """``name`` (true) or ``name=value``; a dotted name reaches into objects."""

    path: tuple[str, ...]
    value: str | None

    @classmethod
    def parse(cls, text: str) -> AdminClaim | None:
        text = text.strip()
        if not text:
            return None
        name, has_value, value = text.partition("=")
        path = tuple(part for part in name.strip().split("."))
        if not all(path):
            raise AuthConfigError(f"invalid admin claim {text!r} (use e.g. admin or roles=admin)")
        return cls(path, value.strip() if has_value else None)

    def matches(self, claims: Mapping[str, Any]) -> bool:
        node: Any = claims
        for part in self.path:
            if not isinstance(node, Mapping) or part not in node:
                return False
            node = node[part]
        if self.value is None:
            return node is True
        if isinstance(node, bool):
            return self.value.lower() == ("true" if node else "false")
        if isinstance(node, str):
            return node == self.value or self.value in node.split()
        if isinstance(node, list):
            return any(isinstance(item, str) and item == self.value for item in node)
        return False


def _split_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _load_jwks(path: str) -> dict[str, _Key]:
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    except (OSError, ValueError) as exc:
        raise AuthConfigError(f"cannot read JWKS file {path!r}: {exc}") from exc
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise AuthConfigError(f'JWKS file {path!r} has no "keys" list')
    keys: dict[str, _Key] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            continue
        kid = entry.get("kid")
        label = f"key {kid!r}" if isinstance(kid, str) else f"key #{index}"
        if entry.get("use", "sig") != "sig":
            continue
        if entry.get("kty") not in ("RSA", "EC"):
            log.warning("JWKS %s: %s skipped (only RSA and EC keys are used)", path, label)
            continue
        declared = entry.get("alg")
        if declared is not None and declared not in ASYMMETRIC_ALGORITHMS:
            log.warning("JWKS %s: %s skipped (algorithm %r not supported)", path, label, declared)
            continue
        try:
            public = jwt.PyJWK(entry).key
        except jwt.PyJWTError as exc:
            log.warning("JWKS %s: %s skipped (%s)", path, label, exc)
            continue
        algorithm = _algorithm_for_public_key(public)
        if algorithm is None or (declared is not None and declared != algorithm):
            log.warning("JWKS %s: %s skipped (not RS256 >= 2048 bits or ES256)", path, label)
            continue
        if not isinstance(kid, str):
            kid = ""  # only usable when it is the sole key
        if kid in keys:
            raise AuthConfigError(f"JWKS file {path!r} has two keys with kid {kid!r}")
        keys[kid] = _Key(algorithm, public, kid or None)
    if not keys:
        raise AuthConfigError(f"JWKS file {path!r} has no usable RS256/ES256 signing key")
    return keys


def _load_public_key(path: str) -> _Key:
    data = read_secret_file(path, "JWT public key")
    try:
        public = load_pem_public_key(data)
    except ValueError as exc:
        raise AuthConfigError(f"{path!r} is not a PEM public key: {exc}") from exc
    algorithm = _algorithm_for_public_key(public)
    if algorithm is None:
        raise AuthConfigError(
            f"public key {path!r} must be RSA (at least {RSA_MIN_BITS} bits, RS256) "
            "or EC P-256 (ES256)"
        )
    return _Key(algorithm, public)


class JwtVerifier:
    """Checks bearer tokens against the configured keys and claims."""

    def __init__(self, config: AuthConfig) -> None:
        if config.jwt_secret and config.jwt_secret_file:
            raise AuthConfigError("use -auth-jwt-secret or -auth-jwt-secret-file, not both")
        self._secret: _Key | None = None
        secret = (
            config.jwt_secret.encode("utf-8")
            if config.jwt_secret
            else read_secret_file(config.jwt_secret_file, "JWT secret")
            if config.jwt_secret_file
            else b""
        )
        if secret:
            if len(secret) < HMAC_MIN_SECRET_BYTES:
                raise AuthConfigError(
                    f"the HS256 secret must be at least {HMAC_MIN_SECRET_BYTES} bytes long"
                )
            self._secret = _Key("HS256", secret)
        self._public: _Key | None = (
            _load_public_key(config.jwt_public_key_file) if config.jwt_public_key_file else None
        )
        self._jwks: dict[str, _Key] = (
            _load_jwks(config.jwt_jwks_file) if config.jwt_jwks_file else {}
        )
        self._audience: list[str] = _split_list(config.jwt_audience)
        self._issuer: list[str] = _split_list(config.jwt_issuer)
        self._admin = AdminClaim.parse(config.jwt_admin_claim)
        self._leeway = float(config.jwt_leeway)
        accepted: set[str] = set()
        if self._secret is not None:
            accepted.add("HS256")
        if self._public is not None:
            accepted.add(self._public.algorithm)
        accepted.update(key.algorithm for key in self._jwks.values())
        self.algorithms: frozenset[str] = frozenset(accepted)

    def _select_key(self, algorithm: str, kid: object) -> _Key | None:
        if algorithm == "HS256":
            return self._secret
        if isinstance(kid, str) and kid:
            key = self._jwks.get(kid)
            if key is not None:
                return key if key.algorithm == algorithm else None
        if self._public is not None and self._public.algorithm == algorithm:
            return self._public
        if kid is None and len(self._jwks) == 1:
            (only,) = self._jwks.values()
            if only.algorithm == algorithm:
                return only
        return None

    def verify(self, token: str, now: float) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise unauthorized("malformed bearer token", invalid_token=True) from None
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self.algorithms:
            raise unauthorized("token algorithm not accepted", invalid_token=True)
        key = self._select_key(algorithm, header.get("kid"))
        if key is None:
            raise unauthorized("no key for this token", invalid_token=True)
        audience: Sequence[str] | None = self._audience or None
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm],
                audience=audience,
                issuer=self._issuer or None,
                options={
                    "require": ["exp", "sub"],
                    "verify_signature": True,
                    "verify_exp": False,  # checked below against the caller's clock
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": True,  # no audience configured: a token with aud fails
                    "verify_iss": bool(self._issuer),
                    "enforce_minimum_key_length": True,
                },
            )
        except jwt.ExpiredSignatureError:  # pragma: no cover - verify_exp is off
            raise unauthorized("token expired", invalid_token=True) from None
        except jwt.InvalidAudienceError:
            raise unauthorized("token audience not accepted", invalid_token=True) from None
        except jwt.InvalidIssuerError:
            raise unauthorized("token issuer not accepted", invalid_token=True) from None
        except jwt.MissingRequiredClaimError as exc:
            raise unauthorized(f"token lacks the {exc.claim} claim", invalid_token=True) from None
        except jwt.PyJWTError:
            raise unauthorized("invalid bearer token", invalid_token=True) from None
        self._check_times(claims, now)
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise unauthorized("token subject must be a non-empty string", invalid_token=True)
        admin = self._admin is not None and self._admin.matches(claims)
        return Principal(subject=subject, admin=admin, via="jwt", quota=_quota_claims(claims))

    def _check_times(self, claims: Mapping[str, Any], now: float) -> None:
        expires = _numeric_date(claims.get("exp"), "exp")
        if now >= expires + self._leeway:
            raise unauthorized("token expired", invalid_token=True)
        if "nbf" in claims:
            not_before = _numeric_date(claims["nbf"], "nbf")
            if now + self._leeway < not_before:
                raise unauthorized("token not valid yet", invalid_token=True)


def _quota_claims(claims: Mapping[str, Any]) -> dict[str, int]:
    """The quota limits a token sets: non-negative integers (0 = no limit)."""
    quota: dict[str, int] = {}
    for claim, limit in QUOTA_CLAIMS.items():
        if claim not in claims:
            continue
        value = claims[claim]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise unauthorized(
                f"token {claim} claim must be a non-negative integer", invalid_token=True
            )
        quota[limit] = value
    return quota


def _numeric_date(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise unauthorized(f"token {name} claim must be a number", invalid_token=True)
    return float(value)
