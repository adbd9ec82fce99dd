"""Log lines: tusd's text layout, JSON, batching, no secrets."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from tusd_trio import _logging


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


def test_json_events_and_startup_lines(capsys: pytest.CaptureFixture[str]) -> None:
    _logging.setup_logging("json", verbose=True)
    logging.getLogger("tusd_trio").info("You can now upload files to: %s", "http://x/files/")
    # Start-up lines are written at once (harnesses wait for them).
    first = capsys.readouterr().out.strip().splitlines()
    assert json.loads(first[0])["msg"] == "You can now upload files to: http://x/files/"
    _logging.debug_event("RequestIncoming", method="PATCH", path="/files/a", requestId="r1")
    _logging.info_event("UploadCreated", id="a", size=3, authorization="Bearer secret")
    assert capsys.readouterr().out == ""  # batched until flushed
    _logging.flush_logs()
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert lines[0]["event"] == "RequestIncoming"
    assert lines[0]["level"] == "DEBUG"
    assert lines[0]["requestId"] == "r1"
    assert lines[1]["event"] == "UploadCreated"
    assert lines[1]["size"] == 3
    assert lines[1]["authorization"] == "[redacted]"
    assert "secret" not in json.dumps(lines)


def test_text_layout(capsys: pytest.CaptureFixture[str]) -> None:
    _logging.setup_logging("text", verbose=True)
    _logging.info_event("UploadFinished", id="abc", path="/files/a b", size=11)
    _logging.flush_logs()
    line = capsys.readouterr().out.strip()
    date, clock, rest = line.split(" ", 2)
    assert len(date) == len("2026/11/25") and date.count("/") == 2
    assert clock.count(":") == 2 and "." in clock
    assert rest == 'level=INFO event=UploadFinished id=abc path="/files/a b" size=11'


def test_debug_events_are_dropped_when_not_verbose(capsys: pytest.CaptureFixture[str]) -> None:
    _logging.setup_logging("text", verbose=False)
    _logging.debug_event("RequestIncoming", method="HEAD")
    _logging.info_event("UploadCreated", id="x")
    _logging.flush_logs()
    out = capsys.readouterr().out
    assert "RequestIncoming" not in out
    assert "UploadCreated" in out


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
    for number in range(1000):
        _logging.debug_event("ChunkWriteComplete", id="x" * 40, n=number)
    assert capsys.readouterr().out.count("ChunkWriteComplete") > 0
