"""Thermal zones and CPU frequencies around each run, and the cool-down before it.

A phone that starts a run at 60 °C throttles and measures slow; so every run records the
temperature of every readable thermal zone and the current frequency of every CPU before and
after, and :func:`cool_down` can wait before a run, as ExecuTorch's device-farm jobs do:

* ``pause_s``: a fixed pause;
* ``below_c``: poll until the hottest matching zone is below this temperature, at most
  ``max_wait_s`` (then the run goes ahead with a warning saying how hot it still was).

Zones are read with ``grep -H .`` over ``/sys/class/thermal/thermal_zone*/{type,temp}``: a
zone whose ``temp`` cannot be read (some vendors' zones fail with EINVAL) is skipped, not an
error. ``temp`` is in millidegrees Celsius on Linux; a few drivers write whole degrees, so
values below 1000 are taken as degrees. The host reads the same files directly.
"""

from __future__ import annotations

import glob
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

ZONES = "/sys/class/thermal/thermal_zone*"
CUR_FREQ = "/sys/devices/system/cpu/cpu*/cpufreq/scaling_cur_freq"
#: One shell command reading everything a snapshot holds (no loop: see probes).
SNAPSHOT_COMMAND = f"grep -H . {ZONES}/type {ZONES}/temp {CUR_FREQ} 2>/dev/null"

_ZONE_RE = re.compile(r"/(thermal_zone\d+)/(type|temp):(.*)$")
_FREQ_RE = re.compile(r"/cpu(\d+)/cpufreq/scaling_cur_freq:\s*(\d+)\s*$")


def _celsius(raw: str) -> float | None:
    try:
        value = float(raw.strip())
    except ValueError:
        return None
    celsius = value / 1000.0 if abs(value) >= 1000 else value
    return celsius if -40.0 <= celsius <= 200.0 else None  # e.g. a disabled zone's -273 °C


def parse_snapshot(text: str) -> dict[str, Any]:
    """``grep -H`` output of :data:`SNAPSHOT_COMMAND` -> ``{zones, cur_freq_khz}``.

    ``zones`` maps ``thermal_zoneN`` to ``{"type": ..., "temp_c": ...}`` for zones whose
    temperature was readable; ``cur_freq_khz`` maps CPU number (as a string) to kHz.
    """
    types: dict[str, str] = {}
    temps: dict[str, float] = {}
    freqs: dict[str, int] = {}
    for line in text.splitlines():
        zone = _ZONE_RE.search(line)
        if zone:
            name, field, value = zone.groups()
            if field == "type":
                types[name] = value.strip()
            elif (celsius := _celsius(value)) is not None:
                temps[name] = celsius
            continue
        freq = _FREQ_RE.search(line)
        if freq:
            freqs[freq.group(1)] = int(freq.group(2))
    zones = {
        name: {"type": types.get(name), "temp_c": temps[name]}
        for name in sorted(temps, key=lambda z: int(z[len("thermal_zone") :]))
    }
    return {"zones": zones, "cur_freq_khz": dict(sorted(freqs.items(), key=lambda i: int(i[0])))}


def host_snapshot() -> dict[str, Any]:
    """The same snapshot of this machine, read directly (unreadable files skipped)."""
    lines = []
    for pattern in (f"{ZONES}/type", f"{ZONES}/temp", CUR_FREQ):
        for path in glob.glob(pattern):
            try:
                with open(path, encoding="ascii", errors="replace") as fh:
                    lines.append(f"{path}:{fh.read().strip()}")
            except OSError:
                continue
    return parse_snapshot("\n".join(lines))


def hottest(snapshot: Mapping[str, Any], zones: str = "") -> float | None:
    """Highest temperature among zones whose type matches the regex ``zones`` (all if empty)."""
    pattern = re.compile(zones) if zones else None
    temps = [
        zone["temp_c"]
        for zone in snapshot["zones"].values()
        if pattern is None or pattern.search(zone["type"] or "")
    ]
    return max(temps) if temps else None


def across_runs(runs: list[Mapping[str, Any]], zones: str = "") -> dict[str, float | None]:
    """Hottest matching zone before the first of ``runs`` and after the last (their record)."""
    return {
        "before_c": hottest(runs[0]["thermal_before"], zones),
        "after_c": hottest(runs[-1]["thermal_after"], zones),
    }


def cool_down(
    settings: Mapping[str, Any],
    read: Callable[[], dict[str, Any]],
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Apply the device's ``cooldown`` settings before a run; returns what happened.

    ``read`` takes a snapshot (one shell round trip on a phone). Returned: ``pause_s``,
    ``waited_s``, ``start_c`` and ``end_c`` (hottest matching zone), ``reached`` (None when no
    temperature target) and ``warning`` (None, or why the run starts hot or unchecked).
    """
    pause = float(settings.get("pause_s") or 0.0)
    target = settings.get("below_c")
    record: dict[str, Any] = {
        "pause_s": pause,
        "waited_s": 0.0,
        "start_c": None,
        "end_c": None,
        "reached": None,
        "warning": None,
    }
    if pause > 0:
        sleep(pause)
    if target is None:
        return record
    zones = settings.get("zones") or ""
    limit = float(settings.get("max_wait_s", 300.0))
    poll = max(0.05, float(settings.get("poll_s", 5.0)))
    start = time.monotonic()
    temp = hottest(read(), zones)
    record["start_c"] = temp
    if temp is None:
        record["warning"] = (
            f"cooldown.below_c {target} °C not checked: no readable thermal zone"
            + (f" of type /{zones}/" if zones else "")
        )
        return record
    while temp >= target and time.monotonic() - start < limit:
        sleep(min(poll, max(0.0, limit - (time.monotonic() - start))))
        temp = hottest(read(), zones)
        if temp is None:
            break
    record["waited_s"] = time.monotonic() - start
    record["end_c"] = temp
    record["reached"] = temp is not None and temp < target
    if not record["reached"]:
        record["warning"] = (
            f"still {temp} °C (cooldown.below_c {target} °C) after waiting "
            f"{record['waited_s']:.0f} s (cooldown.max_wait_s {limit:g}); measured hot"
        )
    return record
