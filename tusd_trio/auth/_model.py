"""Shared types of the access-control component: settings, principals, errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..protocol.errors import TusError

#: Metadata key that records who created an upload (value: :attr:`Principal.owner_id`).
OWNER_METADATA_KEY = "tusd-trio-owner"

#: JWT claims that override a principal's quota defaults, and the limit each sets
#: (the names of :mod:`tusd_trio.quotas.policy`).
QUOTA_CLAIMS = {
    "tus_quota_bytes": "bytes",
    "tus_max_uploads": "uploads",
    "tus_max_size": "max_size",
}

#: Realm named in ``WWW-Authenticate`` challenges.
REALM = "tusd-trio"

DEFAULT_API_KEY_HEADER = "X-API-Key"
DEFAULT_PRESIGNED_UPLOAD_TTL = 24 * 3600.0


@dataclass(frozen=True)
class AuthConfig:
    """Every access-control setting; the defaults switch access control off.

    Files named here are read once, when :class:`~tusd_trio.auth.Authenticator`
    is constructed; no request does any I/O.
    """

    #: HS256 shared secret (``-auth-jwt-secret``).
    jwt_secret: str = ""
    #: File holding the HS256 shared secret (``-auth-jwt-secret-file``).
    jwt_secret_file: str = ""
    #: PEM public key (RSA -> RS256, EC P-256 -> ES256) (``-auth-jwt-public-key``).
    jwt_public_key_file: str = ""
    #: JWKS document; the token's ``kid`` chooses the key (``-auth-jwt-jwks``).
    jwt_jwks_file: str = ""
    #: Comma-separated accepted ``aud`` values; empty = tokens must not carry ``aud``.
    jwt_audience: str = ""
    #: Comma-separated accepted ``iss`` values; empty = not checked.
    jwt_issuer: str = ""
    #: ``CLAIM`` (claim must be true) or ``CLAIM=VALUE`` (equal, in a list, or a word
    #: of a space-separated string); dots reach into objects. Empty = no admins.
    jwt_admin_claim: str = ""
    #: Clock skew allowed when checking ``exp`` and ``nbf`` (seconds).
    jwt_leeway: float = 0.0
    #: File of hashed API keys (``-auth-api-keys``), lines from :func:`hash_api_key`.
    api_keys_file: str = ""
    #: Request header that carries an API key.
    api_key_header: str = DEFAULT_API_KEY_HEADER
    #: HMAC secret for pre-signed creation URLs (``-auth-signing-secret``).
    signing_secret: str = ""
    #: File holding the signing secret (``-auth-signing-secret-file``).
    signing_secret_file: str = ""
    #: Lifetime of the access grant appended to the Location of an upload created
    #: through a pre-signed URL (lets the client resume it without other credentials).
    presigned_upload_ttl: float = DEFAULT_PRESIGNED_UPLOAD_TTL
    #: The server's base path (pre-signed URLs only create uploads there).
    base_path: str = "/files/"

    @property
    def jwt_enabled(self) -> bool:
        return bool(
            self.jwt_secret
            or self.jwt_secret_file
            or self.jwt_public_key_file
            or self.jwt_jwks_file
        )

    @property
    def api_keys_enabled(self) -> bool:
        return bool(self.api_keys_file)

    @property
    def presign_enabled(self) -> bool:
        return bool(self.signing_secret or self.signing_secret_file)

    @property
    def enabled(self) -> bool:
        """Whether any credential kind is configured (then every request needs one)."""
        return self.jwt_enabled or self.api_keys_enabled or self.presign_enabled


@dataclass(frozen=True)
class Principal:
    """Who a request acts for.

    ``via`` is ``"jwt"``, ``"api-key"`` or ``"presigned"``.  ``limits`` is empty
    except for pre-signed creations: ``max_size`` (int or None), ``metadata``
    (dict of values forced onto the upload) and ``expires`` (unix time).
    ``quota`` holds the quota limits a JWT's claims set (see :data:`QUOTA_CLAIMS`),
    by limit name (``bytes``, ``uploads``, ``max_size``); 0 is no limit.
    """

    subject: str
    admin: bool
    via: str
    limits: dict[str, Any] = field(default_factory=dict)
    quota: dict[str, int] = field(default_factory=dict)

    @property
    def owner_id(self) -> str:
        """The value stored under :data:`OWNER_METADATA_KEY` for uploads it creates.

        Namespaced by credential kind so that a JWT ``sub`` cannot collide with an
        API key's name.
        """
        return f"{self.via}:{self.subject}"


class AuthError(TusError):
    """Access refused: 401 ``ERR_UNAUTHORIZED`` or 403 ``ERR_FORBIDDEN``.

    ``headers`` holds response headers to add (``WWW-Authenticate`` on 401).
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, status=status, code=code)
        self.headers: dict[str, str] = dict(headers or {})


class AuthConfigError(ValueError):
    """The access-control settings (or a file they name) are unusable."""


def _challenge(error: str | None = None, description: str | None = None) -> dict[str, str]:
    value = f'Bearer realm="{REALM}"'
    if error:
        value += f', error="{error}"'
        if description:
            safe = "".join(ch for ch in description if ch.isprintable() and ch not in '"\\')
            value += f', error_description="{safe}"'
    return {"WWW-Authenticate": value}


def unauthorized(message: str, *, invalid_token: bool = False) -> AuthError:
    """A 401 with a ``WWW-Authenticate: Bearer`` challenge."""
    challenge = _challenge("invalid_token", message) if invalid_token else _challenge()
    return AuthError(401, "ERR_UNAUTHORIZED", message, challenge)


def forbidden(message: str) -> AuthError:
    return AuthError(403, "ERR_FORBIDDEN", message)


def read_secret_file(path: str, what: str) -> bytes:
    """A secret file's bytes without a trailing newline."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise AuthConfigError(f"cannot read {what} file {path!r}: {exc}") from exc
    data = data.rstrip(b"\r\n")
    if not data:
        raise AuthConfigError(f"{what} file {path!r} is empty")
    return data


def load_metrics_token(path: str) -> bytes:
    """The -metrics-token-file token; :class:`AuthConfigError` when unusable."""
    token = read_secret_file(path, "metrics token")
    if len(token) < 16:
        raise AuthConfigError(f"the metrics token in {path!r} must be at least 16 bytes long")
    return token
