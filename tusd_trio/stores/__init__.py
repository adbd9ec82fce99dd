"""Stores: ``memory`` (tests, embedding) and ``file`` (tusd's on-disk layout); S3, GCS and
Azure in their subpackages.  Everything is imported from the module it lives in
(:mod:`.base`, :mod:`.file`, :mod:`.memory`, :mod:`.config`, ...): this package imports
nothing, so reading the settings (:mod:`.config`) does not load Trio and the stores."""
