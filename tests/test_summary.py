"""Summary table: joins, deltas against fp32, speedups and the best-artifact choice."""

from __future__ import annotations

import math

import pytest

from mobileforge.summary import COLUMNS, build_rows, summarize
from tests.paired import record_of

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


def _bench(p50, samples=None):
    return {"latency_ms": {"p50": p50, "p90": p50 * 1.1, "mean": p50, "std": 0.1, "min": p50},
            "load_ms": 1.0, "threads_applied": 1, "runtime": "x", "peak_rss_mb": 100.0,
            "runs": [{"samples_ms": samples or [p50] * 3}]}  # fmt: skip


def _comparison(artifacts, latency):
    """The host comparison of the artifacts in ``latency`` (path: ms), as the compare job's."""
    by_path = {a["artifact"]: a for a in artifacts}
    entries = [{"path": path, **{k: by_path[path][k] for k in ("variant", "format", "backend")}}
               for path in latency]  # fmt: skip
    return {("m", "host"): record_of(entries, list(latency.values()))}


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
    comparisons = _comparison(artifacts, latency)
    rows = build_rows(artifacts, evaluations, benchmarks, DEVICES, comparisons=comparisons)
    return summarize(rows, accuracy_budget=1.0, comparisons=comparisons)


def test_columns_and_one_row_per_artifact_and_matching_device(frame):
    assert list(frame.columns) == COLUMNS
    host = frame[frame["device"] == "host"]
    # The qnnpack int8 artifact belongs to the phone only; everything engine-free to both.
    assert "qnnpack" not in set(host["engine"])
    assert len(host) == 6
    assert set(frame[frame["device"] == "phone"]["engine"]) == {"", "qnnpack"}


def _host(frame, path):
    return frame[(frame["device"] == "host") & (frame["artifact"] == path)].iloc[0]


def test_accuracy_delta_and_paired_speedup_against_fp32_of_same_format_and_backend(frame):
    row = _host(frame, "results/m/pte/int8.xnnpack.pte")
    assert row["accuracy_delta"] == pytest.approx(-0.5)
    # From the paired rounds (1 % noise per run), not from the benchmarks' p50s.
    assert row["speedup"] == pytest.approx(5.0 / 2.0, rel=0.02)
    assert row["speedup_low"] <= row["speedup"] <= row["speedup_high"] and row["compared"]
    ptl = _host(frame, "results/m/ptl/int8.x86.cpu.ptl")
    assert ptl["speedup"] == pytest.approx(10.0 / 4.0, rel=0.02)
    fp32 = _host(frame, "results/m/ptl/fp32.cpu.ptl")
    assert fp32["speedup"] == fp32["speedup_low"] == fp32["speedup_high"] == 1.0


def test_vs_executorch_is_over_the_faster_plain_pte_program(frame):
    # Plain .pte int8 (2 ms) beats its fp32 (5 ms): that is what ExecuTorch gives by hand.
    assert _host(frame, "results/m/pte/int8.xnnpack.pte")["vs_executorch"] == 1.0
    ptl = _host(frame, "results/m/ptl/int8.x86.cpu.ptl")
    assert ptl["vs_executorch"] == pytest.approx(2.0 / 4.0, rel=0.02)
    assert ptl["vs_executorch_low"] <= ptl["vs_executorch"] <= ptl["vs_executorch_high"]


def test_rows_without_a_comparison_have_no_ratio_and_no_best(frame):
    phone = frame[frame["device"] == "phone"]
    assert not phone["compared"].any() and phone["speedup"].isna().all()
    assert not phone["best"].any()


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


def test_failed_and_unrun_benchmarks_keep_their_rows_with_a_note():
    sidecar = _sidecar("fp32", "ptl", "cpu")
    path = sidecar["artifact"]
    error = "DeviceNotConnected: device 'X' is in state 'offline'"
    failures = {(path, "phone"): error}
    planned = {(path, "host"), (path, "phone")}
    rows = build_rows([sidecar], {}, {}, DEVICES, failures=failures, planned=planned)
    notes = {row["device"]: row["note"] for row in rows}
    assert notes["phone"] == f"benchmark failed: {error}"
    assert notes["host"].startswith("not benchmarked: the run ended before")
    assert all(row["latency_ms_p50"] is None for row in rows)


def test_spread_thermal_and_thread_columns_and_the_unstable_flag():
    sidecar = _sidecar("fp32", "ptl", "cpu")
    steady = {**_bench(2.0), "threads_applied": None, "threads_requested": 2,
              "affinity": [6, 7], "thermal": {"before_c": 38.5, "after_c": 44.0}}  # fmt: skip
    steady["latency_ms"] = {**steady["latency_ms"], "cv": 0.01, "runs": 3, "trimmed_mean": 2.1}
    shaky = {**steady, "affinity": None}
    shaky["latency_ms"] = {**steady["latency_ms"], "cv": 0.12}
    benchmarks = {(sidecar["artifact"], "phone"): steady, (sidecar["artifact"], "host"): shaky}
    frame = summarize(build_rows([sidecar], {}, benchmarks, DEVICES), 1.0, unstable_cv=0.05)
    phone = frame[frame["device"] == "phone"].iloc[0]
    assert phone["threads"] == 2 and phone["affinity"] == "6,7"  # requested: no thread flag
    assert phone["repeats"] == 3 and phone["latency_cv"] == 0.01 and not phone["unstable"]
    assert phone["latency_ms_trimmed_mean"] == 2.1
    assert (phone["temp_c_before"], phone["temp_c_after"]) == (38.5, 44.0)
    host = frame[frame["device"] == "host"].iloc[0]
    assert host["unstable"] and host["affinity"] == "unpinned"
    assert host["note"] == "unstable: run-to-run CV 12.0% > 5.0%"


