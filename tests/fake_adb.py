"""An emulated adb server + device on loopback, for driving the real ``adbutils`` client in tests.

No phone is attached to CI, so the tests talk to this instead of mocking adbutils: the real
client speaks the real smart-socket protocol to a real TCP socket, and every byte of framing,
quoting, pushing and output parsing is exercised. Only what ``adbutils`` 2.12 uses is emulated:

* host services: ``host:version`` (reports 41, so adbutils uses ``host:tport:serial:``),
  ``host:devices``, ``host:devices-l``, ``host:tport:serial:<s>``, ``host:transport:<s>``,
  ``host-serial:<s>:features`` and ``host-serial:<s>:get-state``;
* device services after a transport switch: ``shell:<cmd>`` (v1: merged output, then close),
  ``shell,v2[,opts]:<cmd>`` (packets: 1 stdout, 2 stderr, 3 exit code) and ``sync:`` with
  ``STAT``, ``SEND`` (``DATA``/``DONE``), ``RECV``, ``LIST`` and ``QUIT``.

The "device" runs shell commands with the host's ``/bin/sh`` (cwd = its root directory, a
temporary directory) and ``PATH`` starting with ``<root>/system/bin``, where a ``getprop``
script answers from :attr:`FakeDevice.props`. Paths are not translated: tests pass a
``remote_dir`` that is an absolute path inside the root. ``sync`` refuses paths outside the root
(as adbd refuses unwritable ones), so a test cannot write elsewhere on the host by mistake.

Every loop is bounded: sockets have timeouts, shell commands a wall-clock limit (their process
group is killed after it), and :meth:`FakeAdbServer.stop` closes everything and joins threads.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import stat
import struct
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

ADB_SERVER_VERSION = 41
SOCKET_TIMEOUT_S = 30.0
SYNC_MAX_DATA = 64 * 1024


class _ClientGone(Exception):
    """The client closed the connection; end this handler quietly."""


@dataclass
class FakeDevice:
    """One emulated device: a serial, a state, getprop answers and a root directory."""

    serial: str
    root: Path
    state: str = "device"
    props: dict[str, str] = field(default_factory=dict)
    #: Only what is emulated is advertised (no stat_v2/sendrecv_v2: adbutils does not use them).
    features: str = "shell_v2,cmd,fixed_push_mkdir"
    shell_timeout_s: float = 120.0
    #: Every shell command received, verbatim, in order (tests assert on quoting with it).
    shell_log: list[str] = field(default_factory=list)
    #: Every path received in a sync SEND, verbatim (before the ``,mode`` suffix).
    pushed: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        self.bin_dir = self.root / "system" / "bin"
        self.bin_dir.mkdir(parents=True, exist_ok=True)
        self._write_getprop()

    def _write_getprop(self) -> None:
        cases = "\n".join(
            f"  {shlex.quote(k)}) printf '%s\\n' {shlex.quote(v)} ;;" for k, v in self.props.items()
        )
        script = f'#!/bin/sh\ncase "$1" in\n{cases}\n  *) echo ;;\nesac\n'
        path = self.bin_dir / "getprop"
        path.write_text(script, encoding="utf-8")
        path.chmod(0o755)

    # -- filesystem -------------------------------------------------------------------------
    def resolve(self, remote: str) -> Path | None:
        """Map a device path to a host path, or None when it escapes the device root."""
        path = Path(remote)
        if not path.is_absolute():
            path = self.root / path
        resolved = Path(os.path.realpath(path))  # symlinks cannot lead out of the root
        if resolved == self.root or self.root in resolved.parents:
            return resolved
        return None

    # -- shell ------------------------------------------------------------------------------
    def run_shell(self, command: str) -> tuple[int, bytes, bytes]:
        """Run ``command`` with /bin/sh on the host; return (exit code, stdout, stderr)."""
        self.shell_log.append(command)
        env = {
            "PATH": f"{self.bin_dir}:/usr/bin:/bin",
            "HOME": str(self.root),
            "TMPDIR": str(self.root),
            "LANG": "C.UTF-8",
            "FAKE_DEVICE_ROOT": str(self.root),
            "ANDROID_SERIAL": self.serial,
        }
        # Runner scripts written by tests import this package and torch from the test venv.
        for key in ("PYTHONPATH", "VIRTUAL_ENV"):
            if key in os.environ:
                env[key] = os.environ[key]
        proc = subprocess.Popen(
            ["/bin/sh", "-c", command],
            cwd=self.root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(timeout=self.shell_timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate(timeout=10)
            return 124, out, err + b"\nfake device: command timed out\n"
        return proc.returncode, out, err


class FakeAdbServer:
    """A threaded adb server on 127.0.0.1 serving :class:`FakeDevice` objects.

    Use as a context manager; ``port`` is chosen by the OS (a free port) unless given.
    """

    def __init__(self, devices: list[FakeDevice], port: int = 0) -> None:
        self.devices = {d.serial: d for d in devices}
        self._transport_ids = {d.serial: i + 1 for i, d in enumerate(devices)}
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", port))
        self._listener.listen(16)
        self._listener.settimeout(0.2)
        self.host, self.port = self._listener.getsockname()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._accept_thread = threading.Thread(target=self._accept_loop, daemon=True)
        #: Host-service requests received, in order.
        self.requests: list[str] = []
        #: Exceptions raised inside handlers (tests assert this stays empty).
        self.errors: list[BaseException] = []

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> FakeAdbServer:
        self._accept_thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop accepting, close open connections, join every thread (bounded)."""
        self._stop.set()
        self._accept_thread.join(timeout_s)
        self._listener.close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()
        for thread in self._threads:
            thread.join(timeout_s)
        alive = [t for t in self._threads if t.is_alive()]
        if alive or self._accept_thread.is_alive():
            raise RuntimeError(f"fake adb server threads still alive: {alive}")

    def __enter__(self) -> FakeAdbServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(SOCKET_TIMEOUT_S)
            with self._lock:
                self._conns.add(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    # -- framing helpers --------------------------------------------------------------------
    @staticmethod
    def _recv_exact(conn: socket.socket, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = conn.recv(n - len(buf))
            if not chunk:
                raise _ClientGone
            buf += chunk
        return buf

    def _read_request(self, conn: socket.socket) -> str:
        length = int(self._recv_exact(conn, 4), 16)
        return self._recv_exact(conn, length).decode("utf-8")

    @staticmethod
    def _okay(conn: socket.socket, payload: str | None = None) -> None:
        data = b"OKAY"
        if payload is not None:
            raw = payload.encode("utf-8")
            data += f"{len(raw):04x}".encode() + raw
        conn.sendall(data)

    @staticmethod
    def _fail(conn: socket.socket, message: str) -> None:
        raw = message.encode("utf-8")
        conn.sendall(b"FAIL" + f"{len(raw):04x}".encode() + raw)

    # -- request dispatch -------------------------------------------------------------------
    def _serve(self, conn: socket.socket) -> None:
        try:
            self._dispatch(conn)
        except (_ClientGone, ConnectionError, TimeoutError):
            pass
        except Exception as exc:  # recorded so tests can fail on server-side bugs
            self.errors.append(exc)
        finally:
            with self._lock:
                self._conns.discard(conn)
            try:
                conn.close()
            except OSError:
                pass

    def _device_or_fail(self, conn: socket.socket, serial: str) -> FakeDevice | None:
        device = self.devices.get(serial)
        if device is None:
            self._fail(conn, f"device '{serial}' not found")
            return None
        if device.state != "device":
            self._fail(conn, f"device '{serial}' is {device.state}")
            return None
        return device

    def _dispatch(self, conn: socket.socket) -> None:
        request = self._read_request(conn)
        self.requests.append(request)
        if request == "host:version":
            self._okay(conn, f"{ADB_SERVER_VERSION:04x}")
        elif request in ("host:devices", "host:devices-l"):
            lines = []
            for serial, dev in self.devices.items():
                line = f"{serial}\t{dev.state}"
                if request.endswith("-l"):
                    tid = self._transport_ids[serial]
                    line = f"{serial} {dev.state} product:fake model:FakePhone transport_id:{tid}"
                lines.append(line + "\n")
            self._okay(conn, "".join(lines))
        elif request.startswith("host-serial:"):
            serial, _, service = request[len("host-serial:") :].rpartition(":")
            device = self._device_or_fail(conn, serial)
            if device is None:
                return
            if service == "features":
                self._okay(conn, device.features)
            elif service == "get-state":
                self._okay(conn, device.state)
            else:
                self._fail(conn, f"unsupported host-serial service {service!r}")
        elif request.startswith(("host:tport:serial:", "host:transport:")):
            prefix = (
                "host:tport:serial:" if request.startswith("host:tport:") else "host:transport:"
            )
            serial = request[len(prefix) :]
            device = self._device_or_fail(conn, serial)
            if device is None:
                return
            conn.sendall(b"OKAY")
            if request.startswith("host:tport:"):
                conn.sendall(struct.pack("<Q", self._transport_ids[serial]))
            self._device_service(conn, device, self._read_request(conn))
        else:
            self._fail(conn, f"unsupported service {request!r}")

    def _device_service(self, conn: socket.socket, device: FakeDevice, service: str) -> None:
        if service.startswith("shell,v2"):
            _, _, command = service.partition(":")
            if not command:
                self._fail(conn, "interactive shell is not emulated")
                return
            conn.sendall(b"OKAY")
            code, out, err = device.run_shell(command)
            for packet_id, data in ((1, out), (2, err)):
                for i in range(0, len(data), SYNC_MAX_DATA):
                    chunk = data[i : i + SYNC_MAX_DATA]
                    conn.sendall(bytes([packet_id]) + struct.pack("<I", len(chunk)) + chunk)
            conn.sendall(bytes([3]) + struct.pack("<I", 1) + bytes([code & 0xFF]))
        elif service.startswith("shell:"):
            command = service[len("shell:") :]
            if not command:
                self._fail(conn, "interactive shell is not emulated")
                return
            conn.sendall(b"OKAY")
            _, out, err = device.run_shell(command)
            conn.sendall(out + err)
        elif service == "sync:":
            conn.sendall(b"OKAY")
            self._sync(conn, device)
        else:
            self._fail(conn, f"unsupported device service {service!r}")

    # -- sync protocol ----------------------------------------------------------------------
    def _sync_fail(self, conn: socket.socket, message: str) -> None:
        raw = message.encode("utf-8")
        conn.sendall(b"FAIL" + struct.pack("<I", len(raw)) + raw)

    def _sync(self, conn: socket.socket, device: FakeDevice) -> None:
        while not self._stop.is_set():
            header = self._recv_exact(conn, 8)
            cmd, length = header[:4], struct.unpack("<I", header[4:])[0]
            if cmd == b"QUIT":
                return
            arg = self._recv_exact(conn, length).decode("utf-8") if length else ""
            if cmd == b"STAT":
                host_path = device.resolve(arg)
                try:
                    st = os.stat(host_path) if host_path is not None else None
                except OSError:
                    st = None
                values = (st.st_mode, st.st_size, int(st.st_mtime)) if st else (0, 0, 0)
                conn.sendall(b"STAT" + struct.pack("<III", *values))
            elif cmd == b"SEND":
                self._sync_send(conn, device, arg)
            elif cmd == b"RECV":
                self._sync_recv(conn, device, arg)
            elif cmd == b"LIST":
                self._sync_list(conn, device, arg)
            else:
                self._sync_fail(conn, f"unknown sync command {cmd!r}")
                return

    def _sync_send(self, conn: socket.socket, device: FakeDevice, arg: str) -> None:
        remote, _, mode_text = arg.rpartition(",")
        if not remote:
            remote, mode_text = arg, str(stat.S_IFREG | 0o644)
        device.pushed.append(remote)
        host_path = device.resolve(remote)
        chunks: list[bytes] = []
        while True:  # bounded by the client's DONE and the socket timeout
            header = self._recv_exact(conn, 8)
            cmd, value = header[:4], struct.unpack("<I", header[4:])[0]
            if cmd == b"DATA":
                if value > SYNC_MAX_DATA:
                    self._sync_fail(conn, f"DATA chunk too large: {value}")
                    return
                chunks.append(self._recv_exact(conn, value))
            elif cmd == b"DONE":
                break
            else:
                self._sync_fail(conn, f"unexpected {cmd!r} during SEND")
                return
        if host_path is None:
            self._sync_fail(conn, f"couldn't create file: {remote}: Permission denied")
            return
        try:
            host_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = host_path.with_name(host_path.name + ".fakeadb-partial")
            tmp.write_bytes(b"".join(chunks))
            os.chmod(tmp, int(mode_text) & 0o7777)
            os.replace(tmp, host_path)
        except (OSError, ValueError) as exc:
            self._sync_fail(conn, f"couldn't create file: {remote}: {exc}")
            return
        conn.sendall(b"OKAY" + struct.pack("<I", 0))

    def _sync_recv(self, conn: socket.socket, device: FakeDevice, remote: str) -> None:
        host_path = device.resolve(remote)
        try:
            if host_path is None:
                raise PermissionError("Permission denied")
            data = host_path.read_bytes()
        except OSError as exc:
            self._sync_fail(conn, f"remote object '{remote}' does not exist: {exc}")
            return
        for i in range(0, len(data), SYNC_MAX_DATA):
            chunk = data[i : i + SYNC_MAX_DATA]
            conn.sendall(b"DATA" + struct.pack("<I", len(chunk)) + chunk)
        conn.sendall(b"DONE" + struct.pack("<I", 0))

    def _sync_list(self, conn: socket.socket, device: FakeDevice, remote: str) -> None:
        host_path = device.resolve(remote)
        try:
            entries = sorted(os.scandir(host_path), key=lambda e: e.name) if host_path else []
        except OSError:
            entries = []
        for entry in entries:
            st = entry.stat(follow_symlinks=False)
            name = entry.name.encode("utf-8")
            conn.sendall(
                b"DENT"
                + struct.pack("<IIII", st.st_mode, st.st_size, int(st.st_mtime), len(name))
                + name
            )
        conn.sendall(b"DONE" + struct.pack("<IIII", 0, 0, 0, 0))


def free_port() -> int:
    """A loopback port nothing listens on (bound then released), for "server down" tests."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
