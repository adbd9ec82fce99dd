"""Unit tests of the tus 1.0.0 protocol core: routing, planning and responses."""

from __future__ import annotations

import base64
import hashlib

import pytest

from tusd_trio.protocol import errors
from tusd_trio.protocol.config import (
    DEFAULT_CORS_ALLOW_HEADERS,
    DEFAULT_CORS_ALLOW_METHODS,
    DEFAULT_CORS_EXPOSE_HEADERS,
    CorsConfig,
    ProtocolConfig,
    StoreCapabilities,
)
from tusd_trio.protocol.creation import (
    CreationPlan,
    creation_response,
    partials_finished,
    plan_creation,
    plan_final,
)
from tusd_trio.protocol.download import DownloadPlan, plan_download
from tusd_trio.protocol.expiration import expires_at, is_expired
from tusd_trio.protocol.headers import Checksum, format_http_date, parse_metadata
from tusd_trio.protocol.info import UploadInfo
from tusd_trio.protocol.messages import TUS_VERSION, Headers, Request, Response
from tusd_trio.protocol.responses import (
    delete_response,
    error_response,
    greeting_response,
    head_response,
    options_response,
)
from tusd_trio.protocol.routing import Action, Routed, request_path, route
from tusd_trio.protocol.urls import id_from_url, origin_of, public_base_path, upload_url
from tusd_trio.protocol.writes import (
    WritePlan,
    check_patch_headers,
    checksum_from_trailers,
    patch_response,
    plan_body_write,
    plan_patch,
)

from ._util import OCTET, TUS, header_names, header_value, make_request

CFG = ProtocolConfig()
NOW = 1_700_000_000.0


def sha1_header(data: bytes) -> str:
    return "sha1 " + base64.b64encode(hashlib.sha1(data).digest()).decode()


# --- Headers and Response -----------------------------------------------------------


def test_headers_are_case_insensitive() -> None:
    headers = Headers([("Upload-Offset", "5")])
    assert headers["upload-offset"] == "5"
    assert headers["UPLOAD-OFFSET"] == "5"
    assert headers.get("Upload-offset") == "5"
    assert "uPLOAD-oFFSET" in headers
    assert list(headers) == ["upload-offset"]
    assert len(headers) == 1


def test_headers_join_duplicates_and_count_them() -> None:
    headers = Headers([("A", "1"), ("a", "2"), ("B", "x"), ("A", "3")])
    assert headers["a"] == "1, 2, 3"
    assert headers.count("A") == 3
    assert headers.count("b") == 1
    assert headers.count("missing") == 0
    assert len(headers) == 2


def test_headers_missing_names() -> None:
    headers = Headers()
    assert headers.get("x") is None
    assert headers.get("x", "default") == "default"
    not_a_name: object = 5
    assert not_a_name not in headers
    assert "x" not in headers
    with pytest.raises(KeyError):
        headers["x"]


def test_response_header_lookup_is_case_insensitive_first_wins() -> None:
    response = Response(200, [("X-A", "1"), ("x-a", "2")])
    assert response.header("X-a") == "1"
    assert response.header("missing") is None
    assert response.body == b""


# --- error_response ---------------------------------------------------------------


def test_error_response_body_format_and_content_type() -> None:
    response = error_response(errors.MismatchedOffsetError(), common=[("X-C", "1")])
    assert response.status == 409
    assert response.body == b"ERR_MISMATCHED_OFFSET: mismatched offset\n"
    assert response.headers[0] == ("X-C", "1")
    assert response.header("Content-Type") == "text/plain; charset=utf-8"
    assert response.header("Tus-Version") is None
    assert response.header("Allow") is None
    assert response.header("Content-Range") is None


def test_error_response_custom_message() -> None:
    response = error_response(errors.StoreError("disk on fire"))
    assert response.status == 500
    assert response.body == b"ERR_INTERNAL_SERVER_ERROR: disk on fire\n"


def test_error_response_on_head_has_no_body_but_keeps_headers() -> None:
    response = error_response(errors.UploadNotFoundError(), method="HEAD")
    assert response.status == 404
    assert response.body == b""
    assert response.header("Content-Type") == "text/plain; charset=utf-8"


def test_error_response_412_carries_tus_version() -> None:
    response = error_response(errors.UnsupportedVersionError())
    assert response.status == 412
    assert response.header("Tus-Version") == TUS_VERSION
    assert response.body.startswith(b"ERR_UNSUPPORTED_VERSION: ")


def test_error_response_405_carries_allow() -> None:
    response = error_response(errors.MethodNotAllowedError("GET, HEAD"))
    assert response.status == 405
    assert response.header("Allow") == "GET, HEAD"
    assert response.body == b"ERR_METHOD_NOT_ALLOWED: method not allowed\n"


def test_error_response_416_carries_content_range() -> None:
    response = error_response(errors.RangeNotSatisfiableError(123))
    assert response.status == 416
    assert response.header("Content-Range") == "bytes */123"


# --- ProtocolConfig and options_response ---------------------------------------------


@pytest.mark.parametrize(
    ("given", "normalised"),
    [
        ("/files/", "/files/"),
        ("files", "/files/"),
        ("/files", "/files/"),
        ("/", "/"),
        ("a/b", "/a/b/"),
    ],
)
def test_base_path_is_normalised(given: str, normalised: str) -> None:
    assert ProtocolConfig(base_path=given).base_path == normalised


def _extensions(config: ProtocolConfig) -> list[str]:
    value = header_value(options_response(config, []).headers, "Tus-Extension")
    assert value is not None
    return value.split(",")


def test_options_default_extensions_in_order() -> None:
    assert _extensions(CFG) == [
        "creation",
        "creation-with-upload",
        "termination",
        "concatenation",
        "concatenation-unfinished",
        "creation-defer-length",
        "checksum",
        "checksum-trailer",
    ]


def test_options_extensions_follow_config_and_capabilities() -> None:
    assert "termination" not in _extensions(ProtocolConfig(disable_termination=True))
    assert "termination" not in _extensions(
        ProtocolConfig(capabilities=StoreCapabilities(terminate=False))
    )
    no_concat = _extensions(ProtocolConfig(disable_concatenation=True))
    assert "concatenation" not in no_concat
    assert "concatenation-unfinished" not in no_concat
    assert "concatenation" not in _extensions(
        ProtocolConfig(capabilities=StoreCapabilities(concatenate=False))
    )
    assert "creation-defer-length" not in _extensions(
        ProtocolConfig(capabilities=StoreCapabilities(defer_length=False))
    )
    for config in (
        ProtocolConfig(capabilities=StoreCapabilities(checksum=False)),
        ProtocolConfig(checksum_algorithms=()),
    ):
        names = _extensions(config)
        assert "checksum" not in names
        assert "checksum-trailer" not in names
    assert _extensions(ProtocolConfig(expiration=60))[-1] == "expiration"
    assert "expiration" not in _extensions(CFG)
    # A transport without request trailers (ASGI) offers checksum but not checksum-trailer.
    names = _extensions(ProtocolConfig(request_trailers=False))
    assert "checksum" in names
    assert "checksum-trailer" not in names


def test_options_minimal_store() -> None:
    config = ProtocolConfig(
        capabilities=StoreCapabilities(
            terminate=False, concatenate=False, defer_length=False, checksum=False
        )
    )
    assert _extensions(config) == ["creation", "creation-with-upload"]
    response = options_response(config, [])
    assert response.header("Tus-Checksum-Algorithm") is None


def test_options_response_headers() -> None:
    response = options_response(CFG, [("X-Common", "1")])
    assert response.status == 200
    assert response.body == b""
    assert response.headers[0] == ("X-Common", "1")
    assert response.header("Tus-Version") == "1.0.0"
    assert response.header("Tus-Max-Size") is None
    assert response.header("Tus-Checksum-Algorithm") == "sha1,md5,sha256,sha512"


def test_options_tus_max_size_only_when_positive() -> None:
    assert options_response(ProtocolConfig(max_size=1024), []).header("Tus-Max-Size") == "1024"
    assert options_response(ProtocolConfig(max_size=0), []).header("Tus-Max-Size") is None
    assert options_response(ProtocolConfig(max_size=-1), []).header("Tus-Max-Size") is None


def test_options_checksum_algorithms_follow_config() -> None:
    response = options_response(ProtocolConfig(checksum_algorithms=("sha256", "sha1")), [])
    assert response.header("Tus-Checksum-Algorithm") == "sha256,sha1"


# --- request_path / route ----------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "path"),
    [
        ("/files/abc", "/files/abc"),
        ("/files/abc?x=1", "/files/abc"),
        ("/files/abc#frag", "/files/abc"),
        ("/files/%61bc", "/files/abc"),
        ("http://host:8080/files/abc?q", "/files/abc"),
        ("https://host", "/"),
    ],
)
def test_request_path(target: str, path: str) -> None:
    assert request_path(target) == path


def _route(
    method: str, target: str, headers: dict[str, str] | None = None, config: ProtocolConfig = CFG
) -> Routed:
    return route(make_request(method, target, headers or {}), config)


def _tus(**extra: str) -> dict[str, str]:
    headers = dict([TUS])
    headers.update({k.replace("_", "-"): v for k, v in extra.items()})
    return headers


