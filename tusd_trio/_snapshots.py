"""The metrics snapshot files that ``-workers`` processes share (plain data, no Trio).

Every worker writes its counters, gauges and histograms to ``<metrics dir>/<pid>.json``
(:func:`tusd_trio.server._metrics.share_metrics`); whichever worker answers a scrape
reads the others' files (:func:`read_shared`); the parent process folds the file of a
worker that exited into ``retired.json`` (:func:`retire_snapshot`).  This module is
apart from :mod:`tusd_trio.server` because the parent serves no request and should
not load the server to do that.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("tusd_trio")

RETIRED_FILE = "retired.json"
_SNAPSHOT_NAME = re.compile(r"^([0-9]+)\.json$")
#: Retired worker ids remembered (a reader skips a snapshot that is already retired).
_RETIRED_IDS_KEPT = 1000


#: (sample name, label pairs in order)
SampleKey = tuple[str, tuple[tuple[str, str], ...]]


@dataclass
class Family:
    """One metric family as plain data (what a worker snapshot holds)."""

    name: str
    kind: str  # counter | gauge | histogram
    help: str
    #: Rendered by prometheus-client (histograms) rather than as plain text lines.
    prom: bool = False
    samples: dict[SampleKey, float] = field(default_factory=dict)

    def add(self, labels: dict[str, str], value: float, sample_name: str = "") -> None:
        self.samples[(sample_name or self.name, tuple(labels.items()))] = float(value)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.kind,
            "help": self.help,
            "prom": self.prom,
            "samples": [
                [name, [list(p) for p in labels], v] for (name, labels), v in self.samples.items()
            ],
        }

    @classmethod
    def from_json(cls, data: Any) -> Family:
        family = cls(str(data["name"]), str(data["type"]), str(data["help"]), bool(data["prom"]))
        for name, labels, value in data["samples"]:
            key = (str(name), tuple((str(k), str(v)) for k, v in labels))
            family.samples[key] = float(value)
        return family


def merge_families(
    target: dict[str, Family], families: Iterable[Family], *, gauges: bool = True
) -> None:
    """Add ``families`` into ``target``: values are summed (a histogram's ``_created``
    keeps the earliest); gauges are skipped with ``gauges=False`` (a dead process has none)."""
    for fam in families:
        if fam.kind == "gauge" and not gauges:
            continue
        into = target.get(fam.name)
        if into is None:
            into = target[fam.name] = Family(fam.name, fam.kind, fam.help, fam.prom)
        # prometheus-client's creation time of a series (not tusd_uploads_created).
        created = f"{fam.name}_created" if fam.prom else None
        for key, value in fam.samples.items():
            old = into.samples.get(key)
            if old is None:
                into.samples[key] = value
            elif key[0] == created:
                into.samples[key] = min(old, value)
            else:
                into.samples[key] = old + value


def write_json_atomically(path: str, data: dict[str, Any]) -> None:
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(data, handle, separators=(",", ":"))
    os.replace(temporary, path)


def _load_json(path: str) -> dict[str, Any] | None:
    """The file's JSON object; ``None`` when the file does not exist."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:  # never expected: files are replaced atomically
        log.warning("ignoring unreadable metrics snapshot %s: %s", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def families_of(data: dict[str, Any]) -> list[Family]:
    try:
        return [Family.from_json(item) for item in data.get("families", [])]
    except (KeyError, TypeError, ValueError):
        return []


def snapshot_path(metrics_dir: str, pid: int) -> str:
    return os.path.join(metrics_dir, f"{pid}.json")


def read_shared(
    metrics_dir: str, own_pid: int
) -> tuple[list[tuple[int, list[Family]]], list[Family]]:
    """The other workers' snapshots and the retired total, read consistently.

    The parent retires a worker by rewriting ``retired.json`` (which lists the
    retired snapshot ids) and then deleting ``<pid>.json``.  Listing first and
    reading ``retired.json`` second means a snapshot listed but already gone has
    been retired after we read the total: read everything again in that case.
    """
    live: list[tuple[int, list[Family]]] = []
    retired: list[Family] = []
    for _attempt in range(5):
        try:
            names = os.listdir(metrics_dir)
        except OSError:
            return [], []
        pids = sorted(
            int(match.group(1)) for match in map(_SNAPSHOT_NAME.match, names) if match is not None
        )
        retired_data = _load_json(os.path.join(metrics_dir, RETIRED_FILE)) or {}
        retired_ids = set(retired_data.get("ids", []))
        retired = families_of(retired_data)
        live = []
        vanished = False
        for pid in pids:
            if pid == own_pid:
                continue
            data = _load_json(snapshot_path(metrics_dir, pid))
            if data is None:
                vanished = True
                break
            if data.get("id") in retired_ids:
                continue
            live.append((pid, families_of(data)))
        if not vanished:
            break
    return live, retired


def retire_snapshot(metrics_dir: str, pid: int) -> None:
    """Fold the last snapshot of an exited worker into ``retired.json`` (parent only).

    Counters and histograms are kept (totals never go backwards); gauges are
    dropped.  Written atomically before the snapshot is deleted (see read_shared).
    """
    path = snapshot_path(metrics_dir, pid)
    data = _load_json(path)
    if data is None:
        return  # it died before its first snapshot
    retired_path = os.path.join(metrics_dir, RETIRED_FILE)
    retired_data = _load_json(retired_path) or {}
    ids = [str(item) for item in retired_data.get("ids", [])]
    snapshot_id = data.get("id")
    if isinstance(snapshot_id, str) and snapshot_id not in ids:
        total: dict[str, Family] = {}
        merge_families(total, families_of(retired_data), gauges=False)
        merge_families(total, families_of(data), gauges=False)
        ids = [*ids, snapshot_id][-_RETIRED_IDS_KEPT:]
        write_json_atomically(
            retired_path, {"ids": ids, "families": [fam.to_json() for fam in total.values()]}
        )
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
