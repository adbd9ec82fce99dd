"""Unit and property tests of tusd_trio.protocol.info."""

from __future__ import annotations

import dataclasses
import json
import os.path
import re
from typing import Any

import pytest
from hypothesis import example, given, strategies as st

from tusd_trio.protocol import errors
from tusd_trio.protocol.info import (
    SIDE_FILE_SUFFIXES,
    UploadInfo,
    check_upload_id,
    new_upload_id,
)

# --- new_upload_id ------------------------------------------------------------


def test_new_upload_id_is_32_lowercase_hex() -> None:
    for _ in range(50):
        assert re.fullmatch(r"[0-9a-f]{32}", new_upload_id())


def test_new_upload_id_is_unique() -> None:
    assert len({new_upload_id() for _ in range(1000)}) == 1000


def test_new_upload_id_passes_check_upload_id() -> None:
    upload_id = new_upload_id()
    assert check_upload_id(upload_id) == upload_id


# --- check_upload_id ----------------------------------------------------------


@pytest.mark.parametrize(
    "upload_id",
    [
        "abc",
        "proj/abc",
        "a/b/c",
        "a.b",
        "...",
        "a..b",
        ".hidden",
        "a~b-c_d",
        "x%20y",
        "%252e%252e",  # double-encoded: decoded once, it is the harmless "%2e%2e" text
        "user@host:1",
        "/".join(["a" * 200] * 5),
        "info",
        "abc.infos",
    ],
)
def test_check_upload_id_accepts_safe_ids(upload_id: str) -> None:
    assert check_upload_id(upload_id) == upload_id


@pytest.mark.parametrize(
    "upload_id",
    [
        "",
        ".",
        "..",
        "../etc/passwd",
        "a/../b",
        "a/./b",
        "a/..",
        "a//b",
        "/abc",
        "abc/",
        "/",
        "a\\b",
        "..\\x",
        "a\x00b",
        "a\x01b",
        "a\nb",
        "a\x7fb",
        "a b",
        "a?b",
        "a#b",
        "é",
        "%2e%2e",
        "%2E%2E/x",
        "a/%2e",
        "a%2fb",
        "a%2Fb",
        "a%5cb",
        "a%00b",
        "a" * 1025,
        *(f"abc{suffix}" for suffix in SIDE_FILE_SUFFIXES),
        *(f"dir{suffix}/abc" for suffix in SIDE_FILE_SUFFIXES),
    ],
)
def test_check_upload_id_refuses_unsafe_ids(upload_id: str) -> None:
    with pytest.raises(errors.InvalidUploadIDError) as info:
        check_upload_id(upload_id)
    assert info.value.status == 404
    assert info.value.code == "ERR_UPLOAD_NOT_FOUND"


def test_side_file_suffixes_include_every_documented_suffix() -> None:
    assert set(SIDE_FILE_SUFFIXES) >= {".info", ".lock", ".stop", ".part", ".tmp"}


_id_like = st.text(alphabet="ab./\\%2eEfF5c0\x00:~", max_size=30)


@given(st.one_of(_id_like, st.text(max_size=60)))
@example("a/../b")
@example("..")
@example("a/.")
def test_every_accepted_id_stays_under_the_base_directory(upload_id: str) -> None:
    try:
        check_upload_id(upload_id)
    except errors.InvalidUploadIDError:
        return
    segments = upload_id.split("/")
    assert ".." not in segments
    assert "." not in segments
    assert "" not in segments
    assert not upload_id.startswith("/")
    assert not upload_id.endswith("/")
    assert "\x00" not in upload_id
    assert "\\" not in upload_id
    assert all(ord(ch) >= 32 and ch != "\x7f" for ch in upload_id)
    joined = os.path.normpath(os.path.join("/base", upload_id))
    assert joined.startswith("/base/")
    assert not any(seg.endswith(SIDE_FILE_SUFFIXES) for seg in segments)


# --- UploadInfo -----------------------------------------------------------------

TUSD_INFO = (
    b'{"ID":"abc","Size":11,"SizeIsDeferred":false,"Offset":0,'
    b'"MetaData":{"filename":"a.txt"},"IsPartial":false,"IsFinal":false,'
    b'"PartialUploads":null,"Storage":{"Type":"filestore","Path":"/abs/data/abc",'
    b'"InfoPath":"/abs/data/abc.info"}}'
)


