"""The IETF "Resumable Uploads for HTTP" draft's interop versions: one table row each.

A request speaks the draft when it carries ``Upload-Draft-Interop-Version`` with
a version listed in :data:`VERSIONS` (and the server has the experimental
protocol on); otherwise it is a tus 1.0.0 request.  Everything that differs
between versions is a field of :class:`InteropVersion`, so supporting a new
version means adding a row; :mod:`tusd_trio.protocol.ietf` makes the decisions
from it.

Interop versions and what each changed (checked against the draft texts in
httpwg/http-extensions):

=======  ======================  ==================================================
interop  draft                   changes
=======  ======================  ==================================================
3        -01                     ``Upload-Incomplete: ?1`` marks an incomplete
                                 request; 104 with ``Location``; HEAD answers 204
                                 with ``Upload-Offset`` and ``Upload-Incomplete``;
                                 HEAD/DELETE carrying ``Upload-Offset`` or the
                                 completion field get 400.
4        -02                     ``Upload-Complete: ?1`` (inverted meaning)
                                 replaces ``Upload-Incomplete``.
5        -03                     HEAD may answer 200; 104 may report progress
                                 (``Upload-Offset``); empty creation/append bodies.
6        -04, -05                appends need ``Content-Type:
                                 application/partial-upload``; problem details
                                 (``mismatching-upload-offset``,
                                 ``completed-upload``); ``Upload-Limit``
                                 (``max-size``, ``min-size``, ``max-append-size``,
                                 ``min-append-size``, ``expires``); ``Upload-Length``
                                 (-05); OPTIONS announces ``Upload-Limit`` (-05).
7        -06, -07, -08           ``Upload-Complete`` is required on appends and
                                 every answer to an append that did not complete
                                 the upload says ``Upload-Complete: ?0``; limit
                                 ``expires`` renamed ``max-age``; problem type
                                 ``inconsistent-upload-length``; HEAD/DELETE no
                                 longer reject the state fields.
8        -09, -10, -11           HEAD must carry ``Upload-Limit``; OPTIONS must
                                 carry ``Accept-Patch: application/partial-upload``
                                 (-10); the 104 must carry ``Upload-Limit``.
9        editors' copy after     ``Accept-Patch`` no longer required in OPTIONS;
         -11 (PR #3476)          ``completed-upload`` problem type removed; a 409
                                 must say ``Upload-Complete: ?0``; GET of an upload
                                 resource reports the state like HEAD.
=======  ======================  ==================================================

Behaviour shared by all versions here: creation is a POST to the base path
carrying the completion field; the 104 goes out after the upload exists and
before the body is read; appends answer 204, creations 201; a 409 always
carries the correct ``Upload-Offset``.  Progress 104s (interop 5 and later,
optional in every draft) are not sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .messages import Headers

PARTIAL_UPLOAD = "application/partial-upload"

_PROBLEMS = "https://iana.org/assignments/http-problem-types#"

MISMATCHING_OFFSET = _PROBLEMS + "mismatching-upload-offset"

COMPLETED_UPLOAD = _PROBLEMS + "completed-upload"

INCONSISTENT_LENGTH = _PROBLEMS + "inconsistent-upload-length"


@dataclass(frozen=True, slots=True)
class InteropVersion:
    """What one interop version of the draft defines (a row of the table)."""

    number: int
    #: The published drafts that use this interop version.
    drafts: str
    #: ``Upload-Incomplete`` (interop 3) or ``Upload-Complete``.
    complete_field: str
    #: True when ``?1`` means *incomplete* (``Upload-Incomplete``).
    inverted: bool
    #: The media type an append must carry; None = not checked.
    append_media_type: str | None
    #: ``Upload-Length`` is defined (request and HEAD response).
    upload_length: bool
    #: ``Upload-Limit`` is defined (104, creation/append/HEAD responses).
    upload_limit: bool
    #: The ``Upload-Limit`` key of the remaining lifetime (``expires`` / ``max-age``).
    lifetime_key: str | None
    #: OPTIONS announces ``Upload-Limit``.
    options_limits: bool
    #: OPTIONS announces ``Accept-Patch: application/partial-upload``.
    accept_patch: bool
    #: Problem types defined; empty = errors are tusd's plain text.
    problem_types: frozenset[str]
    #: HEAD and DELETE carrying ``Upload-Offset``/the completion field/``Upload-Length`` get 400.
    state_fields_forbidden: bool
    #: An append must carry the completion field (else: absent = not complete).
    complete_required: bool
    #: Error answers to creation/append requests say "not complete".
    errors_say_incomplete: bool
    #: GET of an upload resource carries the offset-retrieval headers.
    get_reports_state: bool

    @property
    def problem_details(self) -> bool:
        return bool(self.problem_types)

    def state_fields(self) -> tuple[str, ...]:
        names = ("Upload-Offset", self.complete_field)
        return (*names, "Upload-Length") if self.upload_length else names

    def read_complete(self, headers: Headers) -> bool | None:
        """Whether the request completes the upload; None if the field is absent or invalid."""
        if headers.count(self.complete_field) != 1:
            return None
        value = parse_sf_boolean(headers.get(self.complete_field))
        if value is None:
            return None
        return not value if self.inverted else value

    def complete_header(self, complete: bool) -> tuple[str, str]:
        flag = complete != self.inverted
        return (self.complete_field, "?1" if flag else "?0")


_OLD: dict[str, object] = {
    "append_media_type": None,
    "upload_length": False,
    "upload_limit": False,
    "lifetime_key": None,
    "options_limits": False,
    "accept_patch": False,
    "problem_types": frozenset(),
    "state_fields_forbidden": True,
    "complete_required": False,
    "errors_say_incomplete": False,
    "get_reports_state": False,
}


def _row(number: int, drafts: str, **changes: object) -> InteropVersion:
    fields: dict[str, object] = {
        **_OLD,
        "complete_field": "Upload-Complete",
        "inverted": False,
        **changes,
    }
    return InteropVersion(number, drafts, **fields)  # type: ignore[arg-type]


_V6: dict[str, object] = {
    "append_media_type": PARTIAL_UPLOAD,
    "upload_length": True,
    "upload_limit": True,
    "lifetime_key": "expires",
    "options_limits": True,
    "problem_types": frozenset({MISMATCHING_OFFSET, COMPLETED_UPLOAD}),
}

_V7: dict[str, object] = {
    **_V6,
    "lifetime_key": "max-age",
    "problem_types": frozenset({MISMATCHING_OFFSET, COMPLETED_UPLOAD, INCONSISTENT_LENGTH}),
    "state_fields_forbidden": False,
    "complete_required": True,
    "errors_say_incomplete": True,
}


#: The supported interop versions, by number.
VERSIONS: dict[int, InteropVersion] = {
    row.number: row
    for row in (
        _row(3, "-01", complete_field="Upload-Incomplete", inverted=True),
        _row(4, "-02"),
        _row(5, "-03"),
        _row(6, "-04, -05", **_V6),
        _row(7, "-06, -07, -08", **_V7),
        _row(8, "-09, -10, -11", **_V7, accept_patch=True),
        _row(
            9,
            "editors' copy after -11",
            **{
                **_V7,
                "problem_types": frozenset({MISMATCHING_OFFSET, INCONSISTENT_LENGTH}),
                "get_reports_state": True,
            },
        ),
    )
}


# --- Structured field values (RFC 9651), the parts the draft uses ------------------

_SF_INTEGER = re.compile(r"[0-9]{1,15}")


def _bare_item(value: str | None) -> str | None:
    """The bare item of an Item field, parameters dropped; None if absent/a list."""
    if value is None:
        return None
    text = value.strip(" \t")
    if "," in text:
        return None
    return text.split(";", 1)[0]


def parse_sf_boolean(value: str | None) -> bool | None:
    item = _bare_item(value)
    if item == "?1":
        return True
    if item == "?0":
        return False
    return None


def parse_sf_uint(value: str | None) -> int | None:
    """A non-negative sf-integer (at most 15 digits), else None."""
    item = _bare_item(value)
    if item is None or not _SF_INTEGER.fullmatch(item):
        return None
    return int(item)


# --- Which version a request speaks -----------------------------------------------


def detect(headers: Headers, *, enabled: bool) -> InteropVersion | None:
    """The interop version a request speaks, None for tus 1.0.0 (or when disabled)."""
    if not enabled:
        return None
    number = parse_sf_uint(headers.get("upload-draft-interop-version"))
    if number is None:
        return None
    return VERSIONS.get(number)
