"""The one framing module every transport uses (server/_framing.py)."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.exceptions
import h11
import pytest

from tusd_trio.protocol import errors
from tusd_trio.protocol.messages import Response
from tusd_trio.server._framing import (
    HOP_BY_HOP,
    encode_headers,
    frame_response,
    malformed_request,
    raw_refusal,
    refusal,
    status_has_body,
    without_hop_by_hop,
)


def test_header_values_cannot_break_the_header_block() -> None:
    encoded = encode_headers(
        [("X-A", "one\r\nSet-Cookie: x"), ("X-B", "tab\there"), ("X-C", "\x00\x7f")]
    )
    assert encoded == [
        (b"X-A", b"one??Set-Cookie: x"),
        (b"X-B", b"tab\there"),
        (b"X-C", b"??"),
    ]


def test_every_control_byte_and_only_those_become_a_question_mark() -> None:
    value = "".join(map(chr, range(256))) + "\u20ac"  # and one beyond latin-1
    [(_, encoded)] = encode_headers([("X-All", value)])
    expected = bytes(b if (b >= 32 or b == 9) and b != 127 else 0x3F for b in range(256))
    assert encoded == expected + b"?"


def test_a_malformed_header_name_is_dropped() -> None:
    for _ in range(2):  # the second time from the per-name cache
        assert encode_headers([("Bad Name", "v"), ("X:Y", "v"), ("Good", "v"), ("", "v")]) == [
            (b"Good", b"v")
        ]


@pytest.mark.parametrize("status", [100, 101, 104, 199, 204, 304])
def test_statuses_without_a_body(status: int) -> None:
    assert not status_has_body(status)
    headers, body = frame_response(Response(status, [("X", "1")], b"ignored"), head=False)
    assert body == b""
    assert not any(name.lower() == b"content-length" for name, _ in headers)


@pytest.mark.parametrize("status", [200, 201, 400, 404, 460, 500])
def test_content_length_is_added_when_missing(status: int) -> None:
    headers, body = frame_response(Response(status, [], b"hello"), head=False)
    assert body == b"hello"
    assert (b"Content-Length", b"5") in headers


def test_head_gets_the_length_a_get_would_have_and_no_body() -> None:
    headers, body = frame_response(Response(200, [], b"hello"), head=True)
    assert body == b""
    assert (b"Content-Length", b"5") in headers


def test_a_given_content_length_is_kept() -> None:
    headers, _ = frame_response(Response(200, [("Content-Length", "42")], b""), head=True)
    assert [value for name, value in headers if name.lower() == b"content-length"] == [b"42"]


def test_hop_by_hop_fields_are_dropped_and_names_lowered() -> None:
    raw = [
        (b"Connection", b"close"),
        (b"Keep-Alive", b"timeout=5"),
        (b"Proxy-Connection", b"close"),
        (b"TE", b"trailers"),
        (b"Transfer-Encoding", b"chunked"),
        (b"Upgrade", b"h2c"),
        (b"Upload-Offset", b"3"),
    ]
    assert without_hop_by_hop(raw) == [(b"upload-offset", b"3")]


def _h2_server_with_a_request() -> h2.connection.H2Connection:
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    conn.initiate_connection()
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    request = [(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "x")]
    client.send_headers(1, request, end_stream=True)
    conn.receive_data(client.data_to_send())
    return conn


def test_te_belongs_to_the_hop_by_hop_set_because_http2_refuses_it() -> None:
    """The two sets the transports had disagreed on ``te``: HTTP/2 refuses a ``te``
    field other than ``trailers`` (RFC 9113 8.2.2), so it must be dropped."""
    assert b"te" in HOP_BY_HOP
    with pytest.raises(h2.exceptions.ProtocolError):
        _h2_server_with_a_request().send_headers(1, [(b":status", b"200"), (b"te", b"gzip")])
    fields = [(b":status", b"200"), *without_hop_by_hop([(b"TE", b"gzip")])]
    _h2_server_with_a_request().send_headers(1, fields)


def _parse(raw: bytes) -> tuple[h11.Response, bytes]:
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    client.send(h11.EndOfMessage())
    client.receive_data(raw)
    head = client.next_event()
    assert isinstance(head, h11.Response)
    body = b""
    while True:
        event = client.next_event()
        if isinstance(event, h11.Data):
            body += event.data
        else:
            assert isinstance(event, h11.EndOfMessage)
            return head, body


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (errors.RequestTimeoutError(), 408, "ERR_REQUEST_TIMEOUT"),
        (errors.HeaderFieldsTooLargeError(), 431, "ERR_REQUEST_HEADER_FIELDS_TOO_LARGE"),
        (errors.MalformedRequestError("malformed HTTP request: x"), 400, "ERR_BAD_REQUEST"),
        (errors.TooManyConnectionsError(), 503, "ERR_TOO_MANY_CONNECTIONS"),
    ],
)
def test_early_refusals_are_whole_responses_that_close(
    error: errors.TusError, status: int, code: str
) -> None:
    head, body = _parse(raw_refusal(error))
    assert head.status_code == status
    assert body.decode().startswith(f"{code}: ")
    fields = dict(head.headers)
    assert fields[b"connection"] == b"close"
    assert fields[b"x-content-type-options"] == b"nosniff"
    assert b"date" in fields
    # Retry-After only where waiting helps (UnavailableError).
    assert (b"retry-after" in fields) == (status == 503)


def test_the_asgi_refusal_has_no_connection_fields() -> None:
    headers, body = refusal(errors.ServerNotStartedError("not started"))
    assert body == b"ERR_SERVER_NOT_STARTED: not started\n"
    assert without_hop_by_hop(headers) == [(name.lower(), value) for name, value in headers]
    assert not any(name.lower() == b"retry-after" for name, _ in headers)


@pytest.mark.parametrize(
    ("hint", "status", "code"),
    [
        (400, 400, "ERR_BAD_REQUEST"),
        (431, 431, "ERR_REQUEST_HEADER_FIELDS_TOO_LARGE"),
        (501, 501, "ERR_NOT_IMPLEMENTED"),
    ],
)
def test_unparsable_http_maps_to_the_error_tree(hint: int, status: int, code: str) -> None:
    error = malformed_request(hint, "bad")
    assert (error.status, error.code) == (status, code)
    assert error.message == "malformed HTTP request: bad"
