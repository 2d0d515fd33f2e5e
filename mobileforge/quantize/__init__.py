"""int8 quantization for both formats.

FX graph mode for ``.ptl`` (:mod:`.fx`), PT2E for ``.pte`` (:mod:`.pt2e`).
"""