@pytest.mark.parametrize(
    ("method", "action"),
    [
        ("GET", Action.GET),
        ("HEAD", Action.HEAD),
        ("PATCH", Action.PATCH),
        ("DELETE", Action.DELETE),
    ],
)
def test_route_upload_actions(method: str, action: Action) -> None:
    routed = _route(method, "/files/abc", _tus())
    assert routed.error is None
    assert routed.action is action
    assert routed.upload_id == "abc"
    assert routed.method == method


def test_route_post_on_base_path_creates() -> None:
    for target in ("/files/", "/files", "/files?x=1", "/files//"):
        routed = _route("POST", target, _tus())
        assert routed.error is None, target
        assert routed.action is Action.CREATE
        assert routed.upload_id is None


def test_route_common_headers() -> None:
    routed = _route("HEAD", "/files/abc")
    assert ("X-Content-Type-Options", "nosniff") in routed.common
    assert ("Tus-Resumable", "1.0.0") in routed.common
    assert "access-control-allow-origin" not in header_names(routed.common)


def test_route_method_override_on_post() -> None:
    routed = _route("POST", "/files/abc", _tus(**{"X-HTTP-Method-Override": "PATCH"}))
    assert routed.method == "PATCH"
    assert routed.action is Action.PATCH


def test_route_method_override_is_case_sensitive() -> None:
    # tusd answered "X-HTTP-Method-Override: patch" with 405: methods are case-sensitive.
    routed = _route("POST", "/files/abc", _tus(**{"X-HTTP-Method-Override": "patch"}))
    assert routed.action is None
    assert isinstance(routed.error, errors.MethodNotAllowedError)
    assert routed.method == "patch"
    routed = _route("POST", "/files/abc", _tus(**{"X-HTTP-Method-Override": " DELETE "}))
    assert routed.action is Action.DELETE


def test_route_method_override_empty_is_ignored() -> None:
    routed = _route("POST", "/files/", _tus(**{"X-HTTP-Method-Override": ""}))
    assert routed.action is Action.CREATE


@pytest.mark.parametrize("real", ["GET", "PATCH", "HEAD", "DELETE"])
def test_route_method_override_ignored_on_other_methods(real: str) -> None:
    routed = _route(real, "/files/abc", _tus(**{"X-HTTP-Method-Override": "POST"}))
    assert routed.method == real
    assert routed.action is Action[real]


def test_route_method_is_case_sensitive() -> None:
    routed = _route("head", "/files/abc")
    assert routed.action is None
    assert isinstance(routed.error, errors.MethodNotAllowedError)


@pytest.mark.parametrize("target", ["/files/", "/files/abc", "/files"])
def test_route_options_needs_no_tus_resumable(target: str) -> None:
    routed = _route("OPTIONS", target)
    assert routed.error is None
    assert routed.action is Action.OPTIONS
    assert ("Tus-Resumable", "1.0.0") in routed.common


def test_route_options_via_method_override() -> None:
    routed = _route("POST", "/files/", {"X-HTTP-Method-Override": "OPTIONS"})
    assert routed.action is Action.OPTIONS


@pytest.mark.parametrize(
    ("method", "target"),
    [("POST", "/files/"), ("PATCH", "/files/abc"), ("DELETE", "/files/abc")],
)
@pytest.mark.parametrize("version", [None, "", "0.2.2", "1.0", "1.0.0.0"])
def test_route_412_for_missing_or_wrong_tus_resumable(
    method: str, target: str, version: str | None
) -> None:
    headers = {} if version is None else {"Tus-Resumable": version}
    routed = _route(method, target, headers)
    assert isinstance(routed.error, errors.UnsupportedVersionError)
    assert routed.action is None
    response = error_response(routed.error, method=method, common=routed.common)
    assert response.status == 412
    assert response.header("Tus-Version") == "1.0.0"
    assert response.header("Tus-Resumable") == "1.0.0"


def test_route_tus_resumable_is_trimmed() -> None:
    assert _route("POST", "/files/", {"Tus-Resumable": " 1.0.0 "}).action is Action.CREATE


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_route_get_and_head_need_no_tus_resumable(method: str) -> None:
    routed = _route(method, "/files/abc", {"Tus-Resumable": "0.2.2"})
    assert routed.error is None


@pytest.mark.parametrize("method", ["GET", "HEAD", "PATCH", "DELETE", "PUT"])
def test_route_405_on_base_path_allows_post_only(method: str) -> None:
    routed = _route(method, "/files/", _tus())
    assert isinstance(routed.error, errors.MethodNotAllowedError)
    assert routed.error.allow == "POST"
    assert error_response(routed.error).header("Allow") == "POST"


@pytest.mark.parametrize("method", ["POST", "PUT", "OPTIONSX"])
def test_route_405_on_upload_path(method: str) -> None:
    routed = _route(method, "/files/abc", _tus())
    assert isinstance(routed.error, errors.MethodNotAllowedError)
    assert routed.error.allow == "GET, HEAD, PATCH, DELETE"
    assert routed.error.status == 405


def test_route_405_with_download_disabled() -> None:
    config = ProtocolConfig(disable_download=True)
    routed = _route("GET", "/files/abc", config=config)
    assert isinstance(routed.error, errors.MethodNotAllowedError)
    assert routed.error.allow == "HEAD, PATCH, DELETE"
    assert _route("HEAD", "/files/abc", config=config).action is Action.HEAD


@pytest.mark.parametrize(
    "config",
    [
        ProtocolConfig(disable_termination=True),
        ProtocolConfig(capabilities=StoreCapabilities(terminate=False)),
    ],
)
def test_route_405_with_termination_disabled(config: ProtocolConfig) -> None:
    routed = _route("DELETE", "/files/abc", _tus(), config=config)
    assert isinstance(routed.error, errors.MethodNotAllowedError)
    assert routed.error.allow == "GET, HEAD, PATCH"


def test_route_405_with_download_and_termination_disabled() -> None:
    config = ProtocolConfig(disable_download=True, disable_termination=True)
    routed = _route("POST", "/files/abc", _tus(), config=config)
    assert isinstance(routed.error, errors.MethodNotAllowedError)
    assert routed.error.allow == "HEAD, PATCH"


# CORS


def test_route_cors_allowed_origin_normal_request() -> None:
    routed = _route("HEAD", "/files/abc", {"Origin": "https://app.example"})
    assert routed.error is None
    common = dict(routed.common)
    assert common["Access-Control-Allow-Origin"] == "https://app.example"
    assert common["Vary"] == "Origin"
    assert common["Access-Control-Expose-Headers"] == DEFAULT_CORS_EXPOSE_HEADERS
    assert "Access-Control-Allow-Methods" not in common
    assert "Access-Control-Allow-Headers" not in common
    assert "Access-Control-Max-Age" not in common
    assert "Access-Control-Allow-Credentials" not in common


def test_route_cors_preflight() -> None:
    routed = _route("OPTIONS", "/files/", {"Origin": "https://app.example"})
    assert routed.action is Action.OPTIONS
    common = dict(routed.common)
    assert common["Access-Control-Allow-Origin"] == "https://app.example"
    assert common["Access-Control-Allow-Methods"] == DEFAULT_CORS_ALLOW_METHODS
    assert common["Access-Control-Allow-Headers"] == DEFAULT_CORS_ALLOW_HEADERS
    assert common["Access-Control-Max-Age"] == "86400"
    assert "Access-Control-Expose-Headers" not in common


def test_route_cors_credentials() -> None:
    config = ProtocolConfig(cors=CorsConfig(allow_credentials=True))
    routed = _route("GET", "/files/abc", {"Origin": "https://a.example"}, config)
    assert ("Access-Control-Allow-Credentials", "true") in routed.common


def test_route_cors_custom_values() -> None:
    cors = CorsConfig(allow_methods="GET", allow_headers="X-A", max_age="5", expose_headers="X-B")
    config = ProtocolConfig(cors=cors)
    preflight = dict(_route("OPTIONS", "/files/", {"Origin": "o"}, config).common)
    assert preflight["Access-Control-Allow-Methods"] == "GET"
    assert preflight["Access-Control-Allow-Headers"] == "X-A"
    assert preflight["Access-Control-Max-Age"] == "5"
    normal = dict(_route("GET", "/files/a", {"Origin": "o"}, config).common)
    assert normal["Access-Control-Expose-Headers"] == "X-B"


def test_route_cors_denied_origin() -> None:
    config = ProtocolConfig(cors=CorsConfig(allow_origin=r"^https://good\.example$"))
    routed = _route("OPTIONS", "/files/", {"Origin": "https://evil.example"}, config)
    assert isinstance(routed.error, errors.OriginNotAllowedError)
    assert routed.action is None
    assert routed.error.status == 403
    assert routed.error.code == "ERR_ORIGIN_NOT_ALLOWED"
    assert "access-control-allow-origin" not in header_names(routed.common)
    ok = _route("OPTIONS", "/files/", {"Origin": "https://good.example"}, config)
    assert ok.error is None


def test_route_cors_origin_regex_is_unanchored_like_go() -> None:
    config = ProtocolConfig(cors=CorsConfig(allow_origin=r"good\.example"))
    routed = _route("GET", "/files/a", {"Origin": "https://good.example.evil.com"}, config)
    assert routed.error is None


def test_route_cors_denied_before_tus_resumable_check() -> None:
    config = ProtocolConfig(cors=CorsConfig(allow_origin="^x$"))
    routed = _route("POST", "/files/", {"Origin": "y"}, config)
    assert isinstance(routed.error, errors.OriginNotAllowedError)


