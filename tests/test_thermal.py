"""Thermal snapshots and the cool-down before a run (no real waiting: clock and sleep faked)."""

from __future__ import annotations

import pytest

from mobileforge.bench import thermal

GREP = """\
/sys/class/thermal/thermal_zone0/type:cpu-0-0-usr
/sys/class/thermal/thermal_zone1/type:battery
/sys/class/thermal/thermal_zone2/type:broken
/sys/class/thermal/thermal_zone3/type:pmic
/sys/class/thermal/thermal_zone10/type:skin
/sys/class/thermal/thermal_zone0/temp:48500
/sys/class/thermal/thermal_zone1/temp:31
/sys/class/thermal/thermal_zone3/temp:-273000
/sys/class/thermal/thermal_zone10/temp:36250
/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq:300000
/sys/devices/system/cpu/cpu7/cpufreq/scaling_cur_freq:2841600
"""


def test_snapshot_keeps_readable_zones_in_degrees_and_cpu_frequencies() -> None:
    snapshot = thermal.parse_snapshot(GREP)
    assert snapshot["zones"] == {
        "thermal_zone0": {"type": "cpu-0-0-usr", "temp_c": 48.5},
        "thermal_zone1": {"type": "battery", "temp_c": 31.0},  # a driver writing degrees
        "thermal_zone10": {"type": "skin", "temp_c": 36.25},
    }  # zone2 unreadable, zone3 disabled (-273 °C): skipped
    assert snapshot["cur_freq_khz"] == {"0": 300000, "7": 2841600}
    assert thermal.hottest(snapshot) == 48.5
    assert thermal.hottest(snapshot, "skin|battery") == 36.25
    assert thermal.hottest(snapshot, "gpu") is None
    assert thermal.parse_snapshot("") == {"zones": {}, "cur_freq_khz": {}}


class FakeClock:
    """time.monotonic and sleep for cool_down: sleeping advances the clock, nothing waits."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = 0.0
        monkeypatch.setattr(thermal.time, "monotonic", lambda: self.now)

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _phone(clock: FakeClock, start_c: float, cool_per_s: float) -> object:
    def read() -> dict:
        temp = max(30.0, start_c - cool_per_s * clock.now)
        return {"zones": {"thermal_zone0": {"type": "cpu", "temp_c": temp}}, "cur_freq_khz": {}}

    return read


def test_cooldown_waits_until_below_the_target(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock(monkeypatch)
    settings = {"pause_s": 2, "below_c": 45, "max_wait_s": 300, "poll_s": 5}
    record = thermal.cool_down(settings, _phone(clock, 60.0, 1.0), clock.sleep)
    assert record["pause_s"] == 2 and record["start_c"] == 58.0  # read after the pause
    assert record["reached"] and record["end_c"] < 45 and record["warning"] is None
    assert record["waited_s"] == pytest.approx(15.0)  # polled every 5 s: 13 s was not enough


def test_cooldown_gives_up_at_the_limit_with_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock(monkeypatch)
    settings = {"below_c": 45, "max_wait_s": 12, "poll_s": 5}
    record = thermal.cool_down(settings, _phone(clock, 70.0, 0.5), clock.sleep)
    assert record["reached"] is False and record["waited_s"] == pytest.approx(12.0)
    assert "still 64.0 °C" in record["warning"] and "max_wait_s 12" in record["warning"]


def test_cooldown_without_zones_or_target(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock(monkeypatch)
    record = thermal.cool_down({"pause_s": 3}, _phone(clock, 60.0, 1.0), clock.sleep)
    assert clock.now == 3 and record["reached"] is None and record["warning"] is None
    empty = thermal.cool_down({"below_c": 40}, lambda: {"zones": {}}, clock.sleep)
    assert "no readable thermal zone" in empty["warning"]
