"""Log output: tusd's text layout or one JSON object per line, on stdout."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

_SECRET_KEYS = ("authorization", "token", "secret", "password", "key")


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    extra = getattr(record, "tus", None)
    if not isinstance(extra, dict):
        return {}
    return {
        key: ("[redacted]" if any(s in key.lower() for s in _SECRET_KEYS) else value)
        for key, value in extra.items()
    }


def _quote(value: Any) -> str:
    text = str(value)
    if text == "" or any(ch in text for ch in ' "=\\') or not text.isprintable():
        return json.dumps(text)
    return text


_stamp_cache: list[Any] = [-1, ""]


def _stamp(created: float) -> str:
    second = int(created)
    if second != _stamp_cache[0]:
        _stamp_cache[0] = second
        _stamp_cache[1] = time.strftime("%Y/%m/%d %H:%M:%S", time.localtime(second))
        # (strftime once a second: it is the costly part of a log line)
    return f"{_stamp_cache[1]}.{int((created % 1) * 1_000_000):06d}"


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = _stamp(record.created)
        fields = _fields(record)
        message = record.getMessage()
        if fields:
            parts = [f"level={record.levelname}", f"event={_quote(message)}"]
            parts += [f"{key}={_quote(value)}" for key, value in fields.items()]
            line = f"{stamp} " + " ".join(parts)
        else:
            line = f"{stamp} {message}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int((record.created % 1) * 1000):03d}Z",
            "level": record.levelname,
        }
        fields = _fields(record)
        if fields:
            data["event"] = record.getMessage()
            data.update(fields)
        else:
            data["msg"] = record.getMessage()
        if record.exc_info:
            data["error"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


class BufferedStdoutHandler(logging.Handler):
    """Writes log lines to stdout; per-request (debug) lines are batched.

    Lines at INFO and above are written at once (start-up lines are parsed by
    test harnesses).  Debug lines, one or two per request, are collected and
    written when 32 KiB have gathered, when a more important line comes, or when
    :func:`flush_logs` runs (the server calls it every quarter of a second).
    """

    def __init__(self) -> None:
        super().__init__()
        self._pending: list[str] = []
        self._size = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)
            return
        self._pending.append(line)
        self._size += len(line)
        if record.levelno >= logging.INFO or self._size >= 32768:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        text = "".join(self._pending)
        self._pending.clear()
        self._size = 0
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except (OSError, ValueError):  # pragma: no cover - stdout closed
            pass


def flush_logs() -> None:
    for handler in logging.getLogger("tusd_trio").handlers:
        handler.flush()


def setup_logging(log_format: str = "text", verbose: bool = True) -> None:
    handler = BufferedStdoutHandler()
    handler.setFormatter(JSONFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger("tusd_trio")
    root.handlers[:] = [handler]
    events.configure(handler, log_format, verbose)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False


class _EventLog:
    """A fast path for the per-request event lines (no LogRecord per line)."""

    def __init__(self) -> None:
        self.handler: BufferedStdoutHandler | None = None
        self.json = False
        self.debug_enabled = False

    def configure(self, handler: BufferedStdoutHandler, log_format: str, verbose: bool) -> None:
        self.handler = handler
        self.json = log_format == "json"
        self.debug_enabled = verbose

    def emit(self, level: str, event: str, fields: dict[str, Any]) -> None:
        handler = self.handler
        if handler is None:
            # Not set up by the CLI (embedded use, tests): go through logging.
            logger = logging.getLogger("tusd_trio")
            logger.log(getattr(logging, level), event, extra={"tus": fields})
            return
        now = time.time()
        clean = {
            key: ("[redacted]" if any(s in key.lower() for s in _SECRET_KEYS) else value)
            for key, value in fields.items()
        }
        if self.json:
            data: dict[str, Any] = {
                "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
                + f".{int((now % 1) * 1000):03d}Z",
                "level": level,
                "event": event,
            }
            data.update(clean)
            line = json.dumps(data, default=str)
        else:
            parts = " ".join(f"{key}={_quote(value)}" for key, value in clean.items())
            line = f"{_stamp(now)} level={level} event={event} {parts}"
        handler._pending.append(line + "\n")
        handler._size += len(line) + 1
        if handler._size >= 32768:
            handler.flush()


events = _EventLog()


def debug_event(event: str, **fields: Any) -> None:
    if events.debug_enabled or events.handler is None:
        events.emit("DEBUG", event, fields)


def info_event(event: str, **fields: Any) -> None:
    events.emit("INFO", event, fields)