def test_route_cors_disabled_ignores_origin() -> None:
    config = ProtocolConfig(cors=None)
    routed = _route("GET", "/files/abc", {"Origin": "https://x"}, config)
    assert routed.error is None
    assert not any(name.startswith("access-control") for name in header_names(routed.common))


# greeting, health, paths


@pytest.mark.parametrize("target", ["/", "/index.html", "/filesX/abc", "/file"])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_route_greeting_for_non_tus_paths(method: str, target: str) -> None:
    routed = _route(method, target)
    assert routed.action is Action.GREETING
    assert routed.error is None
    assert ("Tus-Resumable", "1.0.0") not in routed.common


@pytest.mark.parametrize("method", ["POST", "PATCH", "DELETE", "OPTIONS"])
def test_route_non_tus_path_other_methods_404(method: str) -> None:
    routed = _route(method, "/elsewhere", _tus())
    assert isinstance(routed.error, errors.UploadNotFoundError)
    assert routed.error.status == 404


def test_route_greeting_disabled_gives_404() -> None:
    routed = _route("GET", "/", config=ProtocolConfig(show_greeting=False))
    assert routed.action is None
    assert isinstance(routed.error, errors.UploadNotFoundError)


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_route_health_path(method: str) -> None:
    routed = _route(method, "/health")
    assert routed.action is Action.HEALTH
    assert routed.error is None
    assert ("Tus-Resumable", "1.0.0") not in routed.common


def test_route_health_path_is_configurable() -> None:
    config = ProtocolConfig(health_path="/-/ready")
    assert _route("GET", "/-/ready", config=config).action is Action.HEALTH
    assert _route("GET", "/health", config=config).action is Action.GREETING


def test_route_health_path_post_is_not_health() -> None:
    routed = _route("POST", "/health", _tus())
    assert routed.action is None
    assert isinstance(routed.error, errors.UploadNotFoundError)


def test_route_nested_ids_and_trailing_slashes() -> None:
    assert _route("HEAD", "/files/proj/abc").upload_id == "proj/abc"
    assert _route("HEAD", "/files/proj/abc/").upload_id == "proj/abc"
    assert _route("HEAD", "/files/abc?x=1").upload_id == "abc"


def test_route_absolute_form_target() -> None:
    routed = _route("HEAD", "http://example.com/files/abc")
    assert routed.action is Action.HEAD
    assert routed.upload_id == "abc"


def test_route_percent_decodes_ids() -> None:
    assert _route("HEAD", "/files/%61bc").upload_id == "abc"
    # An encoded slash never becomes a path separator.
    routed = _route("HEAD", "/files/proj%2Fabc")
    assert routed.upload_id is None
    assert isinstance(routed.error, errors.InvalidUploadIDError)


@pytest.mark.parametrize(
    "target",
    [
        "/files/../etc/passwd",
        "/files/a/../../etc",
        "/files/%2e%2e/etc/passwd",
        "/files/%2E%2E%2Fetc",
        "/files/..%2fsecret",
        "/files/a%2f..%2f..%2fb",
        "/files/%252e%252e",
        "/files/a%00b",
        "/files/a%5c..%5cb",
        "/files/%ff",
        "/files/a%20b",
        "/files/abc.info",
        "/files/abc.lock",
        "/files/./abc",
    ],
)
def test_route_traversal_and_unsafe_ids_are_404(target: str) -> None:
    routed = _route("HEAD", target)
    assert routed.action is None
    assert routed.upload_id is None
    assert routed.error is not None
    assert routed.error.status == 404
    assert routed.error.code == "ERR_UPLOAD_NOT_FOUND"


def test_route_method_check_comes_before_id_check() -> None:
    routed = _route("POST", "/files/../x", _tus())
    assert isinstance(routed.error, errors.MethodNotAllowedError)


@pytest.mark.parametrize("target", ["http://[/files/abc", "http://[foo]/files/abc"])
def test_route_malformed_absolute_target_is_answered_not_raised(target: str) -> None:
    # h11 accepts any visible characters as request-target; route must turn a
    # target urllib cannot split into an error response, not raise ValueError.
    routed = _route("HEAD", target)
    assert routed.action is None
    assert isinstance(routed.error, errors.TusError)


def test_route_base_path_root() -> None:
    config = ProtocolConfig(base_path="/")
    assert _route("POST", "/", _tus(), config).action is Action.CREATE
    assert _route("HEAD", "/abc", config=config).upload_id == "abc"
    assert _route("GET", "/health", config=config).action is Action.HEALTH
    routed = _route("GET", "/", config=config)
    assert isinstance(routed.error, errors.MethodNotAllowedError)


# --- origin_of / upload_url / id_from_url -----------------------------------------------


def _origin(headers: dict[str, str], *, proxy: bool = True, scheme: str = "http") -> str:
    request = make_request("POST", "/files/", headers, scheme=scheme)
    return origin_of(request, ProtocolConfig(behind_proxy=proxy))


def test_origin_uses_host_and_scheme() -> None:
    assert _origin({"Host": "tus.io:1080"}, proxy=False) == "http://tus.io:1080"
    assert _origin({"Host": "tus.io"}, proxy=False, scheme="https") == "https://tus.io"


def test_origin_without_host_is_localhost() -> None:
    assert _origin({}, proxy=False) == "http://localhost"


def test_origin_ignores_forwarded_headers_without_proxy() -> None:
    headers = {
        "Host": "tus.io:80",
        "X-Forwarded-Host": "evil.example",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Port": "8443",
        "Forwarded": "host=evil2.example;proto=https",
    }
    # Default ports are stripped only behind a proxy, as in tusd.
    assert _origin(headers, proxy=False) == "http://tus.io:80"


def test_origin_respects_x_forwarded_host_and_proto() -> None:
    headers = {
        "Host": "internal",
        "X-Forwarded-Host": "tus.io, other",
        "X-Forwarded-Proto": "https",
    }
    assert _origin(headers) == "https://tus.io"


def test_origin_filters_unknown_forwarded_protocol() -> None:
    headers = {"Host": "tus.io", "X-Forwarded-Proto": "aws-https"}
    assert _origin(headers) == "http://tus.io"
    headers = {"Host": "tus.io", "Forwarded": "proto=ftp"}
    assert _origin(headers) == "http://tus.io"


def test_origin_respects_forwarded() -> None:
    headers = {
        "Host": "internal",
        "Forwarded": "for=192.168.10.112;host=upload.example.tld;proto=https;proto-version=",
    }
    assert _origin(headers) == "https://upload.example.tld"


def test_origin_forwarded_with_quotes() -> None:
    headers = {"Host": "internal", "Forwarded": 'host="upload.example.tld:8088";proto=https'}
    assert _origin(headers) == "https://upload.example.tld:8088"


def test_origin_forwarded_overrides_x_forwarded() -> None:
    headers = {
        "Host": "internal",
        "X-Forwarded-Host": "xfh.example",
        "X-Forwarded-Proto": "http",
        "Forwarded": "proto=HTTPS;host=fwd.example",
    }
    assert _origin(headers) == "https://fwd.example"


def test_origin_forwarded_only_first_element() -> None:
    headers = {
        "Host": "internal",
        "Forwarded": "host=first.example, host=second.example;proto=https",
    }
    assert _origin(headers) == "http://first.example"


def test_origin_forwarded_ipv6_host() -> None:
    headers = {"Host": "internal", "Forwarded": 'host="[2001:db8::1]:8080"'}
    assert _origin(headers) == "http://[2001:db8::1]:8080"


def test_origin_x_forwarded_port() -> None:
    assert _origin({"Host": "tus.io", "X-Forwarded-Port": "8443"}) == "http://tus.io:8443"
    assert _origin({"Host": "tus.io:1", "X-Forwarded-Port": "8443"}) == "http://tus.io:1"
    assert _origin({"Host": "[::1]", "X-Forwarded-Port": "8443"}) == "http://[::1]:8443"
    assert _origin({"Host": "[::1]:9", "X-Forwarded-Port": "8443"}) == "http://[::1]:9"
    assert _origin({"Host": "tus.io", "X-Forwarded-Port": "abc"}) == "http://tus.io"
    # Forwarded wins over X-Forwarded-Port.
    assert _origin({"Host": "tus.io", "X-Forwarded-Port": "8443", "Forwarded": "proto=http"}) == (
        "http://tus.io"
    )


def test_origin_x_forwarded_port_default_is_stripped() -> None:
    headers = {"Host": "tus.io", "X-Forwarded-Proto": "https", "X-Forwarded-Port": "443"}
    assert _origin(headers) == "https://tus.io"


def test_origin_removes_default_ports_behind_proxy() -> None:
    assert _origin({"Host": "tus.io:80"}) == "http://tus.io"
    assert _origin({"X-Forwarded-Host": "tus.io:443", "X-Forwarded-Proto": "https"}) == (
        "https://tus.io"
    )
    assert _origin({"Host": "tus.io:443"}) == "http://tus.io:443"
    assert _origin({"Host": "tus.io:80"}, scheme="https") == "https://tus.io:80"
    assert _origin({"Host": "tus.io:8080"}) == "http://tus.io:8080"
    assert _origin({"Host": "[::1]:80"}) == "http://[::1]"


