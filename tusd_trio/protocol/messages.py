"""The requests the core decides on and the responses it answers with: plain data, no I/O."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

TUS_VERSION = "1.0.0"
OFFSET_OCTET_STREAM = "application/offset+octet-stream"


class Headers(Mapping[str, str]):
    """Case-insensitive request headers; repeated fields are joined with ``, ``.

    ``counts`` keeps how often each name occurred so callers can refuse
    duplicates where a duplicate is ambiguous (``Upload-Checksum``, ...);
    :meth:`first` is the first field's value, which is what tusd (Go's
    ``Header.Get``) reads for the tus headers.
    """

    __slots__ = ("_counts", "_data", "_first", "raw")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        # Built in locals (one lower() per line): every request makes one.
        data: dict[str, str] = {}
        counts: dict[str, int] = {}
        first: dict[str, str] = {}
        raw: list[tuple[str, str]] = []
        for name, value in items:
            key = name.lower()
            raw.append((key, value))
            if key in data:
                data[key] = f"{data[key]}, {value}"
                counts[key] += 1
            else:
                data[key] = value
                first[key] = value
                counts[key] = 1
        self._data = data
        self._counts = counts
        self._first = first
        #: The header lines as received (lower-case names), repeated ones apart.
        self.raw = raw

    def __getitem__(self, name: str) -> str:
        return self._data[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._data

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return self._data.get(name.lower(), default)

    def count(self, name: str) -> int:
        return self._counts.get(name.lower(), 0)

    def first(self, name: str) -> str | None:
        """The value of the first field with this name (later ones are ignored)."""
        return self._first.get(name.lower())


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    target: str
    headers: Headers
    #: ``https`` when the connection is TLS.
    scheme: str = "http"


@dataclass(slots=True)
class Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        for key, value in self.headers:
            if key.lower() == lowered:
                return value
        return None


def is_offset_stream(content_type: str | None) -> bool:
    """Whether a ``Content-Type`` is tus's ``application/offset+octet-stream``."""
    if content_type is None:
        return False
    return content_type.split(";", 1)[0].strip().lower() == OFFSET_OCTET_STREAM
