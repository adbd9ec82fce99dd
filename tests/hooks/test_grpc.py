"""gRPC hooks against a real grpcio server in this process (generated servicer)."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests._support.hook_events import UPLOAD_ID, make_event
from tusd_trio._version import __version__
from tusd_trio.hooks.dispatcher import HookDispatcher
from tusd_trio.hooks.grpc import GRPCHookBackend, payload_to_proto
from tusd_trio.hooks.model import (
    FileInfoChanges,
    HookError,
    HookResponse,
    HTTPResponse,
    build_request,
)
from tusd_trio.hooks.proto import hook_pb2, hook_pb2_grpc
from tusd_trio.protocol.info import UploadInfo

# --- a scripted hook server ----------------------------------------------------------


@dataclass
class Reply:
    """One scripted answer: a response, or a failure status, after ``delay`` seconds."""

    response: hook_pb2.HookResponse = field(default_factory=hook_pb2.HookResponse)
    code: grpc.StatusCode | None = None
    details: str = ""
    delay: float = 0.0


@dataclass
class Call:
    request: hook_pb2.HookRequest
    metadata: list[tuple[str, str | bytes]]
    peer_cert: bytes | None

    def meta(self, key: str) -> list[str | bytes]:
        return [value for name, value in self.metadata if name == key]


class Servicer(hook_pb2_grpc.HookHandlerServicer):
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.script: deque[Reply] = deque()
        self.default = Reply()
        self.released = threading.Event()

    def InvokeHook(
        self, request: hook_pb2.HookRequest, context: grpc.ServicerContext
    ) -> hook_pb2.HookResponse:
        # gRPC gives every auth property as a list of values (types-grpcio says bytes).
        certs: object = context.auth_context().get("x509_pem_cert")
        peer_cert = None
        if certs:
            assert isinstance(certs, list) and isinstance(certs[0], bytes), certs
            peer_cert = certs[0]
        self.calls.append(
            Call(
                request=request,
                metadata=[(key, value) for key, value in context.invocation_metadata()],
                peer_cert=peer_cert,
            )
        )
        reply = self.script.popleft() if self.script else self.default
        if reply.delay:
            self.released.wait(reply.delay)
        if reply.code is not None:
            context.abort(reply.code, reply.details)
        return reply.response


class HookServer:
    def __init__(self, credentials: grpc.ServerCredentials | None = None) -> None:
        self.servicer = Servicer()
        self.server = grpc.server(ThreadPoolExecutor(max_workers=4))
        hook_pb2_grpc.add_HookHandlerServicer_to_server(self.servicer, self.server)
        if credentials is None:
            self.port = self.server.add_insecure_port("127.0.0.1:0")
        else:
            self.port = self.server.add_secure_port("127.0.0.1:0", credentials)
        self.server.start()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def calls(self) -> list[Call]:
        return self.servicer.calls

    def answer(self, *replies: Reply) -> None:
        self.servicer.script.extend(replies)

    def stop(self) -> None:
        self.servicer.released.set()
        self.server.stop(grace=None).wait(5)


@pytest.fixture
def hook_server() -> Iterator[HookServer]:
    server = HookServer()
    yield server
    server.stop()


MakeBackend = Callable[..., GRPCHookBackend]


@pytest.fixture
async def make_backend() -> AsyncIterator[MakeBackend]:
    made: list[GRPCHookBackend] = []

    def make(target: str, **options: object) -> GRPCHookBackend:
        options.setdefault("backoff", 0.01)
        options.setdefault("timeout", 5.0)
        backend = GRPCHookBackend(target, **options)  # type: ignore[arg-type]
        made.append(backend)
        return backend

    yield make
    for backend in made:
        await backend.aclose()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the request ---------------------------------------------------------------------


async def test_request_fields(hook_server: HookServer, make_backend: MakeBackend) -> None:
    event = make_event(
        "post-finish", headers=[("host", "localhost:8080"), ("tus-resumable", "1.0.0")]
    )
    payload = build_request(event, idempotency_key="idem-1")
    payload["Event"]["HTTPRequest"]["Header"]["X-Multi"] = ["first", "second"]
    payload["Event"]["HTTPRequest"]["Header"]["X-None"] = []
    await make_backend(hook_server.target).invoke("post-finish", payload)
    [call] = hook_server.calls
    req = call.request
    assert req.type == "post-finish"
    assert req.idempotencyKey == "idem-1"
    upload = req.event.upload
    assert upload.id == UPLOAD_ID
    assert upload.size == 11
    assert upload.offset == 11
    assert upload.sizeIsDeferred is False
    assert dict(upload.metaData) == {"filename": "hello.txt"}
    assert dict(upload.storage) == {"Type": "filestore", "Path": f"/data/{UPLOAD_ID}"}
    assert upload.isPartial is False and upload.isFinal is False
    assert list(upload.partialUploads) == []
    http = req.event.httpRequest
    assert http.method == "PATCH"
    assert http.uri == f"/files/{UPLOAD_ID}?x=1"
    assert http.remoteAddr == "127.0.0.1:59395"
    # Canonical names, first value only (tusd's map<string,string>).
    assert dict(http.header) == {
        "Host": "localhost:8080",
        "Tus-Resumable": "1.0.0",
        "X-Multi": "first",
    }
    # gRPC's user agent starts with the one we set (grpc-python appends its own).
    (agent,) = call.meta("user-agent")
    assert str(agent).startswith(f"tusd-trio/{__version__} ")


async def test_request_pre_create_deferred_and_final(
    hook_server: HookServer, make_backend: MakeBackend
) -> None:
    upload = UploadInfo(
        id="ignored",
        size=0,
        size_is_deferred=True,
        is_final=True,
        partial_uploads=("a", "b"),
        storage={"Path": "/x"},
    )
    payload = build_request(make_event("pre-create", upload=upload), idempotency_key="k")
    await make_backend(hook_server.target).invoke("pre-create", payload)
    upload_msg = hook_server.calls[0].request.event.upload
    assert upload_msg.id == ""  # pre-create: no ID yet
    assert dict(upload_msg.storage) == {}  # and no storage
    assert upload_msg.sizeIsDeferred is True
    assert upload_msg.isFinal is True
    assert list(upload_msg.partialUploads) == ["a", "b"]


def test_request_without_http_request() -> None:
    payload = build_request(make_event("post-terminate", request=False), idempotency_key="k")
    msg = payload_to_proto("post-terminate", payload)
    assert msg.event.httpRequest == hook_pb2.HTTPRequest()
    assert msg.event.upload.id == UPLOAD_ID


def test_request_is_readable_with_tusd_field_numbers() -> None:
    """The wire numbers are tusd's: check a few by hand-decoding the bytes."""
    msg = hook_pb2.HookRequest(type="pre-create")
    assert msg.SerializeToString() == b"\x0a\x0apre-create"  # field 1, string
    resp = hook_pb2.HookResponse(rejectUpload=True, stopUpload=True)
    assert resp.SerializeToString() == b"\x10\x01\x18\x01"  # fields 2 and 3, varint
    assert hook_pb2.DESCRIPTOR.services_by_name["HookHandler"].full_name == "proto.HookHandler"