def test_upload_url_absolute_and_relative() -> None:
    request = make_request("POST", "/files/", {"Host": "tus.io:1080"})
    assert upload_url(request, CFG, "abc") == "http://tus.io:1080/files/abc"
    assert upload_url(request, ProtocolConfig(relative_location=True), "p/abc") == "/files/p/abc"
    assert upload_url(request, ProtocolConfig(base_path="/up"), "x") == "http://tus.io:1080/up/x"


@pytest.mark.parametrize(
    ("url", "upload_id"),
    [
        ("http://tus.io/files/abc", "abc"),
        ("https://tus.io:443/files/abc/", "abc"),
        ("/files/abc", "abc"),
        ("/files/proj/abc", "proj/abc"),
        ("/files/abc?x=1", "abc"),
        ("/files/%61bc", "abc"),
        ("http://tus.io/prefix/files/abc", "abc"),
    ],
)
def test_id_from_url(url: str, upload_id: str) -> None:
    assert id_from_url(url, CFG) == upload_id


@pytest.mark.parametrize(
    "url",
    [
        "/other/abc",
        "abc",
        "http://tus.io/",
        "/files/",
        "/files/%2e%2e/x",
        "/files/%ff",
        "/files/../x",
        "/files/abc.info",
    ],
)
def test_id_from_url_invalid_is_404(url: str) -> None:
    with pytest.raises(errors.TusError) as info:
        id_from_url(url, CFG)
    assert info.value.status == 404
    assert info.value.code == "ERR_UPLOAD_NOT_FOUND"


def test_id_from_url_trailing_slash_before_query() -> None:
    # "/files/abc?x" gives "abc"; the same URL with a slash before the query
    # must not turn into the (invalid) ID "abc/".
    assert id_from_url("http://tus.io/files/abc/?x=1", CFG) == "abc"


def test_id_from_url_absolute_url_with_root_base_path() -> None:
    # With -base-path / the Location header is "http://host:port/<id>", and
    # tus-js-client sends exactly that back in Upload-Concat.
    config = ProtocolConfig(base_path="/")
    assert id_from_url("/abc", config) == "abc"
    assert id_from_url("http://localhost:1080/abc", config) == "abc"


PROXY = ProtocolConfig(behind_proxy=True)


def _prefixed(prefix: str | None, config: ProtocolConfig = PROXY) -> str:
    headers = {"Host": "proxy.example"}
    if prefix is not None:
        headers["X-Forwarded-Prefix"] = prefix
    return public_base_path(make_request("POST", "/files/", headers), config)


@pytest.mark.parametrize(
    ("prefix", "public"),
    [
        (None, "/files/"),
        ("/api/uploads", "/api/uploads/"),
        ("/api/uploads/", "/api/uploads/"),
        (" /api/uploads ", "/api/uploads/"),
        ("/", "/"),
        ("/api/uploads, /other", "/api/uploads/"),  # the first proxy's
        ("/v1/%7Euser/up-loads_1.2", "/v1/%7Euser/up-loads_1.2/"),
    ],
)
def test_public_base_path_from_x_forwarded_prefix(prefix: str | None, public: str) -> None:
    assert _prefixed(prefix) == public


@pytest.mark.parametrize(
    "prefix",
    [
        "api/uploads",  # not absolute
        "//evil.example/x",  # would make a relative Location point at another host
        "/a//b",
        "/a/../b",
        "/a/./b",
        "/a b",
        "/a\\b",
        "/a?x=1",
        "/a#x",
        "/%zz",
        "http://evil.example/x",
        "/" + "a" * 2000,
    ],
)
def test_unusable_x_forwarded_prefix_is_ignored(prefix: str) -> None:
    assert _prefixed(prefix) == "/files/"


def test_x_forwarded_prefix_needs_behind_proxy() -> None:
    assert _prefixed("/api/uploads", ProtocolConfig()) == "/files/"


def test_upload_url_with_x_forwarded_prefix() -> None:
    headers = {"Host": "proxy.example", "X-Forwarded-Prefix": "/api/uploads"}
    request = make_request("POST", "/files/", headers)
    assert upload_url(request, PROXY, "abc") == "http://proxy.example/api/uploads/abc"
    relative = ProtocolConfig(behind_proxy=True, relative_location=True)
    assert upload_url(request, relative, "abc") == "/api/uploads/abc"


@pytest.mark.parametrize(
    "url",
    [
        "http://proxy.example/api/uploads/abc",
        "/api/uploads/abc",
        "/api/uploads/abc/?x=1",
        "http://backend:8080/files/abc",  # the internal URL still works
        "/files/abc",
    ],
)
def test_id_from_url_with_the_public_prefix(url: str) -> None:
    assert id_from_url(url, CFG, "/api/uploads/") == "abc"


def test_final_upload_names_partials_by_their_public_urls() -> None:
    headers = {
        **dict([TUS]),
        "Upload-Concat": "final;http://proxy.example/api/uploads/a /api/uploads/b",
        "X-Forwarded-Prefix": "/api/uploads",
    }
    plan = plan_creation(make_request("POST", "/files/", headers), PROXY, NOW)
    assert plan.partial_ids == ("a", "b")
    with pytest.raises(errors.UploadNotFoundError):
        # Without -behind-proxy the prefix means nothing: as tusd, 404.
        plan_creation(make_request("POST", "/files/", headers), CFG, NOW)


# --- expiration ------------------------------------------------------------------------


def test_expires_at() -> None:
    config = ProtocolConfig(expiration=100)
    assert expires_at(UploadInfo(id="a", size=10, created=5, modified=50), config) == 150
    assert expires_at(UploadInfo(id="a", size=10, created=70, modified=50), config) == 170
    assert expires_at(UploadInfo(id="a", size=10, created=5, modified=50), CFG) is None
    assert expires_at(UploadInfo(id="a", size=10, offset=10, modified=50), config) is None
    assert expires_at(UploadInfo(id="a", is_final=True, size=10, modified=50), config) is None
    assert expires_at(UploadInfo(id="a", size_is_deferred=True, offset=9, modified=50), config) == (
        150
    )


def test_is_expired_at_and_after_deadline() -> None:
    config = ProtocolConfig(expiration=100)
    info = UploadInfo(id="a", size=10, modified=50)
    assert not is_expired(info, config, 149.9)
    assert is_expired(info, config, 150)
    assert is_expired(info, config, 1e12)
    assert not is_expired(info, CFG, 1e12)


# --- plan_creation --------------------------------------------------------------------


def _post(headers: dict[str, str] | None = None, **extra: str) -> Request:
    all_headers = _tus(**extra)
    all_headers.update(headers or {})
    return make_request("POST", "/files/", all_headers)


def test_plan_creation_simple() -> None:
    plan = plan_creation(
        _post({"Upload-Length": "11", "Upload-Metadata": "filename YS50eHQ=, bad !!"}), CFG, NOW
    )
    assert isinstance(plan, CreationPlan)
    assert plan.has_body is False
    assert plan.partial_ids == ()
    info = plan.info
    assert info.id == ""
    assert info.size == 11
    assert info.size_is_deferred is False
    assert info.offset == 0
    assert info.metadata == {"filename": "a.txt"}
    assert info.is_partial is False
    assert info.is_final is False
    assert info.created == NOW
    assert info.modified == NOW


def test_plan_creation_zero_length() -> None:
    assert plan_creation(_post({"Upload-Length": "0"}), CFG, NOW).info.size == 0


def test_plan_creation_with_body() -> None:
    headers = {"Upload-Length": "5", "Content-Type": "application/offset+octet-stream"}
    assert plan_creation(_post(headers), CFG, NOW).has_body is True


@pytest.mark.parametrize("content_type", ["application/octet-stream", "text/plain", ""])
def test_plan_creation_other_content_types_carry_no_body(content_type: str) -> None:
    headers = {"Upload-Length": "5", "Content-Type": content_type}
    assert plan_creation(_post(headers), CFG, NOW).has_body is False


def test_plan_creation_deferred() -> None:
    info = plan_creation(_post({"Upload-Defer-Length": "1"}), CFG, NOW).info
    assert info.size_is_deferred is True
    assert info.size == 0


def _creation_error(headers: dict[str, str], config: ProtocolConfig = CFG) -> errors.TusError:
    with pytest.raises(errors.TusError) as info:
        plan_creation(_post(headers), config, NOW)
    return info.value


NO_DEFER = ProtocolConfig(capabilities=StoreCapabilities(defer_length=False))


def test_plan_creation_defer_without_capability_is_501() -> None:
    error = _creation_error({"Upload-Defer-Length": "1"}, NO_DEFER)
    assert isinstance(error, errors.NotImplementedFeatureError)
    assert (error.status, error.code) == (501, "ERR_NOT_IMPLEMENTED")


def test_plan_creation_501_comes_before_ambiguous() -> None:
    error = _creation_error({"Upload-Defer-Length": "1", "Upload-Length": "5"}, NO_DEFER)
    assert error.status == 501


def test_plan_creation_invalid_defer_without_capability_is_400_not_501() -> None:
    error = _creation_error({"Upload-Defer-Length": "2"}, NO_DEFER)
    assert isinstance(error, errors.InvalidUploadLengthDeferError)


def test_plan_creation_ambiguous_length() -> None:
    error = _creation_error({"Upload-Defer-Length": "1", "Upload-Length": "5"})
    assert isinstance(error, errors.AmbiguousUploadLengthError)
    assert (error.status, error.code) == (400, "ERR_AMBIGUOUS_UPLOAD_LENGTH")


