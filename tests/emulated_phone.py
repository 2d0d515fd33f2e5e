"""An emulated Android phone (adbd) on loopback, reached through the real adb server.

The tests run Debian's ``adb`` server and ``adb connect 127.0.0.1:<port>`` to an
:class:`EmulatedPhone`, then drive it with the real ``adbutils`` client, so everything between
mobileforge and a phone is real except the phone: the smart-socket protocol to the server and
the transport protocol the server speaks to adbd (AOSP ``adb/protocol.txt``):

* messages of a 24-byte little-endian header ``command, arg0, arg1, data_length, data_check,
  magic (command ^ 0xffffffff)`` and a payload;
* ``CNXN(version, max_payload, "device::<props>;features=...")`` answering the server's own
  CNXN (no AUTH: an ``ro.adb.secure=0`` phone), or ``AUTH(TOKEN)`` forever for an
  unauthorized one;
* streams: ``OPEN(remote_id, 0, "service\\0")`` answered by ``OKAY(local_id, remote_id)`` or
  ``CLSE(0, remote_id)``, data in ``WRTE`` each acknowledged by ``OKAY`` before the next one is
  sent (flow control), ``CLSE`` to end;
* services: ``shell,v2[,...]:<cmd>`` (AOSP ``shell_protocol.h`` packets ``id u8, length u32``:
  1 stdout, 2 stderr, 3 exit code), ``shell:<cmd>`` (v1, raw output) and ``sync:``
  (``STAT``, ``LIST``, ``SEND`` with ``DATA``/``DONE``, ``RECV``, ``QUIT``; SERVICES.TXT and
  ``file_sync_protocol.h``).

The phone's file system is a directory: device paths under ``/data``, ``/sys`` and ``/system``
live under :attr:`EmulatedPhone.root`; shell commands run with the host's ``/bin/sh`` after
those prefixes are rewritten, and the root is stripped from what they print, so mobileforge
sees Android paths. ``/system/bin`` holds the phone's own ``getprop``, ``taskset`` and ``time``;
``/sys`` a CPU topology and thermal zones, whose temperatures a thread can move (a hot phone
cooling down).

Faults, for the tests: :meth:`unplug` (the transport drops mid-command, the listener closes),
:meth:`replug`, ``hang`` (streams open but never answer) and ``loopless`` (a shell that refuses
``for``/``while`` and ``${var##pattern}``, as some vendor shells do). Every thread and process is
bounded and :meth:`close` joins them.
"""

from __future__ import annotations

import os
import re
import selectors
import shlex
import signal
import socket
import stat
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

A_CNXN, A_OPEN, A_OKAY, A_WRTE, A_CLSE, A_AUTH, A_SYNC = (
    int.from_bytes(name, "little") for name in (b"CNXN", b"OPEN", b"OKAY", b"WRTE", b"CLSE",
                                                 b"AUTH", b"SYNC")
)  # fmt: skip
A_VERSION = 0x01000001  # "skip checksum" version of adb 29 and later
MAX_PAYLOAD = 256 * 1024
SYNC_MAX_DATA = 64 * 1024
SOCKET_TIMEOUT_S = 30.0
#: Device path prefixes that live in the phone's root directory.
MAPPED = ("/data", "/sys", "/system")
_MAPPED_RE = re.compile(r"(?<![\w./-])(/(?:data|sys|system))(?=/|\b)")
#: What a shell without loops refuses (and says, like mksh/ash do).
_LOOP_RE = re.compile(r"(^|[\s;&|(])(for|while|until)\s|\$\{[^}]*(##|%%|#|%)")

GETPROP = """#!/bin/sh
# The phone's getprop: one property, or every one as "[key]: [value]".
if [ $# -eq 0 ]; then cat "$MF_PHONE_ROOT/system/props.txt"; exit 0; fi
grep -F "[$1]: " "$MF_PHONE_ROOT/system/props.txt" | sed 's/^\\[[^]]*\\]: \\[\\(.*\\)\\]$/\\1/'
"""

