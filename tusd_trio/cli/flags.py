"""The parsing of a command line against the flag table (:mod:`.flag_table`).

Flags take one or two dashes and a value after ``=`` or as the next argument, as Go's
``flag`` package reads them; a boolean flag alone means true.  :mod:`.build` turns
the parsed values into a :class:`~tusd_trio.config.Config`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .flag_table import FLAGS, Flag

__all__ = ["FLAGS", "Flag", "HelpRequestedError", "UsageError", "parse_args", "usage"]


class UsageError(Exception):
    """A command line that cannot be used; the message names the flag."""


class HelpRequestedError(Exception):
    """``-help``: print :func:`usage` instead of starting."""


_BY_NAME = {flag.name: flag for flag in FLAGS}
#: How -help names a flag's value type.
_HELP_TYPES = {"bool": "", "uint": " int", "str": " string"}


def parse_args(argv: Sequence[str]) -> dict[str, Any]:
    """Parse Go-style flags: ``-name=value``, ``-name value``, ``--name``.

    A boolean flag alone means true; ``-name=false`` sets it false.  Returns every
    flag's value by name (the default where not given).
    """
    values: dict[str, Any] = {flag.name: flag.default for flag in FLAGS}
    args = list(argv)
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        if arg in ("-h", "-help", "--help"):
            raise HelpRequestedError
        if not arg.startswith("-") or arg in ("-", "--"):
            raise UsageError(f"unexpected argument {arg!r} (flags start with -)")
        body = arg[2:] if arg.startswith("--") else arg[1:]
        name, has_value, text = body.partition("=")
        flag = _BY_NAME.get(name)
        if flag is None:
            raise UsageError(f"flag provided but not defined: -{name}")
        if not has_value:
            if flag.kind == "bool":
                text = "true"
            else:
                if index >= len(args):
                    raise UsageError(f"flag needs an argument: -{name}")
                text = args[index]
                index += 1
        try:
            values[name] = flag.parse(text)
        except ValueError as exc:
            raise UsageError(f"invalid value {text!r} for flag -{name}: {exc}") from None
    return values


def usage() -> str:
    lines = [
        "Usage: tusd-trio [flags]",
        "       tusd-trio sign -auth-signing-secret S -base-url URL [-expires 1h] ...",
        "       tusd-trio hash-key [-name NAME] [-admin] [-generate] [KEY]",
        "",
        "A tus resumable upload server (tus 1.0.0), compatible with tusd.",
        "Flags take one or two dashes: -port=8080, -port 8080, --port=8080.",
        "Boolean flags alone mean true; turn them off with -flag=false.",
        "Durations use Go syntax: 500ms, 30s, 5m, 24h, 1h30m.",
    ]
    group = ""
    for flag in FLAGS:
        if flag.group != group:
            group = flag.group
            lines += ["", f"{group} options:"]
        kind = _HELP_TYPES.get(flag.kind, f" {flag.kind}")
        lines.append(f"  -{flag.name}{kind}")
        lines.append(f"        {flag.help} (default {flag.default_text()})")
    return "\n".join(lines) + "\n"