PEAKS = {
    "host": {
        "device": "host",
        "peak": {
            "fp32": {"gmacs": 100.0, "kernel": "XNNPACK linear (fp32, ExecuTorch)"},
            "int8": {"gmacs": 400.0, "kernel": "quantized::linear (x86 engine)"},
        },
    }
}


def _roofline_frame(variants):
    artifacts = [{**_sidecar(v, "pte", "xnnpack"), "macs": 300_000_000} for v in variants]
    for sidecar in artifacts:  # a sweep point's name is its own, not one of three
        sidecar["artifact"] = f"results/m/pte/{sidecar['variant']}.xnnpack.pte"
    evaluations = {a["artifact"]: {"accuracy": 95.0} for a in artifacts}
    benchmarks = {(a["artifact"], "host"): _bench(3.0) for a in artifacts}
    rows = build_rows(artifacts, evaluations, benchmarks, DEVICES, PEAKS)
    return summarize(rows, accuracy_budget=1.0).set_index(["variant", "device"])


def test_roofline_is_achieved_macs_per_second_over_the_peak_of_the_precision():
    frame = _roofline_frame(["fp32", "int8", "int8_pruned-channel-0.5"])
    fp32, int8 = frame.loc[("fp32", "host")], frame.loc[("int8", "host")]
    # 300 M MACs in 3 ms: 100 GMAC/s; fp32 peak 100, int8 peak 400.
    assert fp32["achieved_gmacs"] == pytest.approx(100.0)
    assert fp32["roofline_fraction"] == pytest.approx(1.0)
    assert fp32["peak_kernel"] == "XNNPACK linear (fp32, ExecuTorch)"
    assert int8["roofline_fraction"] == pytest.approx(0.25)
    assert int8["peak_gmacs"] == 400.0
    sweep = frame.loc[("int8_pruned-channel-0.5", "host")]
    assert sweep["peak_gmacs"] == 400.0 and sweep["roofline_fraction"] == pytest.approx(0.25)


def test_roofline_only_where_a_peak_was_measured():
    frame = _roofline_frame(["fp32"])
    phone = frame.loc[("fp32", "phone")]
    assert phone["macs"] == 300_000_000  # a property of the artifact
    assert math.isnan(phone["latency_ms_p50"]) and math.isnan(phone["roofline_fraction"])
    assert phone["peak_kernel"] == ""


def test_precision_follows_the_variant_name():
    from mobileforge.summary import precision

    assert precision("fp32") == "fp32"
    assert precision("int8") == precision("int8_pruned") == "int8"
    assert precision("int8_pruned-channel-0.5") == "int8"
    assert precision("int8x") is None and precision("fp16") is None


def test_latency_interval_and_pareto_columns(frame):
    host = frame[frame["device"] == "host"].set_index("artifact")
    assert host["pareto"].dtype == bool
    # int8 .pte (2 ms, 94.5) and int8_pruned .ptl (1 ms, 90.0) are on the front; fp32 .ptl is not.
    assert host.loc["results/m/pte/int8.xnnpack.pte", "pareto"]
    assert host.loc["results/m/ptl/int8_pruned.x86.cpu.ptl", "pareto"]
    assert not host.loc["results/m/ptl/fp32.cpu.ptl", "pareto"]
    sidecar = _sidecar("fp32", "ptl", "cpu")
    bench = _bench(1.0, [0.9, 1.0, 1.1, 1.0, 1.2])
    bench["runs"].append({"samples_ms": [1.0, 0.95, 1.05]})  # every repeat's runs count
    row = build_rows([sidecar], {}, {(sidecar["artifact"], "host"): bench}, DEVICES)[0]
    assert 0.9 <= row["latency_ms_ci_low"] <= 1.0 <= row["latency_ms_ci_high"] <= 1.2


def test_a_benchmark_record_of_another_shape_stops_the_summary_by_name():
    # samples_ms once moved into runs and the intervals went empty without a word: never again.
    sidecar = _sidecar("fp32", "ptl", "cpu")
    bench = {**_bench(1.0), "artifact": sidecar["artifact"], "device": "host"}
    bench["runs"] = [{"samples": [1.0]}]
    with pytest.raises(KeyError, match=r"fp32.cpu.ptl on host: runs \[0\] have no 'samples_ms'"):
        build_rows([sidecar], {}, {(sidecar["artifact"], "host"): bench}, DEVICES)
    del bench["runs"]
    with pytest.raises(KeyError, match="has no 'runs' list"):
        build_rows([sidecar], {}, {(sidecar["artifact"], "host"): bench}, DEVICES)


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
