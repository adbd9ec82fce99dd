from __future__ import annotations

import json

import pytest

from tests._support.hook_events import UPLOAD_ID, make_event
from tests._support.tus import TUSD_INFO_KEYS
from tusd_trio.hooks.model import (
    BLOCKING,
    DEFAULT_ENABLED,
    HOOK_TYPES,
    TUSD_HOOK_TYPES,
    FileInfoChanges,
    HookError,
    HookResponse,
    HTTPResponse,
    build_request,
    canonical_header_name,
    merge_http_response,
    merge_responses,
    parse_enabled_events,
    parse_response,
)
from tusd_trio.protocol.info import UploadInfo

# --- hook types and -hooks-enabled-events ------------------------------------------


def test_hook_types() -> None:
    assert set(HOOK_TYPES) == {
        "pre-create",
        "post-create",
        "post-receive",
        "pre-finish",
        "post-finish",
        "pre-terminate",
        "post-terminate",
        "pre-access",
    }
    assert DEFAULT_ENABLED == (
        "pre-create",
        "post-create",
        "post-receive",
        "post-terminate",
        "post-finish",
    )
    assert {"pre-create", "pre-finish", "pre-terminate", "pre-access"} == BLOCKING


@pytest.mark.parametrize("text", ["", "   "])
def test_empty_enables_every_tusd_hook_but_not_pre_access(text: str) -> None:
    # As tusd (its AvailableHooks, in its order); our pre-access only when named, so
    # a tusd-era receiver that refuses unknown hook types does not fail every request.
    assert parse_enabled_events(text) == (
        "pre-create",
        "post-create",
        "post-receive",
        "pre-terminate",
        "post-terminate",
        "post-finish",
        "pre-finish",
    )
    assert parse_enabled_events(text) == TUSD_HOOK_TYPES
    assert set(TUSD_HOOK_TYPES) == set(HOOK_TYPES) - {"pre-access"}


def test_enabled_events_list_keeps_the_order_given() -> None:
    assert parse_enabled_events("post-finish,pre-create") == ("post-finish", "pre-create")
    assert parse_enabled_events("pre-access") == ("pre-access",)
    assert parse_enabled_events("pre-create,pre-create") == ("pre-create",)


def test_enabled_events_tolerates_spaces() -> None:
    # tusd would refuse " post-finish"; we trim.
    assert parse_enabled_events("pre-create, post-finish ,pre-finish") == (
        "pre-create",
        "post-finish",
        "pre-finish",
    )
    assert parse_enabled_events("pre-create,,post-finish,") == ("pre-create", "post-finish")


def test_enabled_events_unknown_name() -> None:
    with pytest.raises(ValueError, match="pre-get"):
        parse_enabled_events("pre-create,pre-get")
    with pytest.raises(ValueError, match="Pre-Create"):
        parse_enabled_events("Pre-Create")


# --- the request -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("tus-resumable", "Tus-Resumable"),
        ("x-request-id", "X-Request-Id"),
        ("X-REQUEST-ID", "X-Request-Id"),
        ("host", "Host"),
        ("upload-metadata", "Upload-Metadata"),
        ("content-md5", "Content-Md5"),
        ("www-authenticate", "Www-Authenticate"),
        ("bad header", "bad header"),
        ("x_under", "X_under"),
    ],
)
def test_canonical_header_name(name: str, canonical: str) -> None:
    assert canonical_header_name(name) == canonical


def test_request_shape_field_by_field() -> None:
    doc = build_request(make_event("post-finish"), idempotency_key="key-1")
    assert list(doc) == ["Type", "Event", "IdempotencyKey"]
    assert doc["Type"] == "post-finish"
    assert doc["IdempotencyKey"] == "key-1"
    assert list(doc["Event"]) == ["Upload", "HTTPRequest"]
    upload = doc["Event"]["Upload"]
    assert list(upload) == list(TUSD_INFO_KEYS)
    assert upload["ID"] == UPLOAD_ID
    assert upload["Size"] == 11
    assert upload["SizeIsDeferred"] is False
    assert upload["Offset"] == 11
    assert upload["MetaData"] == {"filename": "hello.txt"}
    assert upload["IsPartial"] is False
    assert upload["IsFinal"] is False
    assert upload["PartialUploads"] is None
    assert upload["Storage"] == {"Type": "filestore", "Path": f"/data/{UPLOAD_ID}"}
    http = doc["Event"]["HTTPRequest"]
    assert list(http) == ["Method", "URI", "RemoteAddr", "Header"]
    assert http["Method"] == "PATCH"
    assert http["URI"] == f"/files/{UPLOAD_ID}?x=1"
    assert http["RemoteAddr"] == "127.0.0.1:59395"
    assert http["Header"] == {
        "Host": ["localhost:8080"],
        "Tus-Resumable": ["1.0.0"],
        "X-Request-Id": ["abc"],
        "Authorization": ["Bearer t0ken"],
    }
    # It is plain JSON.
    assert json.loads(json.dumps(doc)) == doc