# --- the response --------------------------------------------------------------------


async def test_response_fields(hook_server: HookServer, make_backend: MakeBackend) -> None:
    hook_server.answer(
        Reply(
            hook_pb2.HookResponse(
                httpResponse=hook_pb2.HTTPResponse(
                    statusCode=403, body="no", header={"X-Reason": "quota"}
                ),
                rejectUpload=True,
                changeFileInfo=hook_pb2.FileInfoChanges(
                    id="new-id", metaData={"a": "b"}, storage={"Path": "p"}
                ),
            )
        ),
        Reply(hook_pb2.HookResponse(stopUpload=True)),
        Reply(hook_pb2.HookResponse(rejectTermination=True)),
        Reply(hook_pb2.HookResponse(rejectAccess=True)),
        Reply(hook_pb2.HookResponse()),
    )
    backend = make_backend(hook_server.target)
    payload = build_request(make_event("pre-create"), idempotency_key="k")
    first = await backend.invoke("pre-create", payload)
    assert first == HookResponse(
        http_response=HTTPResponse(403, "no", {"X-Reason": "quota"}),
        reject_upload=True,
        change_file_info=FileInfoChanges(id="new-id", metadata={"a": "b"}, storage={"Path": "p"}),
    )
    assert await backend.invoke("post-receive", payload) == HookResponse(stop_upload=True)
    assert await backend.invoke("pre-terminate", payload) == HookResponse(reject_termination=True)
    assert await backend.invoke("pre-access", payload) == HookResponse(reject_access=True)
    assert await backend.invoke("post-finish", payload) == HookResponse()