TASKSET = f"""#!{sys.executable}
# The phone's taskset: `-p PID` shows the shell's mask (every online CPU); `MASK CMD...` checks
# the mask against the online CPUs, records it and runs the command (the host's CPUs are not
# the phone's, so nothing is really pinned).
import os, sys
root = os.environ["MF_PHONE_ROOT"]
online = open(os.path.join(root, "sys/devices/system/cpu/online")).read().strip()
cpus = set()
for part in online.split(","):
    lo, _, hi = part.partition("-")
    cpus.update(range(int(lo), int(hi or lo) + 1))
if sys.argv[1] == "-p":
    print("pid %s's current affinity mask: %x" % (sys.argv[2], sum(1 << c for c in cpus)))
    sys.exit(0)
mask = int(sys.argv[1], 16)
wanted = {{c for c in range(64) if mask >> c & 1}}
if not wanted or not wanted <= cpus:
    sys.stderr.write("taskset: sched_setaffinity: Invalid argument\\n")
    sys.exit(1)
with open(os.path.join(root, "taskset.log"), "a") as fh:
    fh.write(sys.argv[1] + "\\n")
os.execvp(sys.argv[2], sys.argv[2:])
"""

PKILL = f"""#!{sys.executable}
# The phone's pkill -f: signals only this phone's processes (those whose command line holds its
# root), matching the pattern against their command line as the phone sees it.
import os, re, signal, sys
root = os.environ["MF_PHONE_ROOT"]
args = [a for a in sys.argv[1:] if a != "-f"]
pattern = re.compile(args[-1])
found = False
for pid in os.listdir("/proc"):
    if not pid.isdigit() or int(pid) == os.getpid():
        continue
    try:
        with open(f"/proc/{{pid}}/cmdline", "rb") as fh:
            cmdline = fh.read().replace(b"\\0", b" ").decode(errors="replace")
    except OSError:
        continue
    if root in cmdline and pattern.search(cmdline.replace(root, "")):
        try:
            os.kill(int(pid), signal.SIGTERM)
            found = True
        except OSError:
            pass
sys.exit(0 if found else 1)
"""

TIME = f"""#!{sys.executable}
# The phone's toybox time: -v prints the child's maximum resident set size.
import resource, subprocess, sys
args = sys.argv[1:]
if args and args[0] == "-v":
    args = args[1:]
code = subprocess.call(args)
kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
sys.stderr.write("Real 0.0s\\nMax RSS (KiB): %d\\n" % kib)
sys.exit(code)
"""


class _Closed(Exception):
    """The stream or the transport is gone."""


def _header(command: int, arg0: int, arg1: int, data: bytes) -> bytes:
    return struct.pack(
        "<6I", command, arg0, arg1, len(data), sum(data) & 0xFFFFFFFF, command ^ 0xFFFFFFFF
    )


