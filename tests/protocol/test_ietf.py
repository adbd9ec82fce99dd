"""Unit tests of tusd_trio.protocol.ietf: the interop table and its decisions."""

from __future__ import annotations

import json

import pytest

from tusd_trio.protocol import errors, ietf
from tusd_trio.protocol.core import Action, ProtocolConfig, StoreCapabilities
from tusd_trio.protocol.ietf import VERSIONS
from tusd_trio.protocol.info import UploadInfo

from ._util import header_value, make_request

CONFIG = ProtocolConfig()
V3, V4, V5, V6, V7, V8, V9 = (VERSIONS[n] for n in range(3, 10))
UPLOAD = "/files/abc"


def _draft(version: ietf.InteropVersion, **extra: str) -> dict[str, str]:
    headers = {"Upload-Draft-Interop-Version": str(version.number)}
    headers.update({k.replace("_", "-"): v for k, v in extra.items()})
    return headers


def _info(**fields: object) -> UploadInfo:
    base: dict[str, object] = {"id": "abc", "size": 100, "offset": 10}
    base.update(fields)
    return UploadInfo(**base)  # type: ignore[arg-type]


# --- the table ------------------------------------------------------------------------


def test_the_table_rows() -> None:
    assert sorted(VERSIONS) == [3, 4, 5, 6, 7, 8, 9]
    assert V3.complete_field == "Upload-Incomplete" and V3.inverted
    assert all(v.complete_field == "Upload-Complete" for v in (V4, V5, V6, V7, V8, V9))
    assert [v.append_media_type for v in (V5, V6)] == [None, ietf.PARTIAL_UPLOAD]
    assert [v.upload_length for v in (V5, V6)] == [False, True]
    assert [v.lifetime_key for v in (V5, V6, V7)] == [None, "expires", "max-age"]
    assert [v.accept_patch for v in (V7, V8, V9)] == [False, True, False]
    assert ietf.INCONSISTENT_LENGTH not in V6.problem_types
    assert ietf.INCONSISTENT_LENGTH in V7.problem_types
    assert ietf.COMPLETED_UPLOAD in V8.problem_types
    assert ietf.COMPLETED_UPLOAD not in V9.problem_types
    assert [v.state_fields_forbidden for v in (V6, V7)] == [True, False]
    assert [v.get_reports_state for v in (V8, V9)] == [False, True]
    assert not V5.problem_details and V6.problem_details
    assert V5.state_fields() == ("Upload-Offset", "Upload-Complete")
    assert V6.state_fields() == ("Upload-Offset", "Upload-Complete", "Upload-Length")


def test_completion_field_both_ways() -> None:
    assert V3.complete_header(True) == ("Upload-Incomplete", "?0")
    assert V3.complete_header(False) == ("Upload-Incomplete", "?1")
    assert V4.complete_header(True) == ("Upload-Complete", "?1")
    assert V3.read_complete(make_request(headers={"Upload-Incomplete": "?1"}).headers) is False
    assert V4.read_complete(make_request(headers={"Upload-Complete": " ?1;x=1"}).headers) is True
    assert V4.read_complete(make_request(headers={"Upload-Complete": "?0"}).headers) is False
    assert V4.read_complete(make_request(headers={"Upload-Complete": "1"}).headers) is None
    assert V4.read_complete(make_request().headers) is None
    twice = make_request(headers=[("Upload-Complete", "?1"), ("Upload-Complete", "?1")])
    assert V4.read_complete(twice.headers) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [("7", 7), (" 12 ", 12), ("5;a=1", 5), ("-1", None), ("1,2", None), ("x", None), (None, None)],
)
def test_parse_sf_uint(value: str | None, expected: int | None) -> None:
    assert ietf.parse_sf_uint(value) == expected


def test_parse_sf_uint_limits_digits() -> None:
    assert ietf.parse_sf_uint("9" * 15) == int("9" * 15)
    assert ietf.parse_sf_uint("9" * 16) is None


# --- routing ------------------------------------------------------------------------------


def test_route_detects_the_version() -> None:
    request = make_request("POST", "/files/", _draft(V9, Upload_Complete="?1"))
    routed = ietf.route(request, CONFIG, enabled=True)
    assert routed.action is Action.CREATE and routed.interop is V9
    assert header_value(routed.common, "Upload-Draft-Interop-Version") == "9"
    assert header_value(routed.common, "Tus-Resumable") is None