async def test_response_zero_values_mean_unset(
    hook_server: HookServer, make_backend: MakeBackend
) -> None:
    hook_server.answer(
        Reply(
            hook_pb2.HookResponse(
                httpResponse=hook_pb2.HTTPResponse(),
                changeFileInfo=hook_pb2.FileInfoChanges(),
            )
        )
    )
    payload = build_request(make_event("pre-create"), idempotency_key="k")
    resp = await make_backend(hook_server.target).invoke("pre-create", payload)
    assert resp.http_response == HTTPResponse(None, None, {})
    assert resp.change_file_info == FileInfoChanges(None, None, None)


async def test_invalid_new_id(hook_server: HookServer, make_backend: MakeBackend) -> None:
    hook_server.answer(
        Reply(hook_pb2.HookResponse(changeFileInfo=hook_pb2.FileInfoChanges(id="/bad/")))
    )
    payload = build_request(make_event("pre-create"), idempotency_key="k")
    with pytest.raises(HookError, match="must not begin or end with '/'"):
        await make_backend(hook_server.target).invoke("pre-create", payload)


# --- retries, failures, timeouts -----------------------------------------------------


async def test_retries_unavailable_with_the_same_key(
    hook_server: HookServer, make_backend: MakeBackend
) -> None:
    hook_server.answer(
        Reply(code=grpc.StatusCode.UNAVAILABLE, details="warming up"),
        Reply(code=grpc.StatusCode.UNAVAILABLE, details="still warming up"),
        Reply(hook_pb2.HookResponse(rejectUpload=True)),
    )
    backend = make_backend(hook_server.target, retry=3, backoff=0.05)
    payload = build_request(make_event("pre-create"), idempotency_key="same-key")
    started = time.monotonic()
    resp = await backend.invoke("pre-create", payload)
    assert time.monotonic() - started >= 0.1  # two waits of `backoff`
    assert resp.reject_upload is True
    assert len(hook_server.calls) == 3
    assert {c.request.idempotencyKey for c in hook_server.calls} == {"same-key"}
    assert {c.meta("idempotency-key")[0] for c in hook_server.calls} == {"same-key"}


@pytest.mark.parametrize("code", ["INTERNAL", "UNKNOWN", "DEADLINE_EXCEEDED"])
async def test_other_retryable_codes(
    hook_server: HookServer, make_backend: MakeBackend, code: str
) -> None:
    hook_server.answer(Reply(code=getattr(grpc.StatusCode, code)))
    backend = make_backend(hook_server.target, retry=2)
    payload = build_request(make_event(), idempotency_key="k")
    assert await backend.invoke("post-finish", payload) == HookResponse()
    assert len(hook_server.calls) == 2


@pytest.mark.parametrize("code", ["PERMISSION_DENIED", "INVALID_ARGUMENT", "UNIMPLEMENTED"])
async def test_other_codes_fail_at_once(
    hook_server: HookServer, make_backend: MakeBackend, code: str
) -> None:
    hook_server.answer(Reply(code=getattr(grpc.StatusCode, code), details="go away"))
    backend = make_backend(hook_server.target, retry=3)
    payload = build_request(make_event("pre-create"), idempotency_key="k")
    with pytest.raises(HookError, match=f"{code}: go away"):
        await backend.invoke("pre-create", payload)
    assert len(hook_server.calls) == 1


