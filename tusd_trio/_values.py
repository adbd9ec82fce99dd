"""Setting values in tusd's (Go's) syntax: durations, booleans, integers, octal
permissions, ``host:port``.

Standard library only and importing nothing of the project, so that the flag table,
the configuration, the ``sign`` subcommand and the server can all use it.
"""

from __future__ import annotations

import re

_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Go's duration syntax (``1h30m``, ``500ms``, ``0``); returns seconds."""
    value = text.strip()
    if value.startswith("+"):
        value = value[1:]
    if value in ("0", "-0"):
        return 0.0
    if not value:
        raise ValueError("empty duration")
    position = 0
    total = 0.0
    while position < len(value):
        match = _DURATION_PART.match(value, position)
        if match is None:
            raise ValueError(f"invalid duration {text!r} (use e.g. 30s, 5m, 24h)")
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    return total


def format_duration(seconds: float) -> str:
    """Go's ``time.Duration.String`` layout: ``1h30m0s``, ``45s``, ``500ms``."""
    if seconds == 0:
        return "0s"
    if seconds < 1:
        millis = seconds * 1000
        return f"{millis:g}ms" if millis >= 1 else f"{seconds * 1e6:g}µs"
    whole_hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    secs_text = f"{secs:g}s"
    if whole_hours:
        return f"{int(whole_hours)}h{int(minutes)}m{secs_text}"
    if minutes:
        return f"{int(minutes)}m{secs_text}"
    return secs_text


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "t", "true", "yes", "on"):
        return True
    if lowered in ("0", "f", "false", "no", "off"):
        return False
    raise ValueError(f"invalid boolean {text!r}")


def parse_uint(text: str) -> int:
    if not re.fullmatch(r"[0-9]+", text.strip()):
        raise ValueError(f"invalid non-negative integer {text!r}")
    return int(text)


def parse_int(text: str) -> int:
    """A decimal integer, signed as Go's ``flag.Int`` takes it."""
    if not re.fullmatch(r"[+-]?[0-9]+", text.strip()):
        raise ValueError(f"invalid integer {text!r}")
    return int(text)


def parse_octal(text: str) -> int:
    stripped = text.strip()
    if not re.fullmatch(r"0?[0-7]{1,4}", stripped):
        raise ValueError(f"invalid octal permissions {text!r}")
    return int(stripped, 8)


def parse_listen_address(text: str) -> tuple[str, int]:
    """``host:port`` or ``[ipv6]:port`` (-metrics-listen); ValueError when malformed."""
    host, sep, port = text.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"expected host:port, got {text!r}")
    return host, int(port)
