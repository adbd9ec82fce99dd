"""HTTP hooks: ``POST`` the hook request to an endpoint (``-hooks-http``)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import httpx
import trio

from .model import (
    NOT_FORWARDED,
    USER_AGENT,
    HookError,
    HookResponse,
    client_headers,
    parse_response,
)

__all__ = ["HTTPHookBackend"]


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


class HTTPHookBackend:
    """tusd's HTTP hook client.

    Each hook is a ``POST`` of the JSON request with ``Content-Type:
    application/json``, ``Hook-Name: <type>`` and ``Idempotency-Key`` (the same
    value as the body's ``IdempotencyKey``), plus the client headers named in
    ``forward_headers`` (sent with the spelling given there).

    ``retry`` is the number of attempts, as tusd's HTTP client counts them (at
    least one); an attempt that fails to connect or gets a 5xx is repeated after
    ``backoff`` seconds (tusd's "linear" backoff is a fixed wait); one attempt only
    when the caller retries (``invoke(..., once=True)``: the outbox).  ``timeout``
    bounds the whole call, retries included, as tusd's request context does.

    The answer must then have a 2xx status, a body of at most ``size_limit``
    bytes and a ``Content-Type`` whose media type is ``application/json`` (even
    when the body is empty); anything else raises :class:`HookError`.
    """

    name = "http"

    def __init__(
        self,
        url: str,
        *,
        retry: int = 3,
        backoff: float = 1.0,
        timeout: float = 15.0,
        size_limit: int = 5120,
        forward_headers: Iterable[str] = (),
        skip_verify: bool = False,
    ) -> None:
        if httpx.URL(url).scheme not in ("http", "https"):
            raise ValueError(f"hook endpoint must be an http:// or https:// URL: {url!r}")
        self.url = url
        self.attempts = max(1, retry)
        self.backoff = backoff
        self.timeout = timeout
        self.size_limit = size_limit
        self.forward_headers = tuple(name for name in (h.strip() for h in forward_headers) if name)
        self._client = httpx.AsyncClient(
            # A forwarded client User-Agent (-hooks-http-forward-headers) replaces this.
            headers={"User-Agent": USER_AGENT},
            verify=not skip_verify,
            timeout=httpx.Timeout(timeout),
            follow_redirects=True,
        )

    def _headers(
        self, hook_type: str, payload: dict[str, Any], forward: dict[str, list[str]] | None
    ) -> list[tuple[str, str]]:
        headers: list[tuple[str, str]] = []
        if forward and self.forward_headers:
            lowered = {name.lower(): values for name, values in forward.items()}
            for name in self.forward_headers:
                if name.lower() in NOT_FORWARDED:
                    continue
                headers.extend((name, value) for value in lowered.get(name.lower(), ()))
        headers.append(("Content-Type", "application/json"))
        headers.append(("Hook-Name", hook_type))
        key = payload.get("IdempotencyKey")
        if isinstance(key, str) and key:
            headers.append(("Idempotency-Key", key))
        return headers

    async def _attempt(
        self, body: bytes, headers: list[tuple[str, str]]
    ) -> tuple[int, str | None, bytes]:
        """One request: (status, Content-Type, body cut at ``size_limit + 1`` bytes)."""
        request = self._client.build_request("POST", self.url, content=body, headers=headers)
        response = await self._client.send(request, stream=True)
        try:
            chunks: list[bytes] = []
            received = 0
            async for chunk in response.aiter_bytes():
                chunks.append(chunk)
                received += len(chunk)
                if received > self.size_limit:
                    break
            data = b"".join(chunks)[: self.size_limit + 1]
        finally:
            await response.aclose()
        return response.status_code, response.headers.get("content-type"), data

    async def invoke(
        self,
        hook_type: str,
        payload: dict[str, Any],
        *,
        forward_headers: dict[str, list[str]] | None = None,
        once: bool = False,
    ) -> HookResponse:
        body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        if forward_headers is None:
            forward_headers = client_headers(payload)
        headers = self._headers(hook_type, payload, forward_headers)
        status = 0
        content_type: str | None = None
        data = b""
        attempts = 1 if once else self.attempts
        with trio.move_on_after(self.timeout) as scope:
            for attempt in range(1, attempts + 1):
                try:
                    status, content_type, data = await self._attempt(body, headers)
                except httpx.TransportError as exc:
                    if attempt == attempts:
                        raise HookError(f"failed to reach hook endpoint: {exc!r}") from None
                else:
                    if status < 500 or attempt == attempts:
                        break
                await trio.sleep(self.backoff)
        if scope.cancelled_caught:
            raise HookError(f"hook request timed out after {self.timeout:g}s")
        if not 200 <= status < 300:
            text = data.decode("utf-8", errors="replace")
            raise HookError(f"unexpected response code from hook endpoint ({status}): {text}")
        if len(data) > self.size_limit:
            raise HookError(f"hook response exceeded maximum size of {self.size_limit} bytes")
        if not content_type:
            raise HookError(
                "hook response does not contain the 'Content-Type: application/json' header"
            )
        if _media_type(content_type) != "application/json":
            raise HookError(
                f"expected hook response Content-Type to be application/json, "
                f"but got '{content_type}'"
            )
        return parse_response(data)

    async def aclose(self) -> None:
        await self._client.aclose()
