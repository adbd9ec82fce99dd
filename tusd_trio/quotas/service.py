"""Per-principal quotas as the request handler uses them: :class:`Quotas`.

Every step that changes what a principal holds goes through here, before any byte
moves: a creation reserves its upload (its length and one unfinished upload), a
body of a deferred-length upload is granted bytes before it is read, a declared
length reserves the rest, finishing frees the unfinished-upload slot, termination
and expiry free everything the upload held (:func:`~.policy.charge_of`).

A principal is known by its owner id (``Principal.owner_id``, the value access
control records in the upload's metadata), so releasing needs no principal: the
upload names its owner.  Uploads without an owner (created while access control
was off) are not counted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import trio

from ..auth import OWNER_METADATA_KEY, Principal
from ..lockers.base import Locker
from ..protocol.errors import (
    LockerUnavailableError,
    QuotaExceededError,
    TusError,
    UploadsQuotaExceededError,
)
from ..protocol.info import UploadInfo
from ..stores.base import Store
from .ledger import MemoryLedger, QuotaLedger
from .policy import (
    QUOTA_HEADER,
    Charge,
    QuotaConfig,
    QuotaLimits,
    QuotaUsage,
    charge_of,
    exceeds_bytes,
    header_value,
    limits_for,
    refusal,
    size_refusal,
)

log = logging.getLogger("tusd_trio")


def build_ledger(locker: Locker) -> QuotaLedger:
    """The ledger that lives with ``locker``'s locks: Redis with the Redis locker
    (shared by every instance), else this process's memory."""
    if locker.name == "redislocker":
        # coredis is optional: imported only with the Redis locker.
        from ..lockers.redis import RedisLocker
        from .redis_ledger import RedisLedger

        if isinstance(locker, RedisLocker):
            return RedisLedger(locker)
    return MemoryLedger()


@dataclass(frozen=True)
class Reservation:
    """What a creation or a declared length reserved: to give back if the store
    then fails to record it."""

    owner: str
    charge: Charge
    #: The :data:`~.policy.QUOTA_HEADER` field of the creation's answer.
    header: tuple[str, str]


@dataclass(frozen=True)
class BodyGrant:
    """Bytes reserved for one body of a deferred-length upload."""

    owner: str
    #: Bytes the body may bring (``None``: no byte limit applies).
    limit: int | None
    #: Bytes reserved before the body was read (the unused rest is given back).
    reserved: int
    #: The error for a body that goes past ``limit``.
    error: QuotaExceededError


def _owner(info: UploadInfo) -> str | None:
    return info.metadata.get(OWNER_METADATA_KEY) or None


