"""One GCS resumable upload session, driven piece by piece (blocking; run it in a
worker thread, one call at a time).

The protocol: each PUT to the session URL carries ``Content-Range: bytes S-E/*``
(a multiple of 256 KiB) and GCS answers 308 with ``Range: bytes=0-M``, the bytes
it has persisted; the last PUT names the total (``bytes S-E/T`` or ``bytes */T``)
and GCS answers with the finished object.  An unfinished session leaves no
object.  After a failure the session's state is asked for (``bytes */*``) and the
upload goes on from what GCS has, so a retry never duplicates or drops bytes.

Only bytes GCS acknowledged leave the buffer; ``acked`` and the CRC32C of the
acknowledged bytes are therefore always exact.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import google_crc32c
import requests

from ...protocol.errors import StoreError
from .crc import encode_crc32c

log = logging.getLogger("tusd_trio.gcsstore")

#: GCS accepts non-final pieces of a resumable upload only in multiples of this.
ALIGN = 256 * 1024

_RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_ATTEMPTS = 6
#: First retry delay; doubled per attempt, at most 8 s.
_BASE_DELAY = 0.25
_TIMEOUT = (10.0, 120.0)
_RANGE = re.compile(r"bytes=0-(\d+)")


__all__ = ["ALIGN", "ResumableSession", "SessionLostError"]


class SessionLostError(StoreError):
    """GCS no longer knows the session (expired or cancelled)."""


def _short(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line[:200]


class ResumableSession:
    """A resumable upload: ``push`` appends, ``finish`` makes the object."""

    def __init__(self, http: requests.Session, url: str, name: str) -> None:
        self._http = http
        self.url = url
        self.name = name
        #: Bytes GCS has persisted.
        self.acked = 0
        #: CRC32C of those bytes.
        self.crc = 0
        #: Bytes handed to us but not yet acknowledged (at most a piece plus 256 KiB).
        self._pending = b""
        self.resource: dict[str, Any] | None = None

    # --- the public steps ------------------------------------------------------------

    def push(self, data: bytes) -> None:
        """Send ``data`` (after what is pending) in whole multiples of 256 KiB."""
        self._pending = self._pending + data if self._pending else data
        self._send(final=False)

    def finish(self, tail: bytes) -> dict[str, Any]:
        """Send ``tail`` as the end of the object and return the object resource."""
        self._pending = self._pending + tail if self._pending else tail
        self._send(final=True)
        assert self.resource is not None
        return self.resource

    def finish_with_acked(self) -> dict[str, Any] | None:
        """After a failure: keep exactly what GCS has (the rest is dropped).

        Returns the object, or None when GCS has nothing (the session is cancelled).
        """
        self._query_status()
        if self.resource is not None:
            return self.resource
        self._pending = b""
        if self.acked == 0:
            self.cancel()
            return None
        self._send(final=True)
        return self.resource

    def cancel(self) -> None:
        """Best effort: an unfinished session expires by itself (after a week)."""
        try:
            self._http.delete(self.url, timeout=_TIMEOUT)
        except requests.RequestException:
            pass

    # --- internals ------------------------------------------------------------------------

    def _send(self, *, final: bool) -> None:
        failures = 0
        while True:
            if self.resource is not None:
                return
            pending = self._pending
            count = len(pending) if final else len(pending) // ALIGN * ALIGN
            if not final and count == 0:
                return
            body = pending if count == len(pending) else pending[:count]
            headers = {"Content-Type": "application/octet-stream"}
            if final:
                total = self.acked + count
                crc = google_crc32c.extend(self.crc, body) if count else self.crc
                headers["X-Goog-Hash"] = f"crc32c={encode_crc32c(crc)}"
                if count:
                    headers["Content-Range"] = f"bytes {self.acked}-{total - 1}/{total}"
                else:
                    headers["Content-Range"] = f"bytes */{total}"
            else:
                headers["Content-Range"] = f"bytes {self.acked}-{self.acked + count - 1}/*"
            try:
                response = self._http.put(self.url, data=body, headers=headers, timeout=_TIMEOUT)
            except requests.RequestException as exc:
                failures += 1
                self._backoff(failures, f"{type(exc).__name__}: {_short(str(exc))}")
                continue
            status = response.status_code
            if status in (200, 201):
                if not final:
                    raise StoreError(f"GCS finished {self.name} before its end was sent")
                self._accept(len(self._pending))
                self.resource = response.json()
                return
            if status == 308:
                self._accept_range(response.headers.get("Range"))
                continue
            if status in (404, 410):
                raise SessionLostError(f"GCS upload session for {self.name} is gone ({status})")
            if status in _RETRYABLE_STATUS:
                failures += 1
                self._backoff(failures, f"HTTP {status}")
                continue
            raise StoreError(
                f"GCS refused a piece of {self.name}: HTTP {status} {_short(response.text)}"
            )

    def _backoff(self, failures: int, reason: str) -> None:
        if failures >= _ATTEMPTS:
            raise StoreError(f"GCS upload of {self.name} failed: {reason}")
        delay = min(8.0, _BASE_DELAY * 2 ** (failures - 1))
        log.warning("GCS upload of %s: %s; retrying in %.2f s", self.name, reason, delay)
        time.sleep(delay)
        try:
            self._query_status()
        except requests.RequestException:
            pass  # the next attempt tells

    def _query_status(self) -> None:
        response = self._http.put(
            self.url, data=b"", headers={"Content-Range": "bytes */*"}, timeout=_TIMEOUT
        )
        status = response.status_code
        if status in (200, 201):
            self._accept(len(self._pending))
            self.resource = response.json()
        elif status == 308:
            self._accept_range(response.headers.get("Range"))
        elif status in (404, 410):
            raise SessionLostError(f"GCS upload session for {self.name} is gone ({status})")
        elif status not in _RETRYABLE_STATUS:
            raise StoreError(f"GCS upload status of {self.name}: HTTP {status}")

    def _accept_range(self, header: str | None) -> None:
        persisted = 0
        if header:
            match = _RANGE.fullmatch(header.strip())
            if match is None:
                raise StoreError(f"GCS sent an unreadable Range for {self.name}: {header!r}")
            persisted = int(match.group(1)) + 1
        self._accept(persisted - self.acked)

    def _accept(self, count: int) -> None:
        if count < 0 or count > len(self._pending):
            raise StoreError(
                f"GCS reports {self.acked + count} bytes of {self.name}; "
                f"{self.acked}..{self.acked + len(self._pending)} expected"
            )
        if count == len(self._pending):
            self.crc = google_crc32c.extend(self.crc, self._pending) if count else self.crc
            self._pending = b""
        elif count:
            self.crc = google_crc32c.extend(self.crc, self._pending[:count])
            self._pending = self._pending[count:]
        self.acked += count
