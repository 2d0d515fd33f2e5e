"""Summary table: joins, deltas against fp32, speedups and the best-artifact choice."""

from __future__ import annotations

import math

import pytest

from mobileforge.summary import COLUMNS, build_rows, summarize

DEVICES = {"host": {"kind": "host", "engine": "x86"}, "phone": {"kind": "adb", "engine": "qnnpack"}}


def _sidecar(variant, fmt, backend, engine=None, size=1000):
    stem = ".".join([variant] + ([engine] if engine else []) + [backend])
    return {
        "artifact": f"results/m/{fmt}/{stem}.{fmt}",
        "model": "m",
        "variant": variant,
        "format": fmt,
        "backend": backend,
        "engine": engine,
        "params": 10,
        "size_bytes": size,
        "sparsity": 0.3 if variant == "int8_pruned" else None,
    }


def _bench(p50):
    return {"latency_ms": {"p50": p50, "p90": p50 * 1.1, "mean": p50, "std": 0.1, "min": p50},
            "load_ms": 1.0, "threads_applied": 1, "runtime": "x", "peak_rss_mb": 100.0}  # fmt: skip


@pytest.fixture
def frame():
    artifacts = [
        _sidecar("fp32", "ptl", "cpu"),
        _sidecar("int8", "ptl", "cpu", "x86"),
        _sidecar("int8_pruned", "ptl", "cpu", "x86"),
        _sidecar("int8", "ptl", "cpu", "qnnpack"),
        _sidecar("fp32", "pte", "xnnpack"),
        _sidecar("int8", "pte", "xnnpack"),
        _sidecar("fp32", "pte", "coreml"),
    ]
    accuracy = {"fp32": 95.0, "int8": 94.5, "int8_pruned": 90.0}
    evaluations = {a["artifact"]: {"accuracy": accuracy[a["variant"]], "max_abs_diff": 0.1}
                   for a in artifacts if a["backend"] != "coreml"}  # fmt: skip
    latency = {
        "results/m/ptl/fp32.cpu.ptl": 10.0,
        "results/m/ptl/int8.x86.cpu.ptl": 4.0,
        "results/m/ptl/int8_pruned.x86.cpu.ptl": 1.0,  # fastest, but over the accuracy budget
        "results/m/pte/fp32.xnnpack.pte": 5.0,
        "results/m/pte/int8.xnnpack.pte": 2.0,
    }
    benchmarks = {(path, "host"): _bench(p50) for path, p50 in latency.items()}
    return summarize(build_rows(artifacts, evaluations, benchmarks, DEVICES), accuracy_budget=1.0)


def test_columns_and_one_row_per_artifact_and_matching_device(frame):
    assert list(frame.columns) == COLUMNS
    host = frame[frame["device"] == "host"]
    # The qnnpack int8 artifact belongs to the phone only; everything engine-free to both.
    assert "qnnpack" not in set(host["engine"])
    assert len(host) == 6
    assert set(frame[frame["device"] == "phone"]["engine"]) == {"", "qnnpack"}


def test_accuracy_delta_and_speedup_against_fp32_of_same_format_and_backend(frame):
    row = frame[
        (frame["device"] == "host") & (frame["artifact"] == "results/m/pte/int8.xnnpack.pte")
    ]
    assert row["accuracy_delta"].item() == pytest.approx(-0.5)
    assert row["speedup"].item() == pytest.approx(5.0 / 2.0)
    ptl = frame[
        (frame["device"] == "host") & (frame["artifact"] == "results/m/ptl/int8.x86.cpu.ptl")
    ]
    assert ptl["speedup"].item() == pytest.approx(10.0 / 4.0)


def test_best_is_fastest_within_accuracy_budget(frame):
    best = frame[frame["best"]]
    assert list(zip(best["device"], best["artifact"], strict=True)) == [
        ("host", "results/m/pte/int8.xnnpack.pte")
    ]


def test_benchmark_warnings_reach_the_note():
    bench = {**_bench(1.0), "warnings": ["other processes used 0.9 CPU during the timed loop"]}
    sidecar = _sidecar("fp32", "ptl", "cpu")
    rows = build_rows([sidecar], {}, {(sidecar["artifact"], "host"): bench}, DEVICES)
    assert rows[0]["note"] == "other processes used 0.9 CPU during the timed loop"


def test_unrunnable_artifact_is_sized_but_has_no_latency(frame):
    row = frame[(frame["device"] == "host") & (frame["backend"] == "coreml")]
    assert row["size_bytes"].item() == 1000
    assert math.isnan(row["latency_ms_p50"].item())
    assert "not benchmarked" in row["note"].item()


def test_rows_name_the_benchmarking_node_and_the_packages_the_artifact_was_built_with():
    sidecar = {
        **_sidecar("fp32", "pte", "xnnpack"),
        "toolchain": {"code": "0" * 16, "packages": {"torch": "2.13.0", "executorch": "1.5.1"}},
    }
    bench = {**_bench(1.0), "host": {"node": "node07", "cpu_model": "AMD EPYC 7B13"}}
    rows = build_rows([sidecar], {}, {(sidecar["artifact"], "host"): bench}, DEVICES)
    host = next(row for row in rows if row["device"] == "host")
    assert (host["node"], host["cpu_model"]) == ("node07", "AMD EPYC 7B13")
    assert host["built_with"] == "executorch==1.5.1 torch==2.13.0"
    phone = next(row for row in rows if row["device"] == "phone")  # not run there: no node
    assert phone["node"] is None and phone["built_with"] == host["built_with"]
    legacy = {**_sidecar("fp32", "ptl", "cpu"), "torch_version": "2.13.0"}  # before toolchains
    assert build_rows([legacy], {}, {}, DEVICES)[0]["built_with"] == "torch==2.13.0"
