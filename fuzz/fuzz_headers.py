"""Atheris target over the sans-IO protocol core's parsers and decisions.

Header values reach the core as latin-1 text decoded from what h11 accepted, so most
inputs are built from bytes that way; some are arbitrary Unicode (values set by hooks
or read from ``.info`` files).  The rule: the core may raise
:class:`tusd_trio.protocol.errors.TusError` (an HTTP answer) and nothing else;
``UploadInfo.from_json`` may also raise ``ValueError`` (documented).  On top of that a
few properties are checked (safe upload IDs, ranges within the data, response headers
that cannot break a header block, metadata that reads back as written).

Run with ``fuzz/run.sh`` (``-max_total_time=60`` by default), or directly:
``.venv/bin/python fuzz/fuzz_headers.py -max_total_time=20``.
"""

from __future__ import annotations

import os
import posixpath
import sys

import atheris

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

with atheris.instrument_imports():
    from tusd_trio.protocol import (
        creation,
        download,
        errors,
        headers as hdr,
        responses,
        routing,
        urls,
        writes,
    )
    from tusd_trio.protocol.config import CorsConfig, ProtocolConfig
    from tusd_trio.protocol.info import UploadInfo, check_upload_id
    from tusd_trio.protocol.messages import Headers, Request

CONFIGS = [
    ProtocolConfig(),
    ProtocolConfig(base_path="/", relative_location=True, max_size=100),
    ProtocolConfig(
        base_path="/a/b",
        behind_proxy=True,
        disable_download=True,
        disable_termination=True,
        disable_concatenation=True,
        checksum_algorithms=("sha256",),
        cors=None,
        expiration=60.0,
    ),
    ProtocolConfig(cors=CorsConfig(allow_origin=r"^https://ok\.example$")),
]
METHODS = ["GET", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS", "PUT", "get", "patch", ""]
HEADER_NAMES = [
    "Tus-Resumable",
    "Upload-Length",
    "Upload-Offset",
    "Upload-Defer-Length",
    "Upload-Metadata",
    "Upload-Concat",
    "Upload-Checksum",
    "Content-Type",
    "Content-Length",
    "X-HTTP-Method-Override",
    "Origin",
    "Host",
    "Forwarded",
    "X-Forwarded-Host",
    "X-Forwarded-Proto",
    "X-Forwarded-Port",
    "Range",
    "If-Range",
    "Trailer",
    "X-Request-ID",
]
TARGET_PREFIXES = ["/files/", "/files", "/", "/a/b/", "http://h/files/", "//", "/health", ""]
#: Bytes h11 accepts in a header value (no NUL, CR, LF, VT, FF; no edge whitespace).
_H11_BAD = frozenset(b"\x00\r\n\x0b\x0c")
_CTL = frozenset(chr(c) for c in (*range(9), *range(10, 32), 127))


class Bug(AssertionError):
    pass


def check(condition: bool, message: str) -> None:
    if not condition:
        raise Bug(message)


def header_text(fdp: atheris.FuzzedDataProvider, size: int) -> str:
    """A header value as the server sees it: latin-1 text of bytes h11 accepted."""
    raw = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, size))
    return bytes(b for b in raw if b not in _H11_BAD).decode("latin-1").strip(" \t")


def any_text(fdp: atheris.FuzzedDataProvider, size: int) -> str:
    if fdp.ConsumeBool():
        return header_text(fdp, size)
    return fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, size))


def fuzz_request(fdp: atheris.FuzzedDataProvider) -> Request:
    method = fdp.PickValueInList(METHODS)
    if fdp.ConsumeBool():
        method = header_text(fdp, 8)
    target = fdp.PickValueInList(TARGET_PREFIXES) + header_text(fdp, 80)
    items = []
    for _ in range(fdp.ConsumeIntInRange(0, 8)):
        name = fdp.PickValueInList(HEADER_NAMES)
        value = header_text(fdp, 120)
        if fdp.ConsumeIntInRange(0, 3) == 0:
            value = str(fdp.ConsumeIntInRange(0, 200))
        items.append((name, value))
    if fdp.ConsumeBool():
        items.append(("Tus-Resumable", "1.0.0"))
    if fdp.ConsumeBool():
        items.append(("Content-Type", "application/offset+octet-stream"))
    return Request(method=method, target=target, headers=Headers(items))


