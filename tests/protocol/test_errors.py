"""The error catalogue: tusd's ERR_* codes and statuses, plus our additions."""

from __future__ import annotations

import copy
import pickle

import pytest

from tusd_trio.protocol import errors

CATALOGUE = [
    (
        errors.UnsupportedVersionError,
        412,
        "ERR_UNSUPPORTED_VERSION",
        "missing, invalid or unsupported Tus-Resumable header",
    ),
    (errors.MaxSizeExceededError, 413, "ERR_MAX_SIZE_EXCEEDED", "maximum size exceeded"),
    (errors.QuotaExceededError, 413, "ERR_QUOTA_EXCEEDED", "quota exceeded"),
    (
        errors.UploadsQuotaExceededError,
        403,
        "ERR_QUOTA_UPLOADS_EXCEEDED",
        "too many unfinished uploads",
    ),
    # tus 1.0.0 says 415 here; tusd answers 400.
    (
        errors.InvalidContentTypeError,
        415,
        "ERR_INVALID_CONTENT_TYPE",
        "missing or invalid Content-Type header",
    ),
    (
        errors.InvalidUploadLengthError,
        400,
        "ERR_INVALID_UPLOAD_LENGTH",
        "missing or invalid Upload-Length header",
    ),
    (
        errors.InvalidOffsetError,
        400,
        "ERR_INVALID_OFFSET",
        "missing or invalid Upload-Offset header",
    ),
    (errors.UploadNotFoundError, 404, "ERR_UPLOAD_NOT_FOUND", "upload not found"),
    (errors.UploadLockedError, 423, "ERR_UPLOAD_LOCKED", "file currently locked"),
    (errors.LockTimeoutError, 500, "ERR_LOCK_TIMEOUT", "failed to acquire lock before timeout"),
    (errors.MismatchedOffsetError, 409, "ERR_MISMATCHED_OFFSET", "mismatched offset"),
    (errors.SizeExceededError, 413, "ERR_UPLOAD_SIZE_EXCEEDED", "upload's size exceeded"),
    (errors.NotImplementedFeatureError, 501, "ERR_NOT_IMPLEMENTED", "feature not implemented"),
    (
        errors.UploadNotFinishedError,
        400,
        "ERR_UPLOAD_NOT_FINISHED",
        "one of the partial uploads is not finished",
    ),
    (errors.InvalidConcatError, 400, "ERR_INVALID_CONCAT", "invalid Upload-Concat header"),
    (
        errors.ConcatUnsupportedError,
        400,
        "ERR_CONCATENATION_UNSUPPORTED",
        "Upload-Concat header is not supported by server",
    ),
    (errors.ModifyFinalError, 403, "ERR_MODIFY_FINAL", "modifying a final upload is not allowed"),
    (
        errors.AmbiguousUploadLengthError,
        400,
        "ERR_AMBIGUOUS_UPLOAD_LENGTH",
        "provided both Upload-Length and Upload-Defer-Length",
    ),
    (
        errors.InvalidUploadLengthDeferError,
        400,
        "ERR_INVALID_UPLOAD_LENGTH_DEFER",
        "invalid Upload-Defer-Length header",
    ),
    (errors.OriginNotAllowedError, 403, "ERR_ORIGIN_NOT_ALLOWED", "request origin is not allowed"),
    (errors.UnexpectedEOFError, 400, "ERR_UNEXPECTED_EOF", "server expected to receive more bytes"),
    (errors.ReadTimeoutError, 500, "ERR_READ_TIMEOUT", "timeout while reading request body"),
    (errors.ConnectionResetError_, 500, "ERR_CONNECTION_RESET", "TCP connection reset by peer"),
    (
        errors.UploadInterruptedError,
        400,
        "ERR_UPLOAD_INTERRUPTED",
        "upload has been interrupted by another request for this upload resource",
    ),
    (
        errors.ServerShutdownError,
        503,
        "ERR_SERVER_SHUTDOWN",
        "request has been interrupted because the server is shutting down",
    ),
    # Our additions.
    (errors.UploadGoneError, 410, "ERR_UPLOAD_GONE", None),
    (errors.ChecksumMismatchError, 460, "ERR_CHECKSUM_MISMATCH", None),
    (errors.UnsupportedChecksumAlgorithmError, 400, "ERR_UNSUPPORTED_CHECKSUM_ALGORITHM", None),
    (errors.InvalidChecksumError, 400, "ERR_INVALID_CHECKSUM", None),
    (errors.InvalidUploadIDError, 404, "ERR_UPLOAD_NOT_FOUND", "upload not found"),
    (errors.StoreError, 500, "ERR_INTERNAL_SERVER_ERROR", None),
    (errors.InsufficientStorageError, 507, "ERR_INSUFFICIENT_STORAGE", None),
    (errors.UnavailableError, 503, "ERR_SERVICE_UNAVAILABLE", None),
    (errors.ServerShuttingDownError, 503, "ERR_SERVER_SHUTDOWN", "the server is shutting down"),
    # Refusals before a request reaches the handler.
    (errors.MalformedRequestError, 400, "ERR_BAD_REQUEST", "malformed HTTP request"),
    (errors.RequestTimeoutError, 408, "ERR_REQUEST_TIMEOUT", "request header timeout"),
    (
        errors.HeaderFieldsTooLargeError,
        431,
        "ERR_REQUEST_HEADER_FIELDS_TOO_LARGE",
        "the request line and headers are larger than the limit",
    ),
    (
        errors.TooManyConnectionsError,
        503,
        "ERR_TOO_MANY_CONNECTIONS",
        "the server has too many open connections",
    ),
    (errors.ServerNotStartedError, 503, "ERR_SERVER_NOT_STARTED", None),
    # The profiling endpoints (-expose-pprof).
    (errors.InvalidProfileRequestError, 400, "ERR_INVALID_PROFILE_REQUEST", None),
    (errors.ProfileInProgressError, 409, "ERR_PROFILE_IN_PROGRESS", None),
    (errors.ProfilerUnavailableError, 501, "ERR_PROFILER_UNAVAILABLE", None),
    (errors.ProfilerFailedError, 500, "ERR_PROFILER_FAILED", None),
    (errors.TusError, 500, "ERR_INTERNAL_SERVER_ERROR", None),
]