def test_plan_creation_ambiguous_comes_before_invalid_defer() -> None:
    error = _creation_error({"Upload-Defer-Length": "2", "Upload-Length": "5"})
    assert isinstance(error, errors.AmbiguousUploadLengthError)


@pytest.mark.parametrize("value", ["2", "0", "true", "1 1", " 2 "])
def test_plan_creation_invalid_defer(value: str) -> None:
    error = _creation_error({"Upload-Defer-Length": value})
    assert isinstance(error, errors.InvalidUploadLengthDeferError)
    assert (error.status, error.code) == (400, "ERR_INVALID_UPLOAD_LENGTH_DEFER")


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Upload-Length": ""},
        {"Upload-Length": "abc"},
        {"Upload-Length": "-1"},
        {"Upload-Length": "+-5"},
        {"Upload-Length": "1.5"},
        {"Upload-Length": str(2**63)},
    ],
)
def test_plan_creation_invalid_or_missing_length(headers: dict[str, str]) -> None:
    error = _creation_error(headers)
    assert isinstance(error, errors.InvalidUploadLengthError)
    assert (error.status, error.code) == (400, "ERR_INVALID_UPLOAD_LENGTH")


@pytest.mark.parametrize(("value", "size"), [("+10", 10), ("0010", 10), ("-0", 0), ("+0", 0)])
def test_plan_creation_length_is_read_as_go_reads_integers(value: str, size: int) -> None:
    # tusd: strconv.ParseInt, then >= 0.  tusd answered 201 to "Upload-Length: +10".
    assert plan_creation(_post({"Upload-Length": value}), CFG, NOW).info.size == size


def test_plan_creation_duplicate_upload_length_uses_the_first() -> None:
    # tusd (Header.Get) used the first of "10" and "20": 201 with size 10.
    request = make_request(
        "POST", "/files/", [TUS, ("Upload-Length", "10"), ("Upload-Length", "20")]
    )
    assert plan_creation(request, CFG, NOW).info.size == 10
    request = make_request("POST", "/files/", [TUS, ("Upload-Length", "x"), ("Upload-Length", "5")])
    with pytest.raises(errors.InvalidUploadLengthError):
        plan_creation(request, CFG, NOW)


def test_plan_creation_max_size() -> None:
    config = ProtocolConfig(max_size=100)
    assert plan_creation(_post({"Upload-Length": "100"}), config, NOW).info.size == 100
    error = _creation_error({"Upload-Length": "101"}, config)
    assert isinstance(error, errors.MaxSizeExceededError)
    assert (error.status, error.code) == (413, "ERR_MAX_SIZE_EXCEEDED")
    # A deferred length cannot be checked yet.
    assert plan_creation(_post({"Upload-Defer-Length": "1"}), config, NOW).info.size_is_deferred


@pytest.mark.parametrize(
    "config",
    [
        ProtocolConfig(disable_concatenation=True),
        ProtocolConfig(capabilities=StoreCapabilities(concatenate=False)),
    ],
)
@pytest.mark.parametrize("concat", ["partial", "final;/files/a", "garbage"])
def test_plan_creation_concat_disabled(config: ProtocolConfig, concat: str) -> None:
    error = _creation_error({"Upload-Length": "5", "Upload-Concat": concat}, config)
    assert isinstance(error, errors.ConcatUnsupportedError)
    assert (error.status, error.code) == (400, "ERR_CONCATENATION_UNSUPPORTED")


def test_plan_creation_blank_concat_with_concat_disabled_is_ignored() -> None:
    config = ProtocolConfig(disable_concatenation=True)
    plan = plan_creation(_post({"Upload-Length": "5", "Upload-Concat": "  "}), config, NOW)
    assert not plan.info.is_partial
    assert not plan.info.is_final


def test_plan_creation_invalid_concat() -> None:
    error = _creation_error({"Upload-Length": "5", "Upload-Concat": "final;"})
    assert isinstance(error, errors.InvalidConcatError)


def test_plan_creation_partial() -> None:
    plan = plan_creation(_post({"Upload-Length": "5", "Upload-Concat": "partial"}), CFG, NOW)
    assert plan.info.is_partial
    assert not plan.info.is_final
    assert plan.info.size == 5


def test_plan_creation_partial_still_needs_a_length() -> None:
    error = _creation_error({"Upload-Concat": "partial"})
    assert isinstance(error, errors.InvalidUploadLengthError)


def test_plan_creation_final() -> None:
    headers = {
        "Upload-Concat": "final;http://tus.io/files/a  /files/b/ ",
        "Upload-Length": "garbage",  # ignored for a final upload
        "Upload-Metadata": "name Zg==",
    }
    plan = plan_creation(_post(headers), CFG, NOW)
    assert plan.partial_ids == ("a", "b")
    assert plan.has_body is False
    info = plan.info
    assert info.is_final
    assert not info.is_partial
    assert info.partial_uploads == ("a", "b")
    assert info.metadata == {"name": "f"}
    assert info.created == NOW


def test_plan_creation_final_with_body_is_403() -> None:
    headers = {"Upload-Concat": "final;/files/a", "Content-Type": "application/offset+octet-stream"}
    error = _creation_error(headers)
    assert isinstance(error, errors.ModifyFinalError)
    assert (error.status, error.code) == (403, "ERR_MODIFY_FINAL")


def test_plan_creation_final_with_foreign_url_is_404() -> None:
    error = _creation_error({"Upload-Concat": "final;/files/a http://x/elsewhere/b"})
    assert isinstance(error, errors.UploadNotFoundError)
    assert error.status == 404


def test_plan_creation_final_with_traversal_url_is_404() -> None:
    error = _creation_error({"Upload-Concat": "final;/files/%2e%2e/secret"})
    assert error.status == 404


# --- plan_final / partials_finished ---------------------------------------------------


def _final_plan() -> CreationPlan:
    return plan_creation(
        _post({"Upload-Concat": "final;/files/a /files/b", "Upload-Metadata": "k dg=="}), CFG, NOW
    )


def test_plan_final_sums_partial_sizes() -> None:
    partials = [
        UploadInfo(id="a", size=3, is_partial=True, offset=3),
        UploadInfo(id="b", size=4, is_partial=True, offset=1),
    ]
    info = plan_final(_final_plan(), partials, CFG)
    assert info.size == 7
    assert not info.size_is_deferred
    assert info.is_final
    assert info.partial_uploads == ("a", "b")
    assert info.metadata == {"k": "v"}
    assert info.created == NOW
    assert info.modified == NOW
    assert info.offset == 0


def test_plan_final_with_deferred_partial_is_deferred() -> None:
    partials = [
        UploadInfo(id="a", size=3, is_partial=True),
        UploadInfo(id="b", size_is_deferred=True, is_partial=True),
    ]
    info = plan_final(_final_plan(), partials, ProtocolConfig(max_size=1))
    assert info.size_is_deferred
    assert info.size == 0


def test_plan_final_refuses_non_partial_uploads() -> None:
    partials = [UploadInfo(id="a", size=3, is_partial=True), UploadInfo(id="plain", size=3)]
    with pytest.raises(errors.InvalidConcatError) as info:
        plan_final(_final_plan(), partials, CFG)
    assert "plain" in info.value.message
    assert info.value.status == 400


def test_plan_final_max_size() -> None:
    partials = [
        UploadInfo(id="a", size=60, is_partial=True),
        UploadInfo(id="b", size=40, is_partial=True),
    ]
    assert plan_final(_final_plan(), partials, ProtocolConfig(max_size=100)).size == 100
    with pytest.raises(errors.MaxSizeExceededError) as info:
        plan_final(_final_plan(), partials, ProtocolConfig(max_size=99))
    assert info.value.status == 413


def test_partials_finished() -> None:
    done = UploadInfo(id="a", size=3, offset=3, is_partial=True)
    running = UploadInfo(id="b", size=3, offset=1, is_partial=True)
    deferred = UploadInfo(id="c", size_is_deferred=True, is_partial=True)
    assert partials_finished([done, done])
    assert not partials_finished([done, running])
    assert not partials_finished([deferred])
    assert partials_finished([])


# --- creation_response --------------------------------------------------------------


def test_creation_response() -> None:
    request = make_request("POST", "/files/", {"Host": "tus.io"})
    info = UploadInfo(id="abc", size=10, offset=4, modified=NOW)
    response = creation_response(request, CFG, info, [("X-C", "1")], wrote_body=False, now=NOW)
    assert response.status == 201
    assert response.headers[0] == ("X-C", "1")
    assert response.header("Location") == "http://tus.io/files/abc"
    assert response.header("Upload-Offset") is None
    assert response.header("Upload-Expires") is None
    response = creation_response(request, CFG, info, [], wrote_body=True, now=NOW)
    assert response.header("Upload-Offset") == "4"


def test_creation_response_upload_expires() -> None:
    request = make_request("POST", "/files/", {"Host": "tus.io"})
    config = ProtocolConfig(expiration=3600)
    info = UploadInfo(id="abc", size=10, created=NOW, modified=NOW)
    response = creation_response(request, config, info, [], wrote_body=False, now=NOW)
    assert response.header("Upload-Expires") == format_http_date(NOW + 3600)
    done = UploadInfo(id="abc", size=10, offset=10, created=NOW, modified=NOW)
    response = creation_response(request, config, done, [], wrote_body=True, now=NOW)
    assert response.header("Upload-Expires") is None


