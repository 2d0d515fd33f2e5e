"""Where an artifact's time goes: per operator (or delegated block) on one device.

``pte`` runs a ``.pte`` with ETDump on and reads it with ExecuTorch's Inspector; ``ptl`` runs a
``.ptl`` in the lite interpreter under ``torch.profiler``; both hand back the same raw shape (per
run, the events in order with their times), which ``layers`` turns into
:class:`mobileforge.records.ProfiledLayer` rows (``classify`` names each one's kind) and
``agreement`` checks against the artifact's benchmark. ``runner`` is the pinned process a host
profile runs in, ``host`` starts it; ``phone`` profiles a ``.pte`` with a phone's own
executor_runner and reads the ETDump it pulls.
"""
