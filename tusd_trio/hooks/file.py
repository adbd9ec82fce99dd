"""File hooks: one executable per hook type in a directory (``-hooks-dir``)."""

from __future__ import annotations

import json
import os
import signal
from typing import Any

import trio

from .model import HookError, HookResponse, parse_response

__all__ = ["FileHookBackend"]


def _hook_file_state(path: str) -> str:
    """``missing``, ``ready`` or ``not-executable`` (also a directory)."""
    if not os.path.lexists(path):
        return "missing"
    if os.path.isfile(path) and os.access(path, os.X_OK):
        return "ready"
    return "not-executable"


async def _kill_group(process: trio.Process) -> None:
    # The hook and every child it started (a script's sleep, curl, ...).
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        process.kill()
    await trio.lowlevel.checkpoint()


class FileHookBackend:
    """Run ``<hooks_dir>/<hook-type>`` with the hook request on stdin.

    As tusd: the working directory is the hooks directory, the environment is
    ours plus ``TUS_ID``, ``TUS_SIZE`` and ``TUS_OFFSET``, stderr goes to our
    stderr and stdout is the JSON answer (empty is fine).  A missing file skips the
    hook; one that is not executable fails it.  A non-zero exit, an answer that does
    not parse or a run longer than ``timeout`` seconds raise :class:`HookError`.
    """

    name = "file"

    def __init__(self, hooks_dir: str | os.PathLike[str], *, timeout: float = 30.0) -> None:
        self.hooks_dir = os.path.abspath(os.fspath(hooks_dir))
        self.timeout = timeout

    async def invoke(
        self,
        hook_type: str,
        payload: dict[str, Any],
        *,
        forward_headers: dict[str, list[str]] | None = None,
        once: bool = False,
    ) -> HookResponse:
        path = os.path.join(self.hooks_dir, hook_type)
        state = await trio.to_thread.run_sync(_hook_file_state, path)
        if state == "missing":
            return HookResponse()
        if state != "ready":
            # tusd fails such a hook ("permission denied"); skipping it silently
            # would bypass, e.g., an access check whose +x bit was lost.
            raise HookError(f"hook file {path} is not an executable file")
        upload = payload.get("Event", {}).get("Upload", {})
        env = dict(os.environ)
        env["TUS_ID"] = str(upload.get("ID", ""))
        env["TUS_SIZE"] = str(upload.get("Size", 0))
        env["TUS_OFFSET"] = str(upload.get("Offset", 0))
        stdin = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        with trio.move_on_after(self.timeout) as scope:
            try:
                result = await trio.run_process(
                    [path],
                    stdin=stdin,
                    capture_stdout=True,
                    stderr=None,
                    cwd=self.hooks_dir,
                    env=env,
                    check=False,
                    start_new_session=True,
                    deliver_cancel=_kill_group,
                )
            except OSError as exc:
                raise HookError(f"failed to run hook {hook_type}: {exc.strerror or exc}") from None
        if scope.cancelled_caught:
            raise HookError(f"hook {hook_type} timed out after {self.timeout:g}s")
        stdout = result.stdout.decode("utf-8", errors="replace")
        if result.returncode != 0:
            raise HookError(
                f"unexpected return code {result.returncode} from hook endpoint: {stdout}"
            )
        return parse_response(stdout)

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()
