"""gRPC hooks: call ``proto.HookHandler/InvokeHook`` on a hook server (``-hooks-grpc``).

The messages are tusd's (``tusd_trio/hooks/proto/hook.proto``), so hook servers
written for tusd work unchanged.  Needs ``grpcio`` and ``protobuf`` (the ``grpc``
extra); the generated code is committed, no protobuf compiler is needed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

import grpc
import trio

from .model import (
    NOT_FORWARDED,
    USER_AGENT,
    FileInfoChanges,
    HookError,
    HookResponse,
    HTTPResponse,
    client_headers,
    validate_upload_id,
)
from .proto import hook_pb2

__all__ = ["RETRYABLE_CODES", "GRPCHookBackend", "payload_to_proto", "proto_to_response"]

log = logging.getLogger("tusd_trio")

#: Full name of the one RPC, as tusd's hook servers register it.
METHOD = "/proto.HookHandler/InvokeHook"

#: Status codes after which a call is tried again (all others fail at once).
RETRYABLE_CODES: frozenset[grpc.StatusCode] = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
    }
)

# Metadata keys gRPC or HTTP/2 set themselves, or that we set: never forwarded.
_NOT_FORWARDED = NOT_FORWARDED | {"user-agent", "idempotency-key"}
_METADATA_KEY = re.compile(r"[0-9a-z_.\-]+")
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]*")


# --- conversions -------------------------------------------------------------------


def _str_map(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(key): "" if item is None else str(item) for key, item in value.items()}


def _first_values(header: Any) -> dict[str, str]:
    """tusd's ``getHeader``: each header's first value; empty names and lists dropped."""
    result: dict[str, str] = {}
    if not isinstance(header, Mapping):
        return result
    for name, values in header.items():
        if not name:
            continue
        if isinstance(values, str):
            result[str(name)] = values
        elif isinstance(values, list | tuple) and values:
            result[str(name)] = str(values[0])
    return result


def payload_to_proto(hook_type: str, payload: Mapping[str, Any]) -> hook_pb2.HookRequest:
    """Our hook request document (:func:`~tusd_trio.hooks.build_request`) as a protobuf message.

    A ``null`` ``Storage``, ``MetaData`` or ``PartialUploads`` becomes an empty
    field, as protobuf has no null.  ``IdempotencyKey`` goes into our extra field.
    """
    event = payload.get("Event") or {}
    upload = event.get("Upload") or {}
    http = event.get("HTTPRequest") or {}
    partials = upload.get("PartialUploads") or ()
    return hook_pb2.HookRequest(
        type=hook_type,
        event=hook_pb2.Event(
            upload=hook_pb2.FileInfo(
                id=str(upload.get("ID") or ""),
                size=int(upload.get("Size") or 0),
                sizeIsDeferred=bool(upload.get("SizeIsDeferred")),
                offset=int(upload.get("Offset") or 0),
                metaData=_str_map(upload.get("MetaData")),
                isPartial=bool(upload.get("IsPartial")),
                isFinal=bool(upload.get("IsFinal")),
                partialUploads=[str(item) for item in partials],
                storage=_str_map(upload.get("Storage")),
            ),
            httpRequest=hook_pb2.HTTPRequest(
                method=str(http.get("Method") or ""),
                uri=str(http.get("URI") or ""),
                remoteAddr=str(http.get("RemoteAddr") or ""),
                header=_first_values(http.get("Header")),
            ),
        ),
        idempotencyKey=str(payload.get("IdempotencyKey") or ""),
    )


def proto_to_response(message: hook_pb2.HookResponse) -> HookResponse:
    """A hook server's answer as our :class:`HookResponse`, read as tusd reads it.

    Zero and empty values mean "not set": a zero status or an empty body keep
    ours, an empty ``ChangeFileInfo`` id, metadata or storage leaves it
    unchanged.  An invalid new upload ID raises :class:`HookError`.
    """
    result = HookResponse(
        reject_upload=message.rejectUpload,
        stop_upload=message.stopUpload,
        reject_termination=message.rejectTermination,
        reject_access=message.rejectAccess,
    )
    if message.HasField("httpResponse"):
        http = message.httpResponse
        result.http_response = HTTPResponse(
            status_code=int(http.statusCode) or None,
            body=http.body or None,
            headers=dict(http.header),
        )
    if message.HasField("changeFileInfo"):
        changes = message.changeFileInfo
        new_id = changes.id or None
        if new_id is not None:
            validate_upload_id(new_id)
        result.change_file_info = FileInfoChanges(
            id=new_id,
            metadata=dict(changes.metaData) or None,
            storage=dict(changes.storage) or None,
        )
    return result


# --- the backend -------------------------------------------------------------------


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as exc:
        raise ValueError(f"cannot read the gRPC hook {what} {path!r}: {exc.strerror}") from None


def _metadata_names(names: Iterable[str]) -> tuple[str, ...]:
    """The configured forward-header names as gRPC metadata keys (lower case)."""
    keys: list[str] = []
    for raw in names:
        name = raw.strip()
        if not name:
            continue
        key = name.lower()
        if not _METADATA_KEY.fullmatch(key):
            raise ValueError(f"header name cannot be sent as gRPC metadata: {name!r}")
        if key in _NOT_FORWARDED or key.startswith("grpc-"):
            log.warning("header %r is not forwarded to the gRPC hook (reserved name)", name)
            continue
        if key not in keys:
            keys.append(key)
    return tuple(keys)


def _code_of(exc: grpc.RpcError) -> grpc.StatusCode:
    if isinstance(exc, grpc.Call):
        return exc.code()
    return grpc.StatusCode.UNKNOWN


def _details_of(exc: grpc.RpcError) -> str:
    if isinstance(exc, grpc.Call):
        return exc.details() or ""
    return str(exc)


class GRPCHookBackend:
    """tusd's gRPC hook client.

    Each hook is one unary ``proto.HookHandler/InvokeHook`` call to ``target``
    (``host:port``, or any gRPC target such as ``unix:/path``) carrying the
    request in tusd's message format, plus our ``idempotencyKey`` field and
    ``idempotency-key`` metadata entry (tusd servers ignore both).  The client
    headers named in ``forward_headers`` travel as metadata under their
    lower-cased names, one entry per value; values that are not printable ASCII
    cannot be sent and are dropped, and reserved names (``host``,
    ``content-type``, ``grpc-*`` ...) are never forwarded.

    ``retry`` is the number of attempts, counted as tusd's retry interceptor
    counts them (at least one); an attempt failing with ``UNAVAILABLE``,
    ``DEADLINE_EXCEEDED``, ``INTERNAL`` or ``UNKNOWN`` is repeated after
    ``backoff`` seconds (tusd's "linear" backoff, a fixed wait); any other status
    fails at once.  ``timeout`` is each attempt's gRPC deadline (tusd sets none;
    the dispatcher bounds blocking hooks as a whole).  Failures raise
    :class:`HookError`.

    Transport security as tusd: plain text unless ``secure``; then TLS checked
    against the CA or server certificate in ``server_ca`` (unlike tusd, without
    it the system roots are used), and mutual TLS when ``client_cert`` and
    ``client_key`` are both given.  Certificate options without ``secure`` are
    ignored with a warning, as tusd ignores them.

    Calls run on gRPC's own threads; the Trio loop only waits for a completion
    callback, and a cancelled wait cancels the call.  Each backend keeps one
    channel, closed by :meth:`aclose`.
    """

    name = "grpc"

    def __init__(
        self,
        target: str,
        *,
        retry: int = 3,
        backoff: float = 1.0,
        timeout: float = 15.0,
        secure: bool = False,
        server_ca: str | None = None,
        client_cert: str | None = None,
        client_key: str | None = None,
        forward_headers: Iterable[str] = (),
    ) -> None:
        target = target.strip()
        if not target:
            raise ValueError("gRPC hook endpoint must not be empty")
        if timeout <= 0:
            raise ValueError("gRPC hook timeout must be positive")
        self.target = target
        self.attempts = max(1, retry)
        self.backoff = max(0.0, backoff)
        self.timeout = timeout
        self.secure = secure
        self.forward_headers = _metadata_names(forward_headers)
        # Reconnect no slower than we retry, so a restarted server is seen again
        # within one backoff instead of gRPC's default of up to two minutes.
        backoff_ms = max(100, int(self.backoff * 1000))
        options: list[tuple[str, Any]] = [
            ("grpc.initial_reconnect_backoff_ms", backoff_ms),
            ("grpc.min_reconnect_backoff_ms", backoff_ms),
            ("grpc.max_reconnect_backoff_ms", max(backoff_ms, 10_000)),
            ("grpc.primary_user_agent", USER_AGENT),
        ]
        if secure:
            if (client_cert is None) != (client_key is None):
                raise ValueError(
                    "gRPC hook mutual TLS needs both a client certificate and a client key"
                )
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_read(server_ca, "server certificate") if server_ca else None,
                private_key=_read(client_key, "client key") if client_key else None,
                certificate_chain=_read(client_cert, "client certificate") if client_cert else None,
            )
            self._channel = grpc.secure_channel(target, credentials, options=options)
        else:
            if server_ca or client_cert or client_key:
                log.warning("gRPC hook TLS certificates are ignored without -hooks-grpc-secure")
            self._channel = grpc.insecure_channel(target, options=options)
        self._invoke: grpc.UnaryUnaryMultiCallable[hook_pb2.HookRequest, hook_pb2.HookResponse]
        self._invoke = self._channel.unary_unary(
            METHOD,
            request_serializer=hook_pb2.HookRequest.SerializeToString,
            response_deserializer=hook_pb2.HookResponse.FromString,
        )
        self._closed = False

    def _metadata(
        self, payload: Mapping[str, Any], forward: Mapping[str, list[str]] | None
    ) -> tuple[tuple[str, str | bytes], ...]:
        metadata: list[tuple[str, str | bytes]] = []
        if forward and self.forward_headers:
            lowered: dict[str, list[str]] = {}
            for name, values in forward.items():
                lowered.setdefault(name.lower(), []).extend(values)
            for key in self.forward_headers:
                for value in lowered.get(key, ()):
                    if key.endswith("-bin"):
                        metadata.append((key, value.encode("utf-8")))
                    elif _PRINTABLE_ASCII.fullmatch(value):
                        metadata.append((key, value))
        idempotency_key = payload.get("IdempotencyKey")
        if isinstance(idempotency_key, str) and idempotency_key:
            metadata.append(("idempotency-key", idempotency_key))
        return tuple(metadata)

    async def _call(
        self, request: hook_pb2.HookRequest, metadata: tuple[tuple[str, str | bytes], ...]
    ) -> hook_pb2.HookResponse:
        """One attempt; waits for gRPC's completion callback without blocking Trio."""
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()

        def wake(_: object) -> None:
            try:
                token.run_sync_soon(done.set)
            except trio.RunFinishedError:
                pass

        future = self._invoke.future(request, timeout=self.timeout, metadata=metadata)
        future.add_done_callback(wake)
        try:
            await done.wait()
        except BaseException:
            future.cancel()
            raise
        result: hook_pb2.HookResponse = future.result()
        return result

    async def invoke(
        self,
        hook_type: str,
        payload: dict[str, Any],
        *,
        forward_headers: dict[str, list[str]] | None = None,
        once: bool = False,
    ) -> HookResponse:
        if self._closed:
            raise HookError("gRPC hook backend is closed")
        request = payload_to_proto(hook_type, payload)
        if forward_headers is None:
            forward_headers = client_headers(payload)
        metadata = self._metadata(payload, forward_headers)
        attempts = 1 if once else self.attempts
        for attempt in range(1, attempts + 1):
            try:
                answer = await self._call(request, metadata)
            except grpc.RpcError as exc:
                code = _code_of(exc)
                if code not in RETRYABLE_CODES or attempt == attempts:
                    raise HookError(
                        f"gRPC hook call to {self.target} failed: {code.name}: {_details_of(exc)}"
                    ) from None
            else:
                return proto_to_response(answer)
            await trio.sleep(self.backoff)
        raise AssertionError("unreachable")  # pragma: no cover

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._channel.close()
        await trio.lowlevel.checkpoint()
