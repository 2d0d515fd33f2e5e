"""One phone behind an adb server, with errors that say which phone and which command.

A thin layer over the ``adbutils`` client: it never starts an adb server as a side effect,
runs shell commands over shell protocol v2 with a deadline for the whole command (adbutils' own
timeout is per ``recv``, so a chatty hung runner would never time out), and turns the client's
raw failures (``EOFError: Expected 5 bytes, got 0`` when a cable is pulled, a reset socket, an
``AdbError`` from the server) into :class:`DeviceDisconnected` or :class:`DeviceHung` naming the
serial, the server and the command that was cut. :meth:`Phone.wait_for_device` polls the
server until the phone is back in state ``device`` (the adb server re-attaches a TCP phone on
its own, about every 10 s), within a bound.
"""

from __future__ import annotations

import io
import socket
import stat
import time
from dataclasses import dataclass
from pathlib import Path

import adbutils
from adbutils.errors import AdbError, AdbTimeout

#: How much of a command an error message quotes.
COMMAND_CHARS = 1000
#: Poll interval of :meth:`Phone.wait_for_device`.
WAIT_POLL_S = 0.5


class AdbBenchmarkError(RuntimeError):
    """A device benchmark could not run or produced no usable numbers."""


class AdbServerUnreachable(AdbBenchmarkError):
    """Nothing answers on the adb server address."""


class DeviceNotConnected(AdbBenchmarkError):
    """The requested serial is not among the server's devices in state ``device``."""

    def __init__(self, message: str, state: str | None) -> None:
        super().__init__(message)
        self.state = state


class DeviceDisconnected(AdbBenchmarkError):
    """The connection to the phone was cut mid-command: transient, worth a retry."""


class DeviceHung(AdbBenchmarkError):
    """The phone accepted a command and then did not finish it in time.

    ``confirmed``: a second command found the phone unresponsive too (not merely a slow run).
    """

    confirmed = False


class RemoteFileMissing(AdbBenchmarkError):
    """A file the phone was to hold (a runner's output) is not there."""


class DeviceGone(AdbBenchmarkError):
    """The phone did not come back within the wait-for-device bound."""


@dataclass
class ShellResult:
    """Exit code and output of one device shell command (bytes decoded as UTF-8)."""

    command: str
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class _Connection(adbutils.AdbConnection):
    """adbutils' connection, minus its fallback of running ``adb start-server`` on failure.

    A benchmark job must not start a daemon (on the default port, whatever port it was asked
    to use) as a side effect; an unreachable server is reported instead. Small requests are
    sent at once (no Nagle delay): a job makes a handful of round trips.
    """

    def _safe_connect(self) -> socket.socket:
        sock = self._create_socket()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock


class _Client(adbutils.AdbClient):
    """``adbutils.AdbClient`` whose connections never spawn an adb server (see above)."""

    def __init__(self, host: str, port: int, socket_timeout: float | None = None) -> None:
        super().__init__(host, port, socket_timeout)
        self._mf_timeout = socket_timeout
        self._mf_version: int | None = None

    def server_version(self) -> int:
        # adbutils asks before every transport switch: one round trip per command otherwise.
        if self._mf_version is None:
            self._mf_version = int(super().server_version())
        return self._mf_version

    def make_connection(self, timeout: float | None = None) -> adbutils.AdbConnection:
        timeout = timeout or self._mf_timeout
        try:
            conn = _Connection(self.host, self.port)
        except TimeoutError as exc:
            raise AdbTimeout("connect to adb server timeout") from exc
        if timeout:
            conn.conn.settimeout(timeout)
        return conn


def _short(command: str) -> str:
    return command if len(command) <= COMMAND_CHARS else command[:COMMAND_CHARS] + "..."


