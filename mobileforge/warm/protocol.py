"""Where a warm worker listens, and the two records that cross its socket.

One connection carries one job: the job's process sends a request (with its stdin, stdout and
stderr as file descriptors), the worker answers with one reply once the job's child has exited.
Both are pickled dicts of builtins with a declared schema and exact key set, checked on arrival,
so a renamed key fails loudly instead of reaching a stage as a missing value. Pickle is safe here
only because both ends are the same user: the socket lives in a 0700 directory and the worker
checks its peer's uid (``SO_PEERCRED``) before reading anything.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import socket
import struct
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

#: The run directory's folder of worker sockets, locks and worker logs.
DIRECTORY = Path(".snakemake") / "mobileforge-warm"

#: The process id of the Snakemake run whose jobs a worker serves (set by the workflow, inherited
#: by its jobs and the workers they start): while it lives, an idle worker waits for more jobs.
RUN_ENV = "MOBILEFORGE_WARM_RUN"

REQUEST_SCHEMA = "mobileforge.warm-request/2"
REQUEST_KEYS = frozenset(
    {
        "schema",
        "stage",  # "package.module:function"
        "job",  # mobileforge.job.Job as a dict (job.as_record), its process's start included
        "log",  # the rule's log path, or None
        "cwd",
        "environ",
        "sys_path",
        "argv",
        "umask",
    }
)
SHUTDOWN_SCHEMA = "mobileforge.warm-shutdown/1"
SHUTDOWN_KEYS = frozenset({"schema"})
REPLY_SCHEMA = "mobileforge.warm-reply/1"
REPLY_KEYS = frozenset({"schema", "served", "exit_status", "reason"})

#: Environment variables that take effect when Python, torch, OpenMP or the allocator load, so
#: a worker that imported them under other values cannot run the job as its own process would.
IMPORT_TIME_ENV_PREFIXES = (
    "PYTHON",
    "LD_",
    "MALLOC_",
    "OMP_",
    "KMP_",
    "GOMP_",
    "MKL_",
    "OPENBLAS_",
    "DNNL_",
    "ONEDNN_",
    "ATEN_",
    "TORCH",
    "PYTORCH_",
    "XNNPACK",
    "CUDA_",
)

#: Set by Snakemake to each job's thread count. A worker imports with each at 1, so no library
#: starts a thread pool before a fork (OpenBLAS starts one at load otherwise); the job then sets
#: its runtime threads itself (torch.set_num_threads), as in its own process. So jobs of any
#: thread count share one worker.
PER_JOB_THREAD_ENV = (
    "OMP_NUM_THREADS",
    "GOTO_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)

_LENGTH = struct.Struct("!Q")


class ProtocolError(RuntimeError):
    """A record of the wrong shape, or a connection that ended inside one."""


def import_time_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables of ``environ`` that act when libraries load (see the prefixes above), but
    the per-job thread counts (:data:`PER_JOB_THREAD_ENV`)."""
    return {
        k: v
        for k, v in sorted(environ.items())
        if k.startswith(IMPORT_TIME_ENV_PREFIXES) and k not in PER_JOB_THREAD_ENV
    }


def worker_name(
    modules: Sequence[str],
    executable: str,
    sys_path: Sequence[str],
    environ: Mapping[str, str],
    host: str,
) -> str:
    """One worker per machine, interpreter, import path, import-time environment and preloads.

    Jobs that differ in any of these get a worker of their own (or none), never one whose
    imports were made under other conditions.
    """
    key = [list(modules), executable, list(sys_path), import_time_environ(environ)]
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return f"{host}-{digest}"


