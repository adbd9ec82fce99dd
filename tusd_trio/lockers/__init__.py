"""Lockers: ``memory`` (one process), ``file`` (processes on one host) and ``redis``.
Everything is imported from the module it lives in (:mod:`.base`, :mod:`.file`,
:mod:`.memory`, :mod:`.config`, ...): this package imports nothing, so reading the
settings does not load Trio and the lockers."""
