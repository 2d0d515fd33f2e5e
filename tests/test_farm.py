"""Which physical device a config entry is: lock keys, Snakemake resources, the shared lock."""

from __future__ import annotations

import stat

import pytest

from mobileforge.bench import farm
from mobileforge.bench.devicelock import device_lock


def phone(serial: str, host: str = "127.0.0.1", port: int = 5037) -> dict:
    return {"kind": "adb", "serial": serial, "adb_host": host, "adb_port": port}


def test_one_key_per_phone_at_its_server_whatever_the_config_name() -> None:
    assert farm.device_key(phone("R58M")) == farm.device_key(phone("R58M", "localhost"))
    assert farm.device_key(phone("R58M")) != farm.device_key(phone("R58M", port=5038))
    assert farm.device_key(phone("R58M")) != farm.device_key(phone("R58N"))
    # Serials that only differ in characters a file name cannot hold stay apart.
    assert farm.device_key(phone("a/b")) != farm.device_key(phone("a:b"))
    key = farm.device_key(phone("127.0.0.1:40123"))
    assert key.startswith("adb-127.0.0.1-5037-127.0.0.1_40123-") and "/" not in key
    assert farm.device_key({"kind": "host", "threads": 4}) == "host"


def test_two_entries_on_one_phone_share_one_resource_and_the_host_needs_none() -> None:
    devices = {
        "pixel_t1": {**phone("R58M"), "threads": 1},
        "pixel_t4": {**phone("R58M", "localhost"), "threads": 4},
        "galaxy": phone("S22"),
        "host": {"kind": "host"},
    }
    resources = farm.phone_resources(devices)
    assert sorted(resources.values()) == [["galaxy"], ["pixel_t1", "pixel_t4"]]
    assert all(name.isidentifier() for name in resources)
    assert farm.resource_name(devices["host"]) is None


def test_lock_folder_is_shared_by_default_and_others_may_lock_in_it(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "host-wide"
    monkeypatch.setenv(farm.LOCK_DIR_ENV, str(shared))
    assert farm.lock_dir() == str(shared)
    key = farm.device_key(phone("R58M"))
    with device_lock(key) as path:
        assert path.parent == shared
        assert stat.S_IMODE(shared.stat().st_mode) == 0o1777  # as /tmp: any user, own files
        assert stat.S_IMODE(path.stat().st_mode) == 0o666
    monkeypatch.delenv(farm.LOCK_DIR_ENV)
    assert farm.lock_dir() == farm.DEFAULT_LOCK_DIR
