"""The ``tusd-trio`` entry point: subcommands, worker processes, and the server run
until SIGINT/SIGTERM (a second signal exits at once)."""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence

import trio

from .._logging import setup_logging
from .._version import __version__
from .._workers import run_workers, setup_worker, worker_config
from ..auth import main_hash_key, main_sign
from ..config import Config, ConfigError
from ..server import Server
from ..stores.factory import StoreConfigError, store_description
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
    try:
        trio.run(_run, config)
    except (OSError, BaseExceptionGroup) as exc:
        failure = _find_os_error(exc)
        if failure is None:
            raise
        where = (
            f"-unix-sock {config.unix_sock}"
            if config.unix_sock
            else f"-host {config.host} -port {config.port}"
        )
        sys.stderr.write(f"tusd-trio: cannot listen on {where}: {failure}\n")
        return 1
    except StoreConfigError as exc:
        sys.stderr.write(f"tusd-trio: cannot use the configured store: {exc}\n")
        return 1
    except ConfigError as exc:  # settings found unusable while starting (TLS files, ...)
        sys.stderr.write(f"tusd-trio: {exc}\n")
        return 1
    except KeyboardInterrupt:  # pragma: no cover - signals are handled in _run
        return 130
    return 0


def _find_os_error(exc: BaseException) -> OSError | None:
    """The OSError (binding a socket, ...) inside what trio.run raised, if any."""
    if isinstance(exc, OSError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _find_os_error(inner)
            if found is not None:
                return found
    return None


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


async def _run(config: Config, *, on_started: Callable[[object], None] | None = None) -> None:
    server = Server(config)
    async with trio.open_nursery() as nursery:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:

            async def watch_signals() -> None:
                count = 0
                async for _signum in signals:
                    count += 1
                    if count == 1:
                        server.request_shutdown()
                    else:
                        log.warning("Second signal received: exiting at once.")
                        os._exit(1)

            nursery.start_soon(watch_signals)
            await nursery.start(server.serve)
            if on_started is not None:
                on_started(server)
            await server.wait_stopped()
            nursery.cancel_scope.cancel()
