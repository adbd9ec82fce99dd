"""Token helpers for the access-control tests."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization

NOW = 1_750_000_000.0
SECRET = "s3cret-s3cret-s3cret-s3cret-0123456789"  # >= 32 bytes
SIGNING_SECRET = "presign-secret-0123456789abcdef"


@dataclass
class KeyPair:
    private: Any
    public: Any
    public_pem: bytes


def pem(public: Any) -> bytes:
    data: bytes = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return data


def claims(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"sub": "alice", "exp": NOW + 600, "iat": NOW - 10}
    base.update(extra)
    return {key: value for key, value in base.items() if value is not None}


def token(key: Any, algorithm: str, *, kid: str | None = None, **extra: Any) -> str:
    headers = {"kid": kid} if kid else None
    return jwt.encode(claims(**extra), key, algorithm=algorithm, headers=headers)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def raw_token(header: dict[str, Any], payload: dict[str, Any], key: bytes | None) -> str:
    """A token assembled by hand (to forge what PyJWT refuses to produce)."""
    signing_input = b64(json.dumps(header).encode()) + "." + b64(json.dumps(payload).encode())
    signature = (
        b"" if key is None else hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    )
    return signing_input + "." + b64(signature)


def write(tmp_path: Path, name: str, data: str | bytes) -> str:
    path = tmp_path / name
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data)
    return str(path)
