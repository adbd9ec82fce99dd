"""What every tus test speaks: the request headers, tusd's `.info` document layout, and the
file locker's owner file that may sit in an upload directory."""

from __future__ import annotations

import re

from tusd_trio._process import pid_alive

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


#: The file locker's per-process owner file (every lock file is a hard link to it).
OWNER_FILE_RE = re.compile(r"^\.owner\.lock\.(\d+)\.\d+\.tmp$")


def is_live_owner_file(name: str) -> bool:
    """Whether ``name`` is the owner file of a file locker whose process still runs."""
    match = OWNER_FILE_RE.match(name)
    return match is not None and pid_alive(int(match.group(1)))
