"""What kind of work a profiled event is: quantize, dequantize, layout conversion, a delegate's
own time, compute, or other (bookkeeping the runtime records beside the operators).

Names come from three vocabularies: ExecuTorch's portable kernels (``native_call_<op>.out``),
XNNPACK's operators (``Convolution (NHWC, QC8) IGEMM #1``) and the lite interpreter's ATen and
quantized ops (``quantized::conv2d_relu``, ``aten::dequantize``). Matching is on lower-case
substrings, so a name from a newer runtime still lands in a sensible group.
"""

from __future__ import annotations

import re

from mobileforge import records

#: The name ``layers`` gives a delegate call's time outside the operators it reports.
DELEGATE_REST = "DELEGATE_CALL (outside its operators)"

_DEQUANTIZE = ("dequantize",)
_QUANTIZE = ("quantize_per_tensor", "quantize_per_channel", "quantize_per_token", "quantize")
_LAYOUT = (
    "permute", "transpose", "to_copy", "_to_dim_order_copy", "convert_element_type",
    "contiguous", "clone", "copy", "reshape", "view", "flatten", "expand", "squeeze",
    "unsqueeze", "channels_last", "to_dim_order",
)  # fmt: skip
#: Bookkeeping, not an operator's work (torch's scalar reads, allocation, the interpreter).
_OTHER = (
    "aten::item", "aten::_local_scalar_dense", "aten::empty", "aten::size", "aten::q_scale",
    "aten::q_zero_point", "aten::qscheme", "prim::", "method::", "program::", "memory",
    "operator_call",  # the runtime's call of a portable kernel, beyond the kernel itself
)  # fmt: skip
#: XNNPACK writes int8 operand types into its operator names (X8, QS8, QC8, QD8, QU8).
_INT8_XNNPACK = re.compile(r"\b(X8|QS8|QC8|QC8W|QD8|QU8|QC4W)\b")


def is_int8_xnnpack(name: str) -> bool:
    """Whether an XNNPACK operator name says it works on int8 data."""
    return bool(_INT8_XNNPACK.search(name))


def kind(name: str, next_name: str | None = None) -> str:
    """The kind (a :class:`records.ProfiledLayer` ``kind``) of the event called ``name``.

    XNNPACK calls both directions of a float/int8 conversion ``Convert (NC)``: it is a quantize
    when the operator after it (``next_name``, same run) works on int8, else a dequantize.
    """
    low = name.lower()
    if name == DELEGATE_REST or low.startswith("delegate_call"):
        return "delegate"
    if low.startswith("convert (nc"):
        return "quantize" if next_name is not None and is_int8_xnnpack(next_name) else "dequantize"
    if any(token in low for token in _DEQUANTIZE):
        return "dequantize"
    if any(token in low for token in _QUANTIZE) and not low.startswith("quantized::"):
        return "quantize"
    if any(low.startswith(token) for token in _OTHER):
        return "other"
    if any(token in low for token in _LAYOUT):
        return "layout"
    return "compute"


KINDS = set(records.ProfiledLayer.__annotations__["kind"].__args__)