def check_record(record: Any, schema: str, keys: frozenset[str]) -> dict[str, Any]:
    """``record`` if it is a dict of exactly ``keys`` with this ``schema``; else ProtocolError."""
    if not isinstance(record, dict):
        raise ProtocolError(f"expected a {schema} record, got {type(record).__name__}")
    if record.get("schema") != schema:
        raise ProtocolError(f"expected a {schema} record, got schema {record.get('schema')!r}")
    if set(record) != keys:
        missing, unexpected = sorted(keys - set(record)), sorted(set(record) - keys)
        raise ProtocolError(f"{schema}: missing keys {missing}, unexpected keys {unexpected}")
    return record


def send_record(sock: socket.socket, record: dict[str, Any], fds: Iterable[int] = ()) -> None:
    """Send one record (length, then pickle), passing ``fds`` along with its first bytes."""
    payload = pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL)
    header = _LENGTH.pack(len(payload))
    fds = list(fds)
    if fds:
        socket.send_fds(sock, [header], fds)
    else:
        sock.sendall(header)
    sock.sendall(payload)


def receive_record(
    sock: socket.socket, schema: str | dict[str, frozenset[str]], keys: frozenset[str] = frozenset()
) -> tuple[dict[str, Any], list[int]] | None:
    """One record and the file descriptors sent with it, or None if the peer closed first.

    ``schema`` is one schema (with its ``keys``) or a mapping of the schemas accepted to their
    keys. Received descriptors belong to the caller, also when the record is refused.
    """
    accepted = schema if isinstance(schema, dict) else {schema: keys}
    header, fds, _flags, _address = socket.recv_fds(sock, _LENGTH.size, 8)
    if not header:
        return None
    try:
        header += _read_exactly(sock, _LENGTH.size - len(header))
        (length,) = _LENGTH.unpack(header)
        record = pickle.loads(_read_exactly(sock, length))  # noqa: S301 - same uid, see above
        name = record.get("schema") if isinstance(record, dict) else None
        if name not in accepted:
            raise ProtocolError(f"expected one of {sorted(accepted)}, got schema {name!r}")
        return check_record(record, name, accepted[name]), fds
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    chunks, remaining = [], size
    while remaining:
        chunk = sock.recv(min(remaining, 1 << 20))
        if not chunk:
            raise ProtocolError(f"connection closed {remaining} bytes before the record's end")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def boottime() -> float:
    """Seconds since boot, the clock ``/proc/<pid>/stat`` start times are counted on."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def process_started_at(pid: int | str = "self") -> float | None:
    """When process ``pid`` started, in :func:`boottime` seconds (10 ms ticks); None if unknown."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            start_ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None
    return start_ticks / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def _address(path: Path) -> Iterator[str]:
    # AF_UNIX addresses are limited to 107 bytes and run directories (pytest's, a user's deep
    # project tree) can be longer: the address names the socket's directory by an O_PATH
    # descriptor instead, /proc/self/fd/N/<name>.
    directory = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{directory}/{path.name}"
    finally:
        os.close(directory)


def connect(path: Path, timeout_s: float | None = None) -> socket.socket:
    """A connection to the unix socket at ``path``, whatever the length of its directory."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    try:
        with _address(path) as address:
            sock.connect(address)
    except BaseException:
        sock.close()
        raise
    sock.settimeout(None)
    return sock


def bind(path: Path) -> socket.socket:
    """A listening unix socket at ``path``, readable and writable by its owner only."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)  # created 0600, never briefly wider
    try:
        with _address(path) as address:
            sock.bind(address)
    except BaseException:
        sock.close()
        raise
    finally:
        os.umask(old_umask)
    sock.listen(64)
    return sock


def prepare_directory(run_directory: Path) -> Path:
    """The run's socket folder, created 0700; refused if another user owns it or can enter it."""
    directory = run_directory / DIRECTORY
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    status = directory.stat()
    if status.st_uid != os.getuid() or status.st_mode & 0o077:
        raise PermissionError(
            f"{directory} must belong to uid {os.getuid()} with mode 0700 "
            f"(it is uid {status.st_uid}, mode {oct(status.st_mode & 0o777)}); remove it"
        )
    return directory