class Quotas:
    """The quota checks and counts of one server; inert unless ``config.enabled``."""

    def __init__(self, config: QuotaConfig, ledger: QuotaLedger | None) -> None:
        self.config = config
        self.ledger = ledger if config.enabled else None

    @property
    def enabled(self) -> bool:
        return self.ledger is not None

    def limits(self, principal: Principal | None, owner: str | None = None) -> QuotaLimits:
        """``principal``'s limits; for an upload of another ``owner`` (an admin writing
        to it), the defaults: that owner's claims are not known here."""
        if principal is None or (owner is not None and principal.owner_id != owner):
            return limits_for(self.config, {})
        return limits_for(self.config, principal.quota)

    def _refused(self, limits: QuotaLimits, usage: QuotaUsage, charge: Charge) -> TusError:
        reason = refusal(limits, usage, charge) or "quota exceeded"
        state = header_value(limits, usage)
        if exceeds_bytes(limits, usage, charge):
            return QuotaExceededError(reason, quota_state=state)
        return UploadsQuotaExceededError(reason, quota_state=state)

    # --- creation ---------------------------------------------------------------------

    async def reserve_creation(
        self, principal: Principal | None, info: UploadInfo
    ) -> Reservation | None:
        """Reserve a new upload for its owner; returns what was reserved (for
        :meth:`refund` if the creation fails), ``None`` when nothing is counted.
        Raises 413 ``ERR_QUOTA_EXCEEDED`` / 403 ``ERR_QUOTA_UPLOADS_EXCEEDED``."""
        owner = _owner(info)
        if self.ledger is None or principal is None or owner is None:
            return None
        limits = self.limits(principal)
        if not info.size_is_deferred:
            too_big = size_refusal(limits, info.size)
            if too_big is not None:
                usage = await self.ledger.usage(owner)
                raise QuotaExceededError(too_big, quota_state=header_value(limits, usage))
        charge = charge_of(info)
        accepted, usage = await self.ledger.reserve(owner, limits, charge)
        if not accepted:
            raise self._refused(limits, usage, charge)
        return Reservation(owner, charge, (QUOTA_HEADER, header_value(limits, usage)))

    async def refund(self, reservation: Reservation) -> None:
        """Give back a reservation the store did not record (creation, declared length)."""
        await self._release(reservation.owner, reservation.charge)

    # --- bodies and declared lengths ----------------------------------------------------

    async def reserve_declared(
        self, principal: Principal | None, info: UploadInfo, length: int
    ) -> Reservation | None:
        """A deferred-length upload declares ``length``: reserve what its received
        bytes do not cover yet (its max size checked too); returns what was reserved
        (for :meth:`refund`), ``None`` when nothing is counted."""
        owner = _owner(info)
        if self.ledger is None or owner is None or not info.size_is_deferred:
            return None
        limits = self.limits(principal, owner)
        too_big = size_refusal(limits, length)
        if too_big is not None:
            raise QuotaExceededError(
                too_big, quota_state=header_value(limits, await self.ledger.usage(owner))
            )
        charge = Charge(bytes=max(0, length - info.offset))
        accepted, usage = await self.ledger.reserve(owner, limits, charge)
        if not accepted:
            raise self._refused(limits, usage, charge)
        return Reservation(owner, charge, (QUOTA_HEADER, header_value(limits, usage)))

    async def grant_body(
        self, principal: Principal | None, info: UploadInfo, want: int | None
    ) -> BodyGrant | None:
        """Before a body of a deferred-length upload is read: reserve the bytes it may
        bring (``want``: its Content-Length, ``None`` if unknown: then all that is
        left).  ``None`` when the upload is not counted or its length is known."""
        owner = _owner(info)
        if self.ledger is None or owner is None or not info.size_is_deferred:
            return None
        limits = self.limits(principal, owner)
        ask = want
        size_room: int | None = None
        if limits.max_size is not None:
            size_room = max(0, limits.max_size - info.offset)
            ask = size_room if ask is None else min(ask, size_room)
        if limits.bytes is None:
            # Nothing to run out of but the size: the bytes are counted once written.
            granted, reserved, state = ask, 0, None
        else:
            granted, usage = await self.ledger.grant(
                owner, limits, ask if ask is not None else limits.bytes
            )
            reserved, state = granted, header_value(limits, usage)
        if size_room is not None and granted is not None and granted >= size_room:
            reason = f"an upload may hold at most {limits.max_size} bytes"
        else:
            reason = f"the quota of {limits.bytes} bytes is reached"
        return BodyGrant(owner, granted, reserved, QuotaExceededError(reason, quota_state=state))

    async def settle_body(self, grant: BodyGrant, written: int) -> None:
        """After the body: count what was written, give back what was not."""
        assert self.ledger is not None
        written = max(0, written)
        if written > grant.reserved:
            # Only where no byte quota applies (nothing was reserved): count them now.
            extra = Charge(bytes=written - grant.reserved)
            try:
                await self.ledger.reserve(grant.owner, QuotaLimits(), extra)
            except LockerUnavailableError as exc:
                log.warning(
                    "QuotaCountFailed",
                    extra={
                        "tus": {"owner": grant.owner, "bytes": extra.bytes, "error": exc.message}
                    },
                )
        elif grant.reserved > written:
            await self._release(grant.owner, Charge(bytes=grant.reserved - written))

    async def add_final(self, info: UploadInfo) -> None:
        """A final upload of deferred-length partials is concatenated: its bytes are
        counted now, without refusal (the partials' bytes passed the quota already)."""
        owner = _owner(info)
        if self.ledger is not None and owner is not None:
            await self.ledger.reserve(owner, QuotaLimits(), Charge(bytes=info.size))

    # --- the end of an upload -----------------------------------------------------------

    async def finished(self, info: UploadInfo) -> None:
        """An upload is complete: it no longer counts as unfinished."""
        owner = _owner(info)
        if self.ledger is not None and owner is not None:
            await self._release(owner, Charge(uploads=1))

    async def removed(self, info: UploadInfo) -> None:
        """An upload was terminated or expired: free what it held."""
        owner = _owner(info)
        if self.ledger is not None and owner is not None:
            await self._release(owner, charge_of(info))

    async def _release(self, owner: str, charge: Charge) -> None:
        assert self.ledger is not None
        try:
            await self.ledger.release(owner, charge)
        except LockerUnavailableError as exc:
            # The upload's change happened: only the count stays too high (safe side).
            log.warning(
                "QuotaReleaseFailed",
                extra={"tus": {"owner": owner, "bytes": charge.bytes, "error": exc.message}},
            )

    # --- start-up ---------------------------------------------------------------------

    async def rebuild(self, store: Store) -> int:
        """Count every upload of ``store`` into an in-process ledger (at start-up);
        returns how many uploads have an owner.  The Redis ledger keeps its counts."""
        if not isinstance(self.ledger, MemoryLedger):
            return 0
        charges: list[tuple[str, Charge]] = []
        for upload_id in await store.list_ids():
            await trio.lowlevel.checkpoint()  # a store's get need not yield; many uploads
            try:
                info = await store.get(upload_id)
            except TusError:
                continue
            owner = _owner(info)
            if owner is not None:
                charges.append((owner, charge_of(info)))
        self.ledger.rebuild(charges)
        return len(charges)
