"""Log output in tusd's layouts, on stdout.

``text`` is what tusd's slog text handler writes behind a Go log time stamp:
``2026/05/01 12:00:00.123456 level=INFO event=UploadCreated method=POST path="" ...``,
values quoted the way slog quotes them.  ``json`` is one object per line with slog's
keys: ``time``, ``level``, ``msg``, then the fields.  Start-up lines are plain messages.

Per-request lines (one to five per request) skip :class:`logging.LogRecord`: each
request has a :class:`RequestLog` that keeps its context (tusd's ``method``, ``path``,
``requestId`` and, once known, ``id``) ready-formatted, and lines are appended to the
handler's batch directly.  Embedded use (no :func:`setup_logging`) goes through the
``tusd_trio`` logger instead.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import sys
import time
from typing import Any

_SECRET_KEYS = ("authorization", "token", "secret", "password", "key")

#: slog's level names where Python's differ.
_LEVEL_NAMES = {"WARNING": "WARN", "CRITICAL": "ERROR"}
_LEVEL_NUMBERS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARN": logging.WARNING}

#: Printable ASCII except space, '"' and '=': slog writes such a value bare.
_BARE = re.compile(r"[!#-<>-~]+")
_bare = _BARE.fullmatch
_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
    '"': '\\"',
    "\\": "\\\\",
}


@functools.lru_cache(maxsize=512)
def _is_secret(key: str) -> bool:
    """Whether a field's value is hidden (decided once per field name)."""
    lowered = key.lower()
    return any(s in lowered for s in _SECRET_KEYS)


def _redacted(fields: dict[str, Any]) -> dict[str, Any]:
    return {key: ("[redacted]" if _is_secret(key) else value) for key, value in fields.items()}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    extra = getattr(record, "tus", None)
    if not isinstance(extra, dict):
        return {}
    return _redacted(extra)


def _level(record: logging.LogRecord) -> str:
    return _LEVEL_NAMES.get(record.levelname, record.levelname)


def _quote(value: Any) -> str:
    """A value as slog's text handler writes it."""
    kind = type(value)
    if kind is str:
        if not value:
            return '""'  # requestId, path and body are often empty
        return value if _bare(value) else _go_quoted(value)
    if kind is int or kind is float:
        return str(value)
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    text = str(value)
    if _bare(text):
        return text
    return _go_quoted(text)


@functools.lru_cache(maxsize=256)
def _go_quoted(text: str) -> str:
    """Go's ``strconv.Quote``, unless the text needs no quotes (non-ASCII letters)."""
    if text and all(ch.isprintable() and not ch.isspace() and ch not in '"=' for ch in text):
        return text
    out = ['"']
    for ch in text:
        escape = _ESCAPES.get(ch)
        if escape is not None:
            out.append(escape)
        elif ch.isprintable():
            out.append(ch)
        else:
            code = ord(ch)
            if code < 0x80:
                out.append(f"\\x{code:02x}")
            elif code < 0x10000:
                out.append(f"\\u{code:04x}")
            else:
                out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


_stamp_cache: list[Any] = [-1, "", ""]


def _second(created: float) -> None:
    second = int(created)
    if second != _stamp_cache[0]:
        # strftime once a second: it is the costly part of a log line.
        local = time.localtime(second)
        offset = local.tm_gmtoff
        if offset:
            sign = "+" if offset > 0 else "-"
            zone = f"{sign}{abs(offset) // 3600:02d}:{abs(offset) % 3600 // 60:02d}"
        else:
            zone = "Z"
        _stamp_cache[0] = second
        _stamp_cache[1] = time.strftime("%Y/%m/%d %H:%M:%S", local)
        _stamp_cache[2] = (time.strftime("%Y-%m-%dT%H:%M:%S", local), zone)


def _stamp(created: float) -> str:
    """Go's log prefix: ``2026/05/01 12:00:00.123456`` (local time)."""
    _second(created)
    return f"{_stamp_cache[1]}.{int((created % 1) * 1_000_000):06d}"


def _json_time(created: float) -> str:
    """RFC 3339 with microseconds and the local offset, as slog's JSON ``time``."""
    _second(created)
    clock, zone = _stamp_cache[2]
    return f"{clock}.{int((created % 1) * 1_000_000):06d}{zone}"


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = _stamp(record.created)
        fields = _fields(record)
        message = record.getMessage()
        if fields:
            parts = [f"level={_level(record)}", f"event={_quote(message)}"]
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
            "time": _json_time(record.created),
            "level": _level(record),
            "msg": record.getMessage(),
        }
        data.update(_fields(record))
        if record.exc_info:
            data["error"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str, separators=(",", ":"))


