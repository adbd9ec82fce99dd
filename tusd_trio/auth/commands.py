"""The ``tusd-trio sign`` and ``tusd-trio hash-key`` subcommands."""

from __future__ import annotations

import secrets
import sys
from collections.abc import Sequence

from .._values import parse_duration
from ._model import AuthConfigError, read_secret_file
from .apikeys import hash_api_key
from .presign import sign_upload_url

SIGN_USAGE = """\
Usage: tusd-trio sign [flags]

Print a pre-signed URL that allows creating one upload without other credentials.

  -auth-signing-secret string       HMAC secret (the server's -auth-signing-secret)
  -auth-signing-secret-file string  File holding the HMAC secret
  -base-url string                  Creation URL, e.g. http://host/files/ (required)
  -expires duration                 Validity of the URL (default 1h0m0s)
  -max-size uint                    Largest Upload-Length allowed (default: no limit)
  -metadata key=value               Metadata forced onto the upload (repeatable)
"""

HASH_KEY_USAGE = """\
Usage: tusd-trio hash-key [flags] [KEY]

Print a line for the -auth-api-keys file.  Without KEY, the key is read from the
first line of standard input; with -generate, a new random key is made and shown
on standard error.

  -name string   Key name, the principal's subject (default "default")
  -admin         Grant the key access to every upload
  -generate      Generate a new random key
"""


class _Usage(Exception):
    pass


def _split_flags(
    argv: Sequence[str], valued: set[str], booleans: set[str]
) -> tuple[list[tuple[str, str]], list[str]]:
    """Go-style flags: ``-name value``, ``-name=value``, ``--name``; bare words after."""
    flags: list[tuple[str, str]] = []
    rest: list[str] = []
    args = list(argv)
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        if arg in ("-h", "-help", "--help"):
            raise _Usage("")
        if arg == "--":
            rest.extend(args[index:])
            break
        if not arg.startswith("-") or arg == "-":
            rest.append(arg)
            continue
        body = arg[2:] if arg.startswith("--") else arg[1:]
        name, has_value, value = body.partition("=")
        if name in booleans:
            if has_value and value.lower() not in ("true", "false", "1", "0"):
                raise _Usage(f"invalid boolean value {value!r} for -{name}")
            flags.append((name, "true" if not has_value else value.lower()))
            continue
        if name not in valued:
            raise _Usage(f"flag provided but not defined: -{name}")
        if not has_value:
            if index >= len(args):
                raise _Usage(f"flag needs an argument: -{name}")
            value = args[index]
            index += 1
        flags.append((name, value))
    return flags, rest


def main_sign(argv: Sequence[str]) -> int:
    """``tusd-trio sign ...``: print a pre-signed creation URL; returns the exit status."""
    try:
        flags, rest = _split_flags(
            argv,
            {
                "auth-signing-secret",
                "auth-signing-secret-file",
                "base-url",
                "expires",
                "max-size",
                "metadata",
            },
            set(),
        )
        if rest:
            raise _Usage(f"unexpected argument {rest[0]!r}")
        values: dict[str, str] = {}
        metadata: dict[str, str] = {}
        for name, value in flags:
            if name == "metadata":
                key, has_value, text = value.partition("=")
                if not has_value or not key:
                    raise _Usage(f"-metadata wants key=value, not {value!r}")
                metadata[key] = text
            else:
                values[name] = value
        base_url = values.get("base-url", "")
        if not base_url:
            raise _Usage("-base-url is required")
        if values.get("auth-signing-secret") and values.get("auth-signing-secret-file"):
            raise _Usage("use -auth-signing-secret or -auth-signing-secret-file, not both")
        if values.get("auth-signing-secret"):
            secret = values["auth-signing-secret"].encode("utf-8")
        elif values.get("auth-signing-secret-file"):
            secret = read_secret_file(values["auth-signing-secret-file"], "signing secret")
        else:
            raise _Usage("-auth-signing-secret or -auth-signing-secret-file is required")
        try:
            expires_in = parse_duration(values.get("expires", "1h"))
        except ValueError as exc:
            raise _Usage(f"invalid -expires: {exc}") from None
        max_size: int | None = None
        if "max-size" in values:
            if not values["max-size"].isdigit():
                raise _Usage(f"invalid -max-size {values['max-size']!r}")
            max_size = int(values["max-size"])
        url = sign_upload_url(
            base_url, secret, expires_in=expires_in, max_size=max_size, metadata=metadata or None
        )
    except _Usage as exc:
        if str(exc):
            print(f"tusd-trio sign: {exc}", file=sys.stderr)
        print(SIGN_USAGE, end="", file=sys.stderr)
        return 0 if not str(exc) else 2
    except (ValueError, AuthConfigError) as exc:
        print(f"tusd-trio sign: {exc}", file=sys.stderr)
        return 2
    print(url)
    return 0


def main_hash_key(argv: Sequence[str]) -> int:
    """``tusd-trio hash-key ...``: print an ``-auth-api-keys`` line; returns the exit status."""
    try:
        flags, rest = _split_flags(argv, {"name"}, {"admin", "generate"})
        values = dict(flags)
        generate = values.get("generate") in ("true", "1")
        if len(rest) > 1 or (generate and rest):
            raise _Usage("give at most one KEY, and none with -generate")
        if generate:
            key = secrets.token_urlsafe(32)
            print(f"API key (give it to the client, it is not stored): {key}", file=sys.stderr)
        elif rest:
            key = rest[0]
        else:
            key = sys.stdin.readline().rstrip("\r\n")
        line = hash_api_key(
            key, values.get("name", "default"), admin=values.get("admin") in ("true", "1")
        )
    except _Usage as exc:
        if str(exc):
            print(f"tusd-trio hash-key: {exc}", file=sys.stderr)
        print(HASH_KEY_USAGE, end="", file=sys.stderr)
        return 0 if not str(exc) else 2
    except ValueError as exc:
        print(f"tusd-trio hash-key: {exc}", file=sys.stderr)
        return 2
    print(line)
    return 0
