"""Helpers for the crash-consistency and disk-full tests (tests/reliability).

The daemon runs as a real subprocess (tests/_support/daemon.py: banner parsing,
process-group kill, log capture).
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import os
import random
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests._support.daemon import Daemon
from tests._support.tus import is_live_owner_file

KiB = 1024
MiB = 1024 * KiB


#: Side files that must not survive a graceful stop (staging, temp and lock files).
LEFTOVER_RE = re.compile(r"(\.part|\.tmp|\.lock|\.stop)$")
#: The file locker's owner file (lockers/file.py): a live process's is not a leftover.


def pick_seed(env_var: str = "TUSD_RELIABILITY_SEED") -> int:
    """The seed for a randomised test: ``$TUSD_RELIABILITY_SEED`` or a fresh one.

    It is printed (pytest shows it for a failing test) so a failure can be replayed.
    """
    raw = os.environ.get(env_var)
    seed = int(raw) if raw else random.SystemRandom().randrange(2**32)
    print(f"seed={seed} (replay with {env_var}={seed})")
    return seed


@dataclass
class TrackedUpload:
    """One upload as the test client sees it."""

    index: int
    payload: bytes
    upload_id: str = ""
    #: Highest Upload-Offset the server acknowledged with a 204.
    acked: int = 0
    #: Highest offset the client ever handed to a socket (offset + chunk length).
    sent_max: int = 0
    #: Unexpected answers seen by the sender thread.
    problems: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.payload)


def raw_patch(
    conn: http.client.HTTPConnection, path: str, offset: int, chunk: bytes
) -> tuple[int, dict[str, str], bytes]:
    """One PATCH on a keep-alive stdlib connection; returns (status, headers, body)."""
    conn.request(
        "PATCH",
        path,
        body=chunk,
        headers={
            "Tus-Resumable": "1.0.0",
            "Upload-Offset": str(offset),
            "Content-Type": "application/offset+octet-stream",
            "Content-Length": str(len(chunk)),
        },
    )
    resp = conn.getresponse()
    body = resp.read()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body


def read_info(upload_dir: Path, upload_id: str) -> dict[str, object]:
    """Parse ``<id>.info``; fails the test with the raw text if it is not valid JSON."""
    path = upload_dir / f"{upload_id}.info"
    assert path.is_file(), f"{path.name} is missing"
    raw = path.read_bytes()
    try:
        info = json.loads(raw)
    except ValueError as exc:
        pytest.fail(f"{path.name} does not parse ({exc}): {raw[:300]!r}", pytrace=False)
    assert isinstance(info, dict), f"{path.name} is not a JSON object: {raw[:300]!r}"
    return info


def leftover_side_files(upload_dir: Path) -> list[str]:
    """Staging/temp/lock side files anywhere below ``upload_dir`` (but not the owner
    file of a file locker whose process still runs)."""
    return sorted(
        str(p.relative_to(upload_dir))
        for p in upload_dir.rglob("*")
        if p.is_file() and LEFTOVER_RE.search(p.name) and not is_live_owner_file(p.name)
    )


def data_files_without_info(upload_dir: Path) -> list[str]:
    """Files that look like upload data (no suffix) but have no ``.info`` next to them."""
    found = []
    for p in upload_dir.rglob("*"):
        if not p.is_file() or "." in p.name:
            continue
        if not p.with_name(p.name + ".info").exists():
            found.append(str(p.relative_to(upload_dir)))
    return sorted(found)


def log_lines_about(daemon: Daemon, needle: str) -> list[str]:
    """Start-up check lines (a message beginning with ``Repaired`` or ``Removed``) naming
    ``needle``, in the text layout (``<date> <time> Removed …`` or ``event="Removed …"``)
    or the JSON layout (``"msg": "Removed …"``)."""
    action = re.compile(r'(?:^\S+ \S+ |event="|"msg": ?"|"message": ?")(?:Repaired|Removed)\b')
    return [line for line in daemon.stdout_lines if needle in line and action.search(line)]


def resume_with_tuspy(upload_url: str, payload: bytes, chunk_size: int = 1 * MiB) -> int:
    """Resume ``upload_url`` with tuspy from the offset HEAD reports; return that offset."""
    from tusclient import client as tus_client

    uploader = tus_client.TusClient(upload_url).uploader(
        file_stream=io.BytesIO(payload), url=upload_url, chunk_size=chunk_size
    )
    start = uploader.offset
    uploader.upload()
    assert uploader.offset == len(payload), (
        f"tuspy stopped at {uploader.offset} of {len(payload)} for {upload_url}"
    )
    return start


def url_path(url: str) -> str:
    return urlsplit(url).path


# --- a small file system for the disk-full tests ---------------------------------


@dataclass
class SmallFS:
    mountpoint: Path
    kind: str  # "tmpfs" or "ext2"


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)


@contextlib.contextmanager
def small_filesystem(root: Path, size_kib: int) -> Iterator[SmallFS]:
    """Mount a ``size_kib`` file system at ``root/mnt``: tmpfs, else a loop-mounted ext2
    image.  Fails the test (never skips) when neither can be mounted.

    ``TUSD_RELIABILITY_FS=ext2`` forces the loop-mounted image (to exercise the fallback).
    """
    mnt = root / "mnt"
    mnt.mkdir()
    errors: list[str] = []
    kind = ""
    image = root / "small-fs.img"
    if os.environ.get("TUSD_RELIABILITY_FS", "tmpfs") != "ext2":
        r = _run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0755", "tmpfs", str(mnt)])
        if r.returncode == 0:
            kind = "tmpfs"
        else:
            errors.append(f"mount -t tmpfs: rc={r.returncode} {r.stderr.strip()}")
    if not kind:
        mkfs = shutil.which("mkfs.ext2") or "/sbin/mkfs.ext2"
        with open(image, "wb") as handle:
            handle.truncate(size_kib * KiB)
        r = _run([mkfs, "-F", "-q", "-m", "0", "-b", "1024", str(image)])
        if r.returncode != 0:
            errors.append(f"mkfs.ext2: rc={r.returncode} {r.stderr.strip()}")
        else:
            r = _run(["mount", "-o", "loop", str(image), str(mnt)])
            if r.returncode == 0:
                kind = "ext2"
            else:
                errors.append(f"mount -o loop (ext2): rc={r.returncode} {r.stderr.strip()}")
    if not kind:
        pytest.fail(
            "the disk-full tests need a small file system and could mount none "
            f"(run them as root, or in a container with CAP_SYS_ADMIN): {'; '.join(errors)}",
            pytrace=False,
        )
    try:
        yield SmallFS(mnt, kind)
    finally:
        r = _run(["umount", str(mnt)])
        if r.returncode != 0:
            _run(["umount", "-l", str(mnt)])
        with contextlib.suppress(OSError):
            image.unlink()


def fill_disk(path: Path) -> int:
    """Write ``path`` until the file system is full; return the bytes written."""
    written = 0
    block = b"\0" * (64 * KiB)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for size in (64 * KiB, 4 * KiB, 512, 1):
            piece = block[:size]
            while True:
                try:
                    n = os.write(fd, piece)
                except OSError as exc:
                    if exc.errno not in (28, 122):  # ENOSPC, EDQUOT
                        raise
                    break
                written += n
                if n < size:
                    break
    finally:
        os.close(fd)
    return written
