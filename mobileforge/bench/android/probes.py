"""What a phone is and what its shell offers, learnt in one shell command.

:data:`PROBE_COMMAND` asks for every property (``getprop`` with no argument prints all of
them), the online CPUs, each CPU's maximum frequency, the shell's CPU affinity (``taskset -p
$$``, which also proves ``taskset`` exists) and whether a ``time -v`` reports max RSS, each
part separated by a marker line and each allowed to fail on its own. It uses no loop and no
parameter expansion: vendor shells that reject ``for`` or ``${c##*cpu}`` run it too, and
anything a phone cannot tell degrades to "unpinned" or "no peak memory" with a note, never to
a failed benchmark. The CPU list comes from
``grep -H . /sys/devices/system/cpu/cpu*/cpufreq/cpuinfo_max_freq``.
"""

from __future__ import annotations

import re
from typing import Any

#: Places a ``time`` binary with ``-v`` (max RSS) may live; ``time`` alone would hit mksh's
#: ``time`` keyword, which has no ``-v``.
TIME_BINARIES = ("/system/bin/time", "/usr/bin/time")
DEVICE_PROPS = {
    "brand": "ro.product.brand",
    "manufacturer": "ro.product.manufacturer",
    "model": "ro.product.model",
    "android_release": "ro.build.version.release",
    "sdk": "ro.build.version.sdk",
    "abi": "ro.product.cpu.abi",
    "soc_model": "ro.soc.model",
}
MARK = "@@mobileforge:"
_SECTIONS = ("props", "online", "maxfreq", "affinity", *(f"time{i}" for i in range(2)))

PROBE_COMMAND = "; ".join(
    [
        f"echo {MARK}props",
        "getprop 2>/dev/null",
        f"echo {MARK}online",
        "cat /sys/devices/system/cpu/online 2>/dev/null",
        f"echo {MARK}maxfreq",
        "grep -H . /sys/devices/system/cpu/cpu*/cpufreq/cpuinfo_max_freq 2>/dev/null",
        f"echo {MARK}affinity",
        "taskset -p $$ 2>&1",
        *(f"echo {MARK}time{i}; {binary} -v true 2>&1" for i, binary in enumerate(TIME_BINARIES)),
        f"echo {MARK}end",
    ]
)

_PROP_RE = re.compile(r"^\[([^\]]+)\]: \[(.*)\]$")
_FREQ_RE = re.compile(r"/cpu(\d+)/cpufreq/\w+:\s*(\d+)\s*$")
_AFFINITY_RE = re.compile(r"affinity mask:\s*([0-9a-fA-F]+)")
_MAXRSS_RE = re.compile(
    r"Max RSS \(KiB\):\s*(\d+)|Maximum resident set size \(kbytes\):\s*(\d+)", re.IGNORECASE
)


def sections(output: str, mark: str = MARK) -> dict[str, str]:
    """Split marker-separated output into ``{section: text}``."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in output.splitlines():
        if line.startswith(mark):
            current = found.setdefault(line[len(mark) :].strip(), [])
        elif current is not None:
            current.append(line)
    return {name: "\n".join(lines) for name, lines in found.items()}


def parse_cpu_list(text: str) -> set[int]:
    """``0-3,5`` -> {0, 1, 2, 3, 5}; anything unparsable gives the empty set."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        lo, _, hi = part.strip().partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            return set()
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


def parse_freqs(text: str) -> dict[int, int]:
    """``grep -H`` lines of cpufreq files -> {cpu: kHz}."""
    freqs: dict[int, int] = {}
    for line in text.splitlines():
        match = _FREQ_RE.search(line)
        if match:
            freqs[int(match.group(1))] = int(match.group(2))
    return freqs


def parse_peak_rss_mb(output: str) -> float | None:
    """Max RSS from toybox or GNU ``time -v`` output, in MiB."""
    matches = _MAXRSS_RE.findall(output)
    if not matches:
        return None
    kib = next(g for g in matches[-1] if g)
    return int(kib) / 1024.0


