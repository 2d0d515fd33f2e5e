"""The host's peak dense throughput, per precision: the ceiling a roofline fraction is read against.

One large matrix product (``M x K`` by ``K x N``, :data:`GEMM_SHAPE`) is timed through every
kernel the host's benchmark runtimes use, at the benchmark's thread count, pinned to the same CPUs:

============  =========================================  ========================================
precision     kernel                                     runtime of the artifacts it stands for
============  =========================================  ========================================
fp32          ``torch.mm`` (ATen, MKL / oneDNN)          lite interpreter ``.ptl`` fp32
fp32          XNNPACK linear, an ExecuTorch program      ExecuTorch ``.pte`` fp32
int8          ``quantized::linear`` (fbgemm, ``x86``)    lite interpreter ``.ptl`` int8
int8          XNNPACK qs8 linear, an ExecuTorch program  ExecuTorch ``.pte`` int8 (pt2e static)
============  =========================================  ========================================

The libraries differ by a factor of two or more on one CPU (AMD EPYC: MKL's fp32 path 52 GMAC/s
against XNNPACK's 119), so the peak of a precision is the best kernel of that precision, and the
record says which. Each kernel is warmed up, then timed :data:`REPEATS` times; its throughput is
the best run's (noise only ever slows a kernel down, so the fastest run is the closest estimate
of what the CPU sustains), the median is recorded beside it.

The ExecuTorch programs are built by :func:`gemm_programs` in a job of their own (it imports the
compiler, seconds of CPU); the measurement (:func:`measure_peak`) needs only the runtime.
Importing this module does not import torch.
"""

from __future__ import annotations

import os
import statistics
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

#: ``(M, K, N)`` of the timed product: 268 M MACs per call, large enough that every kernel
#: runs at its steady rate (M = 256, 512 and 1024 gave the same GMAC/s here), small enough that
#: all four kernels are timed in well under a second at one thread.
GEMM_SHAPE = (256, 1024, 1024)
#: Timed runs per kernel, after :data:`WARMUP` untimed ones. Many short runs, so that on a shared
#: machine some run unpreempted: XNNPACK fp32 read 20-29 GMAC/s as the best of 10 in workflow
#: runs under a load of 6-9 on 2 CPUs, 51 as the best of 30 under a load of 6, 54 quiet.
REPEATS = 30
WARMUP = 2
#: Seed of the weights, inputs and calibration data.
SEED = 0
#: CPU features that decide which kernels a library can use (``/proc/cpuinfo`` flags).
CPU_FEATURES = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8")


def gemm_macs(shape: Sequence[int]) -> int:
    m, k, n = shape
    return int(m) * int(k) * int(n)


def gemm_programs(shape: Sequence[int] = GEMM_SHAPE, seed: int = SEED) -> dict[str, bytes]:
    """ExecuTorch programs of one bias-free ``Linear(K, N)`` on a ``[M, K]`` input, per precision.

    Lowered to XNNPACK the way the workflow's ``.pte`` artifacts are (``export.pte.export_pte``:
    fp32, and pt2e static int8 calibrated on random inputs), so they run the same kernels.
    """
    import torch

    from mobileforge.export import pte
    from mobileforge.quantize.recipe import Recipe

    m, k, n = (int(d) for d in shape)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(k, n, bias=False)).eval()
    example = torch.randn(m, k, generator=generator)
    calibration = torch.randn(2 * m, k, generator=generator)
    programs = {}
    # Values do not change a dense kernel's speed: the cheapest observer, two batches.
    recipe = Recipe(observer="minmax", calibration_batches=2, batch_size=m)
    for precision in ("fp32", "int8"):
        int8 = precision == "int8"
        data, info = pte.export_pte(
            model, example, "xnnpack", precision, calibration if int8 else None,
            recipe if int8 else None,
        )  # fmt: skip
        if info["portable_nodes"]:  # a kernel outside XNNPACK would not measure XNNPACK
            raise RuntimeError(
                f"the {precision} GEMM program kept {info['portable_ops']} outside XNNPACK"
            )
        programs[precision] = data
    return programs


def cpu_features() -> list[str]:
    """The :data:`CPU_FEATURES` this CPU reports."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() == "flags":
                    flags = set(value.split())
                    return [feature for feature in CPU_FEATURES if feature in flags]
    except OSError:
        pass
    return []


def time_kernels(
    runs: Sequence[Callable[[], Any]], macs: int, repeats: int = REPEATS, warmup: int = WARMUP
) -> list[dict[str, Any]]:
    """GMAC/s of each of ``runs`` (one call = ``macs`` MACs): best and median of ``repeats``.

    The kernels take turns (one timed call of each per round), so a burst of load from another
    process slows one round of every kernel rather than all runs of one.
    """
    for run in runs:
        for _ in range(warmup):
            run()
    times_ms: list[list[float]] = [[] for _ in runs]
    for _ in range(repeats):
        for run, spent in zip(runs, times_ms, strict=True):
            start = time.perf_counter_ns()
            run()
            spent.append((time.perf_counter_ns() - start) / 1e6)
    results = []
    for spent in times_ms:
        results.append(
            {
                "gmacs": macs / min(spent) / 1e6,
                # the upper median (an even count takes the slower of the middle two runs)
                "gmacs_median": macs / statistics.median_high(spent) / 1e6,
                "runs_ms": spent,
            }
        )
    return results


def best_peaks(kernels: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per precision, the fastest kernel: ``{precision: {gmacs, kernel}}``."""
    peaks: dict[str, dict[str, Any]] = {}
    for kernel in kernels:
        best = peaks.get(kernel["precision"])
        if best is None or kernel["gmacs"] > best["gmacs"]:
            peaks[kernel["precision"]] = {"gmacs": kernel["gmacs"], "kernel": kernel["kernel"]}
    return peaks