# --- plan_patch --------------------------------------------------------------------------


def _patch(
    offset: str | None = "0", *, content_type: str | None = OCTET[1], **extra: str
) -> Request:
    headers = [TUS]
    if content_type is not None:
        headers.append(("Content-Type", content_type))
    if offset is not None:
        headers.append(("Upload-Offset", offset))
    headers += [(k.replace("_", "-"), v) for k, v in extra.items()]
    return make_request("PATCH", "/files/abc", headers)


UPLOAD = UploadInfo(id="abc", size=10, offset=0, created=NOW, modified=NOW)


@pytest.mark.parametrize(("raw", "parsed"), [("4", 4), ("0", 0), (None, None), ("x", None)])
def test_write_plan_carries_the_parsed_content_length(raw: str | None, parsed: int | None) -> None:
    # The handler reads the body's length from the plan (quota grant, ChunkWriteStart's
    # maxSize) instead of parsing the header again.
    extra = {} if raw is None else {"Content_Length": raw}
    assert plan_patch(_patch(**extra), UPLOAD, CFG, NOW).content_length == parsed


@pytest.mark.parametrize(
    "content_type", [None, "", "application/octet-stream", "text/plain", "application/offset"]
)
def test_plan_patch_wrong_content_type_is_415(content_type: str | None) -> None:
    with pytest.raises(errors.InvalidContentTypeError) as info:
        plan_patch(_patch(content_type=content_type), UPLOAD, CFG, NOW)
    assert (info.value.status, info.value.code) == (415, "ERR_INVALID_CONTENT_TYPE")


def test_plan_patch_content_type_parameters_and_case_are_tolerated() -> None:
    request = _patch(content_type="Application/Offset+Octet-Stream; x=y")
    assert plan_patch(request, UPLOAD, CFG, NOW).offset == 0


def test_plan_patch_content_type_checked_before_offset() -> None:
    with pytest.raises(errors.InvalidContentTypeError):
        plan_patch(_patch(None, content_type=None), UPLOAD, CFG, NOW)


@pytest.mark.parametrize("offset", [None, "", "-1", "abc", "1.0", "++0", "0x0", str(2**63)])
def test_plan_patch_invalid_offset(offset: str | None) -> None:
    with pytest.raises(errors.InvalidOffsetError) as info:
        plan_patch(_patch(offset), UPLOAD, CFG, NOW)
    assert (info.value.status, info.value.code) == (400, "ERR_INVALID_OFFSET")


def test_plan_patch_offset_with_plus_sign_is_accepted() -> None:
    # tusd parses Upload-Offset with Go's strconv.ParseInt, which takes "+0".
    assert plan_patch(_patch("+0"), UPLOAD, CFG, NOW).offset == 0


def test_plan_patch_duplicate_offset_uses_the_first() -> None:
    request = make_request(
        "PATCH", "/files/abc", [TUS, OCTET, ("Upload-Offset", "0"), ("Upload-Offset", "7")]
    )
    assert plan_patch(request, UPLOAD, CFG, NOW).offset == 0


def test_check_patch_headers_returns_offset() -> None:
    assert check_patch_headers(_patch("42")) == 42


def test_plan_patch_final_is_403_before_offset_check() -> None:
    final = UploadInfo(id="f", size=10, offset=0, is_final=True, partial_uploads=("a",))
    with pytest.raises(errors.ModifyFinalError) as info:
        plan_patch(_patch("5"), final, CFG, NOW)
    assert info.value.status == 403


def test_plan_patch_expired_is_410() -> None:
    config = ProtocolConfig(expiration=60)
    with pytest.raises(errors.UploadGoneError) as info:
        plan_patch(_patch("3"), UPLOAD, config, NOW + 60)
    assert (info.value.status, info.value.code) == (410, "ERR_UPLOAD_GONE")
    assert plan_patch(_patch("0"), UPLOAD, config, NOW + 59).offset == 0


def test_plan_patch_mismatched_offset_is_409() -> None:
    info = UploadInfo(id="abc", size=10, offset=4)
    with pytest.raises(errors.MismatchedOffsetError) as exc:
        plan_patch(_patch("3"), info, CFG, NOW)
    assert (exc.value.status, exc.value.code) == (409, "ERR_MISMATCHED_OFFSET")
    assert "4" in exc.value.message


def test_plan_patch_already_complete() -> None:
    done = UploadInfo(id="abc", size=10, offset=10)
    plan = plan_patch(_patch("10", Content_Length="5", Upload_Length="10"), done, CFG, NOW)
    assert plan.already_complete
    assert plan.offset == 10
    assert plan.limit == 0
    assert plan.declare_length is None


def test_plan_patch_normal_write() -> None:
    info = UploadInfo(id="abc", size=10, offset=4)
    plan = plan_patch(_patch("4", Content_Length="6"), info, CFG, NOW)
    assert plan == WritePlan(offset=4, limit=6)
    assert plan.limit_error is errors.SizeExceededError
    assert not plan.already_complete
    assert not plan.verify_checksum


def test_plan_patch_without_content_length_is_limited_by_size() -> None:
    info = UploadInfo(id="abc", size=10, offset=4)
    assert plan_patch(_patch("4"), info, CFG, NOW).limit == 6


def test_plan_patch_content_length_beyond_size_is_413() -> None:
    info = UploadInfo(id="abc", size=10, offset=4)
    with pytest.raises(errors.SizeExceededError) as exc:
        plan_patch(_patch("4", Content_Length="7"), info, CFG, NOW)
    assert (exc.value.status, exc.value.code) == (413, "ERR_UPLOAD_SIZE_EXCEEDED")


DEFERRED = UploadInfo(id="abc", size_is_deferred=True, offset=4)


def test_plan_patch_declare_length() -> None:
    plan = plan_patch(_patch("4", Upload_Length="10", Content_Length="6"), DEFERRED, CFG, NOW)
    assert plan.declare_length == 10
    assert plan.limit == 6
    assert plan.limit_error is errors.SizeExceededError


def test_plan_patch_declare_length_equal_to_offset() -> None:
    plan = plan_patch(_patch("4", Upload_Length="4"), DEFERRED, CFG, NOW)
    assert plan.declare_length == 4
    assert plan.limit == 0


def test_plan_patch_declared_length_then_content_length_too_big_is_413() -> None:
    with pytest.raises(errors.SizeExceededError):
        plan_patch(_patch("4", Upload_Length="10", Content_Length="7"), DEFERRED, CFG, NOW)


def test_plan_patch_declare_length_without_capability_is_501() -> None:
    with pytest.raises(errors.NotImplementedFeatureError) as exc:
        plan_patch(_patch("4", Upload_Length="10"), DEFERRED, NO_DEFER, NOW)
    assert exc.value.status == 501


def test_plan_patch_upload_length_on_non_deferred_upload_is_400() -> None:
    with pytest.raises(errors.InvalidUploadLengthError) as exc:
        plan_patch(_patch("0", Upload_Length="10"), UPLOAD, CFG, NOW)
    assert exc.value.code == "ERR_INVALID_UPLOAD_LENGTH"


@pytest.mark.parametrize("length", ["abc", "-1", "3", "10, 10"])
def test_plan_patch_invalid_declared_length_is_400(length: str) -> None:
    with pytest.raises(errors.InvalidUploadLengthError):
        plan_patch(_patch("4", Upload_Length=length), DEFERRED, CFG, NOW)


def test_plan_patch_empty_upload_length_declares_nothing() -> None:
    # tusd: an empty Upload-Length header is no header.
    assert plan_patch(_patch("4", Upload_Length=""), DEFERRED, CFG, NOW).declare_length is None
    assert plan_patch(_patch("4", Upload_Length="+12"), DEFERRED, CFG, NOW).declare_length == 12


def test_plan_patch_declared_length_beyond_max_size_is_400() -> None:
    config = ProtocolConfig(max_size=100)
    assert plan_patch(_patch("4", Upload_Length="100"), DEFERRED, config, NOW).declare_length == 100
    with pytest.raises(errors.InvalidUploadLengthError) as exc:
        plan_patch(_patch("4", Upload_Length="101"), DEFERRED, config, NOW)
    assert exc.value.status == 400


def test_plan_patch_deferred_without_max_size_is_unlimited() -> None:
    plan = plan_patch(_patch("4", Content_Length=str(10**15)), DEFERRED, CFG, NOW)
    assert plan.limit is None
    assert plan.declare_length is None


def test_plan_patch_deferred_with_max_size() -> None:
    config = ProtocolConfig(max_size=100)
    plan = plan_patch(_patch("4"), DEFERRED, config, NOW)
    assert plan.limit == 96
    assert plan.limit_error is errors.SizeExceededError
    assert plan_patch(_patch("4", Content_Length="96"), DEFERRED, config, NOW).limit == 96
    with pytest.raises(errors.SizeExceededError) as exc:
        plan_patch(_patch("4", Content_Length="97"), DEFERRED, config, NOW)
    # tusd's code for a body beyond what the upload may still take
    assert (exc.value.status, exc.value.code) == (413, "ERR_UPLOAD_SIZE_EXCEEDED")


def test_plan_patch_deferred_upload_beyond_lowered_max_size_has_no_negative_limit() -> None:
    # The upload received 100 bytes before max-size was lowered to 50.
    info = UploadInfo(id="abc", size_is_deferred=True, offset=100)
    try:
        plan = plan_patch(_patch("100"), info, ProtocolConfig(max_size=50), NOW)
    except errors.MaxSizeExceededError:
        return
    assert plan.limit is None or plan.limit >= 0