def test_request_pre_create_has_no_id_and_no_storage() -> None:
    doc = build_request(make_event("pre-create", method="POST"), idempotency_key="k")
    assert doc["Event"]["Upload"]["ID"] == ""
    assert doc["Event"]["Upload"]["Storage"] is None
    assert doc["Event"]["HTTPRequest"]["Method"] == "POST"


def test_request_concatenation_and_deferred() -> None:
    final = UploadInfo(id="f", size=20, offset=20, is_final=True, partial_uploads=("a", "b"))
    doc = build_request(make_event("post-finish", upload=final), idempotency_key="k")
    assert doc["Event"]["Upload"]["IsFinal"] is True
    assert doc["Event"]["Upload"]["PartialUploads"] == ["a", "b"]
    assert doc["Event"]["Upload"]["Storage"] is None
    deferred = UploadInfo(id="d", size_is_deferred=True, is_partial=True)
    doc = build_request(make_event("post-create", upload=deferred), idempotency_key="k")
    assert doc["Event"]["Upload"]["SizeIsDeferred"] is True
    assert doc["Event"]["Upload"]["IsPartial"] is True
    assert doc["Event"]["Upload"]["MetaData"] == {}


def test_request_without_http_request() -> None:
    doc = build_request(make_event("post-terminate", request=False), idempotency_key="k")
    assert doc["Event"]["HTTPRequest"] == {
        "Method": "",
        "URI": "",
        "RemoteAddr": "",
        "Header": {},
    }


def test_request_host_always_present() -> None:
    doc = build_request(make_event(headers=[("tus-resumable", "1.0.0")]), idempotency_key="k")
    assert doc["Event"]["HTTPRequest"]["Header"]["Host"] == [""]


# --- the response ------------------------------------------------------------------


def test_full_response() -> None:
    resp = parse_response(
        json.dumps(
            {
                "HTTPResponse": {"StatusCode": 400, "Body": "no", "Header": {"X-Foo": "bar"}},
                "RejectUpload": True,
                "RejectTermination": True,
                "RejectAccess": True,
                "StopUpload": True,
                "ChangeFileInfo": {
                    "ID": "user/42/file",
                    "MetaData": {"a": "b"},
                    "Storage": {"Path": "x/y"},
                },
            }
        )
    )
    assert resp == HookResponse(
        http_response=HTTPResponse(400, "no", {"X-Foo": "bar"}),
        reject_upload=True,
        reject_termination=True,
        reject_access=True,
        stop_upload=True,
        change_file_info=FileInfoChanges("user/42/file", {"a": "b"}, {"Path": "x/y"}),
    )


@pytest.mark.parametrize("raw", [b"", "", "  \n", b"{}", "null", {}])
def test_empty_response(raw: bytes | str | dict[str, object]) -> None:
    assert parse_response(raw) == HookResponse()


def test_keys_case_insensitive() -> None:
    resp = parse_response(
        b'{"stopupload": true, "HTTPRESPONSE": {"statuscode": 418, "BODY": "tea",'
        b' "header": {"X-A": "1"}}, "changefileinfo": {"id": "new", "metadata": {"K": "v"}}}'
    )
    assert resp.stop_upload is True
    assert resp.http_response == HTTPResponse(418, "tea", {"X-A": "1"})
    assert resp.change_file_info == FileInfoChanges("new", {"K": "v"}, None)


def test_unknown_keys_and_headers_typo_ignored() -> None:
    # tusd's example server spells it "Headers"; Go ignores it, so do we.
    resp = parse_response(
        {
            "HTTPResponse": {"StatusCode": 200, "Headers": {"X-Lost": "1"}},
            "Whatever": [1, 2],
            "RejectUpload": False,
        }
    )
    assert resp.http_response == HTTPResponse(200, None, {})
    assert resp.reject_upload is False


