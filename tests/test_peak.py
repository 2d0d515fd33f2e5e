"""The host's peak GEMM throughput (mobileforge.bench.peak)."""

from __future__ import annotations

import json
import subprocess
import sys

from mobileforge.bench import peak
from tests.conftest import REPO


def test_the_peak_of_a_precision_is_its_fastest_kernel():
    kernels = [
        {"kernel": "torch.mm (ATen)", "precision": "fp32", "gmacs": 52.5},
        {"kernel": "XNNPACK linear (fp32, ExecuTorch)", "precision": "fp32", "gmacs": 119.0},
        {"kernel": "quantized::linear (x86 engine)", "precision": "int8", "gmacs": 467.0},
        {"kernel": "XNNPACK linear (int8, ExecuTorch)", "precision": "int8", "gmacs": 300.0},
    ]
    assert peak.best_peaks(kernels) == {
        "fp32": {"gmacs": 119.0, "kernel": "XNNPACK linear (fp32, ExecuTorch)"},
        "int8": {"gmacs": 467.0, "kernel": "quantized::linear (x86 engine)"},
    }


def test_time_kernels_reports_the_best_run_and_the_median():
    calls = []

    def run():
        calls.append(1)

    (timing,) = peak.time_kernels([run], macs=1_000_000, repeats=5, warmup=2)
    assert len(calls) == 7 and len(timing["runs_ms"]) == 5
    assert timing["gmacs"] >= timing["gmacs_median"] > 0
    assert timing["gmacs"] == 1_000_000 / min(timing["runs_ms"]) / 1e6


def test_measure_peak_times_both_precisions_of_the_lite_interpreter_kernels():
    # In a child process: the measurement pins its process to the benchmark's CPUs.
    code = (
        "import json; from mobileforge.bench.peak import measure_peak; "
        "print(json.dumps(measure_peak(1, 'x86', None, (64, 128, 128), repeats=3)))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=300, check=True)  # fmt: skip
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert record["threads"] == 1 and len(record["affinity"]) == 1
    assert record["gemm"] == {"m": 64, "k": 128, "n": 128, "macs": 64 * 128 * 128}
    kernels = {k["kernel"]: k for k in record["kernels"]}
    assert set(kernels) == {"torch.mm (ATen)", "quantized::linear (x86 engine)"}
    assert all(k["gmacs"] > 0 and len(k["runs_ms"]) == 3 for k in kernels.values())
    assert record["peak"]["fp32"]["kernel"] == "torch.mm (ATen)"
    assert record["peak"]["int8"]["gmacs"] == kernels["quantized::linear (x86 engine)"]["gmacs"]
    assert record["host"]["cpu_model"] and record["executorch_version"] is None
