"""The cheap DATA frame repr gives exactly hyperframe's own text."""

from __future__ import annotations

from typing import Any

import pytest
from hyperframe import frame

from tusd_trio.server import _h2  # noqa: F401 - installs the cheap repr
from tusd_trio.server._h2_frames import _data_body_repr, install


def _original(data_frame: Any) -> str:
    text: str = frame._raw_data_repr(data_frame.serialize_body())
    return text


@pytest.mark.parametrize("size", [0, 1, 9, 10, 11, 12, 16384])
@pytest.mark.parametrize("pad", [None, 0, 3, 20])
def test_same_text_as_hyperframe(size: int, pad: int | None) -> None:
    data = bytes(range(256)) * (size // 256 + 1)
    f = frame.DataFrame(1, data[:size])
    if pad is not None:
        f.flags.add("PADDED")
        f.pad_length = pad
    assert _data_body_repr(f) == _original(f)
    assert repr(f) == f"DataFrame(stream_id=1, flags={f.flags!r}): {_original(f)}"


def test_installed_on_import_of_the_h2_server() -> None:
    assert frame.DataFrame.__dict__["_body_repr"] is _data_body_repr
    assert install() is True