@pytest.mark.parametrize(
    ("cls", "status", "code", "message"), CATALOGUE, ids=lambda v: getattr(v, "__name__", None)
)
def test_catalogue(cls: type[errors.TusError], status: int, code: str, message: str | None) -> None:
    error = cls()
    assert error.status == status
    assert error.code == code
    if message is not None:
        assert error.message == message
    assert str(error) == f"{code}: {error.message}"
    assert error.location is None


def test_every_error_is_a_tus_error() -> None:
    for cls, *_ in CATALOGUE:
        assert issubclass(cls, errors.TusError)
    assert issubclass(errors.MethodNotAllowedError, errors.ProtocolError)
    assert issubclass(errors.RangeNotSatisfiableError, errors.ProtocolError)


def test_client_errors_are_protocol_errors() -> None:
    for cls, status, *_ in CATALOGUE:
        if issubclass(cls, errors.ProtocolError):
            assert 400 <= status < 500, cls


def test_body_interruptions_share_a_base() -> None:
    for cls in (
        errors.UnexpectedEOFError,
        errors.ReadTimeoutError,
        errors.ConnectionResetError_,
        errors.UploadInterruptedError,
        errors.ServerShutdownError,
        errors.UploadStoppedError,
        errors.LockLostError,
    ):
        assert issubclass(cls, errors.BodyInterruptedError)


def test_retry_after_only_where_another_try_can_succeed() -> None:
    # UnavailableError answers carry Retry-After; a server never started does not.
    for cls in (errors.TooManyConnectionsError, errors.ServerShuttingDownError):
        assert issubclass(cls, errors.UnavailableError)
    assert not issubclass(errors.ServerNotStartedError, errors.UnavailableError)
    assert not issubclass(errors.ServerShutdownError, errors.UnavailableError)


def test_docstring_tree_lists_exactly_the_classes() -> None:
    assert errors.__doc__ is not None
    tree = errors.__doc__.split("::", 1)[1].split("\n\n", 2)[1]
    named = {line.split()[0] for line in tree.splitlines() if line.strip()}
    defined = {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, errors.TusError)
    }
    assert named == defined


def test_answer_fields_are_given_when_the_error_is_made() -> None:
    marker = object()
    error = errors.UploadRejectedError(hook_response=marker, location="/files/x")
    assert (error.hook_response, error.location) == (marker, "/files/x")
    assert (errors.UploadRejectedError().hook_response, errors.TusError().location) == (None, None)


def test_with_location_returns_a_new_error_of_the_same_kind() -> None:
    original = errors.MismatchingUploadOffsetError(expected=3, provided=5)
    located = original.with_location("http://h/files/a")
    assert original.location is None
    assert type(located) is errors.MismatchingUploadOffsetError
    assert located.location == "http://h/files/a"
    assert (located.expected, located.provided) == (3, 5)
    assert (located.status, located.code, located.message) == (
        original.status,
        original.code,
        original.message,
    )
    assert str(located) == str(original)
    allowed = errors.MethodNotAllowedError("POST").with_location("/files/b")
    assert (allowed.allow, allowed.location) == ("POST", "/files/b")


def test_errors_copy_and_pickle_with_every_field() -> None:
    original = errors.MismatchingUploadOffsetError(expected=3, provided=5).with_location("/f/a")
    for clone in (copy.copy(original), pickle.loads(pickle.dumps(original))):
        assert type(clone) is errors.MismatchingUploadOffsetError
        assert (clone.expected, clone.provided, clone.location) == (3, 5, "/f/a")
        assert str(clone) == str(original)


def test_message_status_and_code_can_be_overridden_per_instance() -> None:
    error = errors.UploadNotFoundError("gone fishing", status=410, code="ERR_X")
    assert (error.message, error.status, error.code) == ("gone fishing", 410, "ERR_X")
    assert str(error) == "ERR_X: gone fishing"
    # The class defaults are untouched.
    fresh = errors.UploadNotFoundError()
    assert (fresh.status, fresh.code) == (404, "ERR_UPLOAD_NOT_FOUND")


def test_empty_message_is_kept() -> None:
    assert errors.StoreError("").message == ""


def test_method_not_allowed_keeps_allow() -> None:
    error = errors.MethodNotAllowedError("POST")
    assert (error.status, error.code, error.allow) == (405, "ERR_METHOD_NOT_ALLOWED", "POST")


def test_range_not_satisfiable_keeps_size() -> None:
    error = errors.RangeNotSatisfiableError(42)
    assert (error.status, error.code, error.size) == (416, "ERR_RANGE_NOT_SATISFIABLE", 42)
