"""The exception tree of tusd-trio: every ``ERR_*`` code the daemon answers with.

Each class carries tusd's stable ``ERR_*`` code, the HTTP status it maps to and a
short default message, so that logs and clients see the same codes as with tusd.
The I/O layer turns an error into a response with
:func:`tusd_trio.protocol.responses.error_response` (the IETF draft's problem details:
:func:`tusd_trio.protocol.ietf.error_response`); nothing else writes an ``ERR_*``
code.  The tree (``tests/protocol/test_errors.py`` checks that it lists every class
of this module)::

    TusError                              500 ERR_INTERNAL_SERVER_ERROR (any failure)
      ProtocolError                       400 ERR_BAD_REQUEST (4xx: malformed or not allowed)
        UnsupportedVersionError           412 ERR_UNSUPPORTED_VERSION
        MaxSizeExceededError              413 ERR_MAX_SIZE_EXCEEDED
        InvalidContentTypeError           415 ERR_INVALID_CONTENT_TYPE
        InvalidUploadLengthError          400 ERR_INVALID_UPLOAD_LENGTH
          InconsistentUploadLengthError   400 ERR_INVALID_UPLOAD_LENGTH (IETF draft)
        InvalidOffsetError                400 ERR_INVALID_OFFSET
        MismatchedOffsetError             409 ERR_MISMATCHED_OFFSET
          MismatchingUploadOffsetError    409 ERR_MISMATCHED_OFFSET (IETF draft)
        SizeExceededError                 413 ERR_UPLOAD_SIZE_EXCEEDED
        UploadNotFinishedError            400 ERR_UPLOAD_NOT_FINISHED
        IncompleteUploadError             400 ERR_INCOMPLETE_UPLOAD
        InvalidConcatError                400 ERR_INVALID_CONCAT
        ConcatUnsupportedError            400 ERR_CONCATENATION_UNSUPPORTED
        ModifyFinalError                  403 ERR_MODIFY_FINAL
        AmbiguousUploadLengthError        400 ERR_AMBIGUOUS_UPLOAD_LENGTH
        InvalidUploadLengthDeferError     400 ERR_INVALID_UPLOAD_LENGTH_DEFER
        UnsupportedChecksumAlgorithmError 400 ERR_UNSUPPORTED_CHECKSUM_ALGORITHM
        InvalidChecksumError              400 ERR_INVALID_CHECKSUM
        ChecksumMismatchError             460 ERR_CHECKSUM_MISMATCH
        OriginNotAllowedError             403 ERR_ORIGIN_NOT_ALLOWED
        InvalidHostError                  400 ERR_INVALID_HOST
        InvalidUploadIDError              404 ERR_UPLOAD_NOT_FOUND
        MethodNotAllowedError             405 ERR_METHOD_NOT_ALLOWED (+ Allow)
        RangeNotSatisfiableError          416 ERR_RANGE_NOT_SATISFIABLE (+ Content-Range)
        UploadRejectedError               400 ERR_UPLOAD_REJECTED (pre-create hook)
        TerminationRejectedError          400 ERR_UPLOAD_TERMINATION_REJECTED (pre-terminate)
        AccessDeniedError                 403 ERR_ACCESS_DENIED (pre-access hook)
        QuotaExceededError                413 ERR_QUOTA_EXCEEDED (per-principal bytes or size)
          UploadsQuotaExceededError       403 ERR_QUOTA_UPLOADS_EXCEEDED (unfinished uploads)
        CompletedUploadError              400 ERR_UPLOAD_COMPLETED (IETF draft)
        InvalidUploadCompleteError        400 ERR_INVALID_UPLOAD_COMPLETE (IETF draft)
        MalformedRequestError             400 ERR_BAD_REQUEST (unparsable HTTP)
        RequestTimeoutError               408 ERR_REQUEST_TIMEOUT (request head too slow)
        HeaderFieldsTooLargeError         431 ERR_REQUEST_HEADER_FIELDS_TOO_LARGE
        InvalidProfileRequestError        400 ERR_INVALID_PROFILE_REQUEST (-expose-pprof)
      UploadNotFoundError                 404 ERR_UPLOAD_NOT_FOUND
      UploadGoneError                     410 ERR_UPLOAD_GONE (expired)
      UploadLockedError                   423 ERR_UPLOAD_LOCKED
      LockTimeoutError                    500 ERR_LOCK_TIMEOUT
      NotImplementedFeatureError          501 ERR_NOT_IMPLEMENTED
      ServerNotStartedError               503 ERR_SERVER_NOT_STARTED (ASGI app before lifespan)
      ProfileInProgressError              409 ERR_PROFILE_IN_PROGRESS (one CPU profile at a time)
      ProfilerUnavailableError            501 ERR_PROFILER_UNAVAILABLE (py-spy not installed)
      ProfilerFailedError                 500 ERR_PROFILER_FAILED (py-spy could not sample)
      BodyInterruptedError                (the body ended early; the bytes read are kept)
        UnexpectedEOFError                400 ERR_UNEXPECTED_EOF
        ReadTimeoutError                  500 ERR_READ_TIMEOUT
        ConnectionResetError_             500 ERR_CONNECTION_RESET
        UploadInterruptedError            400 ERR_UPLOAD_INTERRUPTED
        ServerShutdownError               503 ERR_SERVER_SHUTDOWN
        UploadStoppedError                400 ERR_UPLOAD_STOPPED (post-receive hook)
        LockLostError                     503 ERR_LOCK_LOST (also an UnavailableError)
      StoreError                          500 ERR_INTERNAL_SERVER_ERROR (the store failed)
        InsufficientStorageError          507 ERR_INSUFFICIENT_STORAGE
      UnavailableError                    503 ERR_SERVICE_UNAVAILABLE (+ Retry-After)
        LockerUnavailableError            503 ERR_LOCKER_UNAVAILABLE
        ServerShuttingDownError           503 ERR_SERVER_SHUTDOWN (new request at shutdown)
        TooManyConnectionsError           503 ERR_TOO_MANY_CONNECTIONS (-max-connections)
        LockLostError                     (see above)

Access control adds one branch outside this module: ``tusd_trio.auth.AuthError``
(401 ``ERR_UNAUTHORIZED``, 403 ``ERR_FORBIDDEN``, with ``WWW-Authenticate``).

What an answer carries besides the code is given when the error is made:
``location`` (the URL of an upload created before the error, sent as ``Location``)
and ``hook_response`` (a hook's changes to the response).  An error caught after
the upload was created gets its location with :meth:`TusError.with_location`, which
returns a new error; errors are never changed once raised.
"""

