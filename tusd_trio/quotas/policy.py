"""Per-principal quotas, the pure part: limits, usage, what an upload is charged,
and whether a reservation fits.  No I/O; the ledgers (:mod:`.ledger`,
:mod:`.redis_ledger`) apply these rules (the Redis one in a Lua script that mirrors
them), the server asks :mod:`.service`.

What a principal holds:

* ``bytes``: every upload it owns, finished or not, counted at its declared
  ``Upload-Length``; an upload whose length is deferred counts the bytes it has
  received (they are reserved as they arrive); a final upload counts the sum of its
  partials (the concatenation is a copy), once that sum is known;
* ``uploads``: its unfinished uploads.

A limit of ``None`` is no limit (0 in the flags and claims).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..protocol.info import UploadInfo

#: The names of the three limits (flags ``-auth-quota-*``, JWT claims, header keys).
BYTES = "bytes"
UPLOADS = "uploads"
MAX_SIZE = "max_size"

#: The response header that shows a principal its quota state on creation.
QUOTA_HEADER = "Tusd-Trio-Quota"


@dataclass(frozen=True)
class QuotaConfig:
    """The quota settings: off unless ``enabled``; the defaults of every principal."""

    enabled: bool = False
    #: Bytes a principal may hold in its uploads (``-auth-quota-bytes``; 0 = no limit).
    bytes: int = 0
    #: Unfinished uploads a principal may have at once (``-auth-quota-uploads``).
    uploads: int = 0
    #: Largest single upload of a principal (``-auth-quota-max-size``).
    max_size: int = 0


@dataclass(frozen=True)
class QuotaLimits:
    """One principal's limits; ``None`` = no limit."""

    bytes: int | None = None
    uploads: int | None = None
    max_size: int | None = None


@dataclass(frozen=True)
class QuotaUsage:
    """What a principal holds now."""

    bytes: int = 0
    uploads: int = 0


@dataclass(frozen=True)
class Charge:
    """What one upload adds to its owner's usage."""

    bytes: int = 0
    uploads: int = 0

    def __add__(self, other: Charge) -> Charge:
        return Charge(self.bytes + other.bytes, self.uploads + other.uploads)


def _limit(value: int) -> int | None:
    return value if value > 0 else None


def limits_for(config: QuotaConfig, overrides: dict[str, int]) -> QuotaLimits:
    """A principal's limits: the configured defaults, each replaced by an override
    (from its token's claims) when one is given; 0 means no limit in both."""
    return QuotaLimits(
        bytes=_limit(overrides.get(BYTES, config.bytes)),
        uploads=_limit(overrides.get(UPLOADS, config.uploads)),
        max_size=_limit(overrides.get(MAX_SIZE, config.max_size)),
    )


def charge_of(info: UploadInfo) -> Charge:
    """What ``info`` holds of its owner's quota now (the rule the start-up rebuild of
    the in-process ledger uses; every transition in between keeps it true)."""
    size = info.offset if info.size_is_deferred else info.size
    return Charge(bytes=size, uploads=0 if info.is_complete else 1)


def exceeds_bytes(limits: QuotaLimits, usage: QuotaUsage, charge: Charge) -> bool:
    """Whether ``charge`` would take ``usage`` past the byte quota."""
    return (
        limits.bytes is not None and charge.bytes > 0 and usage.bytes + charge.bytes > limits.bytes
    )


def refusal(limits: QuotaLimits, usage: QuotaUsage, charge: Charge) -> str | None:
    """Why adding ``charge`` to ``usage`` would go past ``limits``, or ``None`` if it fits."""
    if exceeds_bytes(limits, usage, charge):
        return (
            f"the quota of {limits.bytes} bytes would be exceeded "
            f"({usage.bytes} held, {charge.bytes} more asked)"
        )
    uploads = usage.uploads + charge.uploads
    if limits.uploads is not None and charge.uploads > 0 and uploads > limits.uploads:
        return f"at most {limits.uploads} unfinished uploads are allowed at once"
    return None


def size_refusal(limits: QuotaLimits, size: int) -> str | None:
    """Why one upload of ``size`` bytes is too big for this principal, or ``None``."""
    if limits.max_size is not None and size > limits.max_size:
        return f"an upload may hold at most {limits.max_size} bytes"
    return None


def grantable(limits: QuotaLimits, usage: QuotaUsage, want: int) -> int:
    """How many of ``want`` more bytes fit in the byte quota (0 when it is full)."""
    if limits.bytes is None:
        return want
    return max(0, min(want, limits.bytes - usage.bytes))


def released(usage: QuotaUsage, charge: Charge) -> QuotaUsage:
    """``usage`` without ``charge``; never below zero (a release for an upload the
    ledger did not count, e.g. one created while quotas were off, frees nothing)."""
    return QuotaUsage(max(0, usage.bytes - charge.bytes), max(0, usage.uploads - charge.uploads))


def header_value(limits: QuotaLimits, usage: QuotaUsage) -> str:
    """The :data:`QUOTA_HEADER` value: a structured-field dictionary of integers;
    a limit that does not apply is left out."""
    items = [f"bytes={usage.bytes}"]
    if limits.bytes is not None:
        items.append(f"bytes-limit={limits.bytes}")
    items.append(f"uploads={usage.uploads}")
    if limits.uploads is not None:
        items.append(f"uploads-limit={limits.uploads}")
    if limits.max_size is not None:
        items.append(f"max-size={limits.max_size}")
    return ", ".join(items)
