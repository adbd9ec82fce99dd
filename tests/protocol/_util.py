"""Small builders shared by the protocol tests."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from tusd_trio.protocol.messages import Headers, Request

TUS = ("Tus-Resumable", "1.0.0")
OCTET = ("Content-Type", "application/offset+octet-stream")


def make_request(
    method: str = "GET",
    target: str = "/files/",
    headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
    *,
    scheme: str = "http",
) -> Request:
    items = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    return Request(method, target, Headers(items), scheme)


def header_names(pairs: Iterable[tuple[str, str]]) -> list[str]:
    return [name.lower() for name, _ in pairs]


def header_value(pairs: Iterable[tuple[str, str]], name: str) -> str | None:
    for key, value in pairs:
        if key.lower() == name.lower():
            return value
    return None