from __future__ import annotations

from typing import Any, Self, TypeVar


class TusError(Exception):
    """An error with a tusd ``ERR_*`` code and an HTTP status."""

    code: str = "ERR_INTERNAL_SERVER_ERROR"
    status: int = 500
    default_message: str = "internal server error"

    def __init__(
        self,
        message: str | None = None,
        *,
        status: int | None = None,
        code: str | None = None,
        location: str | None = None,
        hook_response: object | None = None,
    ) -> None:
        self.message = message if message is not None else self.default_message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        #: The URL of an upload that was created before the error happened.
        self.location = location
        #: A hook's changes to the response (opaque to the protocol core).
        self.hook_response = hook_response
        super().__init__(f"{self.code}: {self.message}")

    def with_location(self, location: str) -> Self:
        """The same answer, also naming the upload that exists (``Location``): the
        client may resume it."""
        return _rebuild(type(self), self.args, {**self.__dict__, "location": location})

    def __reduce__(self) -> tuple[Any, ...]:
        # Copies and pickles keep every field whatever the subclass's __init__ takes.
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))


_E = TypeVar("_E", bound=TusError)


def _rebuild(cls: type[_E], args: tuple[Any, ...], fields: dict[str, Any]) -> _E:
    """An error of class ``cls`` with these fields, made without its ``__init__``."""
    error = cls.__new__(cls, *args)
    error.args = args
    error.__dict__.update(fields)
    return error


class ProtocolError(TusError):
    status = 400
    code = "ERR_BAD_REQUEST"
    default_message = "bad request"