def fuzz_info(fdp: atheris.FuzzedDataProvider) -> UploadInfo:
    size = fdp.ConsumeIntInRange(0, 300)
    deferred = fdp.ConsumeBool()
    final = fdp.ConsumeIntInRange(0, 4) == 0
    return UploadInfo(
        id=any_text(fdp, 40) or "x",
        size=0 if deferred else size,
        size_is_deferred=deferred,
        offset=fdp.ConsumeIntInRange(0, size),
        # Metadata as a creation stored it (from an Upload-Metadata header h11 accepted).
        # Keys with control characters can only come from hooks or hand-made .info
        # files; serialize_metadata passes those on and the I/O layer masks them.
        metadata=hdr.parse_metadata(header_text(fdp, 200)),
        is_partial=not final and fdp.ConsumeBool(),
        is_final=final,
        partial_uploads=tuple(valid_id(fdp) for _ in range(fdp.ConsumeIntInRange(0, 3)))
        if final
        else None,
        modified=float(fdp.ConsumeIntInRange(0, 2_000_000_000)),
        created=float(fdp.ConsumeIntInRange(0, 2_000_000_000)),
    )


def valid_id(fdp: atheris.FuzzedDataProvider) -> str:
    """An ID as stored: one that passed check_upload_id (from a URL or a hook)."""
    try:
        return check_upload_id(header_text(fdp, 40))
    except errors.TusError:
        return "0123456789abcdef0123456789abcdef"


def check_safe_id(upload_id: str) -> None:
    check(bool(upload_id), "empty upload ID accepted")
    check(not upload_id.startswith("/") and "\\" not in upload_id, f"unsafe ID {upload_id!r}")
    check(not any(ch in _CTL for ch in upload_id), f"control character in ID {upload_id!r}")
    check(
        all(seg not in ("", ".", "..") for seg in upload_id.split("/")),
        f"path segment trick in ID {upload_id!r}",
    )
    joined = posixpath.normpath(posixpath.join("/uploads", upload_id))
    check(joined.startswith("/uploads/"), f"ID {upload_id!r} escapes the upload directory")


def check_response_headers(response_headers: list[tuple[str, str]]) -> None:
    for name, value in response_headers:
        check(
            not any(ch in "\r\n\x00" for ch in name + value),
            f"header {name!r} carries a line break or NUL: {value!r}",
        )