async def test_retries_exhausted(hook_server: HookServer, make_backend: MakeBackend) -> None:
    hook_server.servicer.default = Reply(
        code=grpc.StatusCode.UNAVAILABLE, details="down for maintenance"
    )
    backend = make_backend(hook_server.target, retry=3)
    payload = build_request(make_event("pre-create"), idempotency_key="k")
    with pytest.raises(HookError, match="UNAVAILABLE: down for maintenance"):
        await backend.invoke("pre-create", payload)
    assert len(hook_server.calls) == 3


async def test_retry_zero_still_tries_once(
    hook_server: HookServer, make_backend: MakeBackend
) -> None:
    hook_server.servicer.default = Reply(code=grpc.StatusCode.UNAVAILABLE)
    backend = make_backend(hook_server.target, retry=0)
    with pytest.raises(HookError):
        await backend.invoke("pre-create", build_request(make_event(), idempotency_key="k"))
    assert len(hook_server.calls) == 1


async def test_server_down(make_backend: MakeBackend) -> None:
    backend = make_backend(f"127.0.0.1:{free_port()}", retry=3, backoff=0.05)
    started = time.monotonic()
    with pytest.raises(HookError, match="UNAVAILABLE"):
        await backend.invoke("pre-create", build_request(make_event(), idempotency_key="k"))
    elapsed = time.monotonic() - started
    assert 0.1 <= elapsed < 5  # waited between the three attempts, did not hang


async def test_server_that_comes_back(make_backend: MakeBackend) -> None:
    """A restarted hook server is reached again after a backoff."""
    port = free_port()
    backend = make_backend(f"127.0.0.1:{port}", retry=1, backoff=0.1)
    payload = build_request(make_event(), idempotency_key="k")
    with pytest.raises(HookError, match="UNAVAILABLE"):
        await backend.invoke("post-finish", payload)
    server = HookServer.__new__(HookServer)
    server.servicer = Servicer()
    server.server = grpc.server(ThreadPoolExecutor(max_workers=2))
    hook_pb2_grpc.add_HookHandlerServicer_to_server(server.servicer, server.server)
    server.port = server.server.add_insecure_port(f"127.0.0.1:{port}")
    server.server.start()
    try:
        backend.attempts = 20
        assert await backend.invoke("post-finish", payload) == HookResponse()
    finally:
        server.stop()


async def test_timeout(hook_server: HookServer, make_backend: MakeBackend) -> None:
    hook_server.answer(Reply(delay=5), Reply(delay=5))
    backend = make_backend(hook_server.target, timeout=0.2, retry=2)
    payload = build_request(make_event("pre-create"), idempotency_key="k")
    started = time.monotonic()
    with pytest.raises(HookError, match="DEADLINE_EXCEEDED"):
        await backend.invoke("pre-create", payload)
    assert time.monotonic() - started < 2
    assert len(hook_server.calls) == 2  # a timed-out attempt is retried
    # The backend still works afterwards.
    assert await backend.invoke("pre-create", payload) == HookResponse()


async def test_cancellation_cancels_the_call(
    hook_server: HookServer, make_backend: MakeBackend
) -> None:
    hook_server.answer(Reply(delay=5))
    backend = make_backend(hook_server.target, timeout=10)
    started = time.monotonic()
    with trio.move_on_after(0.2) as scope:
        await backend.invoke("pre-create", build_request(make_event(), idempotency_key="k"))
    assert scope.cancelled_caught
    assert time.monotonic() - started < 1


async def test_dispatcher_blocking_timeout(
    hook_server: HookServer, make_backend: MakeBackend
) -> None:
    hook_server.answer(Reply(delay=5))
    dispatcher = HookDispatcher(
        [make_backend(hook_server.target)], frozenset({"pre-create"}), blocking_timeout=0.2
    )
    with pytest.raises(HookError, match="timed out"):
        await dispatcher.invoke(make_event("pre-create"))


