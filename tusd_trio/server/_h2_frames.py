"""A cheaper ``repr`` for hyperframe's DATA frames (the same text).

``h2`` formats every frame it receives for a trace log line (``repr(frame)``,
evaluated even when nothing logs it).  hyperframe's ``DataFrame`` inherits a repr
that serializes the whole body (a copy of the payload) and hex-encodes all of it,
to show its first 10 bytes: for an upload over HTTP/2 that was about a tenth of the
server's CPU.  :func:`install` replaces it with one that looks at the first 11
bytes of the body only and returns exactly the same string
(``tests/server/test_h2_frames.py`` compares the two).
"""

from __future__ import annotations

from typing import Any

try:
    from hyperframe import frame as _frame
except ImportError:  # pragma: no cover - h2 (and hyperframe) not installed
    _frame = None  # type: ignore[assignment]

#: hyperframe shows 20 hex digits of a body: 10 bytes, and "..." if there are more.
_HEAD = 11


def _data_body_repr(self: Any) -> str:
    padding = self.serialize_padding_data()
    head = padding + bytes(self.data[:_HEAD])
    if len(head) < _HEAD:
        head += b"\0" * min(self.pad_length, _HEAD - len(head))
    text: str = _frame._raw_data_repr(head[:_HEAD])
    return text


def install() -> bool:
    """Give ``DataFrame`` the cheap repr (once); False if hyperframe lacks what it needs."""
    if _frame is None:  # pragma: no cover
        return False
    data_frame: Any = _frame.DataFrame
    if data_frame.__dict__.get("_body_repr") is _data_body_repr:
        return True
    if "_body_repr" in data_frame.__dict__ or not hasattr(_frame, "_raw_data_repr"):
        return False  # pragma: no cover - a hyperframe that changed: leave it alone
    data_frame._body_repr = _data_body_repr
    return True