def parse_probe(output: str) -> dict[str, Any]:
    """Turn :data:`PROBE_COMMAND`'s output into the cached description of a phone.

    Returns ``props`` (every property), ``info`` (the :data:`DEVICE_PROPS` subset, empty values
    as None), ``online`` (sorted CPUs, or None when unreadable), ``max_freq_khz`` ({cpu: kHz}),
    ``allowed`` (CPUs the shell may run on, None when taskset is missing), ``taskset`` (bool),
    ``time_binary`` (a path, or None) and ``notes`` (why something is missing).
    """
    parts = sections(output)
    missing = [name for name in (*_SECTIONS, "end") if name not in parts]
    notes: dict[str, str] = {}
    if missing:
        notes["probe"] = f"probe output lacked sections {missing}: {output[-300:]!r}"
    props: dict[str, str] = {}
    for line in parts.get("props", "").splitlines():
        match = _PROP_RE.match(line.strip())
        if match:
            props[match.group(1)] = match.group(2)
    info = {key: (props.get(prop) or None) for key, prop in DEVICE_PROPS.items()}
    freqs = parse_freqs(parts.get("maxfreq", ""))
    online = parse_cpu_list(parts.get("online", "")) or set(freqs)
    affinity = _AFFINITY_RE.search(parts.get("affinity", ""))
    allowed: set[int] | None = None
    if affinity:
        mask = int(affinity.group(1), 16)
        allowed = {c for c in range(mask.bit_length()) if mask >> c & 1}
    else:
        notes["affinity"] = "taskset is missing on the device (`taskset -p $$` failed)"
    time_binary = None
    for i, binary in enumerate(TIME_BINARIES):
        if parse_peak_rss_mb(parts.get(f"time{i}", "")) is not None:
            time_binary = binary
            break
    if time_binary is None:
        notes["peak_rss_mb"] = f"no `time -v` on the device ({', '.join(TIME_BINARIES)})"
    if not online:
        notes["cpus"] = "the device lists no CPUs (/sys/devices/system/cpu unreadable)"
    return {
        "props": props,
        "info": info,
        "online": sorted(online) or None,
        "max_freq_khz": {str(c): freqs[c] for c in sorted(freqs)},
        "allowed": sorted(allowed) if allowed is not None else None,
        "taskset": allowed is not None,
        "time_binary": time_binary,
        "notes": notes,
    }


def choose_cpus(probe: dict[str, Any], threads: int) -> tuple[list[int] | None, str | None]:
    """Pick ``threads`` CPUs to pin to, fastest first (max frequency, then highest index).

    Big cores are numbered last on big.LITTLE SoCs, hence the index tie-break. Returns
    ``(cpus, None)``, or ``(None, reason)`` when the benchmark must run unpinned. More threads
    than the phone has CPUs is a configuration error and raises ``ValueError``.
    """
    online = probe["online"]
    if not online:
        return None, probe["notes"].get("cpus", "no CPU list")
    candidates = sorted(set(online) & set(probe["allowed"] or online))
    if threads > len(online):
        raise ValueError(
            f"{threads} threads requested but the device has {len(online)} online CPU(s) "
            f"{online}; lower the device's 'threads'"
        )
    if not probe["taskset"]:
        return None, probe["notes"]["affinity"]
    if threads > len(candidates):
        return None, f"the shell may only run on CPUs {candidates}, fewer than {threads}"
    freqs = {int(c): f for c, f in probe["max_freq_khz"].items()}
    ranked = sorted(candidates, key=lambda c: (freqs.get(c, 0), c), reverse=True)
    return sorted(ranked[:threads]), None


def cpu_mask(cpus: list[int]) -> str:
    """Hex affinity mask without ``0x`` (accepted by toybox and util-linux ``taskset``)."""
    return format(sum(1 << c for c in cpus), "x")
