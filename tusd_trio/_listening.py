"""What the daemon and the ``-workers`` parent process share about listening.

The parent binds the socket and prints the start-up lines for its workers, so these
live outside :mod:`tusd_trio.server`: the parent serves no request and does not load
the server (Trio, the HTTP stacks, the stores) to bind a socket.
"""

from __future__ import annotations

import errno
import os
import stat

#: The start-up line naming the operator listener (the daemon's, or the worker parent's).
LISTENING_MESSAGE = "Serving metrics and health at http://%s without credentials"


def tls_enabled(certificate: str, key: str) -> bool:
    """HTTPS is used only if both a certificate and a key are set (as in tusd)."""
    return bool(certificate) and bool(key)


def remove_stale_socket(path: str) -> None:
    """Remove a UNIX socket file left by an earlier run; refuse any other file."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(errno.EEXIST, f"{path} exists and is not a socket")
    os.unlink(path)