def test_plan_patch_checksum_header() -> None:
    info = UploadInfo(id="abc", size=10, offset=0)
    plan = plan_patch(_patch("0", Upload_Checksum=sha1_header(b"hello")), info, CFG, NOW)
    assert plan.checksum == Checksum("sha1", hashlib.sha1(b"hello").digest())
    assert not plan.checksum_in_trailer
    assert plan.verify_checksum


def test_plan_patch_invalid_checksum_header() -> None:
    with pytest.raises(errors.InvalidChecksumError) as exc:
        plan_patch(_patch("0", Upload_Checksum="sha1 !!"), UPLOAD, CFG, NOW)
    assert (exc.value.status, exc.value.code) == (400, "ERR_INVALID_CHECKSUM")


def test_plan_patch_unsupported_checksum_algorithm() -> None:
    config = ProtocolConfig(checksum_algorithms=("sha256",))
    with pytest.raises(errors.UnsupportedChecksumAlgorithmError) as exc:
        plan_patch(_patch("0", Upload_Checksum=sha1_header(b"")), UPLOAD, config, NOW)
    assert (exc.value.status, exc.value.code) == (400, "ERR_UNSUPPORTED_CHECKSUM_ALGORITHM")


def test_plan_patch_duplicate_checksum_header() -> None:
    value = sha1_header(b"")
    request = make_request(
        "PATCH",
        "/files/abc",
        [
            TUS,
            OCTET,
            ("Upload-Offset", "0"),
            ("Upload-Checksum", value),
            ("Upload-Checksum", value),
        ],
    )
    with pytest.raises(errors.InvalidChecksumError):
        plan_patch(request, UPLOAD, CFG, NOW)


def test_plan_patch_checksum_in_trailer() -> None:
    plan = plan_patch(_patch("0", Trailer="Upload-Checksum"), UPLOAD, CFG, NOW)
    assert plan.checksum is None
    assert plan.checksum_in_trailer
    assert plan.verify_checksum


def test_plan_patch_checksum_trailer_refused_without_trailer_support() -> None:
    config = ProtocolConfig(request_trailers=False)
    with pytest.raises(errors.InvalidChecksumError, match="as a header"):
        plan_patch(_patch("0", Trailer="Upload-Checksum"), UPLOAD, config, NOW)
    # A checksum header still works there.
    request = _patch("0", Upload_Checksum=sha1_header(b""))
    assert plan_patch(request, UPLOAD, config, NOW).checksum is not None


def test_plan_patch_checksum_header_wins_over_trailer() -> None:
    request = _patch("0", Trailer="Upload-Checksum", Upload_Checksum=sha1_header(b""))
    plan = plan_patch(request, UPLOAD, CFG, NOW)
    assert plan.checksum is not None
    assert not plan.checksum_in_trailer


@pytest.mark.parametrize(
    "config",
    [
        ProtocolConfig(checksum_algorithms=()),
        ProtocolConfig(capabilities=StoreCapabilities(checksum=False)),
    ],
)
def test_plan_patch_checksum_disabled_ignores_headers(config: ProtocolConfig) -> None:
    request = _patch("0", Trailer="Upload-Checksum", Upload_Checksum="garbage")
    plan = plan_patch(request, UPLOAD, config, NOW)
    assert plan.checksum is None
    assert not plan.checksum_in_trailer
    assert not plan.verify_checksum


def test_plan_patch_checksum_checked_before_already_complete() -> None:
    done = UploadInfo(id="abc", size=10, offset=10)
    with pytest.raises(errors.InvalidChecksumError):
        plan_patch(_patch("10", Upload_Checksum="sha1"), done, CFG, NOW)


# --- plan_body_write -----------------------------------------------------------------


def test_plan_body_write() -> None:
    info = UploadInfo(id="abc", size=10)
    request = make_request(
        "POST",
        "/files/",
        [TUS, OCTET, ("Content-Length", "4"), ("Upload-Checksum", sha1_header(b"abcd"))],
    )
    plan = plan_body_write(request, info, CFG)
    assert plan.offset == 0
    assert plan.limit == 10
    assert plan.checksum is not None
    assert plan.checksum.algorithm == "sha1"
    assert plan.declare_length is None


def test_plan_body_write_too_long_is_413() -> None:
    info = UploadInfo(id="abc", size=3)
    request = make_request("POST", "/files/", [TUS, OCTET, ("Content-Length", "4")])
    with pytest.raises(errors.SizeExceededError):
        plan_body_write(request, info, CFG)


def test_plan_body_write_deferred() -> None:
    info = UploadInfo(id="abc", size_is_deferred=True)
    request = make_request("POST", "/files/", [TUS, OCTET])
    assert plan_body_write(request, info, CFG).limit is None
    plan = plan_body_write(request, info, ProtocolConfig(max_size=8))
    assert plan.limit == 8
    assert plan.limit_error is errors.SizeExceededError


# --- checksum_from_trailers ---------------------------------------------------------------


def test_checksum_from_trailers() -> None:
    value = sha1_header(b"data")
    result = checksum_from_trailers([("Expires", "x"), ("upload-checksum", value)], CFG)
    assert result == Checksum("sha1", hashlib.sha1(b"data").digest())


def test_checksum_from_trailers_none_present() -> None:
    assert checksum_from_trailers([], CFG) is None
    assert checksum_from_trailers([("Expires", "x")], CFG) is None


def test_checksum_from_trailers_duplicate_is_invalid() -> None:
    value = sha1_header(b"data")
    with pytest.raises(errors.InvalidChecksumError):
        checksum_from_trailers([("Upload-Checksum", value), ("UPLOAD-CHECKSUM", value)], CFG)


def test_checksum_from_trailers_invalid_value() -> None:
    with pytest.raises(errors.InvalidChecksumError):
        checksum_from_trailers([("Upload-Checksum", "sha1 !!")], CFG)
    with pytest.raises(errors.UnsupportedChecksumAlgorithmError):
        checksum_from_trailers([("Upload-Checksum", "crc32 AAAA")], CFG)


def test_checksum_from_trailers_disabled() -> None:
    config = ProtocolConfig(checksum_algorithms=())
    assert checksum_from_trailers([("Upload-Checksum", "garbage")], config) is None


# --- patch_response / delete_response / greeting ---------------------------------------


def test_patch_response() -> None:
    info = UploadInfo(id="abc", size=10, offset=6, modified=NOW)
    response = patch_response(info, CFG, [("X-C", "1")], NOW)
    assert response.status == 204
    assert response.body == b""
    assert response.headers == [("X-C", "1"), ("Upload-Offset", "6")]


def test_patch_response_upload_expires() -> None:
    info = UploadInfo(id="abc", size=10, offset=6, modified=NOW)
    config = ProtocolConfig(expiration=10)
    assert patch_response(info, config, [], NOW).header("Upload-Expires") == format_http_date(
        NOW + 10
    )
    # Never in the past, even when the caller is late.
    assert patch_response(info, config, [], NOW + 100).header("Upload-Expires") == (
        format_http_date(NOW + 100)
    )
    done = info.with_offset(10)
    assert patch_response(done, config, [], NOW).header("Upload-Expires") is None


def test_delete_response() -> None:
    response = delete_response([("X-C", "1")])
    assert response.status == 204
    assert response.headers == [("X-C", "1")]
    assert response.body == b""


def test_greeting_response() -> None:
    response = greeting_response()
    assert response.status == 200
    assert response.header("Content-Type") == "text/plain; charset=utf-8"
    assert response.header("X-Content-Type-Options") == "nosniff"
    assert b"tus" in response.body


# --- head_response ----------------------------------------------------------------------


HOST = make_request("HEAD", "/files/abc", {"Host": "tus.io"})


def test_head_response_plain_upload() -> None:
    info = UploadInfo(id="abc", size=10, offset=4)
    response = head_response(HOST, info, CFG, [("X-C", "1")], NOW)
    assert response.status == 200
    assert response.body == b""
    assert response.headers[0] == ("X-C", "1")
    assert response.header("Cache-Control") == "no-store"
    assert response.header("Upload-Offset") == "4"
    assert response.header("Upload-Length") == "10"
    assert response.header("Content-Length") == "10"
    names = header_names(response.headers)
    for absent in ("upload-defer-length", "upload-concat", "upload-metadata", "upload-expires"):
        assert absent not in names


def test_head_response_deferred_length() -> None:
    info = UploadInfo(id="abc", size_is_deferred=True, offset=4)
    response = head_response(HOST, info, CFG, [], NOW)
    assert response.header("Upload-Defer-Length") == "1"
    assert response.header("Upload-Length") is None
    assert response.header("Upload-Offset") == "4"
    assert response.header("Content-Length") == "4"


def test_head_response_metadata() -> None:
    metadata = {"filename": "a.txt", "empty": "", "ü": "✓"}
    info = UploadInfo(id="abc", size=1, metadata=metadata)
    value = head_response(HOST, info, CFG, [], NOW).header("Upload-Metadata")
    assert value is not None
    assert parse_metadata(value) == metadata


def test_head_response_partial() -> None:
    info = UploadInfo(id="abc", size=5, offset=2, is_partial=True)
    response = head_response(HOST, info, CFG, [], NOW)
    assert response.header("Upload-Concat") == "partial"
    assert response.header("Upload-Offset") == "2"


