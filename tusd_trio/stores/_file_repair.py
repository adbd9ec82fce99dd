"""The file store's start-up repair: what a crash can leave in the upload directory
(staging files, stale locks and stop requests, info files without data, data files
cut short of a write that was never acknowledged, interrupted creations).

Run once at start-up, before serving (:meth:`FileStore.check_consistency`).  Only
files older than ``older_than`` seconds are touched, so that another process sharing
the directory can finish what it is doing, and a file that belongs to an upload whose
lock is held by a live process is left alone.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable

from .._process import pid_alive
from ..protocol.info import UploadInfo


def repair_leftovers(
    directory: str, older_than: float, forget_info: Callable[[str], None]
) -> list[str]:
    """Find and fix what a crash can leave behind in ``directory`` (blocking); one
    message per action.  ``forget_info`` is told of every info file removed."""
    cutoff = time.time() - older_than
    own_pid = os.getpid()
    actions: list[str] = []

    def old_enough(path: str) -> bool:
        try:
            return os.stat(path).st_mtime <= cutoff
        except OSError:
            return False

    def lock_owner_alive(base: str) -> bool:
        try:
            with open(base + ".lock", "rb") as handle:
                pid = int(handle.read().strip() or b"0")
        except (OSError, ValueError):
            return False
        return pid != own_pid and pid_alive(pid)

    def remove(path: str, message: str) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            return
        except OSError as exc:
            actions.append(f"Could not remove {path}: {exc.strerror}")
            return
        actions.append(f"{message} {path}")

    for root, _dirs, files in os.walk(directory):
        names = set(files)
        for name in sorted(files):
            full = os.path.join(root, name)
            if name.endswith(".part"):
                base = full[: -len(".part")]
                if old_enough(full) and not lock_owner_alive(base):
                    remove(full, "Removed staging leftover")
            elif name.endswith(".tmp") and (".info." in name or ".lock." in name):
                # <id>.info.<pid>.tmp, <id>.lock.<pid>.<n>.tmp and the file locker's
                # .owner.lock.<pid>.<n>.tmp (lockers/file.py): the writer's PID
                # tells whether anyone can still be using it.
                marker = ".info." if ".info." in name else ".lock."
                pid_text = name.rsplit(marker, 1)[1].split(".", 1)[0]
                pid = int(pid_text) if pid_text.isdigit() else 0
                if pid == own_pid or not pid_alive(pid):
                    remove(full, "Removed staging leftover")
            elif name.endswith(".lock"):
                # The owner's PID decides; a dead owner's lock is stale at any age.
                if not lock_owner_alive(full[: -len(".lock")]):
                    remove(full, "Removed stale lock")
            elif name.endswith(".stop"):
                if not lock_owner_alive(full[: -len(".stop")]):
                    remove(full, "Removed stale stop request")
            elif name.endswith(".info"):
                data = full[: -len(".info")]
                _check_info(full, data, actions, old_enough, lock_owner_alive, forget_info)
            elif (
                _GENERATED_ID.fullmatch(name)
                and name + ".info" not in names
                and old_enough(full)
                and not lock_owner_alive(full)
            ):
                remove(full, "Removed orphan data file")
    return actions


def _check_info(
    info_path: str,
    data_path: str,
    actions: list[str],
    old_enough: Callable[[str], bool],
    lock_owner_alive: Callable[[str], bool],
    forget_info: Callable[[str], None],
) -> None:
    try:
        with open(info_path, "rb") as handle:
            raw = handle.read()
        info = UploadInfo.from_json(raw)
    except (OSError, ValueError) as exc:
        if _remove_interrupted_creation(
            info_path,
            data_path,
            raw_empty=_is_empty(info_path),
            actions=actions,
            old_enough=old_enough,
            forget_info=forget_info,
        ):
            return
        actions.append(f"Found unreadable info {info_path} ({exc}); left alone")
        return
    custom = (info.storage or {}).get("Path")
    target = custom if custom and os.path.exists(custom) else data_path
    if lock_owner_alive(data_path):
        return
    try:
        size = os.stat(target).st_size
    except FileNotFoundError:
        if old_enough(info_path):
            try:
                os.unlink(info_path)
            except OSError as exc:
                actions.append(f"Could not remove {info_path}: {exc.strerror}")
            else:
                forget_info(info_path)
                actions.append(f"Removed info without data {info_path}")
        return
    except OSError:
        return
    if not info.size_is_deferred and size > info.size:
        try:
            os.truncate(target, info.size)
        except OSError as exc:
            actions.append(f"Could not repair {target}: {exc.strerror}")
        else:
            actions.append(f"Repaired data file {target}: cut from {size} to {info.size} bytes")


def _remove_interrupted_creation(
    info_path: str,
    data_path: str,
    *,
    raw_empty: bool,
    actions: list[str],
    old_enough: Callable[[str], bool],
    forget_info: Callable[[str], None],
) -> bool:
    """An empty .info beside an empty (or no) data file: a crash during creation.

    Nothing was ever acknowledged for such an upload; remove both files.
    """
    if not raw_empty or not old_enough(info_path):
        return False
    try:
        data_size = os.stat(data_path).st_size
    except FileNotFoundError:
        data_size = 0
    except OSError:
        return False
    if data_size:
        return False
    for path in (data_path, info_path):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError:
            return False
    forget_info(info_path)
    actions.append(f"Removed interrupted creation {info_path}")
    return True


def _is_empty(path: str) -> bool:
    try:
        return os.stat(path).st_size == 0
    except OSError:
        return False


_GENERATED_ID = re.compile(r"[0-9a-f]{32}")
