"""What every tus test speaks: the request headers, and tusd's `.info` document layout."""

from __future__ import annotations

#: The header every tus 1.0.0 request carries.
TUS = {"Tus-Resumable": "1.0.0"}
#: The headers of a PATCH (or a creation with upload) carrying upload bytes.
OCTET = {**TUS, "Content-Type": "application/offset+octet-stream"}

#: The keys of tusd's `.info` document (and of the ``Upload`` object in hook JSON), in the
#: order tusd writes them.  Written out here from tusd's format, not imported from
#: tusd_trio, so that a change of our layout fails the tests that compare against it.
TUSD_INFO_KEYS = (
    "ID",
    "Size",
    "SizeIsDeferred",
    "Offset",
    "MetaData",
    "IsPartial",
    "IsFinal",
    "PartialUploads",
    "Storage",
)
