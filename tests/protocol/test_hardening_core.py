"""The protocol core's share of issue 12: concatenation bounds, host syntax, the CORS
anchoring warning and GET of an untouched upload (pure functions, no I/O)."""

from __future__ import annotations

import pytest

from tusd_trio.protocol import errors
from tusd_trio.protocol.core import (
    CorsConfig,
    ProtocolConfig,
    StoreCapabilities,
    check_final_length,
    cors_origin_warning,
    origin_of,
    plan_creation,
    plan_download,
    route,
)
from tusd_trio.protocol.headers import MAX_INT64, is_valid_host
from tusd_trio.protocol.info import UploadInfo

from ._util import TUS, make_request

NOW = 1_700_000_000.0
ID_A, ID_B = "a" * 32, "b" * 32


def _final(*ids: str, config: ProtocolConfig | None = None) -> tuple[str, ...]:
    header = "final;" + " ".join(f"/files/{upload_id}" for upload_id in ids)
    request = make_request("POST", "/files/", [TUS, ("Upload-Concat", header)])
    return plan_creation(request, config or ProtocolConfig(), NOW).partial_ids


def test_a_partial_named_twice_is_refused() -> None:
    assert _final(ID_A, ID_B) == (ID_A, ID_B)
    with pytest.raises(errors.InvalidConcatError, match=f"{ID_A} twice"):
        _final(ID_A, ID_B, ID_A)


def test_the_number_of_partials_is_bounded() -> None:
    ids = [f"{n:032x}" for n in range(5)]
    assert len(_final(*ids, config=ProtocolConfig(max_concat_partials=5))) == 5
    with pytest.raises(errors.InvalidConcatError, match="at most 4"):
        _final(*ids, config=ProtocolConfig(max_concat_partials=4))
    assert len(_final(*ids, config=ProtocolConfig(max_concat_partials=0))) == 5  # no limit


def test_final_length_is_bounded_by_int64() -> None:
    config = ProtocolConfig()
    check_final_length(MAX_INT64, config)
    with pytest.raises(errors.MaxSizeExceededError) as exc:
        check_final_length(MAX_INT64 + 1, config, deferred=True)
    assert exc.value.status == 413
    with pytest.raises(errors.MaxSizeExceededError):
        check_final_length(11, ProtocolConfig(max_size=10))
    check_final_length(11, ProtocolConfig(max_size=10), deferred=True)  # not known yet


@pytest.mark.parametrize(
    ("host", "valid"),
    [
        ("example.com", True),
        ("example.com:8080", True),
        ("127.0.0.1", True),
        ("[2001:db8::1]:443", True),
        ("[fe80::1%25eth0]:8080", True),
        ("a-b_c~d.%41", True),
        ("evil.example/phish?", False),
        ('x"><script>', False),
        ("user@host", False),
        ("host name", False),
        ("[::1", False),
        ("host:port", False),
        ("", False),
        ("a" * 256, False),
    ],
)
def test_host_syntax(host: str, valid: bool) -> None:
    assert is_valid_host(host) is valid


def test_route_refuses_a_malformed_host() -> None:
    routed = route(make_request("HEAD", "/files/" + ID_A, [("Host", "a/b")]), ProtocolConfig())
    assert isinstance(routed.error, errors.InvalidHostError)
    assert (routed.error.status, routed.error.code) == (400, "ERR_INVALID_HOST")
    assert route(make_request("HEAD", "/files/" + ID_A, []), ProtocolConfig()).error is None


def test_malformed_forwarded_hosts_are_ignored() -> None:
    config = ProtocolConfig(behind_proxy=True)
    headers = [("Host", "real.example"), ("X-Forwarded-Host", "evil/x?")]
    assert origin_of(make_request("POST", "/files/", headers), config) == "http://real.example"
    headers = [("Host", "real.example"), ("X-Forwarded-Host", "proxy.example")]
    assert origin_of(make_request("POST", "/files/", headers), config) == "http://proxy.example"


@pytest.mark.parametrize(
    ("pattern", "credentials", "warns"),
    [
        (".*", False, False),
        (".*", True, True),
        (r"https://app\.example", True, True),
        (r"^https://app\.example$", True, False),
        (r"^(https://a\.example|https://b\.example)$", True, False),
        (r"^https://a\.example$|^https://b\.example$", True, True),
    ],
)
def test_cors_warning(pattern: str, credentials: bool, warns: bool) -> None:
    cors = CorsConfig(allow_origin=pattern, allow_credentials=credentials)
    assert (cors_origin_warning(cors) is not None) is warns
    assert cors_origin_warning(None) is None


@pytest.mark.parametrize("serve_incomplete", [True, False])
def test_get_of_an_untouched_upload(serve_incomplete: bool) -> None:
    config = ProtocolConfig(capabilities=StoreCapabilities(serve_incomplete=serve_incomplete))
    info = UploadInfo(id=ID_A, size=10, offset=0)
    plan = plan_download(make_request("GET", "/files/" + ID_A), info, config, [], NOW)
    assert plan.length == 0
    assert plan.status == (200 if serve_incomplete else 204)
    names = [name.lower() for name, _ in plan.headers]
    assert ("content-length" in names) is serve_incomplete
    assert "content-disposition" in names
    started = UploadInfo(id=ID_A, size=10, offset=3)
    if not serve_incomplete:
        with pytest.raises(errors.IncompleteUploadError):
            plan_download(make_request("GET", "/files/" + ID_A), started, config, [], NOW)
