"""One benchmark per physical device at a time, across processes, checkouts and users.

Snakemake happily runs two benchmark jobs in parallel when they are independent in the DAG;
two jobs on the same phone (or both pinning the same host cores) would each measure the other.
An exclusive ``fcntl.flock`` on ``<lock_dir>/<key>.lock`` serialises them, where ``key`` names
the physical device (:func:`mobileforge.bench.farm.device_key`) and ``lock_dir`` is one folder
per host (:func:`mobileforge.bench.farm.lock_dir`), so two config entries on one phone, or two
checkouts benchmarking on it, still take turns. Within one Snakemake run a per-phone resource
already keeps such jobs apart; the lock is what holds across runs. ``flock`` locks
belong to the open file description, so the kernel releases them when the holder exits or is
killed: a crashed job never leaves a stale lock behind (unlike a "lock file exists" scheme).
Different devices use different files and still run in parallel.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mobileforge.bench.farm import lock_dir as default_lock_dir

#: Keys become file names (farm.device_key makes them so).
_NAME_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")

#: Poll interval when a bounded wait is requested (``timeout_s``).
_POLL_S = 0.05


def _holder(path: Path) -> str:
    """Best-effort description of who holds the lock (written by the holder), for the log."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError:
        return "unknown holder"
    return text or "unknown holder"


@contextmanager
def device_lock(
    name: str,
    lock_dir: str | Path | None = None,
    timeout_s: float | None = None,
) -> Iterator[Path]:
    """Hold an exclusive lock on device ``name`` for the duration of the ``with`` block.

    ``lock_dir`` defaults to the host-wide folder (created world-writable with the sticky bit,
    as /tmp is, so another user's checkout can lock the same phone).

    Blocks until the lock is free, printing one line to stderr if it has to wait (so a job that
    seems stuck says why). ``timeout_s`` bounds the wait and raises ``TimeoutError``; the
    default ``None`` waits as long as it takes, which is what a queue of benchmark jobs wants.
    Yields the lock file path. The file stays on disk (deleting it would race with waiters).
    """
    if not _NAME_RE.match(name):
        raise ValueError(f"device name {name!r} must match [A-Za-z0-9_-][A-Za-z0-9_.-]*")
    shared = lock_dir is None
    directory = Path(default_lock_dir() if shared else lock_dir)
    if not directory.is_dir():
        directory.mkdir(parents=True, exist_ok=True)
        if shared:
            _chmod_quietly(directory, 0o1777)
    path = directory / f"{name}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    if shared:
        _chmod_quietly(path, 0o666)  # umask took write access from other users' jobs
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            print(
                f"mobileforge: device {name!r} is busy ({_holder(path)}); waiting for {path}",
                file=sys.stderr,
                flush=True,
            )
            _wait(fd, name, path, timeout_s)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _chmod_quietly(path: Path, mode: int) -> None:
    try:
        os.chmod(path, mode)
    except OSError:  # someone else's file: it already has the mode its creator gave it
        pass


def _wait(fd: int, name: str, path: Path, timeout_s: float | None) -> None:
    """Take the lock, blocking; with ``timeout_s`` poll until the deadline instead."""
    if timeout_s is None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"device {name!r} still busy after {timeout_s} s ({_holder(path)}); lock {path}"
            )
        time.sleep(_POLL_S)
