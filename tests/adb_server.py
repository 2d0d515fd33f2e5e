"""The real adb server (Debian's ``adb``) for the tests, on a loopback port of its own.

Started as ``adb -L tcp:<port> nodaemon server`` (it listens on localhost only), with ``HOME``
in a temporary folder so its key and log stay out of the user's ``~/.android``, and never on
5037, which another test suite or a real phone setup may be using. :meth:`AdbServer.connect`
is ``adb connect 127.0.0.1:<phone port>``. Everything is bounded; :meth:`AdbServer.stop` kills
the server and waits for it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from mobileforge.bench.android.adbconn import _Client
from tests.emulated_phone import EmulatedPhone


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released), outside adb's 5554-5585."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not 5037 <= port <= 5585:
            return port


class AdbServer:
    """One adb server process; ``port`` is where clients reach it."""

    def __init__(self, home: Path) -> None:
        self.adb = shutil.which("adb")
        if self.adb is None:
            pytest.fail(
                "the adb tests need Debian's adb on PATH: apt-get install adb (.ci/run does)"
            )
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.env = {
            **os.environ,
            "HOME": str(home),
            "ANDROID_SDK_HOME": str(home),
            "ANDROID_USER_HOME": str(home / ".android"),
            "ADB_LIBUSB": "0",
            "ADB_MDNS": "0",
        }
        self.env.pop("ANDROID_SERIAL", None)
        self.env.pop("ADB_SERVER_SOCKET", None)
        self.log = home / "adb-server.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> AdbServer:
        with open(self.log, "wb") as log:
            self._proc = subprocess.Popen(
                [self.adb, "-L", f"tcp:{self.port}", "nodaemon", "server"],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 15
        while True:
            try:
                # mobileforge's client: adbutils' own one runs `adb start-server` (a second
                # server, on 5037, with the real HOME) when this one is not listening yet.
                _Client("127.0.0.1", self.port, 3.0).server_version()
                return self
            except Exception as error:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    log = self.log.read_text()
                    raise RuntimeError(f"adb server did not start:\n{log}") from error
                time.sleep(0.1)

    def run(self, *args: str, timeout: float = 30) -> str:
        result = subprocess.run(
            [self.adb, "-P", str(self.port), *args],
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return result.stdout + result.stderr

    def state(self, serial: str) -> str | None:
        infos = _Client("127.0.0.1", self.port, 10.0).list()
        return {info.serial: info.state for info in infos}.get(serial)

    def wait_state(self, serial: str, state: str | None, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while self.state(serial) != state:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{serial} not {state} within {timeout_s} s: {self.state(serial)}"
                )
            time.sleep(0.1)

    def connect(self, phone: EmulatedPhone, state: str = "device") -> str:
        """``adb connect`` the phone and wait until the server lists it in ``state``.

        For a phone that never comes online (unauthorized) ``adb connect`` waits about 10 s
        before it gives up; the client is stopped as soon as the server shows ``state``.
        """
        if state == "device":
            output = self.run("connect", phone.serial)
            if "connected to" not in output:
                raise RuntimeError(f"adb connect {phone.serial}: {output}")
            self.wait_state(phone.serial, state)
            return phone.serial
        client = subprocess.Popen(
            [self.adb, "-P", str(self.port), "connect", phone.serial],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            self.wait_state(phone.serial, state)
        finally:
            client.terminate()
            client.wait(timeout=10)
        return phone.serial

    def disconnect(self, phone: EmulatedPhone) -> None:
        self.run("disconnect", phone.serial)

    def stop(self) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            try:
                os.killpg(self._proc.pid, signal.SIGTERM)
                self._proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait(timeout=10)
        self._proc = None
