"""Shared fixtures: paths of the repository and a loaded default/tiny config."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
TINY_CONFIG = REPO / "tests" / "configs" / "tiny.yaml"


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def tiny_raw() -> dict:
    return yaml.safe_load(TINY_CONFIG.read_text())


@pytest.fixture
def default_raw() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text())


@pytest.fixture(scope="session", autouse=True)
def no_default_adb_server_spawned():
    """No test may start an adb server on the side.

    adbutils' connections run `adb start-server` (port 5037, the user's ~/.android) when the
    server they ask for does not answer; mobileforge's client never does, and neither may a
    test helper that forgets to use it.
    """
    import adbutils._adb

    connection = adbutils._adb.AdbConnection
    original = connection._safe_connect
    connection._safe_connect = connection._create_socket
    try:
        yield
    finally:
        connection._safe_connect = original


@pytest.fixture(scope="session")
def adb_server(tmp_path_factory: pytest.TempPathFactory):
    """The real adb server on a free loopback port, for the whole session (tests/adb_server)."""
    from tests.adb_server import AdbServer

    server = AdbServer(tmp_path_factory.mktemp("adb-home")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def phones(adb_server, tmp_path: Path):
    """Make emulated phones connected to the adb server; all are unplugged and closed after.

    ``phones(**kwargs)`` returns an :class:`tests.emulated_phone.EmulatedPhone` (kwargs go to
    it) already in state ``device`` (``state=...`` to wait for another one).
    """
    from tests.emulated_phone import EmulatedPhone

    made: list[EmulatedPhone] = []

    def make(state: str = "device", **kwargs) -> EmulatedPhone:
        phone = EmulatedPhone(tmp_path / f"phone{len(made)}", **kwargs)
        made.append(phone)
        adb_server.connect(phone, state)
        return phone

    yield make
    for phone in made:
        adb_server.disconnect(phone)
        phone.close()
    for phone in made:
        assert phone.errors == [], phone.errors