def test_nulls_leave_fields_unset() -> None:
    resp = parse_response(
        '{"HTTPResponse": null, "StopUpload": null, "ChangeFileInfo": {"ID": "",'
        ' "MetaData": null, "Storage": {}}}'
    )
    assert resp.http_response is None
    assert resp.stop_upload is False
    # An empty ID means "keep"; an empty Storage map replaces it.
    assert resp.change_file_info == FileInfoChanges(None, None, {})


@pytest.mark.parametrize(
    "raw",
    [
        "{",
        "not json",
        "[]",
        '"text"',
        '{"StopUpload": "yes"}',
        '{"RejectUpload": 1}',
        '{"HTTPResponse": []}',
        '{"HTTPResponse": {"StatusCode": "400"}}',
        '{"HTTPResponse": {"StatusCode": 400.5}}',
        '{"HTTPResponse": {"StatusCode": true}}',
        '{"HTTPResponse": {"Body": 3}}',
        '{"HTTPResponse": {"Header": {"X-A": ["1", "2"]}}}',
        '{"ChangeFileInfo": {"MetaData": {"a": 1}}}',
        '{"ChangeFileInfo": {"ID": 7}}',
        '{"ChangeFileInfo": "x"}',
    ],
)
def test_invalid_responses(raw: str) -> None:
    with pytest.raises(HookError):
        parse_response(raw)


@pytest.mark.parametrize(
    "new_id",
    ["abc", "a/b/c", "user@example.com:1", "A-Z_0.9~%20!$'()*+,;=", "x" * 200],
)
def test_valid_change_ids(new_id: str) -> None:
    resp = parse_response({"ChangeFileInfo": {"ID": new_id}})
    assert resp.change_file_info is not None
    assert resp.change_file_info.id == new_id


@pytest.mark.parametrize(
    "new_id", ["/abc", "abc/", "/", "a b", "a\\b", "a?b", "a#b", "é", "a\x00b", "a\nb", "<x>"]
)
def test_invalid_change_ids(new_id: str) -> None:
    with pytest.raises(HookError, match="FileInfoChanges"):
        parse_response({"ChangeFileInfo": {"ID": new_id}})


# --- merging -----------------------------------------------------------------------


def test_merge_http_response_rules() -> None:
    base = [("Location", "http://x/files/1"), ("Tus-Resumable", "1.0.0")]
    # No hook answer: unchanged.
    assert merge_http_response(201, base, None) == (201, base, b"")
    assert merge_http_response(201, base, HookResponse()) == (201, base, b"")
    # Zero status and empty body keep the base; hook headers win by name.
    status, headers, body = merge_http_response(
        201,
        base,
        HTTPResponse(status_code=None, body="", headers={"location": "elsewhere", "X-A": "1"}),
        base_body=b"orig",
    )
    assert status == 201
    assert body == b"orig"
    assert headers == [("Tus-Resumable", "1.0.0"), ("location", "elsewhere"), ("X-A", "1")]
    # A status and a body replace the base ones.
    status, headers, body = merge_http_response(
        400,
        {"Content-Type": "text/plain"},
        HookResponse(http_response=HTTPResponse(403, "go away", {})),
        base_body=b"ERR_UPLOAD_REJECTED: upload creation has been rejected by server\n",
    )
    assert (status, headers, body) == (403, [("Content-Type", "text/plain")], b"go away")


def test_merge_responses() -> None:
    a = HookResponse(
        http_response=HTTPResponse(400, "a", {"X-A": "1", "X-B": "1"}),
        reject_upload=True,
        change_file_info=FileInfoChanges(id="a", metadata={"k": "a"}),
    )
    b = HookResponse(
        http_response=HTTPResponse(None, "", {"x-b": "2", "X-C": "2"}),
        stop_upload=True,
        change_file_info=FileInfoChanges(storage={"Path": "p"}, metadata={"k": "b"}),
    )
    merged = merge_responses(a, b)
    assert merged.reject_upload and merged.stop_upload
    assert not merged.reject_termination and not merged.reject_access
    assert merged.http_response == HTTPResponse(400, "a", {"X-A": "1", "x-b": "2", "X-C": "2"})
    assert merged.change_file_info == FileInfoChanges("a", {"k": "b"}, {"Path": "p"})
    # One side empty: the other is kept as is.
    assert merge_responses(HookResponse(), a) == a
    assert merge_responses(a, HookResponse()) == a
