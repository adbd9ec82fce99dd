"""Where to cut an upload into S3 multipart parts (pure; no I/O).

S3 stores an unfinished upload as a multipart upload: numbered parts of at least
``min_part_size`` bytes (except the last), at most ``max_part_size`` bytes and at
most ``max_parts`` of them.  Bytes that do not fill a part yet wait between two
PATCH requests in a side object (``<id>.part``).  This module decides, from what
is already stored and what is buffered, whether to upload a part of N bytes now,
to keep buffering, or (at the end of a request body) to keep the bytes as the
``.part`` object.

The planner is stateless: everything it needs is what ``ListParts`` and the
``.part`` object tell after a restart (bytes and count of the stored parts, the
size of the first part, the buffered bytes), so a resumed upload is planned
exactly like one that never stopped.

Promise (checked with hypothesis in ``tests/protocol/test_parts.py``): for any
sequence of request bodies of any sizes, with or without a declared size, an
upload never needs more than ``max_parts`` parts to reach its declared size
(known length) or the largest object the limits allow (deferred length); every
part but the last is between ``min_part_size`` and ``max_part_size`` bytes; in
equal-parts mode every part but the last has the same size.

Part size, known length: ``max(preferred, ceil(remaining / parts_left))``, which
for a fresh upload is tusd's ``calcOptimalPartSize``.  Deferred length: the
preferred size while the average size that the parts left would need to reach
the largest allowed object stays below half-way between the preferred and the
maximum part size; then ``2 * average - max_part_size`` (a smooth growth that
always keeps the rest reachable), so small streamed uploads keep small, cheap
parts.  With AWS defaults the growth starts after about 8,100 parts (~400 GiB).
Equal-parts mode needs one
size for the whole upload: the first stored part's size, else the known-length
size, else (deferred) ``max(preferred, ceil(max_object / max_parts))``.

At the end of a request body, the bytes left over become a short part when they
are at least ``min_part_size`` and cutting them does not make the following
parts grow (not in equal-parts mode); otherwise they are kept as ``.part``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

MiB = 1024 * 1024
GiB = 1024 * MiB
TiB = 1024 * GiB


class PartPlanError(ValueError):
    """The upload cannot be stored within the limits (too large, or corrupt state)."""


@dataclass(frozen=True, slots=True)
class PartLimits:
    """The limits of one S3-compatible service (defaults: AWS S3)."""

    preferred_part_size: int = 50 * MiB
    min_part_size: int = 5 * MiB
    max_part_size: int = 5 * GiB
    max_parts: int = 10_000
    max_object_size: int = 5 * TiB
    #: Every part but the last has the same size (Cloudflare R2).
    equal_parts: bool = False

    def __post_init__(self) -> None:
        if self.min_part_size < 1:
            raise PartPlanError("the minimum part size must be at least 1 byte")
        if self.max_part_size < self.min_part_size:
            raise PartPlanError("the maximum part size is below the minimum part size")
        if not self.min_part_size <= self.preferred_part_size <= self.max_part_size:
            raise PartPlanError("the part size must lie between the minimum and maximum part size")
        if self.max_parts < 1:
            raise PartPlanError("at least one part must be allowed")
        if self.max_object_size < 0:
            raise PartPlanError("the maximum object size cannot be negative")

    @property
    def largest_upload(self) -> int:
        """The largest upload these limits can store."""
        return min(self.max_object_size, self.max_parts * self.max_part_size)


class Action(enum.Enum):
    #: Upload the first ``size`` buffered bytes as the next part.
    PART = "part"
    #: End of the body: keep the ``size`` buffered bytes as the ``.part`` object.
    KEEP = "keep"
    #: Nothing to do until more bytes arrive.
    WAIT = "wait"


@dataclass(frozen=True, slots=True)
class Step:
    action: Action
    size: int


@dataclass(frozen=True, slots=True)
class PartState:
    """What is stored of one upload, as S3 reports it.

    ``buffered`` counts every byte not yet in a part: the ``.part`` object's
    bytes (which come first) and the new bytes received so far.
    """

    #: Declared upload size; ``None`` while the length is deferred.
    size: int | None
    #: Bytes in the stored (or already cut) parts.
    done_bytes: int = 0
    #: Number of stored (or already cut) parts.
    done_parts: int = 0
    #: Size of part number 1 (0 without parts); fixes the size in equal-parts mode.
    first_part_size: int = 0
    buffered: int = 0


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def check_size(limits: PartLimits, size: int | None) -> None:
    """Raise :class:`PartPlanError` when a new upload of ``size`` cannot be stored."""
    if size is None:
        return
    if size < 0:
        raise PartPlanError("the upload size cannot be negative")
    if size > limits.max_object_size:
        raise PartPlanError(
            f"an upload of {size} bytes exceeds the maximum object size of "
            f"{limits.max_object_size} bytes"
        )
    if size > limits.max_parts * limits.max_part_size:
        raise PartPlanError(
            f"an upload of {size} bytes does not fit into {limits.max_parts} parts of at most "
            f"{limits.max_part_size} bytes"
        )


def optimal_part_size(limits: PartLimits, size: int) -> int:
    """The part size of a new upload of known ``size`` (tusd's calcOptimalPartSize)."""
    check_size(limits, size)
    return max(limits.preferred_part_size, _ceil_div(size, limits.max_parts))


def part_size(limits: PartLimits, state: PartState) -> int:
    """The size of the next full part of an upload in ``state``.

    Raises :class:`PartPlanError` when the rest of the upload cannot fit into the
    parts left (a corrupt or foreign state, or an upload grown past the limits).
    """
    parts_left = limits.max_parts - state.done_parts
    target = state.size if state.size is not None else limits.largest_upload
    remaining = target - state.done_bytes
    if remaining < 0 or state.done_parts < 0:
        raise PartPlanError("the stored parts hold more than the upload's size")
    if remaining == 0:
        # Nothing more can be written; any size will do for the bookkeeping.
        return limits.preferred_part_size
    if parts_left < 1:
        raise PartPlanError(f"all {limits.max_parts} parts are used up")
    if limits.equal_parts:
        if state.done_parts:
            chosen = state.first_part_size
            if chosen < limits.min_part_size:
                raise PartPlanError("the first stored part is smaller than the minimum part size")
        elif state.size is not None:
            chosen = max(limits.preferred_part_size, _ceil_div(state.size, limits.max_parts))
        else:
            chosen = max(
                limits.preferred_part_size, _ceil_div(limits.largest_upload, limits.max_parts)
            )
        reach = parts_left * chosen
    elif state.size is not None:
        chosen = max(limits.preferred_part_size, _ceil_div(remaining, parts_left))
        reach = parts_left * chosen
    else:
        # Grow smoothly once the average part still needed passes half-way between
        # the preferred and the maximum size, and always enough to stay reachable.
        chosen = max(
            limits.preferred_part_size,
            _ceil_div(2 * remaining, parts_left) - limits.max_part_size,
            remaining - (parts_left - 1) * limits.max_part_size,
        )
        reach = parts_left * limits.max_part_size
    if chosen > limits.max_part_size or reach < remaining:
        raise PartPlanError(
            f"the remaining {remaining} bytes do not fit into the {parts_left} parts left"
        )
    return chosen


def next_step(limits: PartLimits, state: PartState, *, end_of_body: bool) -> Step:
    """What to do with the ``state.buffered`` bytes now.

    Call it again after each ``PART`` (with the part counted as done and removed
    from ``buffered``) until it answers ``WAIT`` (more data needed) or, with
    ``end_of_body``, ``KEEP`` (store the rest as ``.part``; ``size`` may be 0).
    """
    buffered = state.buffered
    target = state.size if state.size is not None else limits.largest_upload
    remaining = target - state.done_bytes
    if buffered < 0:
        raise PartPlanError("negative buffer")
    if buffered > remaining:
        raise PartPlanError(
            f"{buffered} bytes do not fit: the upload can take only {max(remaining, 0)} more"
        )
    if buffered == 0:
        return Step(Action.KEEP if end_of_body else Action.WAIT, 0)
    size = part_size(limits, state)
    if buffered >= size:
        return Step(Action.PART, size)
    if state.size is not None and buffered == remaining:
        return Step(Action.PART, buffered)  # the last part may be small
    if not end_of_body:
        return Step(Action.WAIT, 0)
    if (
        not limits.equal_parts
        and buffered >= limits.min_part_size
        and limits.max_parts - state.done_parts >= 2
    ):
        after = PartState(
            size=state.size,
            done_bytes=state.done_bytes + buffered,
            done_parts=state.done_parts + 1,
            first_part_size=state.first_part_size or buffered,
        )
        try:
            grows = part_size(limits, after) > size
        except PartPlanError:
            grows = True
        if not grows:
            return Step(Action.PART, buffered)
    return Step(Action.KEEP, buffered)


def finishing_parts(limits: PartLimits, state: PartState) -> int:
    """Parts to upload when completing: the ``.part`` bytes (``state.buffered``)
    become the last part, and an empty upload needs one empty part.  Raises when
    no part number is left (a state the planner never produces)."""
    needed = 1 if state.buffered or not state.done_parts else 0
    if needed and state.done_parts >= limits.max_parts:
        raise PartPlanError(f"all {limits.max_parts} parts are used up")
    if state.buffered > limits.max_part_size:
        raise PartPlanError("the leftover is larger than the maximum part size")
    return needed