class _Stream:
    """One adb stream: an inbox of WRTE payloads and flow-controlled writes."""

    def __init__(self, transport: _Transport, local_id: int, remote_id: int) -> None:
        self.transport = transport
        self.local_id = local_id
        self.remote_id = remote_id
        self._inbox = bytearray()
        self._cond = threading.Condition()
        self._ready = True  # may send one WRTE, then wait for the OKAY
        self.closed = False

    # called by the transport's reader
    def deliver(self, data: bytes) -> None:
        with self._cond:
            self._inbox += data
            self._cond.notify_all()

    def acked(self) -> None:
        with self._cond:
            self._ready = True
            self._cond.notify_all()

    def remote_closed(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    # called by the service thread
    def read_exact(self, n: int) -> bytes:
        deadline = time.monotonic() + SOCKET_TIMEOUT_S
        with self._cond:
            while len(self._inbox) < n:
                if self.closed or self.transport.dead:
                    raise _Closed
                if not self._cond.wait(timeout=max(0.0, deadline - time.monotonic())):
                    raise _Closed
            data = bytes(self._inbox[:n])
            del self._inbox[:n]
            return data

    def write(self, data: bytes) -> None:
        step = self.transport.max_payload
        for i in range(0, len(data), step):
            deadline = time.monotonic() + SOCKET_TIMEOUT_S
            with self._cond:
                while not self._ready:
                    if self.closed or self.transport.dead:
                        raise _Closed
                    if not self._cond.wait(timeout=max(0.0, deadline - time.monotonic())):
                        raise _Closed
                if self.closed:
                    raise _Closed
                self._ready = False
            self.transport.send(A_WRTE, self.local_id, self.remote_id, data[i : i + step])

    def close(self) -> None:
        with self._cond:
            already = self.closed
            self.closed = True
            self._cond.notify_all()
        if not already:
            self.transport.send(A_CLSE, self.local_id, self.remote_id, b"")
        self.transport.forget(self.local_id)


class _Transport:
    """One connection from the adb server: the message loop and its streams."""

    def __init__(self, phone: EmulatedPhone, conn: socket.socket) -> None:
        self.phone = phone
        self.conn = conn
        self.max_payload = 4096
        self.dead = False
        self._send_lock = threading.Lock()
        self._streams: dict[int, _Stream] = {}
        self._lock = threading.Lock()
        self._next_id = 1

    def send(self, command: int, arg0: int, arg1: int, data: bytes) -> None:
        if self.dead:
            raise _Closed
        try:
            with self._send_lock:
                self.conn.sendall(_header(command, arg0, arg1, data) + data)
        except OSError as exc:
            self.kill()
            raise _Closed from exc

    def forget(self, local_id: int) -> None:
        with self._lock:
            self._streams.pop(local_id, None)

    def kill(self) -> None:
        """Drop the connection, as a pulled cable does."""
        self.dead = True
        try:
            self.conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.conn.close()
        with self._lock:
            streams = list(self._streams.values())
        for stream in streams:
            stream.remote_closed()

    def _recv_exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.conn.recv(n - len(buf))
            if not chunk:
                raise _Closed
            buf += chunk
        return buf

    def serve(self) -> None:
        try:
            while not self.dead:
                command, arg0, arg1, length, _, magic = struct.unpack("<6I", self._recv_exact(24))
                if magic != command ^ 0xFFFFFFFF:
                    raise _Closed  # "Receipt of an invalid message header ... MUST close"
                data = self._recv_exact(length) if length else b""
                self._handle(command, arg0, arg1, data)
        except (_Closed, OSError):
            pass
        finally:
            self.kill()

    def _handle(self, command: int, arg0: int, arg1: int, data: bytes) -> None:
        phone = self.phone
        if command == A_CNXN:
            self.max_payload = min(arg1, MAX_PAYLOAD)
            if phone.unauthorized:
                self.send(A_AUTH, 1, 0, os.urandom(20))  # TOKEN; no signature will do
            else:
                self.send(A_CNXN, A_VERSION, MAX_PAYLOAD, phone.banner().encode())
        elif command == A_AUTH:
            if phone.unauthorized and arg0 == 2:  # SIGNATURE: no key of the host is trusted
                self.send(A_AUTH, 1, 0, os.urandom(20))
            # RSAPUBLICKEY (3): the phone would ask its user, who never taps "Allow"
        elif command == A_OPEN:
            service = data.rstrip(b"\0").decode("utf-8", errors="replace")
            with self._lock:
                local_id = self._next_id
                self._next_id += 1
                stream = _Stream(self, local_id, arg0)
                self._streams[local_id] = stream
            phone.services.append(service)
            handler = phone.handler_for(service)
            if handler is None:
                self.forget(local_id)
                self.send(A_CLSE, 0, arg0, b"")
                return
            self.send(A_OKAY, local_id, arg0, b"")
            phone.spawn(handler, stream, service)
        elif command in (A_OKAY, A_WRTE, A_CLSE):
            with self._lock:
                stream = self._streams.get(arg1)
            if stream is None:
                return
            if command == A_OKAY:
                stream.remote_id = arg0
                stream.acked()
            elif command == A_WRTE:
                stream.deliver(data)
                self.send(A_OKAY, stream.local_id, stream.remote_id, b"")
            else:
                stream.remote_closed()
                self.forget(arg1)


class EmulatedPhone:
    """An adbd on 127.0.0.1:``port`` with its own file system under ``root``.

    ``cpus`` maps CPU number to ``cpuinfo_max_freq`` (kHz) of its online CPUs; ``thermal`` maps a
    zone type to its temperature in °C (a float, or a function of seconds since start);
    ``unreadable_zone`` adds a zone whose ``temp`` cannot be read (as some vendors' zones fail
    with EINVAL). ``loopless`` gives the phone a shell without loops (see the module docstring).
    """

    def __init__(
        self,
        root: Path,
        props: dict[str, str] | None = None,
        cpus: dict[int, int] | None = None,
        thermal: dict[str, float | Callable[[float], float]] | None = None,
        unreadable_zone: bool = True,
        loopless: bool = False,
        unauthorized: bool = False,
        shell_timeout_s: float = 300.0,
    ) -> None:
        self.root = Path(root).resolve()
        self.props = {
            "ro.product.brand": "mobileforge",
            "ro.product.manufacturer": "Emulated",
            "ro.product.model": "Loopback 1",
            "ro.product.name": "loopback",
            "ro.product.device": "loopback",
            "ro.build.version.release": "14",
            "ro.build.version.sdk": "34",
            "ro.product.cpu.abi": "arm64-v8a",
            "ro.soc.model": "",
            **(props or {}),
        }
        self.cpus = cpus or {
            i: 1800000 if i < 4 else 2400000 if i < 7 else 3000000 for i in range(8)
        }
        self.thermal = thermal if thermal is not None else {"cpu-0-0": 35.0, "battery": 30.0}
        self.unreadable_zone = unreadable_zone
        self.loopless = loopless
        self.unauthorized = unauthorized
        self.hang = False
        self.shell_timeout_s = shell_timeout_s
        #: Called with each shell command before it runs (tests unplug the phone from here).
        self.on_shell: Callable[[str], None] | None = None
        #: Every service opened, every shell command run (as sent, before path mapping), every
        #: path written by sync SEND, in order.
        self.services: list[str] = []
        self.shell_log: list[str] = []
        self.pushed: list[str] = []
        #: Exceptions inside the emulator (tests assert this stays empty).
        self.errors: list[BaseException] = []
        self._started = time.monotonic()
        self._threads: list[threading.Thread] = []
        self._procs: set[subprocess.Popen[bytes]] = set()
        self._transports: list[_Transport] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self.port = 0
        self._build_filesystem()
        self._listen()
        self._spawn_daemon(self._thermal_loop)

    @property
    def serial(self) -> str:
        """The serial the adb server lists this phone under after ``adb connect``."""
        return f"127.0.0.1:{self.port}"

    def banner(self) -> str:
        p = self.props
        return (
            f"device::ro.product.name={p['ro.product.name']};ro.product.model="
            f"{p['ro.product.model']};ro.product.device={p['ro.product.device']};"
            "features=shell_v2,cmd,fixed_push_mkdir"
        )

    # -- file system ------------------------------------------------------------------------
    def _build_filesystem(self) -> None:
        for sub in ("data/local/tmp", "system/bin", "sys/devices/system/cpu", "sys/class/thermal"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        props = "".join(f"[{k}]: [{v}]\n" for k, v in sorted(self.props.items()))
        (self.root / "system/props.txt").write_text(props, encoding="utf-8")
        tools = (("getprop", GETPROP), ("taskset", TASKSET), ("time", TIME), ("pkill", PKILL))
        for name, text in tools:
            path = self.root / "system/bin" / name
            path.write_text(text, encoding="utf-8")
            path.chmod(0o755)
        cpu_dir = self.root / "sys/devices/system/cpu"
        (cpu_dir / "online").write_text(_cpu_list(sorted(self.cpus)) + "\n")
        for cpu, khz in self.cpus.items():
            freq = cpu_dir / f"cpu{cpu}" / "cpufreq"
            freq.mkdir(parents=True, exist_ok=True)
            (freq / "cpuinfo_max_freq").write_text(f"{khz}\n")
            (freq / "scaling_cur_freq").write_text(f"{khz // 2}\n")
        for i, zone in enumerate(self.thermal):
            zone_dir = self.root / f"sys/class/thermal/thermal_zone{i}"
            zone_dir.mkdir(parents=True, exist_ok=True)
            (zone_dir / "type").write_text(zone + "\n")
        if self.unreadable_zone:
            broken = self.root / f"sys/class/thermal/thermal_zone{len(self.thermal)}"
            broken.mkdir(parents=True, exist_ok=True)
            (broken / "type").write_text("unreadable\n")
            (broken / "temp").mkdir(exist_ok=True)  # reading it fails, like EINVAL
        self._write_temperatures()

    def temperature(self, zone: str) -> float:
        value = self.thermal[zone]
        return float(value(time.monotonic() - self._started) if callable(value) else value)

    def _write_temperatures(self) -> None:
        for i, zone in enumerate(self.thermal):
            path = self.root / f"sys/class/thermal/thermal_zone{i}/temp"
            tmp = path.with_suffix(".tmp")
            tmp.write_text(f"{round(self.temperature(zone) * 1000)}\n")
            os.replace(tmp, path)

    def _thermal_loop(self) -> None:
        while not self._stop.wait(0.1):
            self._write_temperatures()

    def resolve(self, remote: str) -> Path | None:
        """Map a device path to its file under the root, or None outside the mapped trees."""
        norm = os.path.normpath(remote)
        if not norm.startswith(tuple(p + "/" for p in MAPPED)) and norm not in MAPPED:
            return None
        resolved = Path(os.path.realpath(self.root / norm.lstrip("/")))
        return resolved if resolved == self.root or self.root in resolved.parents else None

    # -- listening, unplugging --------------------------------------------------------------
    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # adb servers poll 5555-5585 for emulators: never take a port there.
        while True:
            listener.bind(("127.0.0.1", self.port))
            if not 5554 <= listener.getsockname()[1] <= 5585:
                break
            listener.close()
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.listen(4)
        listener.settimeout(0.2)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._spawn_daemon(self._accept_loop, listener)

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._stop.is_set() and self._listener is listener:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # adbd's own setting
            transport = _Transport(self, conn)
            with self._lock:
                self._transports.append(transport)
            self._spawn_daemon(transport.serve)

    def unplug(self) -> None:
        """Drop every connection and stop listening; commands already running carry on."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            transports, self._transports = self._transports, []
        for transport in transports:
            transport.kill()

    def replug(self) -> None:
        """Listen again on the same port (the adb server reconnects on its own)."""
        if self._listener is None:
            self._listen()

    # -- services ---------------------------------------------------------------------------
    def handler_for(self, service: str) -> Callable[[_Stream, str], None] | None:
        if service.startswith("shell,v2") or service.startswith("shell:"):
            return self._shell_service
        if service == "sync:":
            return self._sync_service
        return None

    def spawn(self, handler: Callable[[_Stream, str], None], stream: _Stream, service: str) -> None:
        def run() -> None:
            try:
                handler(stream, service)
            except _Closed:
                pass
            except Exception as exc:  # recorded so tests fail on emulator bugs
                self.errors.append(exc)
            finally:
                try:
                    stream.close()
                except _Closed:
                    pass

        self._spawn_daemon(run)

    def _spawn_daemon(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def map_command(self, command: str) -> str:
        return _MAPPED_RE.sub(lambda m: str(self.root) + m.group(1), command)

    def _shell_service(self, stream: _Stream, service: str) -> None:
        v2 = service.startswith("shell,v2")
        command = service.partition(":")[2]
        self.shell_log.append(command)
        if self.on_shell is not None:
            self.on_shell(command)
        if self.hang:  # a phone that accepted the command and then stopped answering
            while not stream.closed and not stream.transport.dead and not self._stop.is_set():
                time.sleep(0.05)
            return

        def emit(packet_id: int, data: bytes) -> None:
            data = data.replace(str(self.root).encode(), b"")
            if v2:
                stream.write(bytes([packet_id]) + struct.pack("<I", len(data)) + data)
            else:
                stream.write(data)

        if not command:
            emit(2, b"interactive shell is not emulated\n")
            code = 1
        elif self.loopless and _LOOP_RE.search(command):
            emit(2, b"/system/bin/sh: syntax error: bad substitution\n")
            code = 2
        else:
            code = self._run(command, emit)
        if v2:
            stream.write(bytes([3]) + struct.pack("<I", 1) + bytes([code & 0xFF]))

    def _run(self, command: str, emit: Callable[[int, bytes], None]) -> int:
        env = {
            "PATH": f"{self.root}/system/bin:/usr/bin:/bin",
            "HOME": str(self.root / "data/local/tmp"),
            "TMPDIR": str(self.root / "data/local/tmp"),
            "LANG": "C.UTF-8",
            "MF_PHONE_ROOT": str(self.root),
        }
        for key in ("PYTHONPATH", "VIRTUAL_ENV"):  # runner scripts import from the test venv
            if key in os.environ:
                env[key] = os.environ[key]
        proc = subprocess.Popen(
            ["/bin/sh", "-c", self.map_command(command)],
            cwd=self.root / "data/local/tmp",
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        with self._lock:
            self._procs.add(proc)
        deadline = time.monotonic() + self.shell_timeout_s
        sel = selectors.DefaultSelector()
        assert proc.stdout is not None and proc.stderr is not None
        sel.register(proc.stdout, selectors.EVENT_READ, 1)
        sel.register(proc.stderr, selectors.EVENT_READ, 2)
        connected = True
        try:
            while sel.get_map():
                if time.monotonic() > deadline or self._stop.is_set():
                    os.killpg(proc.pid, signal.SIGKILL)
                    break
                for key, _ in sel.select(timeout=0.2):
                    data = os.read(key.fd, 65536)
                    if not data:
                        sel.unregister(key.fileobj)
                        continue
                    if connected:
                        try:
                            emit(key.data, data)
                        except _Closed:
                            connected = False  # unplugged: the process runs on, unheard
            code = proc.wait(timeout=30)
        finally:
            sel.close()
            proc.stdout.close()
            proc.stderr.close()
            with self._lock:
                self._procs.discard(proc)
        if not connected:
            raise _Closed
        return code

    # -- sync -------------------------------------------------------------------------------
    def _sync_service(self, stream: _Stream, service: str) -> None:
        while True:
            header = stream.read_exact(8)
            cmd, length = header[:4], struct.unpack("<I", header[4:])[0]
            if cmd == b"QUIT":
                return
            arg = stream.read_exact(length).decode("utf-8") if length else ""
            if cmd == b"STAT":
                path = self.resolve(arg)
                try:
                    st = os.stat(path) if path is not None else None
                except OSError:
                    st = None
                values = (st.st_mode, st.st_size, int(st.st_mtime)) if st else (0, 0, 0)
                stream.write(b"STAT" + struct.pack("<III", *values))
            elif cmd == b"LIST":
                path = self.resolve(arg)
                try:
                    entries = sorted(os.scandir(path), key=lambda e: e.name) if path else []
                except OSError:
                    entries = []
                for entry in entries:
                    st = entry.stat(follow_symlinks=False)
                    name = entry.name.encode()
                    stream.write(
                        b"DENT"
                        + struct.pack("<IIII", st.st_mode, st.st_size, int(st.st_mtime), len(name))
                        + name
                    )
                stream.write(b"DONE" + struct.pack("<IIII", 0, 0, 0, 0))
            elif cmd == b"SEND":
                self._sync_send(stream, arg)
            elif cmd == b"RECV":
                path = self.resolve(arg)
                try:
                    if path is None:
                        raise PermissionError("Permission denied")
                    data = path.read_bytes()
                except OSError as exc:
                    self._sync_fail(stream, f"remote object '{arg}' does not exist: {exc}")
                    return
                for i in range(0, len(data), SYNC_MAX_DATA):
                    chunk = data[i : i + SYNC_MAX_DATA]
                    stream.write(b"DATA" + struct.pack("<I", len(chunk)) + chunk)
                stream.write(b"DONE" + struct.pack("<I", 0))
            else:
                self._sync_fail(stream, f"unknown sync command {cmd!r}")
                return

    @staticmethod
    def _sync_fail(stream: _Stream, message: str) -> None:
        raw = message.encode()
        stream.write(b"FAIL" + struct.pack("<I", len(raw)) + raw)

    def _sync_send(self, stream: _Stream, arg: str) -> None:
        remote, _, mode_text = arg.rpartition(",")
        if not remote:
            remote, mode_text = arg, str(stat.S_IFREG | 0o644)
        self.pushed.append(remote)
        path = self.resolve(remote)
        chunks: list[bytes] = []
        while True:  # bounded by the client's DONE and the stream timeout
            header = stream.read_exact(8)
            cmd, value = header[:4], struct.unpack("<I", header[4:])[0]
            if cmd == b"DATA":
                if value > SYNC_MAX_DATA:
                    self._sync_fail(stream, f"DATA chunk too large: {value}")
                    return
                chunks.append(stream.read_exact(value))
            elif cmd == b"DONE":
                break
            else:
                self._sync_fail(stream, f"unexpected {cmd!r} during SEND")
                return
        if path is None or not str(remote).startswith("/data/"):
            self._sync_fail(stream, f"couldn't create file: {remote}: Read-only file system")
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)  # adbd's fixed_push_mkdir
            path.write_bytes(b"".join(chunks))  # in place, as adbd writes
            os.chmod(path, int(mode_text) & 0o7777)
        except (OSError, ValueError) as exc:
            self._sync_fail(stream, f"couldn't create file: {remote}: {exc}")
            return
        stream.write(b"OKAY" + struct.pack("<I", 0))

    # -- lifecycle --------------------------------------------------------------------------
    def close(self, timeout_s: float = 10.0) -> None:
        """Stop everything: listener, transports, running commands, threads (bounded)."""
        self._stop.set()
        self.unplug()
        with self._lock:
            procs = list(self._procs)
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout_s
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = [t for t in self._threads if t.is_alive()]
        if alive:
            raise RuntimeError(f"emulated phone threads still alive: {alive}")

    def __enter__(self) -> EmulatedPhone:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _cpu_list(cpus: list[int]) -> str:
    """``0-3,5``-style list, as /sys/devices/system/cpu/online writes it."""
    parts: list[str] = []
    start = prev = None
    for cpu in cpus:
        if prev is not None and cpu == prev + 1:
            prev = cpu
            continue
        if start is not None:
            parts.append(f"{start}-{prev}" if prev != start else f"{start}")
        start = prev = cpu
    if start is not None:
        parts.append(f"{start}-{prev}" if prev != start else f"{start}")
    return ",".join(parts)


def quote(*words: object) -> str:
    return " ".join(shlex.quote(str(w)) for w in words)
