"""Per-principal quotas (with access control on): bytes held, unfinished uploads at
once, the size of one upload.  :mod:`.policy` decides (pure), :mod:`.ledger` and
:mod:`.redis_ledger` count, :mod:`.service` is what the request handler calls.
Everything is imported from the module it lives in: this package imports nothing, so
reading the settings (:class:`.policy.QuotaConfig`) does not load Trio."""
