"""Per-principal quotas (with access control on): bytes held, unfinished uploads at
once, the size of one upload.  :mod:`.policy` decides (pure), :mod:`.ledger` and
:mod:`.redis_ledger` count, :mod:`.service` is what the request handler calls."""

from .ledger import MemoryLedger, QuotaLedger
from .policy import QUOTA_HEADER, QuotaConfig, QuotaLimits, QuotaUsage
from .service import BodyGrant, Quotas, Reservation, build_ledger

__all__ = [
    "QUOTA_HEADER",
    "BodyGrant",
    "MemoryLedger",
    "QuotaConfig",
    "QuotaLedger",
    "QuotaLimits",
    "QuotaUsage",
    "Quotas",
    "Reservation",
    "build_ledger",
]