@pytest.mark.parametrize("value", ["2", "10", "x", ""])
def test_route_unknown_versions_are_tus(value: str) -> None:
    request = make_request("POST", "/files/", {"Upload-Draft-Interop-Version": value})
    routed = ietf.route(request, CONFIG, enabled=True)
    assert routed.interop is None
    assert isinstance(routed.error, errors.UnsupportedVersionError)


def test_route_disabled_is_tus() -> None:
    request = make_request("POST", "/files/", _draft(V9, Upload_Complete="?1"))
    routed = ietf.route(request, CONFIG, enabled=False)
    assert routed.interop is None
    assert header_value(routed.common, "Tus-Resumable") == "1.0.0"


# --- limits ---------------------------------------------------------------------------------


def test_upload_limit() -> None:
    assert ietf.upload_limit(V5, CONFIG, _info(), 0) is None
    assert ietf.upload_limit(V6, CONFIG, None, 0) == "min-size=0"
    assert ietf.upload_limit(V6, CONFIG, _info(), 0) == "min-size=0,max-size=100"
    assert ietf.upload_limit(V6, CONFIG, _info(size_is_deferred=True, size=0), 0) == "min-size=0"
    limited = ProtocolConfig(max_size=50, expiration=60)
    info = _info(created=1000.0, modified=1000.0)
    assert ietf.upload_limit(V6, limited, info, 1010.5) == "min-size=0,max-size=50,expires=49"
    assert ietf.upload_limit(V7, limited, info, 1010.5) == "min-size=0,max-size=50,max-age=49"
    assert ietf.upload_limit(V7, limited, info, 5000.0).endswith("max-age=0")  # type: ignore[union-attr]
    done = _info(offset=100, created=1000.0)
    assert ietf.upload_limit(V7, limited, done, 1010.0) == "min-size=0,max-size=50"


# --- creation -------------------------------------------------------------------------------


def test_plan_creation_complete_with_content_length() -> None:
    request = make_request(
        "POST",
        "/files/",
        _draft(
            V9,
            Upload_Complete="?1",
            Content_Length="5",
            Upload_Length="5",
            Content_Type="Image/PNG; q=1",
            Content_Disposition='inline; filename="a \\"b\\".txt"',
        ),
    )
    draft = ietf.plan_creation(request, CONFIG, V9, 7.0)
    info = draft.plan.info
    assert draft.complete and draft.plan.has_body
    assert (info.size, info.size_is_deferred, info.created) == (5, False, 7.0)
    assert info.metadata == {"filetype": "image/png", "filename": 'a "b".txt'}


def test_plan_creation_incomplete_is_deferred() -> None:
    request = make_request(
        "POST", "/files/", _draft(V3, Upload_Incomplete="?1", Content_Length="5")
    )
    draft = ietf.plan_creation(request, CONFIG, V3, 0.0)
    assert not draft.complete
    assert draft.plan.info.size_is_deferred
    assert draft.plan.info.metadata == {}


def test_plan_creation_ignores_upload_length_where_undefined() -> None:
    request = make_request("POST", "/files/", _draft(V5, Upload_Complete="?0", Upload_Length="9"))
    assert ietf.plan_creation(request, CONFIG, V5, 0.0).plan.info.size_is_deferred


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ({}, errors.InvalidUploadCompleteError),
        ({"Upload-Complete": "yes"}, errors.InvalidUploadCompleteError),
        ({"Upload-Complete": "?0", "Upload-Length": "x"}, errors.InvalidUploadLengthError),
        (
            [("Upload-Complete", "?0"), ("Upload-Length", "1"), ("Upload-Length", "1")],
            errors.InvalidUploadLengthError,
        ),
        (
            {"Upload-Complete": "?1", "Upload-Length": "3", "Content-Length": "2"},
            errors.InconsistentUploadLengthError,
        ),
        ({"Upload-Complete": "?0", "Upload-Length": "51"}, errors.MaxSizeExceededError),
    ],
)
def test_plan_creation_errors(
    headers: dict[str, str] | list[tuple[str, str]], error: type[errors.TusError]
) -> None:
    items = list(headers.items()) if isinstance(headers, dict) else list(headers)
    request = make_request("POST", "/files/", [*_draft(V9).items(), *items])
    with pytest.raises(error):
        ietf.plan_creation(request, ProtocolConfig(max_size=50), V9, 0.0)


