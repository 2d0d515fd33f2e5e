"""The .ptl form (frozen or plain scripted) is chosen by size, so no artifact depends on a timing.

With the x86 int8 engine a frozen module stores its packed weights twice and is larger than the
plain scripted one; in fp32 freezing folds constants and is smaller. Both are read from the real
serialisations here, not assumed.
"""

from __future__ import annotations

import dataclasses
import io
import os
import subprocess
import sys
import time
import zipfile

import pytest
import torch

from mobileforge import capabilities
from mobileforge.export import ptl
from mobileforge.fuse import fuse
from mobileforge.models import build_model
from mobileforge.quantize.fx import quantize_static, quantized_engine
from mobileforge.quantize.recipe import Recipe

# 7-bit activations, as tests/test_quantize.py uses for exact x86 comparisons: no fbgemm overflow
# on CPUs without VNNI.
RECIPE_X86 = dataclasses.replace(Recipe(calibration_batches=2, batch_size=16), reduce_range=True)


def _quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def inputs() -> torch.Tensor:
    return torch.randn(32, 3, 16, 16, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def fused() -> torch.fx.GraphModule:
    return fuse(build_model("tinycnn", 10, {"width": 8}, seed=0))


@pytest.fixture(scope="module")
def int8_x86(fused, inputs) -> torch.fx.GraphModule:
    quantized, _ = quantize_static(fused, "x86", RECIPE_X86, inputs)
    return quantized


def _optimized_path() -> str:
    available, _ = capabilities.mobile_optimizer("cpu")
    return "optimize_for_mobile" if available else "torch.jit.freeze"


def _both_forms(model: torch.nn.Module) -> tuple[bytes, bytes]:
    """(optimized, plain scripted) lite-interpreter bytes of ``model``, made independently."""
    from torch.utils.mobile_optimizer import optimize_for_mobile

    scripted = torch.jit.script(model.eval())
    if capabilities.mobile_optimizer("cpu")[0]:
        optimized = optimize_for_mobile(scripted)
    else:
        optimized = torch.jit.freeze(scripted.eval())
    return ptl.lite_bytes(optimized), ptl.lite_bytes(scripted)


def _frozen(data: bytes) -> bool:
    """Whether a .ptl holds a frozen module: weights as constants, no module attributes."""
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    attributes = any(name.startswith("archive/data/") for name in names)
    constants = any(name.startswith("archive/constants/") for name in names)
    assert attributes != constants, names  # weights are stored one way or the other
    return constants


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start_busy_loops(cpus: set[int]) -> list[subprocess.Popen]:
    """One ``while True: pass`` per CPU of ``cpus``, pinned to them."""
    loops = []
    try:
        for _ in cpus:
            loop = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            loops.append(loop)
            os.sched_setaffinity(loop.pid, cpus)
        # Give them a moment to spin up; whether they loaded the export is asserted by the
        # CPU time they took during it (a count), not by how long they took to start.
        for _ in range(500):
            if all(_cpu_seconds(loop.pid) >= 0.05 for loop in loops):
                break
            time.sleep(0.02)
    except BaseException:
        _stop(loops)
        raise
    return loops


def _stop(loops: list[subprocess.Popen]) -> None:
    for loop in loops:
        loop.kill()
        loop.wait()


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs Linux CPU affinity")
def test_int8_x86_keeps_the_smaller_scripted_form_whatever_the_load(int8_x86, inputs):
    with quantized_engine("x86"):
        frozen, plain = _both_forms(int8_x86)
        # The premise: frozen x86 int8 stores packed weights twice.
        assert len(frozen) > len(plain)

        idle, info = ptl.export_ptl(int8_x86, "cpu", inputs[:1], log=_quiet)
        loops = _start_busy_loops(os.sched_getaffinity(0))
        try:
            spun = [_cpu_seconds(loop.pid) for loop in loops]
            loaded, loaded_info = ptl.export_ptl(int8_x86, "cpu", inputs[:1], log=_quiet)
            assert all(loop.poll() is None for loop in loops)  # the load lasted the export
            # ... and every loop took CPU while the export ran.
            assert all(_cpu_seconds(lp.pid) > t for lp, t in zip(loops, spun, strict=True))
        finally:
            _stop(loops)

    assert info["choice"] == info["optimization"] == ptl.SCRIPTED
    assert info["scripting"] == "torch.jit.script"
    assert "size" in info["choice_reason"]
    sizes = {name: c["size_bytes"] for name, c in info["candidates"].items()}
    assert sizes.keys() == {_optimized_path(), "scripted"}
    assert sizes["scripted"] == len(plain) < sizes[_optimized_path()]
    assert not any("median_ms" in c for c in info["candidates"].values())
    assert not _frozen(idle)
    assert idle == plain  # the scripted bytes, reproducible within this process
    assert loaded == idle
    assert loaded_info["choice"] == info["choice"]
    assert loaded_info["candidates"]["scripted"] == info["candidates"]["scripted"]


def test_fp32_keeps_the_optimized_form_when_not_larger(fused, inputs):
    optimized, plain = _both_forms(fused)
    data, info = ptl.export_ptl(fused, "cpu", inputs[:1], log=_quiet)
    sizes = {name: c["size_bytes"] for name, c in info["candidates"].items()}
    assert sizes.keys() == {_optimized_path(), "scripted"}
    assert sizes["scripted"] == len(plain)
    # Freezing folds the fp32 constants: smaller, here by about a quarter (read, not assumed).
    assert abs(sizes[_optimized_path()] - len(optimized)) < 100  # class-name counters differ
    assert sizes[_optimized_path()] < len(plain)
    assert info["choice"] == info["optimization"] == _optimized_path()
    assert len(data) == sizes[_optimized_path()]
    assert _frozen(data) and not _frozen(plain)
    from torch.jit.mobile import _load_for_lite_interpreter

    with torch.no_grad():
        assert torch.allclose(_load_for_lite_interpreter(io.BytesIO(data))(inputs), fused(inputs))


def test_equal_sizes_keep_the_optimized_form(fused, inputs, monkeypatch):
    """A tie goes to the optimized module: both forms serialise to one length here."""

    def same_length(module: torch.jit.ScriptModule) -> bytes:
        # A frozen module has its submodules inlined; the scripted tinycnn has children.
        return (b"S" if list(module.children()) else b"F") * 1000

    monkeypatch.setattr(ptl, "lite_bytes", same_length)
    data, info = ptl.export_ptl(fused, "cpu", inputs[:1], log=_quiet)
    assert {c["size_bytes"] for c in info["candidates"].values()} == {1000}
    assert info["choice"] == info["optimization"] == _optimized_path()
    assert data == b"F" * 1000