async def test_closed_backend(hook_server: HookServer) -> None:
    backend = GRPCHookBackend(hook_server.target)
    await backend.aclose()
    await backend.aclose()  # twice is fine
    with pytest.raises(HookError, match="closed"):
        await backend.invoke("pre-create", build_request(make_event(), idempotency_key="k"))


# --- metadata ------------------------------------------------------------------------


async def test_forwarded_headers_and_idempotency_key(
    hook_server: HookServer, make_backend: MakeBackend
) -> None:
    backend = make_backend(
        hook_server.target,
        forward_headers=["Authorization", " X-Request-ID ", "X-Missing", "Host", "", "x-multi"],
    )
    payload = build_request(make_event("pre-create"), idempotency_key="idem-7")
    payload["Event"]["HTTPRequest"]["Header"]["X-Multi"] = ["1", "2"]
    await backend.invoke("pre-create", payload)
    [call] = hook_server.calls
    assert call.meta("authorization") == ["Bearer t0ken"]
    assert call.meta("x-request-id") == ["abc"]
    assert call.meta("x-multi") == ["1", "2"]  # every value, unlike the request's header map
    assert call.meta("x-missing") == []
    assert call.meta("tus-resumable") == []  # not asked for
    assert call.meta("idempotency-key") == ["idem-7"]
    assert call.meta(":authority") == [] and call.meta("host") == []


async def test_explicit_forward_headers(hook_server: HookServer, make_backend: MakeBackend) -> None:
    backend = make_backend(hook_server.target, forward_headers=["X-Tenant", "X-Blob-Bin"])
    payload = build_request(make_event("pre-create"), idempotency_key="k")
    await backend.invoke(
        "pre-create",
        payload,
        forward_headers={"x-tenant": ["a", "b", "caf\u00e9"], "X-Blob-Bin": ["\u00ff"]},
    )
    [call] = hook_server.calls
    # A value that is not printable ASCII cannot be gRPC metadata and is dropped.
    assert call.meta("x-tenant") == ["a", "b"]
    assert call.meta("x-blob-bin") == ["\u00ff".encode()]


async def test_no_headers_forwarded_by_default(
    hook_server: HookServer, make_backend: MakeBackend
) -> None:
    payload = build_request(make_event(), idempotency_key="k")
    await make_backend(hook_server.target).invoke("post-finish", payload)
    assert hook_server.calls[0].meta("authorization") == []


def test_invalid_forward_header_name() -> None:
    with pytest.raises(ValueError, match="cannot be sent as gRPC metadata"):
        GRPCHookBackend("127.0.0.1:1", forward_headers=["X Bad"])