class UnsupportedVersionError(ProtocolError):
    status = 412
    code = "ERR_UNSUPPORTED_VERSION"
    default_message = "missing, invalid or unsupported Tus-Resumable header"


class MaxSizeExceededError(ProtocolError):
    status = 413
    code = "ERR_MAX_SIZE_EXCEEDED"
    default_message = "maximum size exceeded"


class InvalidContentTypeError(ProtocolError):
    # tusd answers 400 here; the tus 1.0.0 text says 415 (see README).
    status = 415
    code = "ERR_INVALID_CONTENT_TYPE"
    default_message = "missing or invalid Content-Type header"


class InvalidUploadLengthError(ProtocolError):
    code = "ERR_INVALID_UPLOAD_LENGTH"
    default_message = "missing or invalid Upload-Length header"


class InvalidOffsetError(ProtocolError):
    code = "ERR_INVALID_OFFSET"
    default_message = "missing or invalid Upload-Offset header"


class UploadNotFoundError(TusError):
    status = 404
    code = "ERR_UPLOAD_NOT_FOUND"
    default_message = "upload not found"


class UploadGoneError(TusError):
    status = 410
    code = "ERR_UPLOAD_GONE"
    default_message = "upload has expired"


class UploadLockedError(TusError):
    status = 423
    code = "ERR_UPLOAD_LOCKED"
    default_message = "file currently locked"


class LockTimeoutError(TusError):
    status = 500
    code = "ERR_LOCK_TIMEOUT"
    default_message = "failed to acquire lock before timeout"


class MismatchedOffsetError(ProtocolError):
    status = 409
    code = "ERR_MISMATCHED_OFFSET"
    default_message = "mismatched offset"


class SizeExceededError(ProtocolError):
    status = 413
    code = "ERR_UPLOAD_SIZE_EXCEEDED"
    default_message = "upload's size exceeded"


class NotImplementedFeatureError(TusError):
    """A feature the server does not offer (also a transfer coding it cannot decode)."""

    status = 501
    code = "ERR_NOT_IMPLEMENTED"
    default_message = "feature not implemented"


class UploadNotFinishedError(ProtocolError):
    code = "ERR_UPLOAD_NOT_FINISHED"
    default_message = "one of the partial uploads is not finished"


class IncompleteUploadError(ProtocolError):
    """GET of an unfinished upload on a store that cannot serve partial data."""

    code = "ERR_INCOMPLETE_UPLOAD"
    default_message = "cannot stream non-finished upload"


class InvalidConcatError(ProtocolError):
    code = "ERR_INVALID_CONCAT"
    default_message = "invalid Upload-Concat header"


class ConcatUnsupportedError(ProtocolError):
    code = "ERR_CONCATENATION_UNSUPPORTED"
    default_message = "Upload-Concat header is not supported by server"


class ModifyFinalError(ProtocolError):
    status = 403
    code = "ERR_MODIFY_FINAL"
    default_message = "modifying a final upload is not allowed"


class AmbiguousUploadLengthError(ProtocolError):
    code = "ERR_AMBIGUOUS_UPLOAD_LENGTH"
    default_message = "provided both Upload-Length and Upload-Defer-Length"


class InvalidUploadLengthDeferError(ProtocolError):
    code = "ERR_INVALID_UPLOAD_LENGTH_DEFER"
    default_message = "invalid Upload-Defer-Length header"


class UnsupportedChecksumAlgorithmError(ProtocolError):
    code = "ERR_UNSUPPORTED_CHECKSUM_ALGORITHM"
    default_message = "unsupported checksum algorithm"


class InvalidChecksumError(ProtocolError):
    code = "ERR_INVALID_CHECKSUM"
    default_message = "missing or invalid Upload-Checksum header"


class ChecksumMismatchError(ProtocolError):
    status = 460
    code = "ERR_CHECKSUM_MISMATCH"
    default_message = "checksum mismatch"


class OriginNotAllowedError(ProtocolError):
    status = 403
    code = "ERR_ORIGIN_NOT_ALLOWED"
    default_message = "request origin is not allowed"


class InvalidHostError(ProtocolError):
    """A ``Host`` (or HTTP/2 ``:authority``) that is not an RFC 3986 host and port."""

    code = "ERR_INVALID_HOST"
    default_message = "malformed Host header"


