"""The CORS origin rule (tusd's: an unanchored regular-expression search) and the
start-up warning about unanchored patterns with credentials."""

from __future__ import annotations

import re

from .config import CorsConfig


def origin_allowed(cors: CorsConfig, origin: str) -> bool:
    """tusd's origin check: an unanchored regular-expression search of the ``Origin``."""
    try:
        return re.search(cors.allow_origin, origin) is not None
    except re.error:  # pragma: no cover - validated at start-up
        return False


def cors_origin_warning(cors: CorsConfig | None) -> str | None:
    """A start-up warning when credentialed CORS rests on an unanchored origin pattern.

    tusd searches the pattern anywhere in the ``Origin`` (kept for compatibility), so
    ``https://app\\.example\\.com`` also lets ``https://app.example.com.evil.net`` make
    credentialed requests.
    """
    if cors is None or not cors.allow_credentials or _is_anchored(cors.allow_origin):
        return None
    return (
        f"-cors-allow-origin '{cors.allow_origin}' is not anchored: with "
        "-cors-allow-credentials any origin containing a match (such as "
        "https://app.example.com.evil.net for https://app\\.example\\.com) may make "
        "credentialed requests; anchor it: '^https://app\\.example\\.com$'"
    )


def _is_anchored(pattern: str) -> bool:
    """Whether the pattern can only match a whole string: ``^``/``\\A`` at the start,
    ``$``/``\\Z`` at the end, and no alternation outside a group."""
    if not pattern.startswith(("^", "\\A")):
        return False
    ends_escaped = pattern.endswith("\\Z") and not pattern.endswith("\\\\Z")
    ends_dollar = pattern.endswith("$") and not pattern.endswith("\\$")
    if not (ends_escaped or ends_dollar):
        return False
    depth = 0
    in_class = False
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            index += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            return False
        index += 1
    return True