def test_plan_creation_needs_defer_support_without_length() -> None:
    config = ProtocolConfig(capabilities=StoreCapabilities(defer_length=False))
    request = make_request("POST", "/files/", _draft(V9, Upload_Complete="?0"))
    with pytest.raises(errors.NotImplementedFeatureError):
        ietf.plan_creation(request, config, V9, 0.0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("inline", None),
        ("attachment; filename=plain.txt", "plain.txt"),
        ("inline; filename=\"x.txt\"; filename*=UTF-8''%E2%82%AC.txt", "\u20ac.txt"),
        ("inline; filename*=UTF-8''%FF; filename=fallback", "fallback"),
        ("inline; filename*=ISO-8859-1''abc", None),
        ("inline; filename=", None),
        ("inline; size=3", None),
    ],
)
def test_filename(value: str | None, expected: str | None) -> None:
    assert ietf._filename(value) == expected


def test_interim_and_creation_responses() -> None:
    info = _info(offset=100)
    assert ietf.interim_headers(V3, CONFIG, info, "http://h/files/abc", 0.0) == [
        ("Location", "http://h/files/abc"),
        ("Upload-Draft-Interop-Version", "3"),
    ]
    assert header_value(ietf.interim_headers(V8, CONFIG, info, "u", 0.0), "Upload-Limit") == (
        "min-size=0,max-size=100"
    )
    response = ietf.creation_response(V3, CONFIG, info, "u", [("X", "1")], 0.0)
    assert response.status == 201
    assert response.headers == [
        ("X", "1"),
        ("Location", "u"),
        ("Upload-Offset", "100"),
        ("Upload-Incomplete", "?0"),
    ]


def test_length_to_declare() -> None:
    deferred = _info(size=0, size_is_deferred=True, offset=7)
    assert ietf.length_to_declare(deferred, True) == 7
    assert ietf.length_to_declare(deferred, False) is None
    assert ietf.length_to_declare(_info(offset=100), True) is None
    with pytest.raises(errors.InconsistentUploadLengthError):
        ietf.length_to_declare(_info(offset=50), True)


# --- append -----------------------------------------------------------------------------------


def _patch(version: ietf.InteropVersion, **extra: str) -> dict[str, str]:
    headers = _draft(version, **extra)
    if version.append_media_type:
        headers.setdefault("Content-Type", version.append_media_type)
    return headers


def test_check_append_headers() -> None:
    append = ietf.check_append_headers(
        make_request("PATCH", UPLOAD, _patch(V4, Upload_Offset="3")), V4
    )
    assert (append.offset, append.complete) == (3, False)
    request = make_request("PATCH", UPLOAD, _patch(V7, Upload_Offset="3", Upload_Complete="?1"))
    assert ietf.check_append_headers(request, V7).complete
    with pytest.raises(errors.InvalidUploadCompleteError):
        ietf.check_append_headers(make_request("PATCH", UPLOAD, _patch(V7, Upload_Offset="3")), V7)
    with pytest.raises(errors.InvalidContentTypeError):
        headers = _draft(V6, Upload_Offset="3", Content_Type="application/offset+octet-stream")
        ietf.check_append_headers(make_request("PATCH", UPLOAD, headers), V6)
    with pytest.raises(errors.InvalidOffsetError):
        ietf.check_append_headers(make_request("PATCH", UPLOAD, _patch(V4, Upload_Offset="-1")), V4)
    twice = [*_patch(V4).items(), ("Upload-Offset", "1"), ("Upload-Offset", "1")]
    with pytest.raises(errors.InvalidOffsetError):
        ietf.check_append_headers(make_request("PATCH", UPLOAD, twice), V4)


def test_plan_append_ordinary() -> None:
    request = make_request(
        "PATCH", UPLOAD, _patch(V9, Upload_Offset="10", Upload_Complete="?0", Content_Length="5")
    )
    append, plan = ietf.plan_append(request, _info(), CONFIG, V9, 0.0)
    assert not append.complete
    assert (plan.offset, plan.limit, plan.declare_length, plan.already_complete) == (
        10,
        90,
        None,
        False,
    )


