"""Where quota usage is counted: the :class:`QuotaLedger` protocol, and the
in-process :class:`MemoryLedger` (the Redis one is :mod:`.redis_ledger`).

A ledger only counts; the limits and the messages come from :mod:`.policy`.  Each
operation is atomic for the ledger's users: the memory ledger does its read and
write without a checkpoint in between (Trio switches tasks only at one), the Redis
ledger in one Lua script.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import trio

from .policy import Charge, QuotaLimits, QuotaUsage, grantable, refusal, released


class QuotaLedger(Protocol):
    """Per-owner usage; ``owner`` is the principal's owner id."""

    #: "memory" (this process; rebuilt from the store at start-up) or "redis".
    kind: str

    async def reserve(
        self, owner: str, limits: QuotaLimits, charge: Charge
    ) -> tuple[bool, QuotaUsage]:
        """Add ``charge`` if it fits ``limits``.  Returns whether it was added, and the
        usage after (or, when refused, as it is)."""
        ...

    async def grant(self, owner: str, limits: QuotaLimits, want: int) -> tuple[int, QuotaUsage]:
        """Reserve as many of ``want`` bytes as fit; returns how many, and the usage."""
        ...

    async def release(self, owner: str, charge: Charge) -> QuotaUsage:
        """Take ``charge`` off (never below zero); returns the usage after."""
        ...

    async def usage(self, owner: str) -> QuotaUsage: ...


class MemoryLedger:
    """Usage in this process's memory: right for one process (the memory and file
    lockers); rebuilt from the store's uploads at start-up (:meth:`rebuild`)."""

    kind = "memory"

    def __init__(self) -> None:
        self._usage: dict[str, QuotaUsage] = {}

    def _set(self, owner: str, usage: QuotaUsage) -> QuotaUsage:
        if usage == QuotaUsage():
            self._usage.pop(owner, None)
        else:
            self._usage[owner] = usage
        return usage

    async def reserve(
        self, owner: str, limits: QuotaLimits, charge: Charge
    ) -> tuple[bool, QuotaUsage]:
        await trio.lowlevel.checkpoint()
        usage = self._usage.get(owner, QuotaUsage())
        if refusal(limits, usage, charge) is not None:
            return False, usage
        return True, self._set(
            owner, QuotaUsage(usage.bytes + charge.bytes, usage.uploads + charge.uploads)
        )

    async def grant(self, owner: str, limits: QuotaLimits, want: int) -> tuple[int, QuotaUsage]:
        await trio.lowlevel.checkpoint()
        usage = self._usage.get(owner, QuotaUsage())
        granted = grantable(limits, usage, want)
        return granted, self._set(owner, QuotaUsage(usage.bytes + granted, usage.uploads))

    async def release(self, owner: str, charge: Charge) -> QuotaUsage:
        await trio.lowlevel.checkpoint()
        return self._set(owner, released(self._usage.get(owner, QuotaUsage()), charge))

    async def usage(self, owner: str) -> QuotaUsage:
        await trio.lowlevel.checkpoint()
        return self._usage.get(owner, QuotaUsage())

    def rebuild(self, charges: Iterable[tuple[str, Charge]]) -> None:
        """Replace every count with the sum of ``charges`` (owner, charge of one upload)."""
        totals: dict[str, Charge] = {}
        for owner, charge in charges:
            totals[owner] = totals.get(owner, Charge()) + charge
        self._usage = {
            owner: QuotaUsage(total.bytes, total.uploads)
            for owner, total in totals.items()
            if total != Charge()
        }
