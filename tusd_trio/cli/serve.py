"""Serving in this process until SIGINT/SIGTERM (a second signal exits at once): the part
of the entry point that needs the server.  :mod:`.main` imports it only when it serves,
so that ``-version``, ``-help`` and the ``-workers`` parent process do not load Trio, the
HTTP stacks and the stores."""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable

import trio

from ..config import Config, ConfigError
from ..server import Server
from ..stores.factory import StoreConfigError

log = logging.getLogger("tusd_trio")


def serve_until_signal(config: Config) -> int:
    """Serve ``config`` until a signal; the process's exit code (a refused start: 1)."""
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
