"""Log lines: tusd's text layout (slog's quoting), slog's JSON keys, batching, no secrets.

The lines of a whole daemon session are pinned in tests/test_log_session.py.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator

import pytest

from tusd_trio import _logging
from tusd_trio._logging import RequestLog

STAMP = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d\.\d{6} ")
JSON_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|[+-]\d\d:\d\d)$")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    logger = logging.getLogger("tusd_trio")
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    yield
    _logging.flush_logs()
    logger.handlers[:] = handlers
    logger.setLevel(level)
    logger.propagate = propagate
    _logging.events.handler = None


def _text_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    _logging.flush_logs()
    lines = capsys.readouterr().out.splitlines()
    for line in lines:
        assert STAMP.match(line), line
    return [STAMP.sub("", line) for line in lines]


def _json_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    _logging.flush_logs()
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_json_uses_slogs_keys(capsys: pytest.CaptureFixture[str]) -> None:
    _logging.setup_logging("json", verbose=True)
    logging.getLogger("tusd_trio").info("You can now upload files to: %s", "http://x/files/")
    # Start-up lines are written at once (harnesses wait for them).
    raw = capsys.readouterr().out
    assert raw.startswith('{"time":"') and '","level":"INFO","msg":"You can now' in raw
    first = json.loads(raw)
    assert list(first) == ["time", "level", "msg"]
    assert JSON_TIME.match(str(first["time"]))
    assert first["msg"] == "You can now upload files to: http://x/files/"
    RequestLog("PATCH", "a", "r1").info("RequestIncoming")
    _logging.info_event("UploadCreated", id="a", size=3, authorization="Bearer secret")
    assert capsys.readouterr().out == ""  # batched until flushed
    lines = _json_lines(capsys)
    assert lines[0] == {
        "time": lines[0]["time"],
        "level": "INFO",
        "msg": "RequestIncoming",
        "method": "PATCH",
        "path": "a",
        "requestId": "r1",
    }
    assert lines[1]["msg"] == "UploadCreated"
    assert lines[1]["size"] == 3
    assert lines[1]["authorization"] == "[redacted]"
    assert "secret" not in json.dumps(lines)


def test_request_context_on_every_line_and_our_fields_after_tusds(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _logging.setup_logging("text", verbose=True)
    log = RequestLog("POST", "", "", generated_id="abc123")
    log.info("RequestIncoming")
    log.set_upload_id("up1")
    log.info("UploadCreated", size=10, url="http://h/files/up1")
    log.info("ResponseOutgoing", status=201, body="", duration_ms=1.5)
    assert _text_lines(capsys) == [
        'level=INFO event=RequestIncoming method=POST path="" requestId=""'
        " generatedRequestId=abc123",
        'level=INFO event=UploadCreated method=POST path="" requestId="" id=up1 size=10'
        " url=http://h/files/up1 generatedRequestId=abc123",
        'level=INFO event=ResponseOutgoing method=POST path="" requestId="" id=up1 status=201'
        ' body="" duration_ms=1.5 generatedRequestId=abc123',
    ]
    # A client's X-Request-ID is tusd's requestId; nothing is generated then.
    RequestLog("HEAD", "up1", "client-7").info("RequestIncoming")
    assert _text_lines(capsys) == [
        "level=INFO event=RequestIncoming method=HEAD path=up1 requestId=client-7"
    ]


def test_an_upload_id_set_after_a_line_ends_the_context_as_one_set_before(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _logging.setup_logging("text", verbose=True)
    later = RequestLog("HEAD", "a b", "r")
    later.info("RequestIncoming")
    later.set_upload_id("a b")
    later.info("X")
    later.set_upload_id("c")  # a second ID replaces the first, not appended
    later.info("Y")
    first = RequestLog("HEAD", "a b", "r")
    first.set_upload_id("a b")
    first.info("X")
    lines = _text_lines(capsys)
    assert lines[1] == lines[3] == 'level=INFO event=X method=HEAD path="a b" requestId=r id="a b"'
    assert lines[2] == 'level=INFO event=Y method=HEAD path="a b" requestId=r id=c'


def test_a_parser_keyed_on_tusds_fields_reads_our_lines(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # logfmt as a Loki/ELK pipeline reads it: key=value or key="quoted".
    _logging.setup_logging("text", verbose=True)
    log = RequestLog("PATCH", "up1", "", generated_id="g1")
    log.set_upload_id("up1")
    log.info(
        "ResponseOutgoing",
        status=409,
        body="ERR_MISMATCHED_OFFSET: mismatched offset\n",
        duration_ms=0.3,
    )
    (line,) = _text_lines(capsys)
    fields = {
        key: json.loads(value) if value.startswith('"') else value
        for key, value in re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)', line)
    }
    assert list(fields)[:8] == [
        "level",
        "event",
        "method",
        "path",
        "requestId",
        "id",
        "status",
        "body",
    ]
    assert fields["body"] == "ERR_MISMATCHED_OFFSET: mismatched offset\n"
    assert (fields["status"], fields["requestId"], fields["id"]) == ("409", "", "up1")


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("", '""'),
        ("abc", "abc"),
        ("a b", '"a b"'),
        ("a=b", '"a=b"'),
        ('a"b', '"a\\"b"'),
        ("a\\b", "a\\b"),  # slog writes a lone backslash bare
        ("line\n", '"line\\n"'),
        ("tab\there", '"tab\\there"'),
        ("\x01", '"\\x01"'),
        ("\x7f", '"\\x7f"'),
        ("café", "café"),
        ("é ü", '"é ü"'),
        ("\u200b", '"\\u200b"'),
        (7, "7"),
        (True, "true"),
        (2.5, "2.5"),
    ],
)
def test_text_values_are_quoted_as_slog_quotes_them(value: object, written: str) -> None:
    assert _logging._quote(value) == written


def test_text_layout(capsys: pytest.CaptureFixture[str]) -> None:
    _logging.setup_logging("text", verbose=True)
    _logging.info_event("UploadFinished", id="abc", path="/files/a b", size=11)
    _logging.flush_logs()
    line = capsys.readouterr().out.strip()
    date, clock, rest = line.split(" ", 2)
    assert len(date) == len("2026/11/25") and date.count("/") == 2
    assert clock.count(":") == 2 and len(clock.split(".")[1]) == 6
    assert rest == 'level=INFO event=UploadFinished id=abc path="/files/a b" size=11'


def test_debug_lines_need_verbose_request_lines_do_not(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # tusd's -verbose=false is level INFO: request lines (INFO) stay, debug lines go.
    _logging.setup_logging("text", verbose=False)
    _logging.debug_event("HookInvocationStart", type="pre-create", id="")
    RequestLog("HEAD", "x", "").info("RequestIncoming")
    _logging.info_event("UploadCreated", id="x")
    out = "\n".join(_text_lines(capsys))
    assert "HookInvocationStart" not in out
    assert "RequestIncoming" in out
    assert "UploadCreated" in out


def test_levels_use_slogs_names(capsys: pytest.CaptureFixture[str]) -> None:
    _logging.setup_logging("text", verbose=True)
    logger = logging.getLogger("tusd_trio")
    logger.warning("Careful", extra={"tus": {"id": "z"}})
    _logging.error_event("HookInvocationError", type="pre-create", id="", error="boom")
    assert _text_lines(capsys) == [
        "level=WARN event=Careful id=z",
        'level=ERROR event=HookInvocationError type=pre-create id="" error=boom',
    ]


def test_record_with_fields_and_exception(capsys: pytest.CaptureFixture[str]) -> None:
    _logging.setup_logging("text", verbose=True)
    logger = logging.getLogger("tusd_trio")
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("InternalServerError", extra={"tus": {"token": "t0ps3cret", "id": "z"}})
    out = capsys.readouterr().out
    assert "level=ERROR event=InternalServerError" in out
    assert "token=[redacted]" in out
    assert "t0ps3cret" not in out
    assert "ValueError: boom" in out


def test_large_batches_are_written_without_waiting(capsys: pytest.CaptureFixture[str]) -> None:
    _logging.setup_logging("text", verbose=True)
    log = RequestLog("PATCH", "x" * 40, "")
    for number in range(1000):
        log.info("ChunkWriteComplete", bytesWritten=number)
    assert capsys.readouterr().out.count("ChunkWriteComplete") > 0


def test_without_setup_lines_go_through_logging(caplog: pytest.LogCaptureFixture) -> None:
    # Embedded use (the ASGI app, tests): the host application's logging gets them.
    caplog.set_level(logging.INFO, logger="tusd_trio")
    log = RequestLog("POST", "", "", generated_id="g")
    log.set_upload_id("u")
    log.info("UploadCreated", size=1)
    (record,) = [r for r in caplog.records if r.getMessage().startswith("UploadCreated ")]
    assert record.levelno == logging.INFO
    assert record.getMessage() == (
        'UploadCreated method=POST path="" requestId="" id=u size=1 generatedRequestId=g'
    )
    assert record.tus == {  # type: ignore[attr-defined]
        "method": "POST",
        "path": "",
        "requestId": "",
        "id": "u",
        "size": 1,
        "generatedRequestId": "g",
    }
