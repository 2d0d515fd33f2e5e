"""Atomic artifact writing and JSON sidecars.

Every job writes its artifact under a temporary name in the destination directory and renames
it into place, so a killed job never leaves a half-written file that Snakemake (or a user) could
take for a finished one. Sidecars hold no timestamps: two runs of the same job give the same bytes.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import io
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

#: Asked before each file is put in place; False means the job was killed meanwhile. Set in a
#: warm worker's child (mobileforge.job.serve_forked), whose job process can die before it does.
_commit_guard: Callable[[], bool] | None = None


def set_commit_guard(guard: Callable[[], bool] | None) -> None:
    """Make atomic writes refuse to put a file in place once ``guard()`` says the job is gone."""
    global _commit_guard
    _commit_guard = guard


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike[str], *, shared: bool = False) -> Iterator[BinaryIO]:
    """A binary file handle whose content appears at ``path`` only once the block succeeds.

    It writes to a temporary name in the destination directory, fsyncs, then ``os.replace``s;
    on any error the temporary file is removed and ``path`` is left as it was. ``shared``: a
    file that concurrent jobs write (run state, not a Snakemake output), whose temporaries may
    be another job's work in progress, so none is removed as stale.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not shared:
        _remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if _commit_guard is not None and not _commit_guard():
            raise RuntimeError(f"the job was killed: {path} is not put in place")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _remove_stale_temporaries(path: Path) -> None:
    # A job killed with SIGKILL (or a crash) cannot remove its temporary file; the job that
    # writes the same path next does. Snakemake never runs two jobs writing one path at once.
    stale = re.compile(rf"^\.{re.escape(path.name)}\.[A-Za-z0-9_]{{8}}\.tmp$")
    for candidate in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        if stale.match(candidate.name):
            candidate.unlink(missing_ok=True)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes, *, shared: bool = False) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_writer`)."""
    with atomic_writer(path, shared=shared) as handle:
        handle.write(data)


def write_json_atomic(path: str | os.PathLike[str], obj: Any, *, shared: bool = False) -> None:
    """Write ``obj`` as stable, sorted, indented JSON (atomically; ``shared``: see above)."""
    text = json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n"
    write_bytes_atomic(path, text.encode(), shared=shared)


def read_json(path: str | os.PathLike[str]) -> Any:
    with open(path) as handle:
        return json.load(handle)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def compressed_size(data: bytes) -> int:
    """Bytes of ``data`` in a zip archive at deflate level 9 (``zip -9``), what a download of the
    artifact costs where the store or the app bundle compresses it."""
    import zipfile

    buffer = io.BytesIO()
    member = zipfile.ZipInfo("artifact", date_time=(1980, 1, 1, 0, 0, 0))
    with zipfile.ZipFile(buffer, "w") as archive:
        # A ZipInfo member takes its own compression, not the archive's: name it.
        archive.writestr(member, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
    return buffer.tell()


def sidecar_path(artifact: str | os.PathLike[str]) -> Path:
    """``results/m/ptl/fp32.cpu.ptl`` -> ``results/m/ptl/fp32.cpu.ptl.json``."""
    return Path(f"{os.fspath(artifact)}.json")


def write_artifact(
    path: str | os.PathLike[str], data: bytes, sidecar: str | os.PathLike[str], info: dict[str, Any]
) -> dict[str, Any]:
    """Write an artifact and its sidecar (sha256, size, path + ``info``); returns the sidecar."""
    write_bytes_atomic(path, data)
    return _write_record(path, sha256_bytes(data), len(data), sidecar, info)


def write_sidecar(
    path: str | os.PathLike[str], sidecar: str | os.PathLike[str], info: dict[str, Any]
) -> dict[str, Any]:
    """The sidecar of an artifact already written (streamed) to ``path``; returns it."""
    return _write_record(path, sha256_file(path), os.path.getsize(path), sidecar, info)


def _write_record(
    path: str | os.PathLike[str],
    sha256: str,
    size: int,
    sidecar: str | os.PathLike[str],
    info: dict[str, Any],
) -> dict[str, Any]:
    record = {**info, "artifact": os.fspath(path), "sha256": sha256, "size_bytes": size}
    write_json_atomic(sidecar, record)
    return record


def _json_default(obj: Any) -> Any:
    # numpy / torch scalars and paths end up in sidecars; store them as plain values.
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, set | frozenset | tuple):
        return sorted(obj) if isinstance(obj, set | frozenset) else list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
