"""Benchmarks of built artifacts: on the host CPU (fresh process) and on Android over adb.

``stats`` summarises latencies, ``host``/``host_runner`` measure on this machine, ``adb`` on a
phone, and ``devicelock`` keeps two benchmarks off the same device. Importing this package (or
``host``, ``adb``, ``devicelock``, ``stats``) does not import torch.
"""