class InvalidUploadIDError(ProtocolError):
    status = 404
    code = "ERR_UPLOAD_NOT_FOUND"
    default_message = "upload not found"


class MethodNotAllowedError(ProtocolError):
    status = 405
    code = "ERR_METHOD_NOT_ALLOWED"
    default_message = "method not allowed"

    def __init__(self, allow: str) -> None:
        super().__init__()
        self.allow = allow


class RangeNotSatisfiableError(ProtocolError):
    status = 416
    code = "ERR_RANGE_NOT_SATISFIABLE"
    default_message = "requested range not satisfiable"

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size


# --- Refusals before a request reaches the handler (the connection is closed after).


class MalformedRequestError(ProtocolError):
    """HTTP that cannot be parsed, or a request with both Content-Length and
    Transfer-Encoding (RFC 9112 6.1: a possible request-smuggling attempt)."""

    code = "ERR_BAD_REQUEST"
    default_message = "malformed HTTP request"


class RequestTimeoutError(ProtocolError):
    """The request line and headers did not arrive within -network-timeout."""

    status = 408
    code = "ERR_REQUEST_TIMEOUT"
    default_message = "request header timeout"


class HeaderFieldsTooLargeError(ProtocolError):
    """The request line and headers are larger than -max-header-size."""

    status = 431
    code = "ERR_REQUEST_HEADER_FIELDS_TOO_LARGE"
    default_message = "the request line and headers are larger than the limit"


class ServerNotStartedError(TusError):
    """A request reached the ASGI app before its lifespan started it.

    Not an :class:`UnavailableError`: the answer carries no ``Retry-After`` (a
    server that is never started would be retried forever)."""

    status = 503
    code = "ERR_SERVER_NOT_STARTED"
    default_message = "the server has not been started"


# --- The profiling endpoints (-expose-pprof, tusd_trio/server/_pprof.py). ---


class InvalidProfileRequestError(ProtocolError):
    """A CPU profile asked for with a duration, rate or format outside what is offered."""

    code = "ERR_INVALID_PROFILE_REQUEST"
    default_message = "invalid profile parameters"


class ProfileInProgressError(TusError):
    """A CPU profile was asked for while another one of this process is still running:
    two samplers on one process would distort each other and double its cost."""

    status = 409
    code = "ERR_PROFILE_IN_PROGRESS"
    default_message = "a CPU profile of this process is already running; try again when it ends"


class ProfilerUnavailableError(TusError):
    """The sampling profiler (py-spy, the ``pprof`` extra) is not installed."""

    status = 501
    code = "ERR_PROFILER_UNAVAILABLE"
    default_message = "the CPU profiler py-spy is not installed (pip install 'tusd-trio[pprof]')"


class ProfilerFailedError(TusError):
    """py-spy is installed but could not sample this process (e.g. ptrace is not
    permitted); the message carries its explanation."""

    status = 500
    code = "ERR_PROFILER_FAILED"
    default_message = "the CPU profiler could not sample this process"


# --- Errors that end a body read early.  The bytes read so far are kept. ---


class BodyInterruptedError(TusError):
    """The request body ended before the client said it would."""


class UnexpectedEOFError(BodyInterruptedError):
    status = 400
    code = "ERR_UNEXPECTED_EOF"
    default_message = "server expected to receive more bytes"


class ReadTimeoutError(BodyInterruptedError):
    status = 500
    code = "ERR_READ_TIMEOUT"
    default_message = "timeout while reading request body"


class ConnectionResetError_(BodyInterruptedError):
    status = 500
    code = "ERR_CONNECTION_RESET"
    default_message = "TCP connection reset by peer"


class UploadInterruptedError(BodyInterruptedError):
    status = 400
    code = "ERR_UPLOAD_INTERRUPTED"
    default_message = "upload has been interrupted by another request for this upload resource"


class ServerShutdownError(BodyInterruptedError):
    status = 503
    code = "ERR_SERVER_SHUTDOWN"
    default_message = "request has been interrupted because the server is shutting down"


