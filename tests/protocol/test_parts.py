"""The S3 part planner: its promise, proven with hypothesis on scaled-down limits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypedDict

import pytest
from hypothesis import assume, example, given, note, settings, strategies as st

from tusd_trio.protocol.parts import (
    Action,
    GiB,
    MiB,
    PartLimits,
    PartPlanError,
    PartState,
    TiB,
    check_size,
    finishing_parts,
    next_step,
    optimal_part_size,
    part_size,
)


@dataclass
class Upload:
    """A simulated S3 upload: what ListParts and the .part object would say."""

    limits: PartLimits
    size: int | None
    parts: list[int] = field(default_factory=list)
    leftover: int = 0  # the .part object

    def state(self, buffered: int) -> PartState:
        return PartState(
            size=self.size,
            done_bytes=sum(self.parts),
            done_parts=len(self.parts),
            first_part_size=self.parts[0] if self.parts else 0,
            buffered=buffered,
        )

    def patch(self, chunks: list[int]) -> None:
        """One request body: the .part first, then the chunks; then the end of the body."""
        buffered = self.leftover
        for chunk in chunks:
            buffered += chunk
            buffered = self._drain(buffered, end_of_body=False)
        self.leftover = self._drain(buffered, end_of_body=True)

    def _drain(self, buffered: int, *, end_of_body: bool) -> int:
        while True:
            step = next_step(self.limits, self.state(buffered), end_of_body=end_of_body)
            if step.action is Action.PART:
                assert 0 < step.size <= buffered
                self.parts.append(step.size)
                buffered -= step.size
                assert len(self.parts) <= self.limits.max_parts
                continue
            if step.action is Action.KEEP:
                assert end_of_body and step.size == buffered
            else:
                assert not end_of_body and step.size == 0
            return buffered

    def finish(self) -> None:
        extra = finishing_parts(self.limits, self.state(self.leftover))
        if extra:
            self.parts.append(self.leftover)
            self.leftover = 0


@st.composite
def limits_strategy(draw: st.DrawFn) -> PartLimits:
    minimum = draw(st.integers(1, 4))
    preferred = draw(st.integers(minimum, 3 * minimum))
    maximum = draw(st.integers(preferred, 3 * preferred))
    max_parts = draw(st.integers(1, 8))
    max_object = draw(st.integers(0, max_parts * maximum + 20))
    return PartLimits(
        preferred_part_size=preferred,
        min_part_size=minimum,
        max_part_size=maximum,
        max_parts=max_parts,
        max_object_size=max_object,
        equal_parts=draw(st.booleans()),
    )


def _check_parts(limits: PartLimits, parts: list[int]) -> None:
    assert len(parts) <= limits.max_parts
    for part in parts[:-1]:
        assert limits.min_part_size <= part <= limits.max_part_size
    if parts:
        assert parts[-1] <= limits.max_part_size
    if limits.equal_parts and len(parts) > 2:
        assert len(set(parts[:-1])) == 1


@settings(max_examples=400)
@given(data=st.data(), limits=limits_strategy(), deferred=st.booleans(), full=st.booleans())
def test_any_mix_of_patches_stays_within_the_limits(
    data: st.DataObject, limits: PartLimits, deferred: bool, full: bool
) -> None:
    largest = limits.largest_upload
    total = largest if full else data.draw(st.integers(0, largest), label="total")
    upload = Upload(limits, None if deferred else total)
    # Deferred: the length is declared after some PATCH (or only at the end).
    declare_after = data.draw(st.integers(0, 12), label="declare_after") if deferred else -1
    sent = 0
    patches = 0
    while sent < total:
        count = data.draw(st.integers(0, 4), label="chunks")
        chunks = []
        for _ in range(count):
            if sent >= total:
                break
            # Many 1-byte chunks, and some as large as several parts.
            chunk = data.draw(
                st.one_of(st.just(1), st.integers(1, min(total - sent, 3 * limits.max_part_size)))
            )
            chunks.append(chunk)
            sent += chunk
        upload.patch(chunks)
        patches += 1
        if patches == declare_after:
            upload.size = total
        _check_parts(limits, upload.parts)
        assert sum(upload.parts) + upload.leftover == sent
    upload.patch([])  # an empty PATCH changes nothing
    upload.size = total
    upload.patch([])  # declaring the length may turn the .part into the last part
    note(f"parts={upload.parts} leftover={upload.leftover}")
    upload.finish()
    assert upload.leftover == 0
    assert sum(upload.parts) == total
    assert len(upload.parts) >= 1
    _check_parts(limits, upload.parts)


@given(limits=limits_strategy(), data=st.data())
def test_known_size_uses_tusds_optimal_part_size(limits: PartLimits, data: st.DataObject) -> None:
    size = data.draw(st.integers(1, limits.largest_upload or 1))
    assume(size <= limits.largest_upload)
    expected = max(limits.preferred_part_size, -(-size // limits.max_parts))
    assert optimal_part_size(limits, size) == expected
    assert part_size(limits, PartState(size=size)) == expected


@given(limits=limits_strategy(), data=st.data())
def test_resumed_upload_keeps_its_part_size(limits: PartLimits, data: st.DataObject) -> None:
    """After a restart only the stored parts are known: full parts of the optimal
    size lead to the same size again."""
    size = data.draw(st.integers(0, limits.largest_upload))
    optimal = optimal_part_size(limits, size)
    stored = data.draw(st.integers(0, size // optimal))
    state = PartState(
        size=size,
        done_bytes=stored * optimal,
        done_parts=stored,
        first_part_size=optimal if stored else 0,
    )
    if stored * optimal < size:
        # It never grows; with equal parts it must stay exactly the same.
        if limits.equal_parts:
            assert part_size(limits, state) == optimal
        else:
            assert limits.preferred_part_size <= part_size(limits, state) <= optimal


def test_aws_defaults() -> None:
    limits = PartLimits()
    assert optimal_part_size(limits, 0) == 50 * MiB
    assert optimal_part_size(limits, 10_000 * 50 * MiB) == 50 * MiB
    assert optimal_part_size(limits, 10_000 * 50 * MiB + 1) == 50 * MiB + 1
    assert optimal_part_size(limits, 5 * TiB) == -(-5 * TiB // 10_000)
    check_size(limits, None)
    with pytest.raises(PartPlanError, match="maximum object size"):
        check_size(limits, 5 * TiB + 1)
    # A deferred upload starts with the preferred size, far below 5 TiB / 10,000.
    assert part_size(limits, PartState(size=None)) == 50 * MiB
    # ... and grows only when the parts left could not reach 5 TiB otherwise.
    late = PartState(size=None, done_bytes=9_000 * 50 * MiB, done_parts=9_000)
    assert part_size(limits, late) > 50 * MiB
    # Equal parts (R2) with a deferred length: one size that reaches 5 TiB.
    equal = PartLimits(equal_parts=True)
    assert part_size(equal, PartState(size=None)) == -(-5 * TiB // 10_000)
    assert part_size(equal, PartState(size=10 * MiB)) == 50 * MiB


def test_few_parts_store_like_scaleway() -> None:
    limits = PartLimits(max_parts=1_000)
    assert optimal_part_size(limits, 100 * GiB) == -(-100 * GiB // 1_000)
    with pytest.raises(PartPlanError, match="does not fit"):
        check_size(PartLimits(max_parts=3, max_object_size=5 * TiB), 15 * GiB + 1)


class LimitFields(TypedDict, total=False):
    """The size fields of :class:`PartLimits`, for the invalid cases below."""

    preferred_part_size: int
    min_part_size: int
    max_part_size: int
    max_parts: int
    max_object_size: int


@pytest.mark.parametrize(
    "fields",
    [
        {"min_part_size": 0},
        {"min_part_size": 10, "max_part_size": 5, "preferred_part_size": 5},
        {"min_part_size": 10, "preferred_part_size": 5},
        {"preferred_part_size": 6 * GiB},
        {"max_parts": 0},
        {"max_object_size": -1},
    ],
)
def test_invalid_limits(fields: LimitFields) -> None:
    with pytest.raises(PartPlanError):
        PartLimits(**fields)


def test_errors_for_impossible_states() -> None:
    limits = PartLimits(
        preferred_part_size=10, min_part_size=5, max_part_size=20, max_parts=3, max_object_size=60
    )
    with pytest.raises(PartPlanError, match="negative"):
        check_size(limits, -1)
    with pytest.raises(PartPlanError, match="more than"):
        part_size(limits, PartState(size=10, done_bytes=11, done_parts=1))
    with pytest.raises(PartPlanError, match="used up"):
        part_size(limits, PartState(size=50, done_bytes=30, done_parts=3))
    with pytest.raises(PartPlanError, match="do not fit"):
        part_size(limits, PartState(size=60, done_bytes=5, done_parts=2))
    # A full upload needs no more parts: any size will do.
    assert part_size(limits, PartState(size=30, done_bytes=30, done_parts=3)) == 10
    with pytest.raises(PartPlanError, match="negative"):
        next_step(limits, PartState(size=10, buffered=-1), end_of_body=False)
    with pytest.raises(PartPlanError, match="can take only 3"):
        next_step(
            limits, PartState(size=10, done_bytes=7, done_parts=1, buffered=4), end_of_body=False
        )
    equal = PartLimits(
        preferred_part_size=10,
        min_part_size=5,
        max_part_size=20,
        max_parts=3,
        max_object_size=60,
        equal_parts=True,
    )
    with pytest.raises(PartPlanError, match="first stored part"):
        part_size(equal, PartState(size=30, done_bytes=4, done_parts=1, first_part_size=4))
    with pytest.raises(PartPlanError, match="used up"):
        finishing_parts(limits, PartState(size=31, done_bytes=30, done_parts=3, buffered=1))
    with pytest.raises(PartPlanError, match="larger than"):
        finishing_parts(limits, PartState(size=30, done_bytes=0, done_parts=0, buffered=30))
    assert finishing_parts(limits, PartState(size=0)) == 1
    assert finishing_parts(limits, PartState(size=10, done_bytes=10, done_parts=1)) == 0


def test_end_of_body_short_part_or_leftover() -> None:
    limits = PartLimits(
        preferred_part_size=10, min_part_size=5, max_part_size=20, max_parts=10, max_object_size=200
    )
    # Enough parts left: a short part of >= min is cut instead of a .part.
    step = next_step(limits, PartState(size=50, buffered=6), end_of_body=True)
    assert (step.action, step.size) == (Action.PART, 6)
    # Below the minimum: kept.
    step = next_step(limits, PartState(size=100, buffered=4), end_of_body=True)
    assert (step.action, step.size) == (Action.KEEP, 4)
    # A tight budget (10 parts of 10 bytes for 100 bytes): a short part would make
    # the later parts grow, so the bytes are kept instead.
    step = next_step(limits, PartState(size=100, buffered=6), end_of_body=False)
    assert step.action is Action.WAIT
    tight = PartLimits(
        preferred_part_size=10, min_part_size=5, max_part_size=10, max_parts=10, max_object_size=200
    )
    step = next_step(tight, PartState(size=100, buffered=6), end_of_body=True)
    assert (step.action, step.size) == (Action.KEEP, 6)
    # The last part of a known-size upload may be small, even mid-body.
    step = next_step(limits, PartState(size=3, buffered=3), end_of_body=False)
    assert (step.action, step.size) == (Action.PART, 3)


@example(total=0)
@given(total=st.integers(0, 40))
def test_one_byte_patches(total: int) -> None:
    limits = PartLimits(
        preferred_part_size=4, min_part_size=2, max_part_size=8, max_parts=3, max_object_size=40
    )
    for size in (total if total <= 24 else None, None):
        upload = Upload(limits, size)
        for _ in range(min(total, 24)):
            upload.patch([1])
        upload.size = min(total, 24)
        upload.patch([])
        upload.finish()
        assert sum(upload.parts) == min(total, 24)
        _check_parts(limits, upload.parts)
