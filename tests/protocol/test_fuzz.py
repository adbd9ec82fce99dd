"""Hypothesis fuzzing: arbitrary headers never make the core raise anything but TusError."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings, strategies as st

from tusd_trio.protocol import errors
from tusd_trio.protocol.config import CorsConfig, ProtocolConfig, StoreCapabilities
from tusd_trio.protocol.creation import plan_creation, plan_final
from tusd_trio.protocol.download import plan_download
from tusd_trio.protocol.info import UploadInfo
from tusd_trio.protocol.messages import Headers, Request
from tusd_trio.protocol.responses import error_response, head_response
from tusd_trio.protocol.routing import route
from tusd_trio.protocol.writes import plan_body_write, plan_patch

HeaderList = list[tuple[str, str]]

TUS_HEADERS = [
    "Tus-Resumable",
    "Upload-Length",
    "Upload-Defer-Length",
    "Upload-Offset",
    "Upload-Metadata",
    "Upload-Concat",
    "Upload-Checksum",
    "Content-Type",
    "Content-Length",
    "Trailer",
    "X-HTTP-Method-Override",
    "Origin",
    "Host",
    "X-Forwarded-Host",
    "X-Forwarded-Proto",
    "X-Forwarded-Port",
    "Forwarded",
    "Range",
    "If-Range",
]

INTERESTING_VALUES = [
    "1.0.0",
    "application/offset+octet-stream",
    "1",
    "0",
    "-1",
    "5",
    str(2**63),
    "partial",
    "final;",
    "final;/files/a /files/b",
    "final;/files/%2e%2e /files/%ff",
    "final;http://h/files/a/?x",
    "sha1 AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    "sha1 2jmj7l5rSw0yVb/vlWAYkK/YBwk=",
    "md5 !!",
    "Upload-Checksum",
    "foo aGVsbG8=, bar, baz !!",
    "bytes=0-1",
    "bytes=-5",
    'host="x:1";proto=https',
    "PATCH",
    "",
]

# Text including control characters, NUL, DEL, surrogate-free unicode.
any_text = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=40)
header_values = st.one_of(st.sampled_from(INTERESTING_VALUES), any_text)
header_names = st.one_of(st.sampled_from(TUS_HEADERS), any_text)
header_lists = st.lists(st.tuples(header_names, header_values), max_size=12)

configs = st.builds(
    ProtocolConfig,
    base_path=st.sampled_from(["/files/", "/", "/a/b/"]),
    max_size=st.sampled_from([0, 1, 100, 2**63 - 1]),
    disable_download=st.booleans(),
    disable_termination=st.booleans(),
    disable_concatenation=st.booleans(),
    cors=st.sampled_from([None, CorsConfig(), CorsConfig(allow_origin="^https://ok$")]),
    behind_proxy=st.booleans(),
    relative_location=st.booleans(),
    expiration=st.sampled_from([0.0, 1.0, 3600.0]),
    checksum_algorithms=st.sampled_from([(), ("sha1",), ("sha1", "md5", "sha256", "sha512")]),
    capabilities=st.builds(
        StoreCapabilities,
        terminate=st.booleans(),
        concatenate=st.booleans(),
        defer_length=st.booleans(),
        checksum=st.booleans(),
    ),
)

_int64 = st.integers(min_value=0, max_value=2**63 - 1)
infos = st.builds(
    UploadInfo,
    id=st.just("abc"),
    size=st.one_of(st.integers(0, 20), _int64),
    size_is_deferred=st.booleans(),
    offset=st.one_of(st.integers(0, 20), _int64),
    metadata=st.dictionaries(st.sampled_from(["filename", "filetype", "x"]), any_text),
    is_partial=st.booleans(),
    is_final=st.booleans(),
    partial_uploads=st.one_of(st.none(), st.just(("a", "p/b"))),
    created=st.floats(0, 2e9),
    modified=st.floats(0, 2e9),
)

methods = st.one_of(
    st.sampled_from(["GET", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS", "PUT"]), any_text
)
targets = st.one_of(
    st.sampled_from(["/", "/files/", "/files", "/files/abc", "/health", "/files/a/b/"]),
    any_text.map(lambda t: "/files/" + t),
    any_text.map(lambda t: "/" + t),
)
NOW = st.floats(0, 4e9)

SETTINGS = settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)


@SETTINGS
@given(methods, targets, header_lists, configs)
def test_route_never_raises(
    method: str, target: str, headers: HeaderList, config: ProtocolConfig
) -> None:
    routed = route(Request(method, target, Headers(headers)), config)
    assert (routed.action is None) != (routed.error is None)
    if routed.error is not None:
        response = error_response(routed.error, method=routed.method, common=routed.common)
        assert 400 <= response.status < 600
    if routed.upload_id is not None:
        assert ".." not in routed.upload_id.split("/")


@SETTINGS
@given(header_lists, configs, NOW, st.lists(infos, max_size=3))
def test_plan_creation_raises_only_tus_errors(
    headers: HeaderList, config: ProtocolConfig, now: float, partials: list[UploadInfo]
) -> None:
    request = Request("POST", "/files/", Headers(headers))
    try:
        plan = plan_creation(request, config, now)
    except errors.TusError:
        return
    assert plan.info.size >= 0
    if plan.info.is_final:
        try:
            final = plan_final(plan, partials, config)
        except errors.TusError:
            return
        assert final.is_final
    else:
        try:
            write = plan_body_write(request, plan.info, config)
        except errors.TusError:
            return
        assert write.limit is None or write.limit >= 0


@SETTINGS
@given(header_lists, infos, configs, NOW)
def test_plan_patch_raises_only_tus_errors(
    headers: HeaderList, info: UploadInfo, config: ProtocolConfig, now: float
) -> None:
    request = Request("PATCH", "/files/abc", Headers(headers))
    try:
        plan = plan_patch(request, info, config, now)
    except errors.TusError:
        return
    assert plan.offset == info.offset


@SETTINGS
@given(header_lists, infos, configs, NOW)
def test_head_and_download_raise_only_tus_errors(
    headers: HeaderList, info: UploadInfo, config: ProtocolConfig, now: float
) -> None:
    request = Request("GET", "/files/abc", Headers(headers))
    try:
        response = head_response(request, info, config, [], now)
    except errors.TusError:
        pass
    else:
        assert response.status == 200
    try:
        plan = plan_download(request, info, config, [], now)
    except errors.TusError:
        return
    assert 0 <= plan.start <= plan.end <= max(info.offset, 0)
