"""Which physical device a configured device is, and the names that follow from it.

Two config entries may point at one phone (a thread sweep on one serial) and two checkouts may
use the same phones; what must never run twice at once is a physical device, so locks and
Snakemake resources are keyed by it, not by the config name:

* an adb phone is its serial *at an adb server*: the same serial behind two servers is two
  phones as far as anyone here can tell, and ``localhost`` and ``127.0.0.1`` are one server;
* the host is this machine.

Torch-free and cheap: the Snakefile calls :func:`resource_name` while it builds the DAG.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from typing import Any

#: Where device locks live unless ``MOBILEFORGE_LOCK_DIR`` says otherwise: one folder per host,
#: outside any checkout, so every checkout (and every user) on the host shares them.
DEFAULT_LOCK_DIR = "/tmp/mobileforge-locks"
LOCK_DIR_ENV = "MOBILEFORGE_LOCK_DIR"

_LOOPBACK = {"localhost", "127.0.0.1", "::1", "ip6-localhost", ""}
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def lock_dir() -> str:
    """The host-wide lock folder (``$MOBILEFORGE_LOCK_DIR`` or :data:`DEFAULT_LOCK_DIR`)."""
    return os.environ.get(LOCK_DIR_ENV) or DEFAULT_LOCK_DIR


def adb_server(device: Mapping[str, Any]) -> tuple[str, int]:
    """``(host, port)`` of the adb server of an adb device, loopback names made one."""
    host = str(device.get("adb_host", "127.0.0.1")).strip().lower()
    return ("127.0.0.1" if host in _LOOPBACK else host), int(device.get("adb_port", 5037))


def device_key(device: Mapping[str, Any]) -> str:
    """A file-name-safe key naming the physical device behind a config entry.

    ``adb-<server host>-<port>-<serial>-<hash>`` for a phone (the hash keeps serials that only
    differ in characters replaced here apart), ``host`` for this machine.
    """
    if device["kind"] == "host":
        return "host"
    host, port = adb_server(device)
    serial = str(device["serial"])
    digest = hashlib.sha256(f"{host}:{port}/{serial}".encode()).hexdigest()[:8]
    readable = _UNSAFE.sub("_", f"{host}-{port}-{serial}").strip("._") or "phone"
    return f"adb-{readable}-{digest}"


def resource_name(device: Mapping[str, Any]) -> str | None:
    """The Snakemake resource (capacity 1) a phone's benchmark jobs claim; None for the host.

    The host needs none: its benchmark claims every core Snakemake manages instead.
    """
    if device["kind"] == "host":
        return None
    return "phone_" + hashlib.sha256(device_key(device).encode()).hexdigest()[:12]


def phone_resources(devices: Mapping[str, Mapping[str, Any]]) -> dict[str, list[str]]:
    """Resource name -> the config names of the devices sharing that phone, sorted."""
    found: dict[str, list[str]] = {}
    for name in sorted(devices):
        resource = resource_name(devices[name])
        if resource is not None:
            found.setdefault(resource, []).append(name)
    return found