def fuzz_parsers(fdp: atheris.FuzzedDataProvider) -> None:
    which = fdp.ConsumeIntInRange(0, 9)
    if which == 0:
        from_header = fdp.ConsumeBool()
        text = header_text(fdp, 300) if from_header else any_text(fdp, 300)
        metadata = hdr.parse_metadata(text)
        written = hdr.serialize_metadata(metadata)
        if from_header:  # keys come back as sent: what h11 let through, nothing worse
            check(not any(ch in "\r\n\x00" for ch in written), f"metadata header {written!r}")
        kept = {
            k: v
            for k, v in metadata.items()
            if k and k.strip() == k and " " not in k and "," not in k
        }
        check(hdr.parse_metadata(written) == kept, f"metadata round trip of {text!r}")
    elif which == 1:
        text = any_text(fdp, 200)
        try:
            concat = hdr.parse_concat(text)
        except errors.InvalidConcatError:
            return
        check(not (concat.is_partial and concat.is_final), "both partial and final")
        check(not concat.is_final or bool(concat.partial_urls), "final without URLs")
        for url in concat.partial_urls:
            try:
                check_safe_id(urls.id_from_url(url, fdp.PickValueInList(CONFIGS)))
            except errors.TusError:
                pass
    elif which == 2:
        enabled = tuple(a for a in hdr.CHECKSUM_ALGORITHMS if fdp.ConsumeBool())
        checksum = hdr.parse_checksum(any_text(fdp, 120), enabled)
        check(checksum.algorithm in enabled, "algorithm not enabled")
        check(len(checksum.digest) == hdr.CHECKSUM_ALGORITHMS[checksum.algorithm][1], "length")
    elif which == 3:
        text = any_text(fdp, 40)
        number = hdr.parse_uint(text)
        if number is not None:
            check(0 <= number <= hdr.MAX_INT64, f"parse_uint({text!r}) = {number}")
            check(str(number) == text.strip().lstrip("0") or number == 0, f"{text!r} -> {number}")
    elif which == 4:
        size = (
            fdp.ConsumeIntInRange(0, 2**63 - 1)
            if fdp.ConsumeBool()
            else fdp.ConsumeIntInRange(0, 100)
        )
        text = any_text(fdp, 60)
        result = hdr.parse_range(text, size)
        if isinstance(result, tuple):
            start, end = result
            check(0 <= start < end <= size, f"parse_range({text!r}, {size}) = {result}")
    elif which == 5:
        url = any_text(fdp, 200)
        check_safe_id(urls.id_from_url(url, fdp.PickValueInList(CONFIGS)))
    elif which == 6:
        check_safe_id(check_upload_id(any_text(fdp, 200)))
    elif which == 7:
        filetype = any_text(fdp, 60) or None
        filename = any_text(fdp, 60) or None
        for value in (
            hdr.content_type_for(filetype),
            hdr.content_disposition_for(filetype, filename),
        ):
            check(hdr.is_safe_header_value(value), f"unsafe header value {value!r}")
        hdr.media_type(filetype)
    elif which == 8:
        hdr.parse_http_date(any_text(fdp, 60))
    else:
        raw = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 300))
        try:
            UploadInfo.from_json(raw)
        except ValueError:  # documented: not a valid info (JSONDecodeError included)
            pass


def fuzz_route(fdp: atheris.FuzzedDataProvider) -> None:
    config = fdp.PickValueInList(CONFIGS)
    request = fuzz_request(fdp)
    routed = routing.route(request, config)
    check_response_headers(routed.common)
    if routed.error is not None:
        check(isinstance(routed.error, errors.TusError), "route error is not a TusError")
        response = responses.error_response(
            routed.error, method=routed.method, common=routed.common
        )
        check_response_headers(response.headers)
        return
    if routed.upload_id is not None:
        check_safe_id(routed.upload_id)
    now = 1_700_000_000.0
    action = routed.action
    if action is routing.Action.OPTIONS:
        check_response_headers(responses.options_response(config, routed.common).headers)
    elif action is routing.Action.CREATE:
        plan = creation.plan_creation(request, config, now)
        info = plan.info
        if info.is_final:
            partials = [fuzz_info(fdp) for _ in plan.partial_ids]
            info = creation.plan_final(plan, partials, config)
        elif plan.has_body:
            writes.plan_body_write(request, info, config)
        info = UploadInfo(**{**_fields(info), "id": "0123456789abcdef0123456789abcdef"})
        response = creation.creation_response(
            request, config, info, routed.common, wrote_body=plan.has_body, now=now
        )
        check_response_headers(response.headers)
    elif action is not None and routed.upload_id is not None:
        info = fuzz_info(fdp)
        if action is routing.Action.PATCH:
            write = writes.plan_patch(request, info, config, now)
            if write.limit is not None:
                check(write.limit >= 0, f"negative write limit {write.limit}")
        elif action is routing.Action.HEAD:
            check_response_headers(
                responses.head_response(request, info, config, routed.common, now).headers
            )
        elif action is routing.Action.GET:
            plan = download.plan_download(request, info, config, routed.common, now)
            check(0 <= plan.start <= plan.end <= info.offset, f"download range {plan}")
            check_response_headers(plan.headers)


def _fields(info: UploadInfo) -> dict[str, object]:
    return {name: getattr(info, name) for name in UploadInfo.__slots__}  # type: ignore[attr-defined]


def TestOneInput(data: bytes) -> None:  # atheris' name
    fdp = atheris.FuzzedDataProvider(data)
    try:
        if fdp.ConsumeBool():
            fuzz_parsers(fdp)
        else:
            fuzz_route(fdp)
    except errors.TusError:
        pass  # an HTTP answer: fine


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
