"""Access control: JWT bearer tokens, hashed API keys and pre-signed creation URLs.

Wiring (for the request handler)::

    auth = Authenticator(AuthConfig(...))            # at start-up; reads key files
    principal = auth.authenticate(method, target, lower_case_headers, time.time())
    # creation:  metadata = auth.creation_metadata(principal, metadata, upload_length)
    #            location += "?" + auth.location_query(principal, upload_id, now)  # if non-empty
    # others:    auth.check_owner(principal, stored_metadata)

:class:`AuthError` is a :class:`~tusd_trio.protocol.errors.TusError`; add its
``headers`` to the response.
"""

from ._model import (
    OWNER_METADATA_KEY,
    QUOTA_CLAIMS,
    AuthConfig,
    AuthConfigError,
    AuthError,
    Principal,
    forbidden,
    load_metrics_token,
    read_secret_file,
)
from .apikeys import hash_api_key
from .authenticator import Authenticator
from .commands import main_hash_key, main_sign
from .presign import redact_url, sign_upload_url

__all__ = [
    "OWNER_METADATA_KEY",
    "QUOTA_CLAIMS",
    "AuthConfig",
    "AuthConfigError",
    "AuthError",
    "Authenticator",
    "Principal",
    "forbidden",
    "hash_api_key",
    "load_metrics_token",
    "main_hash_key",
    "main_sign",
    "read_secret_file",
    "redact_url",
    "sign_upload_url",
]
