"""The warm worker: imports once, runs nothing, forks a fresh child per job.

Started by the first job that needs it (:mod:`mobileforge.warm.client`), in a session of its own
so that Snakemake killing one job's process never reaches it::

    python -m mobileforge.warm.worker SOCKET READY_FD MODULE [MODULE ...]

It binds ``SOCKET`` first and says so on ``READY_FD`` (jobs may connect and queue while it
imports), imports the modules, then serves, single-threaded, one ``selectors`` loop:

- a request: check the peer is this user and the worker still has one thread (forking a process
  whose OpenMP pool has started deadlocks the child), fork; the child runs the stage
  (:func:`mobileforge.job.serve_forked`) and exits; the worker waits for it (a pidfd) and
  replies with its exit status.
- the job's process goes away first (SIGTERM, SIGKILL, the whole run killed): its end of the
  connection closes, and the worker kills the child's process group at once.
- the run's end (a shutdown record), SIGTERM, or ``MOBILEFORGE_WARM_IDLE_S`` (default 60) seconds
  with no job once the run's Snakemake process (``MOBILEFORGE_WARM_RUN``, watched through a
  pidfd) has gone or where it is not known: stop listening, remove the socket, let running
  children finish, exit. While the run goes on, an idle worker waits: a later job would
  otherwise start a new one and pay its imports again (the ExecuTorch worker's are 8-10 s).
- the worker itself killed: each child was forked with ``PR_SET_PDEATHSIG`` and dies with it.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import os
import selectors
import signal
import socket
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mobileforge.warm import protocol

IDLE_ENV = "MOBILEFORGE_WARM_IDLE_S"
DEFAULT_IDLE_S = 60.0
_PR_SET_PDEATHSIG = 1


@dataclass
class _Running:
    pid: int
    pidfd: int
    connection: socket.socket | None  # None once the job's process has gone


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} {os.getpid()}] {message}", file=sys.stderr, flush=True)


def threads() -> int:
    """Threads of this process now (from /proc): 1 for a worker that may fork."""
    return len(os.listdir("/proc/self/task"))


def preload(modules: list[str]) -> list[str]:
    """Import ``modules``; those that fail (not installed here) are logged and left to the job."""
    loaded = []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as error:  # an optional backend missing is the job's business
            _log(f"not preloaded: {name}: {type(error).__name__}: {error}")
        else:
            loaded.append(name)
    return loaded


def _peer_uid(connection: socket.socket) -> int:
    creds = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


class Worker:
    def __init__(self, listener: socket.socket, path: Path, idle_s: float, run: int | None) -> None:
        self.listener = listener
        self.path = path
        self.idle_s = idle_s
        self.selector = selectors.DefaultSelector()
        self.selector.register(listener, selectors.EVENT_READ, "accept")
        self.running: dict[int, _Running] = {}  # by pidfd
        self.listening = True
        self.inode = path.stat().st_ino
        self.idle_since = time.monotonic()
        # SIGTERM's handler runs between select calls; the wake-up socket makes select return.
        self.wakeup, wakeup_writer = socket.socketpair()
        self.wakeup.setblocking(False)
        wakeup_writer.setblocking(False)
        self._wakeup_writer = wakeup_writer
        signal.set_wakeup_fd(wakeup_writer.fileno())
        signal.signal(signal.SIGTERM, lambda *_: self.stop_listening("SIGTERM"))
        self.selector.register(self.wakeup, selectors.EVENT_READ, "signal")
        # A pidfd of the run's Snakemake process; None once it has ended, or if not known.
        self.run = run
        if run is not None:
            self.selector.register(run, selectors.EVENT_READ, "run")

    def stop_listening(self, why: str) -> None:
        if not self.listening:
            return
        _log(f"stopping: {why}")
        self.listening = False
        self.selector.unregister(self.listener)
        self.listener.close()
        # Only our own socket: a new worker may already listen under the same name.
        with contextlib.suppress(OSError):
            if self.path.stat().st_ino == self.inode:
                self.path.unlink()

    def serve(self) -> None:
        while self.listening or self.running:
            timeout = None
            if self.listening and not self.running and self.run is None:
                timeout = self.idle_s - (time.monotonic() - self.idle_since)
                if timeout <= 0:
                    self.stop_listening(f"idle for {self.idle_s:g} s")
                    continue
            for key, _events in self.selector.select(timeout):
                if key.data == "accept" and self.listening:
                    self._accept()
                elif key.data == "signal":
                    with contextlib.suppress(BlockingIOError):
                        self.wakeup.recv(64)
                elif key.data == "child":
                    self._reap(key.fd)
                elif key.data == "run":
                    self._run_ended()
                elif isinstance(key.data, int) and key.data in self.running:
                    self._client_gone(key.data)

    def _accept(self) -> None:
        try:
            connection, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        self.idle_since = time.monotonic()
        with contextlib.ExitStack() as cleanup:
            cleanup.callback(connection.close)
            if _peer_uid(connection) != os.getuid():
                _log("refused a connection from another user")
                return
            connection.settimeout(30)  # the request follows the connect at once
            try:
                received = protocol.receive_record(
                    connection,
                    {
                        protocol.REQUEST_SCHEMA: protocol.REQUEST_KEYS,
                        protocol.SHUTDOWN_SCHEMA: protocol.SHUTDOWN_KEYS,
                    },
                )
            except (OSError, protocol.ProtocolError) as error:
                _log(f"bad request: {error}")
                return
            if received is None:
                return
            request, fds = received
            cleanup.callback(lambda: [os.close(fd) for fd in fds])
            if request["schema"] == protocol.SHUTDOWN_SCHEMA:
                self.stop_listening("the run ended")
                return
            connection.settimeout(None)
            if (count := threads()) != 1:
                # Never fork a process with other threads; the job runs in its own process.
                self._reply(connection, served=False, reason=f"worker has {count} threads")
                self.stop_listening(f"{count} threads: this worker can no longer fork safely")
                return
            if len(fds) != 3:
                self._reply(connection, served=False, reason=f"{len(fds)} descriptors, not 3")
                return
            pid = os.fork()
            if pid == 0:
                self._become_child(connection, request, fds)  # never returns
            pidfd = os.pidfd_open(pid)
            self.selector.register(pidfd, selectors.EVENT_READ, "child")
            self.selector.register(connection, selectors.EVENT_READ, pidfd)
            self.running[pidfd] = _Running(pid, pidfd, connection)
            cleanup.pop_all()
            for fd in fds:
                os.close(fd)
            job = request["job"]
            _log(f"forked {pid}: {job['rule']} {job['wildcards']}")

    def _become_child(self, connection: socket.socket, request: dict[str, Any], fds: list[int]):
        try:
            os.setpgid(0, 0)  # its own group: the worker kills the job's whole process tree
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() == 1:  # the worker died between fork and prctl
                os._exit(70)
            signal.set_wakeup_fd(-1)
            for number in (signal.SIGTERM, signal.SIGCHLD):
                signal.signal(number, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            self.selector.close()
            self.listener.close()
            self.wakeup.close()
            self._wakeup_writer.close()
            if self.run is not None:
                os.close(self.run)
            for running in self.running.values():
                os.close(running.pidfd)
                if running.connection is not None:
                    running.connection.close()
            for target, fd in enumerate(fds):
                os.dup2(fd, target)
                os.close(fd)
            from mobileforge.job import serve_forked

            code = serve_forked(request, connection.fileno())
        except BaseException:
            import traceback

            traceback.print_exc()
            code = 70
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)

    def _run_ended(self) -> None:
        assert self.run is not None
        self.selector.unregister(self.run)
        os.close(self.run)
        self.run = None
        _log(f"the run's Snakemake process ended: stopping after {self.idle_s:g} s idle")

    def _reply(self, connection: socket.socket, **fields: Any) -> None:
        record = {"schema": protocol.REPLY_SCHEMA, "exit_status": None, "reason": "", **fields}
        with contextlib.suppress(OSError):
            protocol.send_record(connection, record)

    def _client_gone(self, pidfd: int) -> None:
        running = self.running[pidfd]
        assert running.connection is not None
        # Anything readable from a client that sent its request is its end closing.
        self.selector.unregister(running.connection)
        running.connection.close()
        running.connection = None
        _log(f"the job process of {running.pid} went away: killing its process group")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(running.pid, signal.SIGKILL)

    def _reap(self, pidfd: int) -> None:
        running = self.running.pop(pidfd)
        self.idle_since = time.monotonic()
        self.selector.unregister(pidfd)
        os.close(pidfd)
        _, status = os.waitpid(running.pid, 0)
        # Whatever the child left in its group (a grandchild that outlived it) goes with it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(running.pid, signal.SIGKILL)
        code = os.waitstatus_to_exitcode(status)
        code = 128 - code if code < 0 else code  # killed by a signal: as a shell reports it
        _log(f"child {running.pid} exited {code}")
        if running.connection is not None:
            self.selector.unregister(running.connection)
            self._reply(running.connection, served=True, exit_status=code)
            running.connection.close()


def watch_run(pid: str | None) -> int | None:
    """A pidfd of the run's process ``pid`` (:data:`protocol.RUN_ENV`); None if unknown or gone."""
    try:
        return os.pidfd_open(int(pid))  # type: ignore[arg-type]
    except (TypeError, ValueError, OSError):
        return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    path, ready_fd, modules = Path(argv[0]), int(argv[1]), argv[2:]
    idle_s = float(os.environ.get(IDLE_ENV, DEFAULT_IDLE_S))
    listener = protocol.bind(path)
    os.write(ready_fd, b"bound\n")  # jobs may connect now; they queue while the imports run
    os.close(ready_fd)
    run = watch_run(os.environ.get(protocol.RUN_ENV))  # before the imports: its pid is fresh
    started = time.monotonic()
    loaded = preload(modules)
    _log(f"preloaded {loaded} in {time.monotonic() - started:.1f} s; serving {path.name}")
    if (count := threads()) != 1:
        _log(f"{count} threads after the imports: refusing to fork; jobs run in their own process")
        listener.close()
        path.unlink(missing_ok=True)
        return 1
    if run is None:
        _log(f"no run to watch ({protocol.RUN_ENV}): stopping after {idle_s:g} s idle")
    Worker(listener, path, idle_s, run).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
