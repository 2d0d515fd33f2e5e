"""What one workflow run has learnt about its phones, shared by its benchmark jobs.

Each benchmark job is its own process, so what a job learns dies with it unless written down.
Per run (the Snakefile sets :data:`RUN_ID_ENV` once; every job inherits it) and per physical
device this keeps, under ``.mobileforge/runs/<run id>/`` of the working directory:

* ``<device key>.probe.json``: the phone's properties and shell capabilities (probed once per
  phone and run, not once per job);
* ``<device key>.gone.json``: the phone vanished or hung, why and when, so the run's remaining
  jobs on it fail fast instead of waiting for it again one by one;
* ``sha256.json``: digests of the files pushed, by path, size and mtime (a 40 MiB runner is
  hashed once per run, not once per job).

Folders of earlier runs are removed after a day. Without a run id (the library called
directly) nothing is written and nothing is shared.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from mobileforge.files import sha256_file, write_json_atomic

RUN_ID_ENV = "MOBILEFORGE_RUN_ID"
STATE_DIR = Path(".mobileforge/runs")
#: Runs whose folder is older than this are swept.
KEEP_S = 24 * 3600


class RunState:
    """The current run's notes about one physical device (``key``)."""

    def __init__(self, key: str, run_id: str | None = None, base: Path = STATE_DIR) -> None:
        self.key = key
        self.run_id = run_id if run_id is not None else os.environ.get(RUN_ID_ENV)
        self.folder = base / self.run_id if self.run_id else None
        self._memory: dict[str, Any] = {}

    def _path(self, what: str) -> Path | None:
        return self.folder / f"{self.key}.{what}.json" if self.folder else None

    def _read(self, what: str) -> dict[str, Any] | None:
        path = self._path(what)
        if path is None:
            return self._memory.get(what)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def _write(self, what: str, value: dict[str, Any]) -> None:
        path = self._path(what)
        if path is None:
            self._memory[what] = value
            return
        if not path.parent.is_dir():
            path.parent.mkdir(parents=True, exist_ok=True)
            _sweep(path.parent.parent, keep=path.parent.name)
        write_json_atomic(path, value, shared=True)  # one run's jobs write it at once

    def _drop(self, what: str) -> None:
        self._memory.pop(what, None)
        path = self._path(what)
        if path is not None:
            path.unlink(missing_ok=True)

    def probe(self) -> dict[str, Any] | None:
        return self._read("probe")

    def save_probe(self, probe: dict[str, Any]) -> None:
        self._write("probe", probe)

    def gone(self) -> dict[str, Any] | None:
        """Why and since when the device is gone in this run, or None."""
        return self._read("gone")

    def mark_gone(self, reason: str, job: str) -> None:
        self._write("gone", {"reason": reason, "job": job, "since_unix": time.time()})

    def clear_gone(self) -> None:
        self._drop("gone")

    def sha256(self, path: Path) -> str:
        """sha256 of ``path``, remembered for the run while its size and mtime stay the same."""
        st = path.stat()
        stamp = f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"
        if self.folder is None:
            digests = self._memory.setdefault("sha256", {})
        else:
            digests = self._read_shared("sha256") or {}
        if stamp not in digests:
            digests[stamp] = sha256_file(path)
            if self.folder is not None:
                self._write_shared("sha256", digests)
        return digests[stamp]

    def _read_shared(self, what: str) -> dict[str, Any] | None:
        assert self.folder is not None
        try:
            return json.loads((self.folder / f"{what}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def _write_shared(self, what: str, value: dict[str, Any]) -> None:
        assert self.folder is not None
        self.folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.folder / f"{what}.json", value, shared=True)


def _sweep(base: Path, keep: str) -> None:
    """Remove other runs' folders older than :data:`KEEP_S` (best effort)."""
    cutoff = time.time() - KEEP_S
    try:
        entries = list(base.iterdir())
    except OSError:
        return
    for entry in entries:
        try:
            if entry.name != keep and entry.is_dir() and entry.stat().st_mtime < cutoff:
                shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            continue