class Phone:
    """The phone ``serial`` at the adb server ``host:port``; cheap to create, no I/O."""

    def __init__(self, serial: str, host: str = "127.0.0.1", port: int = 5037) -> None:
        self.serial = serial
        self.host = host
        self.port = port
        self._client = _Client(host, port, socket_timeout=10.0)
        self._device = self._client.device(serial)

    @property
    def where(self) -> str:
        return f"{self.serial} (adb server {self.host}:{self.port})"

    # -- state at the server ----------------------------------------------------------------
    def states(self) -> dict[str, str]:
        """Every serial the server lists, with its state (``device``, ``offline`` ...)."""
        try:
            with socket.create_connection((self.host, self.port), timeout=3.0):
                pass
        except OSError as exc:
            raise AdbServerUnreachable(
                f"adb server not reachable at {self.host}:{self.port} ({exc}); start it with "
                f"`adb start-server` (or `adb -P {self.port} start-server` for a non-default "
                "port) on the machine the phone is plugged into"
            ) from exc
        try:
            return {info.serial: info.state for info in self._client.list()}
        except (AdbError, OSError, EOFError) as exc:
            raise AdbServerUnreachable(
                f"adb server at {self.host}:{self.port} did not answer host:devices: {exc}"
            ) from exc

    def state(self) -> str | None:
        """This phone's state at the server, None when it is not listed."""
        return self.states().get(self.serial)

    def require_online(self) -> None:
        """Raise :class:`DeviceNotConnected` (naming the state and the listed serials)."""
        states = self.states()
        state = states.get(self.serial)
        if state != "device":
            listed = ", ".join(f"{s} ({st})" for s, st in sorted(states.items())) or "none"
            why = "not connected" if state is None else f"in state {state!r}"
            raise DeviceNotConnected(
                f"device {self.serial!r} is {why} on adb server {self.host}:{self.port}; "
                f"connected serials: {listed}",
                state,
            )

    def wait_for_device(self, timeout_s: float) -> float:
        """Wait until the phone is listed as ``device`` again; return the seconds waited.

        Raises :class:`DeviceGone` after ``timeout_s`` (its last state in the message).
        """
        start = time.monotonic()
        state: str | None = None
        while True:
            state = self.state()
            if state == "device":
                return time.monotonic() - start
            if time.monotonic() - start >= timeout_s:
                raise DeviceGone(
                    f"phone {self.where} did not come back within {timeout_s:g} s "
                    f"(benchmark.timeouts.wait_for_device_s); last state: "
                    f"{state or 'not listed'}"
                )
            time.sleep(WAIT_POLL_S)

    # -- commands ---------------------------------------------------------------------------
    def shell(
        self,
        command: str,
        timeout_s: float,
        what: str | None = None,
        heartbeat_s: float | None = None,
    ) -> ShellResult:
        """Run an already-quoted shell command (protocol v2), all of it within ``timeout_s``.

        ``what`` is the part of the command an error names (default: all of it). With
        ``heartbeat_s``, each time the command has been silent that long a second connection
        runs ``echo`` (bounded by ``heartbeat_s`` too): a phone that stopped answering is then
        :class:`DeviceHung` at once, instead of after the whole ``timeout_s`` of a long run.
        """
        what = what or command
        deadline = time.monotonic() + timeout_s
        out, err = io.BytesIO(), io.BytesIO()
        code: int | None = None
        try:
            conn = self._device.open_transport(timeout=min(timeout_s, heartbeat_s or timeout_s))
        except (AdbError, OSError, EOFError) as exc:
            raise self._cut(what, exc) from exc
        buffer = bytearray()

        def need(n: int) -> bytes:
            while len(buffer) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                conn.conn.settimeout(min(left, heartbeat_s or left))
                try:
                    chunk = conn.conn.recv(65536)
                except TimeoutError:
                    if heartbeat_s and time.monotonic() < deadline:
                        self._heartbeat(what, heartbeat_s)
                    continue
                if not chunk:
                    raise EOFError(f"Expected {n} bytes, got {len(buffer)}")
                buffer.extend(chunk)
            data = bytes(buffer[:n])
            del buffer[:n]
            return data

        try:
            conn.send_command(f"shell,v2:{command}")
            conn.check_okay()
            while code is None:
                header = need(5)
                length = int.from_bytes(header[1:5], "little")
                data = need(length) if length else b""
                if header[0] == 1:
                    out.write(data)
                elif header[0] == 2:
                    err.write(data)
                elif header[0] == 3:
                    code = data[0] if data else 255
        except (AdbTimeout, TimeoutError) as exc:
            raise DeviceHung(
                f"no answer from {self.where} within {timeout_s:g} s for: {_short(what)} "
                "(it may still be running on the phone)"
            ) from exc
        except (AdbError, OSError, EOFError) as exc:
            raise self._cut(what, exc) from exc
        finally:
            conn.close()
        return ShellResult(
            command,
            code,
            out.getvalue().decode("utf-8", errors="replace"),
            err.getvalue().decode("utf-8", errors="replace"),
        )

    def _heartbeat(self, what: str, timeout_s: float) -> None:
        """Does the phone still answer while a long command is silent? DeviceHung if not."""
        try:
            answer = self.shell("echo ok", timeout_s).stdout.strip()
        except DeviceDisconnected:
            raise  # the cable, not a hang: the caller's retry logic handles it
        except AdbBenchmarkError as exc:
            answer = str(exc)
        if answer != "ok":
            hung = DeviceHung(
                f"{self.where} stopped answering while running: {_short(what)} (a second "
                f"`echo` got no answer within {timeout_s:g} s, benchmark.timeouts.command_s)"
            )
            hung.confirmed = True
            raise hung

    def _cut(self, command: str, exc: BaseException) -> AdbBenchmarkError:
        if isinstance(exc, AdbTimeout):
            return DeviceHung(f"no answer from {self.where} for: {_short(command)} ({exc})")
        return DeviceDisconnected(
            f"connection to {self.where} was cut ({type(exc).__name__}: {exc}) while running: "
            f"{_short(command)}"
        )

    def push(self, src: Path, dst: str, mode: int, timeout_s: float) -> None:
        """Push one file over sync (adbd creates missing folders); errors name both ends."""
        what = f"push {src} -> {dst}"
        try:
            self._device.sync._push_file(src, dst, mode, check=False)
            size = self.stat_size(dst, timeout_s)
        except AdbBenchmarkError:
            raise
        except (AdbTimeout, TimeoutError) as exc:
            raise DeviceHung(f"no answer from {self.where} within {timeout_s:g} s: {what}") from exc
        except (OSError, EOFError) as exc:
            raise self._cut(what, exc) from exc
        except AdbError as exc:
            if self.state() != "device":
                raise self._cut(what, exc) from exc
            raise AdbBenchmarkError(
                f"pushing {src} to {self.serial}:{dst} failed ({exc}); is the folder writable "
                "by the shell user (use remote_dir under /data/local/tmp)?"
            ) from exc
        if size != src.stat().st_size:
            raise DeviceDisconnected(
                f"push of {src} to {self.where}:{dst} incomplete: {size} of "
                f"{src.stat().st_size} bytes arrived"
            )

    def pull(self, src: str, dst: Path, timeout_s: float) -> int:
        """Pull one regular file over sync into ``dst``; returns its size. Its size on the
        phone is checked first and after: a file that is missing, or that arrived short, is an
        error naming both ends (a short one as a cut connection, worth a retry)."""
        what = f"pull {src} -> {dst}"
        try:
            size = self.stat_size(src, timeout_s)
            if size is None:
                raise RemoteFileMissing(f"{src} is not a file on {self.where}")
            with open(dst, "wb") as out:
                for chunk in self._device.sync.iter_content(src):
                    out.write(chunk)
        except AdbBenchmarkError:
            raise
        except (AdbTimeout, TimeoutError) as exc:
            raise DeviceHung(f"no answer from {self.where} within {timeout_s:g} s: {what}") from exc
        except (OSError, EOFError, AdbError) as exc:
            if isinstance(exc, AdbError) and self.state() == "device":
                raise AdbBenchmarkError(f"{what} on {self.serial} failed: {exc}") from exc
            raise self._cut(what, exc) from exc
        got = dst.stat().st_size
        if got != size:
            raise DeviceDisconnected(f"{what} from {self.where} incomplete: {got} of {size} bytes")
        return got

    def stat_size(self, path: str, timeout_s: float) -> int | None:
        """Size of a regular file on the phone (sync STAT), None when there is none."""
        with self._device.open_transport(timeout=timeout_s) as conn:
            conn.send_command("sync:")
            conn.check_okay()
            raw = path.encode("utf-8")
            conn.conn.sendall(b"STAT" + len(raw).to_bytes(4, "little") + raw)
            reply = conn.read_exact(16)
            conn.conn.sendall(b"QUIT" + (0).to_bytes(4, "little"))
        if reply[:4] != b"STAT":
            raise AdbError(f"unexpected sync reply {reply[:4]!r}")
        mode = int.from_bytes(reply[4:8], "little")
        return int.from_bytes(reply[8:12], "little") if stat.S_ISREG(mode) else None