class BufferedStdoutHandler(logging.Handler):
    """Writes log lines to stdout; per-request lines are batched.

    Lines that go through :mod:`logging` (start-up lines, warnings) are written at
    once: start-up lines are parsed by test harnesses.  Per-request lines are
    collected and written when 32 KiB have gathered, when a logged record comes, or
    when :func:`flush_logs` runs (the server calls it every quarter of a second).
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

    def append(self, line: str) -> None:
        self._pending.append(line)
        self._size += len(line)
        if self._size >= 32768:
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
    """tusd's ``-log-format`` and ``-verbose``: debug lines (hook invocations, S3 calls)
    only when verbose; request lines are at INFO and always written, as tusd's."""
    handler = BufferedStdoutHandler()
    handler.setFormatter(JSONFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger("tusd_trio")
    root.handlers[:] = [handler]
    events.configure(handler, log_format, verbose)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False


class _EventLog:
    """A fast path for event lines (no LogRecord per line)."""

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
            _through_logging(level, event, fields)
            return
        clean = _redacted(fields)
        if self.json:
            self.write_json(handler, level, event, clean)
        else:
            rest = " ".join([f"{key}={_quote(value)}" for key, value in clean.items()])
            self.write_text(handler, level, event, rest)

    @staticmethod
    def write_text(handler: BufferedStdoutHandler, level: str, event: str, rest: str) -> None:
        now = time.time()
        if int(now) != _stamp_cache[0]:
            _second(now)
        # _stamp(), inline: this runs for every request log line.  ``%06d`` truncates
        # the float as int() does, without the int object and the format-spec call.
        line = "%s.%06d level=%s event=%s %s\n" % (  # noqa: UP031 (cheaper than an f-string)
            _stamp_cache[1],
            (now % 1) * 1_000_000,
            level,
            event,
            rest,
        )
        handler.append(line)

    @staticmethod
    def write_json(
        handler: BufferedStdoutHandler, level: str, event: str, fields: dict[str, Any]
    ) -> None:
        data: dict[str, Any] = {"time": _json_time(time.time()), "level": level, "msg": event}
        data.update(fields)
        handler.append(json.dumps(data, default=str, separators=(",", ":")) + "\n")


events = _EventLog()
_logger = logging.getLogger("tusd_trio")


def _through_logging(level: str, event: str, fields: dict[str, Any]) -> None:
    """Not set up by the CLI (embedded use, the ASGI app, tests): the host application's
    logging gets the line, its fields in the message (as slog's text) and as ``tus``."""
    number = _LEVEL_NUMBERS.get(level, logging.ERROR)
    if _logger.isEnabledFor(number):
        clean = _redacted(fields)
        text = " ".join([f"{key}={_quote(value)}" for key, value in clean.items()])
        _logger.log(number, "%s %s", event, text, extra={"tus": clean})


def debug_event(event: str, **fields: Any) -> None:
    if events.debug_enabled or events.handler is None:
        events.emit("DEBUG", event, fields)


def info_event(event: str, **fields: Any) -> None:
    events.emit("INFO", event, fields)


def error_event(event: str, **fields: Any) -> None:
    events.emit("ERROR", event, fields)


class RequestLog:
    """The log context of one request, on every line the request causes.

    tusd's fields come first, in tusd's order: ``method`` (as received: ``POST``
    for a method override), ``path`` (relative to the base path, no query),
    ``requestId`` (the client's ``X-Request-ID``, at most 36 characters, else
    empty) and ``id`` once the upload is known; then the event's own fields; then
    ours: ``generatedRequestId``, the ID the response's ``X-Request-ID`` carries
    when the client sent none.  A parser keyed on tusd's fields reads these lines.
    """

    __slots__ = ("_json", "_text", "generated_id", "method", "path", "request_id", "upload_id")

    def __init__(self, method: str, path: str, request_id: str, generated_id: str = "") -> None:
        self.method = method
        self.path = path
        self.request_id = request_id
        self.generated_id = generated_id
        self.upload_id: str | None = None
        self._text: str | None = None
        self._json: dict[str, Any] | None = None

    def set_upload_id(self, upload_id: str) -> None:
        if upload_id == self.upload_id:
            return
        text = self._text
        if self.upload_id is None and text is not None:
            # ``id`` is the context's last field: the line so far gains it at its end
            # instead of being formatted again (a HEAD or PATCH sets it after its
            # RequestIncoming line).
            self._text = f"{text} id={_quote(upload_id)}"
        else:
            self._text = None
        self.upload_id = upload_id
        self._json = None

    def context(self) -> dict[str, Any]:
        """tusd's request fields, in tusd's order."""
        if self._json is None:
            fields: dict[str, Any] = {
                "method": self.method,
                "path": self.path,
                "requestId": self.request_id,
            }
            if self.upload_id is not None:
                fields["id"] = self.upload_id
            self._json = fields
        return self._json

    def info(self, event: str, **fields: Any) -> None:
        self._emit("INFO", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._emit("ERROR", event, fields)

    def _emit(self, level: str, event: str, fields: dict[str, Any]) -> None:
        handler = events.handler
        if handler is None:
            _through_logging(level, event, {**self.context(), **fields, **self._extras()})
            return
        if events.json:
            data = {**self.context(), **fields}
            if self.generated_id:
                data["generatedRequestId"] = self.generated_id
            events.write_json(handler, level, event, data)
            return
        text = self._text
        if text is None:
            text = " ".join([f"{key}={_quote(value)}" for key, value in self.context().items()])
            self._text = text
        if fields:
            for key, value in fields.items():
                text += f" {key}={_quote(value)}"
        if self.generated_id:
            text += f" generatedRequestId={self.generated_id}"
        events.write_text(handler, level, event, text)

    def _extras(self) -> dict[str, Any]:
        return {"generatedRequestId": self.generated_id} if self.generated_id else {}