class UploadStoppedError(BodyInterruptedError):
    status = 400
    code = "ERR_UPLOAD_STOPPED"
    default_message = "upload has been stopped by server"


class UploadRejectedError(ProtocolError):
    code = "ERR_UPLOAD_REJECTED"
    default_message = "upload creation has been rejected by server"


class TerminationRejectedError(ProtocolError):
    code = "ERR_UPLOAD_TERMINATION_REJECTED"
    default_message = "upload termination has been rejected by server"


class AccessDeniedError(ProtocolError):
    status = 403
    code = "ERR_ACCESS_DENIED"
    default_message = "access to this upload has been denied by server"


class QuotaExceededError(ProtocolError):
    """A principal's quota (access control) would be crossed: its bytes, or the size
    of one upload.  ``quota_state`` is the ``Tusd-Trio-Quota`` header value to send
    (``None``: none known), so the client can show what it holds."""

    status = 413
    code = "ERR_QUOTA_EXCEEDED"
    default_message = "quota exceeded"

    def __init__(self, message: str | None = None, *, quota_state: str | None = None) -> None:
        super().__init__(message)
        self.quota_state = quota_state


class UploadsQuotaExceededError(QuotaExceededError):
    """A principal already has as many unfinished uploads as it may."""

    status = 403
    code = "ERR_QUOTA_UPLOADS_EXCEEDED"
    default_message = "too many unfinished uploads"


class StoreError(TusError):
    status = 500
    code = "ERR_INTERNAL_SERVER_ERROR"
    default_message = "storage error"


class InsufficientStorageError(StoreError):
    status = 507
    code = "ERR_INSUFFICIENT_STORAGE"
    default_message = "no space left on the storage device"


class UnavailableError(TusError):
    status = 503
    code = "ERR_SERVICE_UNAVAILABLE"
    default_message = "service unavailable"
    #: Seconds a client should wait before retrying (sent as Retry-After).
    retry_after = 1


class LockLostError(BodyInterruptedError, UnavailableError):
    """The upload's lease was lost mid-request (the lock service failed or another
    instance took over): the write stopped at once."""

    status = 503
    code = "ERR_LOCK_LOST"
    default_message = "the upload's lock was lost while writing; retry from the offset HEAD reports"


# --- IETF "Resumable Uploads for HTTP" draft (tusd_trio.protocol.ietf) ---


class MismatchingUploadOffsetError(MismatchedOffsetError):
    """409 of a draft append: carries both offsets for the problem details."""

    def __init__(self, expected: int, provided: int) -> None:
        super().__init__(
            f"offset from request ({provided}) does not match offset of resource ({expected})"
        )
        self.expected = expected
        self.provided = provided


class InconsistentUploadLengthError(InvalidUploadLengthError):
    """Two indications of a draft upload's length disagree."""

    default_message = "inconsistent length values for upload"


class CompletedUploadError(ProtocolError):
    """A draft append to an upload that is already complete."""

    code = "ERR_UPLOAD_COMPLETED"
    default_message = "upload is already completed"


class InvalidUploadCompleteError(ProtocolError):
    """A draft request without a valid ``Upload-Complete`` (``Upload-Incomplete``) field."""

    code = "ERR_INVALID_UPLOAD_COMPLETE"
    default_message = "missing or invalid Upload-Complete header"


class ServerShuttingDownError(UnavailableError):
    """A new creation or PATCH arrived while the server shuts down; another instance
    (or this one, restarted) can take it after ``Retry-After``.  A body already being
    read when the shutdown starts ends with :class:`ServerShutdownError` instead."""

    code = "ERR_SERVER_SHUTDOWN"
    default_message = "the server is shutting down"


class TooManyConnectionsError(UnavailableError):
    """A connection beyond -max-connections, refused before its request is read."""

    code = "ERR_TOO_MANY_CONNECTIONS"
    default_message = "the server has too many open connections"


class LockerUnavailableError(UnavailableError):
    """The distributed locker's backend (Redis) cannot be reached or failed."""

    status = 503
    code = "ERR_LOCKER_UNAVAILABLE"
    default_message = "the upload lock service is unavailable: Redis is unreachable"
