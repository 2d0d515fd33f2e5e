"""Benchmarks on Android phones over adb.

``adb`` runs one artifact's repeats on a phone
(:func:`~mobileforge.bench.android.adb.run_adb_benchmark`) over ``adbconn`` (the adb server
connection), with ``probes`` (what a phone offers: CPUs, frequencies, ``taskset``, ``time``)
and ``pushcache`` (runner and artifact pushed once per content); ``paired`` takes turns on a
phone for the paired comparison. Importing this package does not import torch.
"""