def _int8_linear(a: Any, b: Any) -> Callable[[], Any]:
    """``a @ b`` as FX int8 ``.ptl`` modules run it: per-channel symmetric int8 weights and
    uint8 activations, packed for torch's current quantized engine."""
    import torch

    n = b.shape[1]
    with warnings.catch_warnings():  # quantized tensor creation is deprecated upstream
        warnings.simplefilter("ignore", UserWarning)
        weight = torch.quantize_per_channel(
            b.t().contiguous(),
            torch.full((n,), 0.05),
            torch.zeros(n, dtype=torch.long),
            0,
            torch.qint8,
        )
        qa = torch.quantize_per_tensor(a, 0.05, 128, torch.quint8)
    packed = torch.ops.quantized.linear_prepack(weight, None)
    return lambda: torch.ops.quantized.linear(qa, packed, 1.0, 128)


def _add_executorch_kernels(
    programs: Mapping[str, str | os.PathLike[str]],
    threads: int,
    a: Any,
    add: Callable[[str, str, str, Callable[[], Any]], None],
) -> str:
    """Load the ExecuTorch GEMM ``programs`` on ``threads`` threads (checked) and ``add`` each
    as a kernel taking ``a``; returns the ExecuTorch version."""
    from mobileforge.runtime import pte as pte_runtime
    from mobileforge.versions import check_executorch

    executorch_version = check_executorch()
    applied = pte_runtime.set_pte_threads(threads)
    if applied != threads:
        raise RuntimeError(f"ExecuTorch runs {applied} threads, {threads} requested")
    for precision, path in sorted(programs.items()):
        program = pte_runtime.load_pte(path)
        add(
            f"XNNPACK linear ({precision}, ExecuTorch)",
            precision,
            "executorch",
            lambda program=program: program([a]),
        )
    return executorch_version


def measure_peak(
    threads: int,
    engine: str,
    programs: Mapping[str, str | os.PathLike[str]] | None = None,
    shape: Sequence[int] = GEMM_SHAPE,
    repeats: int = REPEATS,
) -> dict[str, Any]:
    """Time the GEMM through every kernel on ``threads`` pinned CPUs; return the record.

    Pins this process to the first ``threads`` CPUs it may use before importing torch (as the
    host benchmark does, so every runtime thread inherits the mask), sets torch's and
    ExecuTorch's thread counts and checks them. ``engine`` is the int8 ``.ptl`` kernel library
    of the device (``x86``: fbgemm). ``programs`` maps ``fp32``/``int8`` to the ExecuTorch GEMM
    programs of :func:`gemm_programs` (empty: the runtime is not measured).
    """
    from mobileforge.bench.host.runner import host_info, pin_cpus

    affinity = pin_cpus(threads)
    import torch

    torch.set_num_threads(threads)
    if torch.get_num_threads() != threads:
        raise RuntimeError(f"torch runs {torch.get_num_threads()} threads, {threads} requested")
    if engine not in torch.backends.quantized.supported_engines:
        raise ValueError(f"quantized engine {engine!r} is not in this torch build")
    m, k, n = (int(d) for d in shape)
    macs = gemm_macs(shape)
    generator = torch.Generator().manual_seed(SEED)
    a = torch.randn(m, k, generator=generator)
    b = torch.randn(k, n, generator=generator)
    kernels: list[dict[str, Any]] = []
    runs: list[Callable[[], Any]] = []

    def add(kernel: str, precision: str, runtime: str, run: Callable[[], Any]) -> None:
        kernels.append({"kernel": kernel, "precision": precision, "runtime": runtime})
        runs.append(run)

    add("torch.mm (ATen)", "fp32", "lite_interpreter", lambda: torch.mm(a, b))
    # The engine is set for packing (weights are packed for it) and for every call.
    previous_engine = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    executorch_version = None
    try:
        add(f"quantized::linear ({engine} engine)", "int8", "lite_interpreter", _int8_linear(a, b))
        if programs:
            executorch_version = _add_executorch_kernels(programs, threads, a, add)
        with torch.inference_mode():
            timings = time_kernels(runs, macs, repeats)
    finally:
        torch.backends.quantized.engine = previous_engine
    for kernel, timing in zip(kernels, timings, strict=True):
        kernel.update(timing)

    return {
        "threads": threads,
        "affinity": affinity,
        "engine": engine,
        "gemm": {"m": m, "k": k, "n": n, "macs": macs},
        "repeats": repeats,
        "warmup": WARMUP,
        "kernels": kernels,
        "peak": best_peaks(kernels),
        "host": host_info(),
        "cpu_features": cpu_features(),
        "torch_version": torch.__version__,
        "executorch_version": executorch_version,
    }