def test_from_json_reads_a_tusd_written_info() -> None:
    info = UploadInfo.from_json(TUSD_INFO)
    assert info == UploadInfo(
        id="abc",
        size=11,
        size_is_deferred=False,
        offset=0,
        metadata={"filename": "a.txt"},
        is_partial=False,
        is_final=False,
        partial_uploads=None,
        storage={"Type": "filestore", "Path": "/abs/data/abc", "InfoPath": "/abs/data/abc.info"},
        created=0.0,
    )


def test_from_json_reads_a_tusd_final_upload() -> None:
    raw = json.dumps(
        {
            "ID": "fin",
            "Size": 10,
            "SizeIsDeferred": False,
            "Offset": 10,
            "MetaData": {},
            "IsPartial": False,
            "IsFinal": True,
            "PartialUploads": ["p1", "p2"],
            "Storage": None,
        }
    )
    info = UploadInfo.from_json(raw)
    assert info.is_final
    assert info.partial_uploads == ("p1", "p2")
    assert info.storage is None
    assert info.is_complete


def test_from_json_keys_are_case_insensitive() -> None:
    raw = json.dumps(
        {
            "id": "abc",
            "SIZE": 5,
            "sizeisdeferred": True,
            "offSet": 3,
            "metadata": {"k": "v"},
            "isPartial": True,
            "ISFINAL": False,
            "partialuploads": None,
            "storage": {"type": "x"},
            "createdat": 12.5,
        }
    )
    info = UploadInfo.from_json(raw)
    assert info == UploadInfo(
        id="abc",
        size=5,
        size_is_deferred=True,
        offset=3,
        metadata={"k": "v"},
        is_partial=True,
        storage={"type": "x"},
        created=12.5,
    )


def test_from_json_applies_defaults_and_ignores_unknown_keys() -> None:
    info = UploadInfo.from_json('{"ID":"abc","Unknown":[1,2,3],"MetaData":null}')
    assert info == UploadInfo(id="abc")


def test_from_json_non_numeric_created_at_is_ignored() -> None:
    assert UploadInfo.from_json('{"ID":"a","CreatedAt":"yesterday"}').created == 0.0


def test_from_json_non_object_storage_is_dropped() -> None:
    assert UploadInfo.from_json('{"ID":"a","Storage":"x"}').storage is None


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b"\xff\xfe\x00",
        b"[]",
        b"null",
        b'"abc"',
        b"{}",
        b'{"ID":""}',
        b'{"ID":5}',
        b'{"ID":null}',
        b'{"ID":"a","Size":"11"}',
        b'{"ID":"a","Size":-1}',
        b'{"ID":"a","Size":true}',
        b'{"ID":"a","Size":1.5}',
        b'{"ID":"a","Offset":-1}',
        b'{"ID":"a","Offset":null}',
        b'{"ID":"a","MetaData":[["k","v"]]}',
        b'{"ID":"a","MetaData":"x"}',
        b'{"ID":"a","PartialUploads":"p1"}',
        b'{"ID":"a","PartialUploads":{}}',
    ],
)
def test_from_json_invalid_documents_raise_value_error(raw: bytes) -> None:
    with pytest.raises(ValueError):
        UploadInfo.from_json(raw)


def test_to_json_uses_tusd_field_names() -> None:
    info = UploadInfo(id="abc", size=11, metadata={"filename": "a.txt"})
    assert json.loads(info.to_json()) == {
        "ID": "abc",
        "Size": 11,
        "SizeIsDeferred": False,
        "Offset": 0,
        "MetaData": {"filename": "a.txt"},
        "IsPartial": False,
        "IsFinal": False,
        "PartialUploads": None,
        "Storage": None,
    }


def test_to_json_writes_created_at_only_when_set() -> None:
    assert "CreatedAt" not in UploadInfo(id="a").to_json_dict()
    assert UploadInfo(id="a", created=5.0).to_json_dict()["CreatedAt"] == 5.0


