"""Static API keys, stored hashed at rest.

Key file format (``-auth-api-keys``), one key a line, ``#`` comments and blank
lines ignored::

    NAME:sha256:HEX64[:admin]

``NAME`` (letters, digits, ``._@-``) becomes the principal's subject, ``HEX64`` is
the SHA-256 of the key's UTF-8 bytes, and a trailing ``:admin`` grants access to
every upload.  :func:`hash_api_key` (``tusd-trio hash-key``) writes such lines.

A plain (unsalted) SHA-256 is appropriate because API keys are long random
strings (``tusd-trio hash-key -generate`` makes 256-bit ones), not passwords.
The presented key's digest is compared with *every* stored digest using
:func:`hmac.compare_digest`, without stopping at a match.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

from ._model import AuthConfigError, Principal, unauthorized

_NAME = re.compile(r"[A-Za-z0-9._@-]+")
_LINE = re.compile(r"(?P<name>[^:]+):sha256:(?P<digest>[0-9a-fA-F]{64})(?::(?P<flag>admin))?")


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def hash_api_key(key: str, name: str = "default", *, admin: bool = False) -> str:
    """The key-file line for ``key`` (no newline): ``name:sha256:<hex>[:admin]``."""
    if not key:
        raise ValueError("the API key must not be empty")
    if not _NAME.fullmatch(name):
        raise ValueError(f"invalid key name {name!r} (letters, digits and ._@- only)")
    line = f"{name}:sha256:{_digest(key).hex()}"
    return line + ":admin" if admin else line


@dataclass(frozen=True)
class _Entry:
    name: str
    digest: bytes
    admin: bool


def load_api_keys(path: str) -> list[_Entry]:
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise AuthConfigError(f"cannot read API key file {path!r}: {exc}") from exc
    entries: list[_Entry] = []
    names: set[str] = set()
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.fullmatch(line)
        if match is None or not _NAME.fullmatch(match["name"]):
            raise AuthConfigError(
                f"{path}:{number}: expected NAME:sha256:HEX64[:admin] "
                "(make lines with tusd-trio hash-key)"
            )
        name = match["name"]
        if name in names:
            raise AuthConfigError(f"{path}:{number}: duplicate key name {name!r}")
        names.add(name)
        entries.append(_Entry(name, bytes.fromhex(match["digest"]), match["flag"] == "admin"))
    if not entries:
        raise AuthConfigError(f"API key file {path!r} holds no keys")
    return entries


class ApiKeyVerifier:
    def __init__(self, path: str) -> None:
        self._entries = load_api_keys(path)

    def verify(self, key: str) -> Principal:
        digest = _digest(key.strip())
        found: _Entry | None = None
        for entry in self._entries:  # no early exit: the time does not depend on the match
            if hmac.compare_digest(digest, entry.digest):
                found = entry
        if found is None or not key.strip():
            raise unauthorized("invalid API key")
        return Principal(subject=found.name, admin=found.admin, via="api-key")
