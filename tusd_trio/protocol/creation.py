"""Creation (POST to the base path): checking the request, the upload to create, a
final upload sized from its partials (concatenation), and the 201."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from . import errors
from .config import ProtocolConfig
from .expiration import expires_header
from .headers import MAX_INT64, Concat, parse_concat, parse_metadata, parse_offset
from .info import UploadInfo
from .messages import Request, Response, is_offset_stream
from .urls import id_from_url, public_base_path, upload_url


@dataclass(frozen=True, slots=True)
class CreationPlan:
    """A checked creation request.  ``info.id`` is empty until the store assigns one."""

    info: UploadInfo
    #: The request carries upload data (creation-with-upload).
    has_body: bool
    #: For a final upload: the partial IDs, in order.
    partial_ids: tuple[str, ...] = ()


#: No Upload-Concat header (most creations): one shared value, it is immutable.
_NO_CONCAT = Concat()


def plan_creation(request: Request, config: ProtocolConfig, now: float) -> CreationPlan:
    """Check a POST and work out the upload to create.  Raises :class:`TusError`.

    A final upload's size is filled in by :func:`plan_final` once the partials
    are known.
    """
    headers = request.headers
    # tusd reads the first field of each header (Go's Header.Get); so do we.
    has_body = is_offset_stream(headers.first("content-type"))
    concat_header = headers.first("upload-concat")
    concat = _NO_CONCAT
    if concat_header is not None and concat_header.strip():
        if not config.concatenation_enabled:
            raise errors.ConcatUnsupportedError()
        concat = parse_concat(concat_header)

    metadata = parse_metadata(headers.first("upload-metadata"))

    if concat.is_final:
        if has_body:
            raise errors.ModifyFinalError()
        limit = config.max_concat_partials
        if limit and len(concat.partial_urls) > limit:
            raise errors.InvalidConcatError(
                f"a final upload may name at most {limit} partial uploads, "
                f"this one names {len(concat.partial_urls)}"
            )
        public_base = public_base_path(request, config)
        partial_ids = tuple(id_from_url(url, config, public_base) for url in concat.partial_urls)
        if len(set(partial_ids)) != len(partial_ids):
            # Each repeat would copy the same bytes again: one small request could
            # fill the disk (tusd accepts it).
            repeated = next(pid for pid in partial_ids if partial_ids.count(pid) > 1)
            raise errors.InvalidConcatError(
                f"the final upload names partial upload {repeated} twice"
            )
        info = UploadInfo(
            id="",
            metadata=metadata,
            is_final=True,
            partial_uploads=partial_ids,
            created=now,
            modified=now,
        )
        return CreationPlan(info, has_body=False, partial_ids=partial_ids)

    length_header = headers.first("upload-length") or None
    defer_header = headers.first("upload-defer-length") or None
    if (
        defer_header is not None
        and defer_header.strip() == "1"
        and not config.capabilities.defer_length
    ):
        raise errors.NotImplementedFeatureError()
    if length_header is not None and defer_header is not None:
        raise errors.AmbiguousUploadLengthError()
    deferred = False
    size = 0
    if defer_header is not None:
        if defer_header.strip() != "1":
            raise errors.InvalidUploadLengthDeferError()
        deferred = True
    else:
        parsed = parse_offset(length_header)
        if parsed is None:
            raise errors.InvalidUploadLengthError()
        size = parsed
    if not deferred and config.max_size > 0 and size > config.max_size:
        raise errors.MaxSizeExceededError()
    info = UploadInfo(
        id="",
        size=size,
        size_is_deferred=deferred,
        metadata=metadata,
        is_partial=concat.is_partial,
        created=now,
        modified=now,
    )
    return CreationPlan(info, has_body=has_body)


def plan_final(
    plan: CreationPlan, partials: Iterable[UploadInfo], config: ProtocolConfig
) -> UploadInfo:
    """Size a final upload from its partials.

    Every partial must be a partial upload.  With ``concatenation-unfinished``,
    partials may still be running: the final's size is the sum when every
    partial's length is known, and deferred otherwise.
    """
    total = 0
    deferred = False
    for partial in partials:
        if not partial.is_partial:
            raise errors.InvalidConcatError("upload is not a partial upload: " + partial.id)
        if partial.size_is_deferred:
            deferred = True
        else:
            total += partial.size
    check_final_length(total, config, deferred=deferred)
    info = plan.info
    return UploadInfo(
        id=info.id,
        size=0 if deferred else total,
        size_is_deferred=deferred,
        metadata=info.metadata,
        is_final=True,
        partial_uploads=plan.partial_ids,
        created=info.created,
        modified=info.modified,
    )


def check_final_length(total: int, config: ProtocolConfig, *, deferred: bool = False) -> None:
    """Refuse a final upload whose partials add up to too much.

    ``total`` is the sum of the known partial lengths; with ``deferred`` some are not
    known yet, and only the int64 bound (tusd's type for lengths, in ``.info`` too)
    can already be exceeded.
    """
    if total > MAX_INT64:
        raise errors.MaxSizeExceededError(
            f"the partial uploads add up to {total} bytes, more than an upload may hold "
            f"({MAX_INT64})"
        )
    if not deferred and config.max_size > 0 and total > config.max_size:
        raise errors.MaxSizeExceededError()


def partials_finished(partials: Iterable[UploadInfo]) -> bool:
    return all(p.is_complete for p in partials)


def creation_response(
    request: Request,
    config: ProtocolConfig,
    info: UploadInfo,
    common: Iterable[tuple[str, str]],
    *,
    wrote_body: bool,
    now: float,
) -> Response:
    headers = list(common)
    headers.append(("Location", upload_url(request, config, info.id)))
    if wrote_body:
        headers.append(("Upload-Offset", str(info.offset)))
    headers += expires_header(info, config, now)
    return Response(201, headers)