def test_to_json_is_compact_utf8() -> None:
    raw = UploadInfo(id="a", metadata={"n": "é"}).to_json()
    assert isinstance(raw, bytes)
    assert b", " not in raw
    assert b": " not in raw
    raw.decode("utf-8")


_text = st.text(alphabet=st.characters(exclude_categories=["Cs"]))
_int64 = st.integers(min_value=0, max_value=2**63 - 1)

_infos = st.builds(
    UploadInfo,
    id=_text.filter(bool),
    size=_int64,
    size_is_deferred=st.booleans(),
    offset=_int64,
    metadata=st.dictionaries(_text, _text),
    is_partial=st.booleans(),
    is_final=st.booleans(),
    partial_uploads=st.one_of(st.none(), st.lists(_text).map(tuple)),
    storage=st.one_of(st.none(), st.dictionaries(_text, _text)),
    created=st.one_of(st.just(0.0), st.floats(min_value=0, max_value=4e9, allow_nan=False)),
)


@given(_infos)
def test_to_json_then_from_json_round_trips(info: UploadInfo) -> None:
    # ``modified`` is not persisted: stores derive it from the data file's mtime.
    assert UploadInfo.from_json(info.to_json()) == info


def test_modified_is_not_persisted() -> None:
    info = UploadInfo(id="a", modified=123.0)
    assert UploadInfo.from_json(info.to_json()).modified == 0.0


@pytest.mark.parametrize(
    ("size", "deferred", "offset", "complete"),
    [
        (10, False, 10, True),
        (10, False, 9, False),
        (0, False, 0, True),
        (0, True, 0, False),
        (10, True, 10, False),
    ],
)
def test_is_complete(size: int, deferred: bool, offset: int, complete: bool) -> None:
    assert UploadInfo(id="a", size=size, size_is_deferred=deferred, offset=offset).is_complete is (
        complete
    )


def test_with_offset_returns_a_copy() -> None:
    info = UploadInfo(id="a", size=10, offset=2, metadata={"k": "v"})
    moved = info.with_offset(7)
    assert moved.offset == 7
    assert info.offset == 2
    assert moved.metadata == info.metadata
    assert moved.id == info.id


def _info_without_defaults() -> UploadInfo:
    """An info whose every field differs from its default."""
    return UploadInfo(
        id="a",
        size=10,
        size_is_deferred=True,
        offset=2,
        metadata={"k": "v"},
        is_partial=True,
        is_final=True,
        partial_uploads=("p",),
        storage={"Type": "filestore"},
        modified=3.5,
        created=1.5,
    )


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"id": "b"},
        {"offset": 7},
        {"metadata": {"x": "y"}},
        {"storage": {"Path": "/p"}},
        {"modified": 9.25},
        {"offset": 0, "storage": {}, "modified": 0.0, "metadata": {}, "id": "c"},
    ],
)
def test_with_changes_is_dataclasses_replace(changes: dict[str, Any]) -> None:
    # Every field (a field added later included) must come through unchanged:
    # with_changes passes them positionally, so a missed one would take its default.
    info = _info_without_defaults()
    changed = info.with_changes(**changes)
    expected = dataclasses.replace(info, **changes)
    for f in dataclasses.fields(UploadInfo):
        assert getattr(changed, f.name) == getattr(expected, f.name), f.name
    assert changed == expected


def test_check_upload_id_refuses_a_segment_the_file_system_cannot_name() -> None:
    with pytest.raises(errors.InvalidUploadIDError):
        check_upload_id("a" * 201)
    assert check_upload_id("a" * 200) == "a" * 200


@pytest.mark.parametrize(
    "info",
    [
        UploadInfo(id="a"),
        UploadInfo(
            id="b/c",
            size=7,
            offset=3,
            metadata={"name": 'é "q" \\ \n', "empty": ""},
            partial_uploads=("p1", "p2"),
            storage={"Type": "filestore", "Path": "/x/b/c"},
            created=1765000000.123456,
        ),
    ],
    ids=["bare", "full"],
)
def test_info_json_is_what_json_dumps_writes(info: UploadInfo) -> None:
    # The .info is written by a cached encoder: byte for byte json.dumps's output.
    expected = json.dumps(info.to_json_dict(), separators=(",", ":")).encode("utf-8")
    assert info.to_json() == expected
