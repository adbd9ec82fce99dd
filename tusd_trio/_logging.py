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


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y/%m/%d %H:%M:%S", time.localtime(record.created))
        stamp += f".{int((record.created % 1) * 1_000_000):06d}"
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


def setup_logging(log_format: str = "text", verbose: bool = True) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JSONFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger("tusd_trio")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False
