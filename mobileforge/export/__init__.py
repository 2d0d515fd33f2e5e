"""Artifact export: TorchScript lite ``.ptl`` (:mod:`.ptl`), ExecuTorch ``.pte`` (:mod:`.pte`, with
Core ML payload canonicalisation in :mod:`.coreml`)."""