def test_plan_append_declares_lengths() -> None:
    deferred = _info(size=0, size_is_deferred=True)
    completing = _patch(V9, Upload_Offset="10", Upload_Complete="?1", Content_Length="5")
    _, plan = ietf.plan_append(make_request("PATCH", UPLOAD, completing), deferred, CONFIG, V9, 0.0)
    assert plan.declare_length == 15
    with_length = _patch(V9, Upload_Offset="10", Upload_Complete="?0", Upload_Length="40")
    _, plan = ietf.plan_append(
        make_request("PATCH", UPLOAD, with_length), deferred, CONFIG, V9, 0.0
    )
    assert plan.declare_length == 40
    # The known length repeated: nothing to declare.
    same = _patch(V9, Upload_Offset="10", Upload_Complete="?0", Upload_Length="100")
    _, plan = ietf.plan_append(make_request("PATCH", UPLOAD, same), _info(), CONFIG, V9, 0.0)
    assert plan.declare_length is None


@pytest.mark.parametrize(
    ("info", "extra", "config", "error"),
    [
        (_info(is_final=True), {}, CONFIG, errors.ModifyFinalError),
        (_info(modified=1.0), {}, ProtocolConfig(expiration=1), errors.UploadGoneError),
        (_info(offset=100), {"Content-Length": "3"}, CONFIG, errors.CompletedUploadError),
        (_info(), {"Upload-Offset": "11"}, CONFIG, errors.MismatchingUploadOffsetError),
        (_info(), {"Upload-Length": "99"}, CONFIG, errors.InconsistentUploadLengthError),
        (
            _info(size=0, size_is_deferred=True),
            {"Upload-Length": "9"},
            CONFIG,
            errors.InconsistentUploadLengthError,
        ),
        (
            _info(size=0, size_is_deferred=True),
            {"Upload-Length": "60"},
            ProtocolConfig(max_size=50),
            errors.MaxSizeExceededError,
        ),
    ],
)
def test_plan_append_errors(
    info: UploadInfo, extra: dict[str, str], config: ProtocolConfig, error: type[errors.TusError]
) -> None:
    headers = _patch(V9, Upload_Offset=str(info.offset), Upload_Complete="?0")
    headers.update(extra)
    with pytest.raises(error):
        ietf.plan_append(make_request("PATCH", UPLOAD, headers), info, config, V9, 100.0)


def test_plan_append_completing_a_complete_upload_again() -> None:
    done = _info(offset=100)
    again = _patch(V9, Upload_Offset="100", Upload_Complete="?1")
    _, plan = ietf.plan_append(make_request("PATCH", UPLOAD, again), done, CONFIG, V9, 0.0)
    assert plan.already_complete
    for extra in ({"Transfer-Encoding": "chunked"}, {"Upload-Complete": "?0"}):
        with pytest.raises(errors.CompletedUploadError):
            request = make_request("PATCH", UPLOAD, {**again, **extra})
            ietf.plan_append(request, done, CONFIG, V9, 0.0)


def test_append_response() -> None:
    response = ietf.append_response(V7, CONFIG, _info(), [], 0.0)
    assert response.status == 204
    assert response.headers == [
        ("Upload-Offset", "10"),
        ("Upload-Complete", "?0"),
        ("Upload-Limit", "min-size=0,max-size=100"),
    ]


# --- HEAD, DELETE, OPTIONS ----------------------------------------------------------------------


def test_check_state_fields() -> None:
    ietf.check_state_fields(make_request("HEAD", UPLOAD, _draft(V6)), V6)
    ietf.check_state_fields(make_request("HEAD", UPLOAD, _draft(V7, Upload_Offset="1")), V7)
    for name in ("Upload-Offset", "Upload-Complete", "Upload-Length"):
        with pytest.raises(errors.ProtocolError, match=name):
            ietf.check_state_fields(make_request("DELETE", UPLOAD, {name: "1"}), V6)