def test_invalid_options(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must not be empty"):
        GRPCHookBackend(" ")
    with pytest.raises(ValueError, match="both a client certificate and a client key"):
        GRPCHookBackend("127.0.0.1:1", secure=True, client_cert=str(tmp_path / "c.pem"))
    with pytest.raises(ValueError, match="cannot read the gRPC hook server certificate"):
        GRPCHookBackend("127.0.0.1:1", secure=True, server_ca=str(tmp_path / "missing.pem"))


# --- TLS -----------------------------------------------------------------------------


@dataclass
class PKI:
    ca: Path
    server_cert: bytes
    server_key: bytes
    client_cert: Path
    client_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    folder = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _issue("test CA", ca_key, _name("test CA"), ca_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = _issue("localhost", server_key, ca_cert.subject, ca_key, server=True)
    client_key = ec.generate_private_key(ec.SECP256R1())
    client_cert = _issue("tusd-trio client", client_key, ca_cert.subject, ca_key)
    (folder / "ca.pem").write_bytes(_pem_cert(ca_cert))
    (folder / "client.pem").write_bytes(_pem_cert(client_cert))
    (folder / "client.key").write_bytes(_pem_key(client_key))
    return PKI(
        ca=folder / "ca.pem",
        server_cert=_pem_cert(server_cert),
        server_key=_pem_key(server_key),
        client_cert=folder / "client.pem",
        client_key=folder / "client.key",
    )


@pytest.fixture
def tls_server(pki: PKI) -> Iterator[HookServer]:
    server = HookServer(grpc.ssl_server_credentials([(pki.server_key, pki.server_cert)]))
    yield server
    server.stop()


@pytest.fixture
def mtls_server(pki: PKI) -> Iterator[HookServer]:
    creds = grpc.ssl_server_credentials(
        [(pki.server_key, pki.server_cert)],
        root_certificates=pki.ca.read_bytes(),
        require_client_auth=True,
    )
    server = HookServer(creds)
    yield server
    server.stop()


async def test_tls(tls_server: HookServer, make_backend: MakeBackend, pki: PKI) -> None:
    tls_server.answer(Reply(hook_pb2.HookResponse(rejectUpload=True)))
    backend = make_backend(tls_server.target, secure=True, server_ca=str(pki.ca))
    payload = build_request(make_event("pre-create"), idempotency_key="k")
    assert await backend.invoke("pre-create", payload) == HookResponse(reject_upload=True)
    assert tls_server.calls[0].peer_cert is None  # no client certificate was sent


async def test_tls_untrusted_server(tls_server: HookServer, make_backend: MakeBackend) -> None:
    # Without our CA the system roots are used, and they do not know the test CA.
    backend = make_backend(tls_server.target, secure=True, retry=1)
    with pytest.raises(HookError, match="UNAVAILABLE"):
        await backend.invoke("pre-create", build_request(make_event(), idempotency_key="k"))
    assert tls_server.calls == []


async def test_plaintext_to_tls_server_fails(
    tls_server: HookServer, make_backend: MakeBackend, pki: PKI
) -> None:
    # Certificates without `secure` are ignored, as tusd ignores them.
    backend = make_backend(tls_server.target, server_ca=str(pki.ca), retry=1)
    with pytest.raises(HookError, match="UNAVAILABLE"):
        await backend.invoke("pre-create", build_request(make_event(), idempotency_key="k"))


async def test_mtls(mtls_server: HookServer, make_backend: MakeBackend, pki: PKI) -> None:
    backend = make_backend(
        mtls_server.target,
        secure=True,
        server_ca=str(pki.ca),
        client_cert=str(pki.client_cert),
        client_key=str(pki.client_key),
        forward_headers=["Authorization"],
    )
    payload = build_request(make_event("pre-create"), idempotency_key="k")
    assert await backend.invoke("pre-create", payload) == HookResponse()
    [call] = mtls_server.calls
    assert call.peer_cert is not None
    peer = x509.load_pem_x509_certificate(call.peer_cert)
    assert peer.subject == _name("tusd-trio client")
    assert call.meta("authorization") == ["Bearer t0ken"]


async def test_mtls_without_client_certificate(
    mtls_server: HookServer, make_backend: MakeBackend, pki: PKI
) -> None:
    backend = make_backend(mtls_server.target, secure=True, server_ca=str(pki.ca), retry=1)
    with pytest.raises(HookError, match="UNAVAILABLE"):
        await backend.invoke("pre-create", build_request(make_event(), idempotency_key="k"))
    assert mtls_server.calls == []


# --- through the dispatcher ----------------------------------------------------------


async def test_dispatcher_end_to_end(hook_server: HookServer, make_backend: MakeBackend) -> None:
    hook_server.answer(
        Reply(hook_pb2.HookResponse(httpResponse=hook_pb2.HTTPResponse(header={"Link": "<x>"})))
    )
    backend = make_backend(hook_server.target, forward_headers=["X-Request-Id"])
    assert backend.name == "grpc"
    dispatcher = HookDispatcher([backend], frozenset({"pre-finish"}))
    resp = await dispatcher.invoke(make_event("pre-finish"))
    assert resp == HookResponse(http_response=HTTPResponse(None, None, {"Link": "<x>"}))
    [call] = hook_server.calls
    assert call.meta("x-request-id") == ["abc"]
    assert call.request.idempotencyKey == call.meta("idempotency-key")[0] != ""
