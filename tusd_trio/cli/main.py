"""The ``tusd-trio`` entry point: subcommands, flags, worker processes; serving itself is
:mod:`.serve`, imported only by a process that serves (see :func:`main`)."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

from .._logging import setup_logging
from .._version import __version__
from .._workers import run_workers, setup_worker, worker_config
from ..auth import main_hash_key, main_sign
from ..stores.config import store_description
from .build import build_config
from .flags import HelpRequestedError, UsageError, parse_args, usage

log = logging.getLogger("tusd_trio")


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if args and args[0] == "sign":
        return main_sign(args[1:])
    if args and args[0] == "hash-key":
        return main_hash_key(args[1:])
    try:
        values = parse_args(args)
        if values["version"]:
            sys.stdout.write(f"tusd-trio {__version__}\n")
            return 0
        config = build_config(values)
    except HelpRequestedError:
        sys.stdout.write(usage())
        return 0
    except UsageError as exc:
        sys.stderr.write(f"tusd-trio: {exc} (tusd-trio -help lists the flags)\n")
        return 2
    setup_logging(config.log_format, config.verbose)
    _raise_file_limit()
    if config.s3 is None and config.gcs is None and config.azure is None:
        try:
            os.makedirs(config.upload_dir, mode=config.dir_perms, exist_ok=True)
        except OSError as exc:
            sys.stderr.write(f"tusd-trio: cannot create -upload-dir {config.upload_dir!r}: {exc}\n")
            return 1
    if config.show_startup_logs:
        log.info("%s", store_description(config.store_settings()))
        log.info("Using %.2fMB as maximum size.", config.protocol.max_size / 1024 / 1024)
    # --- worker processes (-workers N; see tusd_trio/_workers.py) ---
    worker_fd = os.environ.get("TUSD_TRIO_WORKER_FD")
    if worker_fd is not None:
        # A worker started by the parent: serve on the socket it passed down.
        config = worker_config(config, int(worker_fd))
        if not setup_worker():
            return 1  # the parent is gone already
    elif config.workers > 1:
        return run_workers(config, args)
    # --- end of worker processes ---
    # Only a process that serves loads the server (Trio, the HTTP stacks, the stores):
    # -version, -help and the -workers parent above stay small and start fast.
    from .serve import serve_until_signal

    return serve_until_signal(config)


def _raise_file_limit() -> None:
    """Use as many file descriptors as the hard limit allows (connections, files)."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY:
            hard = 1 << 20
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):  # pragma: no cover - platform limits
        pass
