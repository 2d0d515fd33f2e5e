"""Benchmarks on this machine's CPU.

``repeats`` runs one artifact's repeats (:func:`~mobileforge.bench.host.repeats.run_host_repeats`),
each in a process forked by the serving ``runner`` (``python -m mobileforge.bench.host.runner``),
which holds the measurement itself; ``paired`` holds several artifacts loaded in forked
processes for the paired comparison. Importing this package does not import torch.
"""