def test_head_response_finished_final_lists_absolute_urls() -> None:
    info = UploadInfo(id="f", size=5, offset=5, is_final=True, partial_uploads=("a", "p/b"))
    response = head_response(HOST, info, CFG, [], NOW)
    assert response.header("Upload-Concat") == "final;http://tus.io/files/a http://tus.io/files/p/b"
    assert response.header("Upload-Offset") == "5"
    assert response.header("Upload-Length") == "5"


def test_head_response_final_urls_honour_proxy_and_relative_location() -> None:
    info = UploadInfo(id="f", size=5, offset=5, is_final=True, partial_uploads=("a",))
    request = make_request(
        "HEAD",
        "/files/f",
        {"Host": "in", "X-Forwarded-Host": "out.example", "X-Forwarded-Proto": "https"},
    )
    proxied = head_response(request, info, ProtocolConfig(behind_proxy=True), [], NOW)
    assert proxied.header("Upload-Concat") == "final;https://out.example/files/a"
    relative = head_response(request, info, ProtocolConfig(relative_location=True), [], NOW)
    assert relative.header("Upload-Concat") == "final;/files/a"


def test_head_response_unfinished_final_has_no_upload_offset() -> None:
    info = UploadInfo(id="f", size=5, offset=0, is_final=True, partial_uploads=("a", "b"))
    response = head_response(HOST, info, CFG, [], NOW)
    assert response.header("Upload-Offset") is None
    assert response.header("Upload-Length") == "5"
    assert (
        response.header(
            "Upload-Concat",
        )
        == "final;http://tus.io/files/a http://tus.io/files/b"
    )


def test_head_response_unfinished_final_with_deferred_length() -> None:
    info = UploadInfo(id="f", size_is_deferred=True, is_final=True, partial_uploads=("a",))
    response = head_response(HOST, info, CFG, [], NOW)
    assert response.header("Upload-Offset") is None
    assert response.header("Upload-Length") is None
    assert response.header("Upload-Defer-Length") is None


def test_head_response_final_without_partials_list() -> None:
    info = UploadInfo(id="f", size=0, is_final=True)
    assert head_response(HOST, info, CFG, [], NOW).header("Upload-Concat") == "final;"


def test_head_response_upload_expires_only_when_expiring() -> None:
    config = ProtocolConfig(expiration=60)
    running = UploadInfo(id="abc", size=10, offset=1, created=NOW - 10, modified=NOW - 5)
    response = head_response(HOST, running, config, [], NOW)
    assert response.header("Upload-Expires") == format_http_date(NOW + 55)
    assert head_response(HOST, running, CFG, [], NOW).header("Upload-Expires") is None
    done = UploadInfo(id="abc", size=10, offset=10, modified=NOW - 5)
    assert head_response(HOST, done, config, [], NOW).header("Upload-Expires") is None


def test_head_response_expired_is_410() -> None:
    config = ProtocolConfig(expiration=60)
    info = UploadInfo(id="abc", size=10, offset=1, modified=NOW - 60)
    with pytest.raises(errors.UploadGoneError) as exc:
        head_response(HOST, info, config, [], NOW)
    assert exc.value.status == 410
    # A finished upload never expires.
    done = UploadInfo(id="abc", size=10, offset=10, modified=NOW - 6000)
    assert head_response(HOST, done, config, [], NOW).status == 200


# --- plan_download ------------------------------------------------------------------------


def _get(**extra: str) -> Request:
    return make_request("GET", "/files/abc", {k.replace("_", "-"): v for k, v in extra.items()})


DATA = UploadInfo(
    id="abc", size=10, offset=10, metadata={"filetype": "image/png", "filename": "pic.png"}
)


def test_plan_download_whole_body() -> None:
    plan = plan_download(_get(), DATA, CFG, [("X-C", "1")], NOW)
    assert isinstance(plan, DownloadPlan)
    assert (plan.status, plan.start, plan.end, plan.length) == (200, 0, 10, 10)
    headers = dict(plan.headers)
    assert plan.headers[0] == ("X-C", "1")
    assert headers["Content-Type"] == "image/png"
    assert headers["Content-Disposition"] == 'inline;filename="pic.png"'
    assert headers["Accept-Ranges"] == "bytes"
    assert headers["Cache-Control"] == "private"
    assert headers["Content-Length"] == "10"
    assert "Content-Range" not in headers


def test_plan_download_without_metadata() -> None:
    info = UploadInfo(id="abc", size=3, offset=3)
    headers = dict(plan_download(_get(), info, CFG, [], NOW).headers)
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["Content-Disposition"] == "attachment"


def test_plan_download_unfinished_upload_serves_bytes_so_far() -> None:
    info = UploadInfo(id="abc", size=10, offset=4)
    plan = plan_download(_get(), info, CFG, [], NOW)
    assert (plan.status, plan.start, plan.end) == (200, 0, 4)
    assert dict(plan.headers)["Content-Length"] == "4"
    assert dict(plan.headers)["Cache-Control"] == "no-store"


def test_plan_download_empty_upload() -> None:
    plan = plan_download(_get(), UploadInfo(id="abc", size=0), CFG, [], NOW)
    assert (plan.status, plan.length) == (200, 0)


def test_plan_download_range_206() -> None:
    plan = plan_download(_get(Range="bytes=2-4"), DATA, CFG, [], NOW)
    assert (plan.status, plan.start, plan.end, plan.length) == (206, 2, 5, 3)
    headers = dict(plan.headers)
    assert headers["Content-Range"] == "bytes 2-4/10"
    assert headers["Content-Length"] == "3"


def test_plan_download_suffix_range() -> None:
    plan = plan_download(_get(Range="bytes=-3"), DATA, CFG, [], NOW)
    assert (plan.status, plan.start, plan.end) == (206, 7, 10)
    assert dict(plan.headers)["Content-Range"] == "bytes 7-9/10"


def test_plan_download_range_against_bytes_received() -> None:
    info = UploadInfo(id="abc", size=10, offset=4)
    plan = plan_download(_get(Range="bytes=2-"), info, CFG, [], NOW)
    assert dict(plan.headers)["Content-Range"] == "bytes 2-3/4"
    with pytest.raises(errors.RangeNotSatisfiableError) as exc:
        plan_download(_get(Range="bytes=4-"), info, CFG, [], NOW)
    assert exc.value.size == 4


def test_plan_download_unsatisfiable_range_416() -> None:
    with pytest.raises(errors.RangeNotSatisfiableError) as exc:
        plan_download(_get(Range="bytes=10-"), DATA, CFG, [], NOW)
    assert exc.value.status == 416
    assert exc.value.size == 10
    assert error_response(exc.value).header("Content-Range") == "bytes */10"


def test_plan_download_if_range_ignores_range() -> None:
    plan = plan_download(_get(Range="bytes=10-", If_Range='"etag"'), DATA, CFG, [], NOW)
    assert (plan.status, plan.start, plan.end) == (200, 0, 10)


def test_plan_download_multiple_ranges_serve_whole_body() -> None:
    plan = plan_download(_get(Range="bytes=0-1,4-5"), DATA, CFG, [], NOW)
    assert plan.status == 200


def test_plan_download_unfinished_final_is_error() -> None:
    info = UploadInfo(id="f", size=10, offset=0, is_final=True, partial_uploads=("a",))
    with pytest.raises(errors.UploadNotFinishedError) as exc:
        plan_download(_get(), info, CFG, [], NOW)
    assert (exc.value.status, exc.value.code) == (400, "ERR_UPLOAD_NOT_FINISHED")
    finished = UploadInfo(id="f", size=10, offset=10, is_final=True, partial_uploads=("a",))
    assert plan_download(_get(), finished, CFG, [], NOW).status == 200


def test_plan_download_expired_is_410() -> None:
    info = UploadInfo(id="abc", size=10, offset=4, modified=NOW - 100)
    with pytest.raises(errors.UploadGoneError):
        plan_download(_get(), info, ProtocolConfig(expiration=100), [], NOW)


def test_plan_download_attachment_for_unsafe_type_with_escaped_name() -> None:
    info = UploadInfo(
        id="abc", size=1, offset=1, metadata={"filetype": "text/html", "filename": 'x"y.html'}
    )
    headers = dict(plan_download(_get(), info, CFG, [], NOW).headers)
    assert headers["Content-Type"] == "text/html"
    assert headers["Content-Disposition"] == 'attachment;filename="x\\"y.html"'


def test_id_from_url_malformed_absolute_url_is_not_found() -> None:
    with pytest.raises(errors.UploadNotFoundError):
        id_from_url("http://[/files/abc", ProtocolConfig())


def test_route_readiness_and_metrics_paths() -> None:
    config = ProtocolConfig(metrics_path="/metrics")
    assert route(make_request("GET", "/health/ready", []), config).action is Action.READY
    assert route(make_request("GET", "/metrics", []), config).action is Action.METRICS
    assert route(make_request("GET", "/metrics", []), ProtocolConfig()).action is Action.GREETING


def test_unavailable_errors_carry_retry_after() -> None:
    for error in (errors.LockerUnavailableError(), errors.LockLostError()):
        response = error_response(error)
        assert response.status == 503
        assert header_value(response.headers, "Retry-After") == "1"
    assert header_value(error_response(errors.UploadNotFoundError()).headers, "Retry-After") is None
