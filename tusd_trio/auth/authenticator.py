"""The request-facing part of access control: :class:`Authenticator`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, unquote, urlsplit

from ._model import (
    OWNER_METADATA_KEY,
    AuthConfig,
    AuthConfigError,
    AuthError,
    Principal,
    forbidden,
    read_secret_file,
    unauthorized,
)
from .apikeys import ApiKeyVerifier
from .presign import CREATION_PARAMS, P_ACCESS, P_SIGNATURE, PresignVerifier

if TYPE_CHECKING:
    from .bearer import JwtVerifier


def _normalize_base(base_path: str) -> str:
    base = "/" + base_path.strip("/") + "/"
    return "/" if base == "//" else base


class Authenticator:
    """Decides who a request acts for, and whether it may touch an upload.

    Built once from :class:`AuthConfig` (reading every key file then); the
    per-request methods are synchronous and do no I/O.  ``now`` is unix time
    (``time.time()``).

    Credentials are looked for in this order: a pre-signed creation URL
    (``tus-signature``) or upload grant (``tus-access``) in the query, then
    ``Authorization: Bearer``, then the API key header.
    """

    def __init__(self, config: AuthConfig) -> None:
        self.config = config
        self._base = _normalize_base(config.base_path)
        self._jwt: JwtVerifier | None = None
        if config.jwt_enabled:
            try:
                from .bearer import JwtVerifier
            except ImportError as exc:  # pragma: no cover - depends on the environment
                raise AuthConfigError(
                    "JWT authentication needs PyJWT: pip install 'pyjwt[crypto]'"
                ) from exc
            self._jwt = JwtVerifier(config)
        self._keys = ApiKeyVerifier(config.api_keys_file) if config.api_keys_enabled else None
        self._api_key_header = config.api_key_header.strip().lower()
        if self._keys is not None and not self._api_key_header:
            raise AuthConfigError("the API key header name must not be empty")
        self._presign: PresignVerifier | None = None
        if config.presign_enabled:
            if config.signing_secret and config.signing_secret_file:
                raise AuthConfigError(
                    "use -auth-signing-secret or -auth-signing-secret-file, not both"
                )
            secret = (
                config.signing_secret.encode("utf-8")
                if config.signing_secret
                else read_secret_file(config.signing_secret_file, "signing secret")
            )
            self._presign = PresignVerifier(secret, config.presigned_upload_ttl)

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    # --- per request ---------------------------------------------------------------

    def authenticate(
        self, method: str, target: str, headers: Mapping[str, str], now: float
    ) -> Principal | None:
        """The request's principal; ``None`` when access control is off or for OPTIONS.

        ``headers`` maps lower-case names to values.  Raises :class:`AuthError`:
        401 ``ERR_UNAUTHORIZED`` (with ``WWW-Authenticate``) when no valid
        credential is present, 403 ``ERR_FORBIDDEN`` for a pre-signed URL or grant
        that is tampered, expired, reused or used outside what it allows.
        """
        if not self.enabled or method.upper() == "OPTIONS":
            return None
        parts = urlsplit(target)
        if self._presign is not None and parts.query:
            principal = self._authenticate_presigned(method, unquote(parts.path), parts.query, now)
            if principal is not None:
                return principal
        authorization = headers.get("authorization")
        if authorization is not None and self._jwt is not None:
            scheme, _, token = authorization.strip().partition(" ")
            if scheme.lower() == "bearer":
                token = token.strip()
                if not token:
                    raise unauthorized("empty bearer token", invalid_token=True)
                return self._jwt.verify(token, now)
        if self._keys is not None:
            key = headers.get(self._api_key_header)
            if key is not None:
                return self._keys.verify(key)
        if authorization is not None:
            raise unauthorized("unsupported authorization scheme")
        raise unauthorized("authentication required")

    def _authenticate_presigned(
        self, method: str, path: str, query: str, now: float
    ) -> Principal | None:
        assert self._presign is not None
        pairs = parse_qsl(query, keep_blank_values=True)
        names = [name for name, _ in pairs]
        if P_SIGNATURE not in names and P_ACCESS not in names:
            return None
        for name in (*CREATION_PARAMS, P_ACCESS):
            if names.count(name) > 1:
                raise forbidden(f"repeated {name} parameter")
        params = {name: value for name, value in pairs if name in (*CREATION_PARAMS, P_ACCESS)}
        if P_SIGNATURE in params and P_ACCESS in params:
            raise forbidden("both a pre-signed URL and an upload grant")
        if P_SIGNATURE in params:
            if method.upper() != "POST" or not self._is_base(path):
                raise forbidden("a pre-signed URL only allows creating an upload")
            return self._presign.verify_creation(params, now)
        return self._presign.verify_grant(params[P_ACCESS], self._upload_id(path), now)

    def _is_base(self, path: str) -> bool:
        return _normalize_base(path) == self._base

    def _upload_id(self, path: str) -> str | None:
        if not path.startswith(self._base):
            return None
        upload_id = path[len(self._base) :].strip("/")
        return upload_id if upload_id and "/" not in upload_id else None

    # --- ownership -----------------------------------------------------------------

    def release(self, principal: Principal | None) -> None:
        """A pre-signed URL's creation failed before an upload existed: the URL
        may be used again (its single use is the upload it creates)."""
        if self._presign is not None and principal is not None and principal.via == "presigned":
            self._presign.release(principal.subject)

    def check_owner(self, principal: Principal | None, upload_metadata: Mapping[str, str]) -> None:
        """Refuse (403) access to an upload created by someone else.

        Admins pass; an upload without an owner record (created while access
        control was off) is reachable by admins only.  Call it for every request
        that names an upload, including each partial upload of a final concatenation.
        """
        if not self.enabled:
            return
        if principal is None:
            raise unauthorized("authentication required")
        if principal.admin:
            return
        owner = upload_metadata.get(OWNER_METADATA_KEY)
        if owner is None or owner != principal.owner_id:
            raise forbidden("this upload belongs to someone else")

    def creation_metadata(
        self,
        principal: Principal | None,
        metadata: Mapping[str, str],
        upload_length: int | None,
    ) -> dict[str, str]:
        """The metadata to store for a new upload; checks pre-signed limits.

        Drops any client-supplied owner record, forces a pre-signed URL's metadata
        and records the owner.  Raises 403 when a pre-signed URL's ``max_size`` is
        exceeded or the length is deferred (``upload_length`` is None) under one.
        """
        result = {key: value for key, value in metadata.items() if key != OWNER_METADATA_KEY}
        if not self.enabled or principal is None:
            return result
        max_size = principal.limits.get("max_size")
        if isinstance(max_size, int):
            if upload_length is None:
                raise forbidden("this pre-signed URL requires Upload-Length")
            if upload_length > max_size:
                raise forbidden(f"this pre-signed URL allows at most {max_size} bytes")
        forced = principal.limits.get("metadata")
        if isinstance(forced, Mapping):
            result.update({str(key): str(value) for key, value in forced.items()})
            result.pop(OWNER_METADATA_KEY, None)
        result[OWNER_METADATA_KEY] = principal.owner_id
        return result

    def location_query(self, principal: Principal | None, upload_id: str, now: float) -> str:
        """Query string (without ``?``) to append to a new upload's Location, or ``""``.

        Non-empty only for uploads created through a pre-signed URL: it grants
        that upload's creator (and whoever it shares the URL with) access to it.
        """
        if self._presign is None or principal is None or principal.via != "presigned":
            return ""
        return f"{P_ACCESS}={self._presign.grant(principal.subject, upload_id, now)}"


__all__ = ["AuthError", "Authenticator"]
