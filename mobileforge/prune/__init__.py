"""Pruning for both formats.

int8 magnitude pruning of ``.ptl`` modules (:mod:`.unstructured`) and of PT2E graphs (:mod:`.pt2e`).
"""
