"""Shared fixtures: paths of the repository, loaded configs, and one real run of the tiny config.

Wall times the slow tests measure (the tiny run here, the SLURM run) are collected in
:data:`TIMINGS` and printed at the end of the session, with the wall time each test file took
(:data:`FILE_SECONDS`): they are reported, never asserted.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
TINY_CONFIG = REPO / "tests" / "configs" / "tiny.yaml"
#: What -> seconds, measured by the tests of this session.
TIMINGS: dict[str, float] = {}
#: Test file -> seconds its tests took (setup, call and teardown; a shared fixture counts for
#: the file whose test set it up first).
FILE_SECONDS: dict[str, float] = {}


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


def snakemake(
    workdir: Path,
    config: Path,
    *args: str,
    timeout: int = 1200,
    snakefile: Path = REPO / "Snakefile",
    env: dict[str, str] | None = None,
) -> str:
    """Run the workflow in ``workdir`` on 2 cores; its output, or AssertionError."""
    command = [sys.executable, "-m", "snakemake", "-s", str(snakefile),
               "--configfile", str(config), "--cores", "2", *args]  # fmt: skip
    result = subprocess.run(
        command, cwd=workdir, capture_output=True, text=True, timeout=timeout, env=env
    )
    if result.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        )
    return result.stdout + result.stderr


def insert_into(path: Path, function: str, line: str) -> None:
    """Insert ``line`` as the first statement of ``function``'s body (after its docstring)."""
    source = path.read_text()
    tree = ast.parse(source)
    node = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == function)
    first = node.body[1] if ast.get_docstring(node) else node.body[0]
    lines = source.splitlines(keepends=True)
    lines.insert(first.lineno - 1, f"{' ' * first.col_offset}{line}\n")
    path.write_text("".join(lines))


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> tuple[Path, Path, dict]:
    """One local run of the tiny config (summary and plots): its working dir, config, raw config.

    The run directory holds its own ``config.yaml``, the layout the README asks for.
    """
    workdir = tmp_path_factory.mktemp("workflow")
    config = workdir / "config.yaml"
    shutil.copy(TINY_CONFIG, config)
    started = time.perf_counter()
    snakemake(workdir, config)
    TIMINGS["local run of tests/configs/tiny.yaml (--cores 2)"] = time.perf_counter() - started
    return workdir, config, yaml.safe_load(config.read_text())


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    path = report.nodeid.split("::", 1)[0]
    FILE_SECONDS[path] = FILE_SECONDS.get(path, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter) -> None:
    if FILE_SECONDS:
        terminalreporter.section("wall time per test file")
        for path, seconds in sorted(FILE_SECONDS.items(), key=lambda item: -item[1]):
            terminalreporter.write_line(f"{seconds:8.1f} s  {path}")
        terminalreporter.write_line(f"{sum(FILE_SECONDS.values()):8.1f} s  in all")
    if TIMINGS:
        terminalreporter.section("mobileforge timings (measured, not asserted)")
        for what, seconds in TIMINGS.items():
            terminalreporter.write_line(f"{seconds:8.1f} s  {what}")