def test_head_response() -> None:
    response = ietf.head_response(V6, CONFIG, _info(), [("X", "1")], 0.0)
    assert response.status == 204
    assert response.headers == [
        ("X", "1"),
        ("Upload-Offset", "10"),
        ("Upload-Complete", "?0"),
        ("Upload-Length", "100"),
        ("Upload-Limit", "min-size=0,max-size=100"),
        ("Cache-Control", "no-store"),
    ]
    old = ietf.head_response(V3, CONFIG, _info(size=0, size_is_deferred=True), [], 0.0)
    assert header_value(old.headers, "Upload-Incomplete") == "?1"
    assert header_value(old.headers, "Upload-Length") is None
    with pytest.raises(errors.UploadGoneError):
        ietf.head_response(V6, ProtocolConfig(expiration=1), _info(modified=1.0), [], 5.0)


def test_options_response() -> None:
    assert header_value(ietf.options_response(V5, CONFIG, []).headers, "Upload-Limit") is None
    v8 = ietf.options_response(V8, ProtocolConfig(max_size=9), [])
    assert header_value(v8.headers, "Upload-Limit") == "min-size=0,max-size=9"
    assert header_value(v8.headers, "Accept-Patch") == ietf.PARTIAL_UPLOAD
    assert header_value(ietf.options_response(V9, CONFIG, []).headers, "Accept-Patch") is None


# --- errors ---------------------------------------------------------------------------------------


def test_error_response_old_versions_are_text() -> None:
    response = ietf.error_response(
        errors.MismatchingUploadOffsetError(3, 5), V5, method="PATCH", common=[]
    )
    assert response.status == 409
    assert response.body.startswith(b"ERR_MISMATCHED_OFFSET: ")
    assert header_value(response.headers, "Upload-Offset") == "3"
    assert header_value(response.headers, "Upload-Complete") is None


def test_error_response_problem_details() -> None:
    response = ietf.error_response(
        errors.MismatchingUploadOffsetError(3, 5), V9, method="PATCH", common=[("A", "b")]
    )
    assert header_value(response.headers, "Content-Type") == ietf.PROBLEM_JSON
    assert header_value(response.headers, "Upload-Complete") == "?0"
    assert header_value(response.headers, "A") == "b"
    problem = json.loads(response.body)
    assert problem == {
        "type": ietf.MISMATCHING_OFFSET,
        "title": "offset from request (5) does not match offset of resource (3)",
        "status": 409,
        "code": "ERR_MISMATCHED_OFFSET",
        "expected-offset": 3,
        "provided-offset": 5,
    }


@pytest.mark.parametrize(
    ("version", "error", "kind"),
    [
        (V6, errors.CompletedUploadError(), ietf.COMPLETED_UPLOAD),
        (V9, errors.CompletedUploadError(), "about:blank"),
        (V7, errors.InconsistentUploadLengthError(), ietf.INCONSISTENT_LENGTH),
        (V6, errors.InconsistentUploadLengthError(), "about:blank"),
        (V9, errors.UploadNotFoundError(), "about:blank"),
    ],
)
def test_error_response_problem_types(
    version: ietf.InteropVersion, error: errors.TusError, kind: str
) -> None:
    response = ietf.error_response(error, version, method="POST", common=[])
    assert json.loads(response.body)["type"] == kind


def test_error_response_head_has_no_body() -> None:
    response = ietf.error_response(errors.UploadNotFoundError(), V9, method="HEAD", common=[])
    assert response.status == 404
    assert response.body == b""
    assert header_value(response.headers, "Upload-Complete") is None


def test_plan_creation_complete_without_content_length_is_deferred() -> None:
    request = make_request("POST", "/files/", _draft(V9, Upload_Complete="?1"))
    draft = ietf.plan_creation(request, CONFIG, V9, 0.0)
    assert draft.complete
    assert draft.plan.info.size_is_deferred


def test_download_of_an_incomplete_upload_without_serve_incomplete() -> None:
    # A draft upload is downloaded through the tus path; a store that cannot serve
    # partial data refuses an unfinished one (a GET in interop 9 included).
    from tusd_trio.protocol.core import plan_download

    config = ProtocolConfig(capabilities=StoreCapabilities(serve_incomplete=False))
    with pytest.raises(errors.IncompleteUploadError):
        plan_download(make_request("GET", UPLOAD), _info(), config, [], 0.0)
